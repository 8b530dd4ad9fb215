"""``xgb-analyze --dask``: the two-group analysis on a Dask cluster, the table never gathered.

Stages, each run by the workers on their partitions unless said otherwise:

1. one pass that summarises every partition (rows, target counts, each column's levels or
   range): the target's two groups, useless columns and categorical levels for the whole table;
2. the features typed as in the one-process run, with each row's position in the table, kept
   in the workers' memory; the stratified hold-out split keyed by row position and seed
   (:mod:`mltk.xgb.split`: two tiny passes find each class's key threshold, then each
   partition marks its test rows), the same rows as the one-process run's on any
   partitioning;
3. tuning as in the one-process run (hyperopt over stratified CV, :func:`mltk.xgb.tune.tune`)
   on a stratified sample of the training rows, keyed likewise and pulled to this process in
   table order (``tune_rows``): the one-process run's sample, so the same trials; or,
   with ``tune_on: cluster``, every trial trained by the workers on the training partitions
   and validated on a split keyed likewise (:mod:`mltk.xgb.cluster_tuning`);
4. the refit on every training row with ``xgboost.dask`` (a ``DaskQuantileDMatrix``, for
   DART a ``DaskDMatrix``: :func:`mltk.xgb.cluster.training_matrix`; categorical columns
   native), the workers training together; a worker lost meanwhile stops
   the run (:func:`mltk.xgb.cluster.watch_workers`);
5. test predictions with ``xgboost.dask.predict``; the test rows' (y, probability) gathered for
   the metrics, the MCC sweep and test_predictions.csv;
6. SHAP and permutation importance on a stratified sample of about ``explain_rows`` test
   rows, keyed likewise (the one-process run's rows); the group profile's means, SDs and
   SMDs aggregated partition-wise (its medians, the training rows' drift profile and the
   regression from the tuning sample, as the report's ``cluster.samples`` says).

The result is the same :class:`~mltk.xgb.results.Analysis` as :func:`mltk.xgb.analyze`'s, with
a ``cluster`` section in the report: scheduler, workers, partitions, rows and the samples.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mltk import __version__
from mltk.drift.profile import DataProfile
from mltk.errors import InputError
from mltk.xgb import explain
from mltk.xgb.analysis import _check_group_sizes, _model_config, _plain, _regression, _tune_rows
from mltk.xgb.cluster import describe, training_matrix, watch_workers
from mltk.xgb.data import Prepared, check_columns, onehot
from mltk.xgb.explain import group_profile, threshold_metrics
from mltk.xgb.results import Analysis
from mltk.xgb.settings import XgbSettings
from mltk.xgb.split import EXPLAIN_STREAM, TEST_STREAM, TUNE_STREAM, VALID_STREAM
from mltk.xgb.stages import Stages
from mltk.xgb.tune import search as tune_search

log = logging.getLogger(__name__)
Y, TEST, ROW = "__mltk_y", "__mltk_test", "__mltk_row"


@dataclasses.dataclass(frozen=True)
class TableSchema:
    """What the summary pass learnt of the whole table."""

    rows: list[int]  # per partition, in order
    positive: Any
    negative: Any
    features: list[str]  # raw feature columns kept
    categories: dict[str, list[str]]  # categorical column -> sorted levels
    dropped: dict[str, str]
    counts: dict[str, int]  # target value (as text) -> rows
    class_counts: list[dict[int, int]]  # per partition: class (1 = positive) -> rows


# -- 1. the summary pass ----------------------------------------------------------------------


def _is_text(s: Any) -> bool:
    import pandas as pd

    return (isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object
            or pd.api.types.is_string_dtype(s) or pd.api.types.is_bool_dtype(s))


def summarize_part(pdf: Any, target: str) -> dict[str, Any]:
    """One partition's summary: rows, target counts, and per column its type, non-missing
    count and its levels (text) or range (numbers)."""
    import pandas as pd

    t = pdf[target]
    out: dict[str, Any] = {"rows": len(pdf), "target": {}, "columns": {}}
    for value, n in t.value_counts(dropna=True).items():
        out["target"][_plain(value)] = int(n)
    for col in pdf.columns:
        if col == target:
            continue
        s = pdf[col]
        if _is_text(s):
            out["columns"][col] = {"text": True, "count": int(s.notna().sum()),
                                   "levels": {str(v) for v in s.dropna().unique()}}
        else:
            v = pd.to_numeric(s, errors="coerce")
            out["columns"][col] = {"text": False, "count": int(v.notna().sum()),
                                   "min": v.min(), "max": v.max()}
    return out


def _merge_column(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    if a is None:
        return dict(b)
    if a["text"] or b["text"]:
        return {"text": True, "count": a["count"] + b["count"],
                "levels": a.get("levels", set()) | b.get("levels", set())}
    return {"text": False, "count": a["count"] + b["count"],
            "min": np.nanmin([a["min"], b["min"]]), "max": np.nanmax([a["max"], b["max"]])}


def build_schema(parts: Sequence[Mapping[str, Any]], target: str, id_cols: Sequence[str],
                 positive: Any) -> TableSchema:
    """The whole table's schema from the partitions' summaries (errors as in
    :func:`mltk.xgb.prepare`)."""
    counts: dict[Any, int] = {}
    columns: dict[str, dict[str, Any]] = {}
    for part in parts:
        for value, n in part["target"].items():
            counts[value] = counts.get(value, 0) + n
        for col, summary in part["columns"].items():
            columns[col] = _merge_column(columns.get(col), summary)
    pos, neg = _two_groups(counts, target, positive)
    features, categories, dropped = [], {}, {}
    for col, c in columns.items():
        if col in id_cols:
            continue
        levels = sorted(c["levels"]) if c["text"] else None
        if c["count"] == 0:
            dropped[col] = "all values missing"
        elif (levels is not None and len(levels) <= 1) or (levels is None
                                                            and c["min"] == c["max"]):
            dropped[col] = "constant"
        else:
            features.append(col)
            if levels is not None:
                categories[col] = levels
    for col, why in dropped.items():
        log.warning(f"dropping column {col!r}: {why}")
    if not features:
        raise InputError("no usable feature columns left")
    per_part = [{1: int(p["target"].get(pos, 0)), 0: int(p["target"].get(neg, 0))}
                for p in parts]
    return TableSchema([int(p["rows"]) for p in parts], pos, neg, features, categories,
                       dropped, {str(k): v for k, v in counts.items()}, per_part)


def summarize_targets(schema: TableSchema) -> list[dict[int, int]]:
    """Rows of each class (1 = positive) in each partition."""
    return schema.class_counts


def _two_groups(counts: Mapping[Any, int], target: str, positive: Any) -> tuple[Any, Any]:
    values = list(counts)
    if len(values) < 2:
        raise InputError(f"target {target!r} has a single class ({values[0]!r} only): two "
                         "groups are needed" if values else f"target {target!r} is empty")
    if len(values) > 2:
        shown = ", ".join(repr(v) for v in values[:5])
        raise InputError(f"target {target!r} has {len(values)} distinct values ({shown}"
                         f"{', ...' if len(values) > 5 else ''}); it must be binary")
    if positive is None:
        a, b = values
        if counts[a] != counts[b]:
            return (a, b) if counts[a] < counts[b] else (b, a)
        return (max(values), min(values))
    matches = [v for v in values if str(v) == str(positive)]
    if not matches:
        raise InputError(f"`positive` {positive!r} is not a value of the target {target!r} "
                         f"(values: {', '.join(repr(v) for v in values)})")
    return matches[0], next(v for v in values if v != matches[0])


# -- 2. features per partition; the split and the samples by key thresholds ------------------


def model_part(pdf: Any, schema: TableSchema, target: str, id_cols: Sequence[str],
               partition_info: dict | None = None) -> Any:
    """One partition as the analysis sees it: the features typed as at training time,
    ``__mltk_y`` (1 = positive) and ``__mltk_row`` (the row's position in the table,
    counting rows dropped for a missing target), with the id columns. The split is marked
    afterwards (:func:`mark_part`), once the whole table's thresholds are known."""
    import pandas as pd

    number = partition_info["number"] if partition_info else 0
    keep, rows, y = labels_part(pdf, schema, target, number)
    pdf = pdf[keep]
    X = pd.DataFrame(index=pdf.index)
    for col in schema.features:
        v = pdf[col]
        if col in schema.categories:
            X[col] = pd.Categorical(v.astype("string").astype(object).where(v.notna()),
                                    categories=schema.categories[col])
        else:
            X[col] = pd.to_numeric(v, errors="coerce").astype(float)
    for col in id_cols:
        X[col] = pdf[col].to_numpy()
    X[Y], X[ROW] = y, rows
    return X


def labels_part(pdf: Any, schema: TableSchema, target: str, number: int
                ) -> tuple[Any, Any, Any]:
    """(which rows of partition ``number`` have a target, their positions in the table,
    their class: 1 = positive); only the target column is read."""
    import numpy as np
    import pandas as pd

    offset = int(sum(schema.rows[:number]))
    keep = pdf[target].notna().to_numpy()
    rows = np.arange(offset, offset + len(pdf))[keep]
    t = pdf[target][keep]
    # The positive group's values as the target's text says them, found among the distinct
    # values (str of each row would cost a Python call a row, on every pass over the table).
    positive = [v for v in pd.unique(t.astype(object)) if str(v) == str(schema.positive)]
    y = t.astype(object).isin(positive).to_numpy()
    return keep, rows, y.astype(np.int64)


def mark_part(pdf: Any, column: str, seed: int, stream: int,
              thresholds: Mapping[int, int]) -> Any:
    """One typed partition with ``column`` true for its rows taken by ``thresholds``."""
    from mltk.xgb.split import member

    return pdf.assign(**{column: member(pdf[ROW].to_numpy(), pdf[Y].to_numpy(), seed, stream,
                                        thresholds)})


def select_part(pdf: Any, seed: int, stream: int, thresholds: Mapping[int, int]) -> Any:
    """The rows of one typed partition that ``thresholds`` take."""
    from mltk.xgb.split import member

    return pdf[member(pdf[ROW].to_numpy(), pdf[Y].to_numpy(), seed, stream, thresholds)]


def histogram_part(pdf: Any, seed: int, stream: int) -> Any:
    """Pass 1 of a threshold on one partition (:func:`mltk.xgb.split.key_histogram`)."""
    from mltk.xgb.split import key_histogram

    return key_histogram(pdf[ROW].to_numpy(), pdf[Y].to_numpy(), seed, stream)


def bin_keys_part(pdf: Any, seed: int, stream: int, located: Mapping[int, Any]) -> Any:
    """Pass 2 of a threshold on one partition (:func:`mltk.xgb.split.keys_in_bin`)."""
    from mltk.xgb.split import keys_in_bin

    return keys_in_bin(pdf[ROW].to_numpy(), pdf[Y].to_numpy(), seed, stream, located)


def _add(*arrays: Any) -> Any:
    return sum(arrays[1:], arrays[0])


def frame_thresholds(frame: Any, seed: int, stream: int, share: float
                     ) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """(thresholds, rows per class, rows taken per class) of a stratified selection of
    ``share`` of the rows of ``frame`` (typed partitions), in two passes whose results are
    a histogram (summed on the workers) and a few keys: the rows stay where they are."""
    import dask

    from mltk.xgb.split import CLASSES, counts_of, exact_thresholds, locate

    parts = frame.to_delayed()
    sums = [dask.delayed(histogram_part)(p, seed, stream) for p in parts]
    while len(sums) > 1:
        sums = [dask.delayed(_add)(*sums[i:i + 8]) for i in range(0, len(sums), 8)]
    histogram = sums[0].compute()
    located = locate(histogram, share)
    taken = {c: located[c][2] for c in CLASSES}
    found = []
    if any(b >= 0 for b, _, _ in located.values()):
        found = dask.compute(*[dask.delayed(bin_keys_part)(p, seed, stream, located)
                               for p in parts])
    return exact_thresholds(located, found), counts_of(histogram), taken


def _sample(frame: Any, counts: Mapping[int, int], wanted: int | None, seed: int,
            stream: int) -> Any:
    """About ``wanted`` rows of ``frame`` (stratified by class, keyed by row position and
    seed: :mod:`mltk.xgb.split`), gathered here in table order; all rows when ``wanted`` is
    None."""
    total = sum(counts.values())
    if not wanted or wanted >= total:
        rows = frame.compute()
    else:
        thresholds = frame_thresholds(frame, seed, stream, wanted / total)[0]
        rows = frame.map_partitions(select_part, seed, stream, thresholds,
                                    meta=frame._meta).compute()
    return rows.sort_values(ROW, kind="stable")


# -- 6. group profile, partition-wise ---------------------------------------------------------


def moments_part(pdf: Any, features: Sequence[str], categories: Mapping[str, Sequence[str]]
                 ) -> Any:
    """Per profile column (numbers, and ``col=level`` shares): count, sum and sum of squares
    of the non-missing values of each class."""
    import numpy as np
    import pandas as pd

    cols = {}
    for col in features:
        if col in categories:
            for level in categories[col]:
                cols[f"{col}={level}"] = (pdf[col] == level).astype(float).to_numpy()
        else:
            cols[col] = pdf[col].to_numpy(dtype=float)
    y = pdf[Y].to_numpy()
    out = {}
    for name, v in cols.items():
        for cls, tag in ((1, "positive"), (0, "negative")):
            a = v[y == cls]
            a = a[~np.isnan(a)]
            out[(name, tag)] = (len(a), float(a.sum()), float((a * a).sum()))
    return pd.DataFrame(out, index=["n", "sum", "sumsq"])


def _profile(stages: Stages, frame: Any, sample: Any, schema: TableSchema) -> list[dict]:
    """The group profile: exact means, SDs and SMDs from partition-wise moments; medians
    from the sample."""
    import dask

    rows = stages.run("profile", group_profile, sample[schema.features], sample[Y].to_numpy(),
                      schema.categories)
    if rows is None:
        return []
    parts = dask.compute(*[dask.delayed(moments_part)(p, schema.features, schema.categories)
                           for p in frame.to_delayed()])
    total = sum(parts[1:], parts[0])
    for row in rows:
        exact_moments(row, total)
    rows.sort(key=lambda r: -abs(r["smd"]))
    return rows


def exact_moments(row: dict[str, Any], total: Any) -> None:
    import math

    stats = {}
    for tag in ("positive", "negative"):
        n, s1, s2 = total[(row["feature"], tag)]
        mean = s1 / n if n else None
        var = (s2 - n * mean * mean) / (n - 1) if n > 1 else None
        stats[tag] = (n, mean, math.sqrt(max(var, 0.0)) if var is not None else None)
        row[f"mean_{tag}"], row[f"std_{tag}"] = mean, stats[tag][2]
    (n1, m1, sd1), (n0, m0, sd0) = stats["positive"], stats["negative"]
    pooled = math.sqrt(((n1 - 1) * (sd1 or 0) ** 2 + (n0 - 1) * (sd0 or 0) ** 2)
                       / max(1, n1 + n0 - 2))
    row["smd"] = float((m1 - m0) / pooled) if pooled > 0 and m1 is not None \
        and m0 is not None else 0.0


# -- the analysis -----------------------------------------------------------------------------


def analyze_distributed(client: Any, ddf: Any, target: str,
                        settings: XgbSettings | Mapping[str, Any] | None = None,
                        id_cols: Sequence[str] = (), positive: Any = None,
                        on_trial: Callable[[dict[str, Any]], None] | None = None) -> Analysis:
    """The analysis of ``ddf`` (a dask DataFrame) on ``client``'s cluster; nothing written.
    See the module's docstring for what runs where."""
    import dask

    s = XgbSettings.of(settings)
    t_start = time.perf_counter()
    check_columns(ddf.columns, target, id_cols)
    parts = dask.compute(*[dask.delayed(summarize_part)(p, target) for p in ddf.to_delayed()])
    schema = build_schema(parts, target, id_cols, positive)
    meta = model_part(ddf._meta, schema, target, id_cols)
    typed = client.persist(ddf.map_partitions(model_part, schema, target, id_cols, meta=meta))
    split, counts, n_test = frame_thresholds(typed, s.seed, TEST_STREAM, s.test_size)
    n_train = {c: counts[c] - n_test[c] for c in (0, 1)}
    check_counts(n_train, n_test, s.folds)
    # Not persisted again: the flag is cheap to recompute from the persisted typed rows.
    frame = typed.map_partitions(mark_part, TEST, s.seed, TEST_STREAM, split,
                                 meta=mark_part(meta, TEST, s.seed, TEST_STREAM, split))
    model = ModelInputs(schema, s.categorical == "native")
    train, test = frame[~frame[TEST]], frame[frame[TEST]]
    stages = Stages()
    tune_n = _tune_rows(s.tune_rows, sum(n_train.values()), s.tune_sample)
    sample = _sample(train, n_train, tune_n, s.seed, TUNE_STREAM)
    tuning, trials, tuned_on = _tune(client, model, train, sample, n_train, s, on_trial)
    booster, fit_seconds = _refit(client, model, train, tuning)
    predictions, p_test = _test_predictions(client, model, booster, test, id_cols)
    metrics = threshold_metrics(predictions["y_true"].to_numpy(), p_test, s.threshold_steps)
    predictions["predicted"] = (p_test >= metrics["best_threshold"]).astype(int)
    explain_rows = _sample(test, n_test, s.explain_rows, s.seed, EXPLAIN_STREAM)

    def cluster(report: dict[str, Any], explained: Any) -> None:
        report["cluster"] = {**describe(client), "partitions": int(ddf.npartitions),
                             "worker_peak_rss_bytes": client.run(peak_rss),
                             "rows_read": int(sum(schema.rows)),
                             "samples": samples(sample, explained), "tuning": tuned_on}
        if tuned_on["on"] == "cluster":
            report["data"]["tune_rows"] = tuned_on["fit_rows"]

    return sampled_analysis(
        SampledFit(target, id_cols, schema, model, sample, n_train, n_test, tuning, trials,
                   booster, fit_seconds, predictions, metrics, explain_rows),
        s, stages, lambda: _profile(stages, frame, sample, schema), cluster, t_start)


@dataclasses.dataclass
class SampledFit:
    """What an analysis whose explanations come from samples (a cluster, external memory)
    has when its model is trained and its test rows scored."""

    target: str
    id_cols: Sequence[str]
    schema: TableSchema
    model: ModelInputs
    sample: Any
    n_train: Mapping[int, int]
    n_test: Mapping[int, int]
    tuning: dict[str, Any]
    trials: list[dict[str, Any]]
    booster: Any
    fit_seconds: float
    predictions: Any
    metrics: dict[str, Any]
    explain_rows: Any


def sampled_analysis(fit: SampledFit, s: XgbSettings, stages: Stages,
                     profile: Callable[[], list[dict]],
                     where: Callable[[dict[str, Any], Any], None], t_start: float) -> Analysis:
    """The rest of such an analysis, the same wherever it ran: explanations on
    ``explain_rows``, the group profile (``profile()``), the drift profile and the regression
    on the sample, the report (``where(report, explained)`` adds where it ran), the model's
    config and the :class:`Analysis`."""
    schema, sample = fit.schema, fit.sample
    explained, importance, extras = importances(stages, fit.model, fit.booster,
                                                fit.explain_rows, s)
    raw = sample[schema.features]
    group = profile()
    data_profile = stages.run("data_profile", DataProfile.from_frame, raw,
                              list(schema.categories))
    regression = _regression(stages, raw, sample[Y].to_numpy(), schema.categories)
    report = sampled_report(fit.target, fit.model, schema, sample, fit.n_train, fit.n_test,
                            stages, {"profile": group, "tuning": fit.tuning,
                                     "fit_seconds": round(fit.fit_seconds, 2),
                                     "metrics": fit.metrics, "importance": importance,
                                     "extras": extras, "regression": regression})
    where(report, explained)
    seconds = time.perf_counter() - t_start
    report["seconds"] = round(seconds, 2)
    prep = Prepared(None, None, schema.positive, schema.negative, schema.features,
                    list(schema.categories), schema.categories, schema.dropped)
    return Analysis(model=fit.booster, report=report, trials=_frame(fit.trials), settings=s,
                    predictions=fit.predictions,
                    config=_model_config(s, prep, report, fit.id_cols),
                    shap_values=extras["shap_values"], explained=explained,
                    compute_seconds=seconds, data_profile=data_profile)


def peak_rss() -> int:
    """This process's peak resident memory in bytes (run on each worker)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def check_counts(n_train: Mapping[int, int], n_test: Mapping[int, int], folds: int) -> None:
    import numpy as np

    y = np.repeat([0, 1], [n_train[0] + n_test[0], n_train[1] + n_test[1]])
    _check_group_sizes(y, folds)


class ModelInputs:
    """The model's columns of a typed partition: the raw features when categoricals are
    native, else their one-hot encoding (made where the rows are)."""

    def __init__(self, schema: TableSchema, native: bool) -> None:
        self.raw, self.categories, self.native = schema.features, schema.categories, native
        self.features = list(self.raw) if native else (
            [c for c in self.raw if c not in self.categories]
            + [f"{col}={c}" for col, levels in self.categories.items() for c in levels])

    def of(self, pdf: Any) -> Any:
        """A pandas frame's model columns."""
        X = pdf[self.raw]
        return X if self.native else onehot(X, self.categories)[self.features]

    def of_dask(self, ddf: Any) -> Any:
        if self.native:
            return ddf[self.raw]
        return ddf[self.raw].map_partitions(self.of, meta=self.of(ddf._meta))


def sampled_report(target: str, model: ModelInputs, schema: Any, sample: Any,
                   n_train: Mapping[int, int], n_test: Mapping[int, int], stages: Stages,
                   parts: Mapping[str, Any]) -> dict[str, Any]:
    """The report of an analysis whose explanations come from samples (a cluster, external
    memory): the one-process report's sections; the caller adds where it ran."""
    rows = sum(n_train.values()) + sum(n_test.values())
    extras = parts["extras"]
    return {
        "mltk_version": __version__,
        "data": {"rows": rows, "features": model.features,
                 "categorical": list(schema.categories),
                 "dropped": schema.dropped, "target": target,
                 "positive": _plain(schema.positive), "negative": _plain(schema.negative),
                 "positive_share": (n_train[1] + n_test[1]) / rows,
                 "train_rows": sum(n_train.values()), "test_rows": sum(n_test.values()),
                 "tune_rows": len(sample)},
        "profile": parts["profile"], "tuning": parts["tuning"],
        "fit_seconds": parts["fit_seconds"], "metrics": parts["metrics"],
        "importance": parts["importance"],
        "importance_rank_correlation": extras["rank_correlation"],
        "shap_additivity_max_gap": extras["shap_additivity_max_gap"],
        "regression": parts["regression"], "not_computed": stages.not_computed,
        "seconds": None,
    }


def samples(sample: Any, explained: Any) -> dict[str, int]:
    """The rows each sampled stage used."""
    return {"tuning": len(sample), "explained": len(explained), "profile_medians": len(sample),
            "regression": len(sample), "data_profile": len(sample)}


def _frame(records: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(records)


def search(model: ModelInputs, sample: Any, n_train: Mapping[int, int], s: XgbSettings,
            on_trial: Callable[[dict[str, Any]], None] | None
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Tuning on the sample, as the one-process run tunes (same space, folds and seed)."""
    spw = pos_weight(s, n_train)
    return tune_search(model.of(sample).reset_index(drop=True), sample[Y].to_numpy(), s, spw,
                       model.native, on_trial)


def pos_weight(s: XgbSettings, n_train: Mapping[int, int]) -> float:
    """``scale_pos_weight``: the setting, else negatives / positives of the training rows."""
    spw = s.scale_pos_weight
    return spw if spw is not None else float(n_train[0] / max(1, n_train[1]))


def _tune(client: Any, model: ModelInputs, train: Any, sample: Any,
          n_train: Mapping[int, int], s: XgbSettings,
          on_trial: Callable[[dict[str, Any]], None] | None
          ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(the tuning section, every trial, where the trials ran: the report's
    ``cluster.tuning``): on the sample pulled here (``tune_on: sample``) or every trial on
    the workers (``tune_on: cluster``, :mod:`mltk.xgb.cluster_tuning`)."""
    if s.tune_on != "cluster":
        total = sum(n_train.values())
        log.info(f"tuning on a stratified sample of {len(sample):,} of {total:,} training "
                 "rows (pulled to this process)" if len(sample) < total
                 else f"tuning on all {total:,} training rows (pulled to this process)")
        tuning, trials = search(model, sample, n_train, s, on_trial)
        return tuning, trials, {"on": "sample", "rows": len(sample)}
    from mltk.xgb.cluster_tuning import VALID, ClusterTrials
    from mltk.xgb.tune import search_with

    # Not persisted again: the flag is recomputed from the persisted rows where they are.
    valid, counts, taken = frame_thresholds(train, s.seed, VALID_STREAM, 1.0 / s.folds)
    marked = train.map_partitions(mark_part, VALID, s.seed, VALID_STREAM, valid,
                                  meta=mark_part(train._meta, VALID, s.seed, VALID_STREAM,
                                                 valid))
    rows = {"fit": sum(counts.values()) - sum(taken.values()), "validation": sum(taken.values())}
    evaluate = ClusterTrials(client, model, marked, Y, rows, max_rounds=s.rounds_cap(),
                             early_stopping=s.early_stopping)
    log.info(f"tuning on the cluster: each trial trained by the workers on "
             f"{evaluate.rows['fit']:,} training rows, validated on "
             f"{evaluate.rows['validation']:,}")
    tuning, trials = search_with(evaluate, s, pos_weight(s, n_train), on_trial)
    return tuning, trials, evaluate.describe()


def _refit(client: Any, model: ModelInputs, train: Any, tuning: Mapping[str, Any]
           ) -> tuple[Any, float]:
    """The booster trained by the workers together on every training row."""
    import xgboost.dask as dxgb

    t0 = time.perf_counter()
    params = {k: v for k, v in tuning["params"].items() if k != "nthread"}

    def fit() -> Any:
        dtrain = training_matrix(client, model.of_dask(train), train[Y], params, model.native)
        return dxgb.train(client, params, dtrain, num_boost_round=tuning["rounds"])["booster"]

    booster = watch_workers(client, fit, "training")
    return booster, time.perf_counter() - t0


def _test_predictions(client: Any, model: ModelInputs, booster: Any, test: Any,
                      id_cols: Sequence[str]) -> tuple[Any, Any]:
    """(test_predictions.csv's rows in table order, their probabilities), predicted by the
    workers and gathered here."""
    import numpy as np
    import xgboost.dask as dxgb

    p = dxgb.predict(client, booster, model.of_dask(test))
    cols = test[[*id_cols, ROW, Y]].assign(probability=p)
    pred = watch_workers(client, cols.compute, "prediction")
    pred = pred.sort_values(ROW, kind="stable").reset_index(drop=True)
    pred = pred.rename(columns={ROW: "row", Y: "y_true"})
    pred = pred[[*id_cols, "row", "y_true", "probability"]]
    return pred, pred["probability"].to_numpy(dtype=np.float32)


def importances(stages: Stages, model: ModelInputs, booster: Any, rows: Any, s: XgbSettings
                ) -> tuple[Any, list[dict], dict[str, Any]]:
    """Importances as in the one-process run, SHAP and permutation on ``rows`` (a stratified
    sample of about ``explain_rows`` test rows, gathered here)."""
    import numpy as np

    X, y_ex = model.of(rows), rows[Y].to_numpy()
    native, features = model.native, model.features
    measures = dict(stages.run("importance", explain.booster_importances, booster,
                               features) or {})
    shap = stages.run("shap", explain.shap_values, booster, X, native)
    if shap is not None:
        measures["mean_abs_shap"] = np.abs(shap[0]).mean(0).tolist()
    measures.update(stages.run("permutation", explain.permutation_auc_drop, booster, X, y_ex,
                               native, s.permutation_repeats, s.seed) or {})
    table, rank_corr = explain.consensus(features, measures)
    return X, table, {"rank_correlation": rank_corr,
                      "shap_additivity_max_gap": shap[1] if shap is not None else None,
                      "shap_values": shap[0] if shap is not None else None}


def analyze_on_cluster(data: str, cluster: str, target: str,
                       settings: XgbSettings | Mapping[str, Any] | None = None,
                       id_cols: Sequence[str] = (), positive: Any = None,
                       on_trial: Callable[[dict[str, Any]], None] | None = None) -> Analysis:
    """The analysis of the table ``data`` (file, glob or folder of parts) on ``cluster``
    (``local:N`` or ``tcp://HOST:PORT``): the parts' schemas checked here from their metadata,
    the rows read by the workers."""
    from mltk.xgb.cluster import connect
    from mltk.xgb.partitions import check_schemas, list_parts, read_frame

    files = list_parts(data)
    check_schemas(files)
    with connect(cluster) as client:
        return analyze_distributed(client, read_frame(files), target, settings,
                                   id_cols=id_cols, positive=positive, on_trial=on_trial)
