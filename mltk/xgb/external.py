"""``xgb-analyze --external-memory``: one machine, a Parquet table larger than its memory.

The table is read one Parquet row group at a time, never whole: a first pass summarises each
row group (the target's groups, levels, ranges: as a Dask partition is summarised, see
:mod:`mltk.xgb.distributed`), a second types each row group, draws its stratified hold-out
(seeded by the seed and the row group's number) and keeps the group-profile moments, a
stratified tuning sample of the training rows and a sample of test rows to explain. The refit
streams the training rows of each row group through XGBoost's external-memory
``ExtMemQuantileDMatrix`` (a ``DataIter`` whose quantised pages are cached on disk under a
temporary folder), and the test rows are scored row group by row group.

Memory: one row group as pandas (write tables in row groups of ~100k rows or less), the two
samples (``tune_sample`` and ``explain_rows`` rows), XGBoost's quantile sketch, and the test
rows' ids, label and probability (about 20 bytes a test row): not the table.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk.drift.profile import DataProfile
from mltk.errors import InputError
from mltk.xgb.analysis import _model_config, _regression, _tune_rows
from mltk.xgb.data import Prepared
from mltk.xgb.distributed import (
    ROW,
    TEST,
    ModelInputs,
    Y,
    build_schema,
    check_counts,
    exact_moments,
    importances,
    model_part,
    moments_part,
    sampled_report,
    samples,
    search,
    stratified_part,
    summarize_part,
)
from mltk.xgb.explain import group_profile, threshold_metrics
from mltk.xgb.results import Analysis
from mltk.xgb.settings import XgbSettings
from mltk.xgb.stages import Stages


class RowGroups:
    """The row groups of the Parquet parts, in order, each read when asked for."""

    def __init__(self, files: Sequence[Path]) -> None:
        import pyarrow.parquet as pq

        self.files = list(files)
        self.index = []  # (file, row group) in table order
        for f in self.files:
            meta = pq.ParquetFile(f).metadata
            self.index += [(f, i) for i in range(meta.num_row_groups)]
        if not self.index:
            raise InputError(f"{files[0]}: no row groups")

    def __len__(self) -> int:
        return len(self.index)

    def read(self, k: int) -> Any:
        import pyarrow.parquet as pq

        f, i = self.index[k]
        return pq.ParquetFile(f).read_row_group(i).to_pandas()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        for k in range(len(self.index)):
            yield k, self.read(k)


def _train_iter(groups: RowGroups, typed: Callable[[int, Any], Any], model: ModelInputs,
                cache_prefix: str) -> Any:
    """An XGBoost DataIter over the training rows of each row group."""
    import xgboost as xgb

    class TrainRows(xgb.DataIter):
        def __init__(self) -> None:
            self._k = 0
            super().__init__(cache_prefix=cache_prefix, release_data=True)

        def next(self, input_data: Callable[..., None]) -> bool:
            if self._k == len(groups):
                return False
            part = typed(self._k, groups.read(self._k))
            train = part[~part[TEST]]
            input_data(data=model.of(train), label=train[Y].to_numpy())
            self._k += 1
            return True

        def reset(self) -> None:
            self._k = 0

    return TrainRows()


def analyze_external(data: str | os.PathLike, target: str,
                     settings: XgbSettings | Mapping[str, Any] | None = None,
                     id_cols: Sequence[str] = (), positive: Any = None,
                     on_trial: Callable[[dict[str, Any]], None] | None = None) -> Analysis:
    """The analysis of a Parquet table (file, glob or folder of parts) read one row group at
    a time; see the module's docstring for what is held in memory."""
    from mltk.xgb.partitions import check_schemas, is_parquet, list_parts

    s = XgbSettings.of(settings)
    t_start = time.perf_counter()
    files = list_parts(data)
    if not is_parquet(files):
        raise InputError(f"{data}: --external-memory reads Parquet (row groups); convert the "
                         "CSV first")
    columns = check_schemas(files)
    if target not in columns:
        raise InputError(f"target column {target!r} not found (columns: "
                         f"{', '.join(list(columns)[:20])})")
    missing = [c for c in id_cols if c not in columns]
    if missing:
        raise InputError(f"id column(s) not found: {', '.join(missing)}")
    groups = RowGroups(files)
    schema = build_schema([summarize_part(pdf, target) for _, pdf in groups], target, id_cols,
                          positive)

    def typed(k: int, pdf: Any) -> Any:
        return model_part(pdf, schema, target, id_cols, s, partition_info={"number": k})

    model = ModelInputs(schema, s.categorical == "native")
    counts = _split_counts(groups, schema, target, s)
    n_train, n_test = counts
    check_counts(n_train, n_test, s.folds)
    tune_n = _tune_rows(s.tune_rows, sum(n_train.values()), s.tune_sample)
    sample, explain_rows, moments = _second_pass(groups, typed, schema, n_train, n_test,
                                                 tune_n, s)
    stages = Stages()
    tuning, trials = search(model, sample, n_train, s, on_trial)
    with tempfile.TemporaryDirectory(prefix="mltk-extmem-") as cache:
        booster, fit_seconds, per_round = _refit(groups, typed, model, tuning, cache)
    predictions, p_test = _test_predictions(groups, typed, model, booster, id_cols)
    metrics = threshold_metrics(predictions["y_true"].to_numpy(), p_test, s.threshold_steps)
    predictions["predicted"] = (p_test >= metrics["best_threshold"]).astype(int)
    explained, importance, extras = importances(stages, model, booster, explain_rows, s)
    raw = sample[schema.features]
    profile = stages.run("profile", group_profile, raw, sample[Y].to_numpy(),
                         schema.categories) or []
    for row in profile:
        exact_moments(row, moments)
    profile.sort(key=lambda r: -abs(r["smd"]))
    data_profile = stages.run("data_profile", DataProfile.from_frame, raw,
                              list(schema.categories))
    regression = _regression(stages, raw, sample[Y].to_numpy(), schema.categories)
    report = sampled_report(target, model, schema, sample, n_train, n_test, stages, {
        "profile": profile, "tuning": tuning, "fit_seconds": round(fit_seconds, 2),
        "metrics": metrics, "importance": importance, "extras": extras,
        "regression": regression})
    report["external_memory"] = {"files": len(files), "row_groups": len(groups),
                                 "rows_read": int(sum(schema.rows)),
                                 "seconds_per_round": round(per_round, 4),
                                 "samples": samples(sample, explained)}
    seconds = time.perf_counter() - t_start
    report["seconds"] = round(seconds, 2)
    prep = Prepared(None, None, schema.positive, schema.negative, schema.features,
                    list(schema.categories), schema.categories, schema.dropped)
    import pandas as pd

    return Analysis(model=booster, report=report, trials=pd.DataFrame(trials), settings=s,
                    predictions=predictions, config=_model_config(s, prep, report, id_cols),
                    shap_values=extras["shap_values"], explained=explained,
                    compute_seconds=seconds, data_profile=data_profile)


def _split_counts(groups: RowGroups, schema: Any, target: str, s: XgbSettings
                  ) -> tuple[dict[int, int], dict[int, int]]:
    """Training and test rows per class, known from the row groups' target counts (the
    split takes round(n * test_size) of each class of each row group)."""
    from mltk.xgb.distributed import summarize_targets

    n_train, n_test = {0: 0, 1: 0}, {0: 0, 1: 0}
    for per_class in summarize_targets(schema):
        for cls, n in per_class.items():
            test = int(round(n * s.test_size))
            n_test[cls] += test
            n_train[cls] += n - test
    return n_train, n_test


def _second_pass(groups: RowGroups, typed: Callable[[int, Any], Any], schema: Any,
                 n_train: Mapping[int, int], n_test: Mapping[int, int], tune_n: int | None,
                 s: XgbSettings) -> tuple[Any, Any, Any]:
    """(the stratified tuning sample of training rows, the test rows to explain, the group
    profile's moments), one row group at a time."""
    import pandas as pd

    train_total, test_total = sum(n_train.values()), sum(n_test.values())
    tune_share = 1.0 if not tune_n else min(1.0, tune_n / train_total)
    explain_share = min(1.0, s.explain_rows / max(1, test_total))
    samples, explain, moments = [], [], None
    for k, pdf in groups:
        part = typed(k, pdf)
        info = {"number": k}
        samples.append(stratified_part(part[~part[TEST]], {0: tune_share, 1: tune_share},
                                       s.seed, partition_info=info))
        explain.append(stratified_part(part[part[TEST]], {0: explain_share, 1: explain_share},
                                       s.seed + 1, partition_info=info))
        m = moments_part(part, schema.features, schema.categories)
        moments = m if moments is None else moments + m
    return (pd.concat(samples, ignore_index=True), pd.concat(explain, ignore_index=True),
            moments)


def _refit(groups: RowGroups, typed: Callable[[int, Any], Any], model: ModelInputs,
           tuning: Mapping[str, Any], cache: str) -> tuple[Any, float, float]:
    """(the booster trained on every training row through external memory, its seconds,
    seconds per boosting round)."""
    import xgboost as xgb

    t0 = time.perf_counter()
    dtrain = xgb.ExtMemQuantileDMatrix(_train_iter(groups, typed, model,
                                                   os.path.join(cache, "train")),
                                       enable_categorical=model.native)
    t1 = time.perf_counter()
    booster = xgb.train(dict(tuning["params"]), dtrain, num_boost_round=tuning["rounds"])
    per_round = (time.perf_counter() - t1) / max(1, tuning["rounds"])
    del dtrain  # before its cache folder goes (XGBoost warns of a missing cache file)
    return booster, time.perf_counter() - t0, per_round


def _test_predictions(groups: RowGroups, typed: Callable[[int, Any], Any], model: ModelInputs,
                      booster: Any, id_cols: Sequence[str]) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    out = []
    for k, pdf in groups:
        part = typed(k, pdf)
        test = part[part[TEST]]
        p = booster.predict(xgb.DMatrix(model.of(test), enable_categorical=model.native))
        out.append(test[[*id_cols, ROW, Y]].assign(probability=p))
    pred = pd.concat(out, ignore_index=True).rename(columns={ROW: "row", Y: "y_true"})
    pred = pred[[*id_cols, "row", "y_true", "probability"]]
    return pred, pred["probability"].to_numpy(dtype=np.float32)
