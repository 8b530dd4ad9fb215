"""``xgb-analyze --external-memory``: one machine, a Parquet table larger than its memory.

The table is read in batches of ``batch_mb`` MB of pandas (Parquet row groups split or joined:
see :class:`Batches`), never whole: a first pass summarises each batch (the target's groups,
levels, ranges: as a Dask partition is summarised, see :mod:`mltk.xgb.distributed`), then
passes over the target column alone find the thresholds of the stratified hold-out split, the
tuning sample and the explained rows (keyed by row position and seed, :mod:`mltk.xgb.split`:
the rows the one-process and the Dask runs choose), and a pass types each batch and keeps the
group-profile moments, the tuning sample of the training rows and the test rows to explain.
The refit streams the training rows of each batch through XGBoost's external-memory
``ExtMemQuantileDMatrix`` (a ``DataIter`` whose quantised pages are cached on disk under a
temporary folder and mapped back, page cache rather than the process's memory), its
histogram bins cut from the tuning sample; the test rows are scored batch by batch.

Memory (the budget the README states): a fixed part (Python and the libraries, the tuning and
explanation samples, XGBoost's working memory), several times ``batch_mb`` for the batch in
hand (Arrow, pandas, the typed frame, XGBoost's copy, and what the allocators keep of them:
measured up to 8 times), and per row what XGBoost keeps of every
training row (label, gradient, prediction, row index: tens of bytes) and 13 bytes a test row
(row, label, probability) plus its id columns: not the table.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError
from mltk.xgb.analysis import _tune_rows
from mltk.xgb.data import check_columns
from mltk.xgb.distributed import (
    ROW,
    TEST,
    ModelInputs,
    SampledFit,
    Y,
    build_schema,
    exact_moments,
    labels_part,
    mark_part,
    model_part,
    moments_part,
    sampled_analysis,
    samples,
    search,
    select_part,
    summarize_part,
)
from mltk.xgb.explain import group_profile, threshold_metrics
from mltk.xgb.results import Analysis
from mltk.xgb.settings import XgbSettings
from mltk.xgb.split import EXPLAIN_STREAM, TEST_STREAM, TUNE_STREAM, member, thresholds_over
from mltk.xgb.stages import Stages

SIZE_ROWS = 10_000  # rows of the first part read to learn a row's size in pandas
MIN_BATCH_ROWS = 1_000
READ_BUFFER = 1 << 16  # bytes of a column chunk read at a time (one buffer a column)


class Batches:
    """The rows of the Parquet parts, in order, in batches of ``rows`` rows (row groups split
    or joined: ``batch_mb`` of pandas each), read anew for each pass and never all at once.
    Arrow's memory pool gives back what a batch used before the next is read."""

    def __init__(self, files: Sequence[Path], batch_mb: int) -> None:
        import pyarrow.parquet as pq

        self.files = list(files)
        self.total = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        if not self.total:
            raise InputError(f"{files[0]}: no rows")
        self.row_bytes = row_bytes(self.files)
        self.rows = max(MIN_BATCH_ROWS, int(batch_mb * 2**20 // self.row_bytes))
        self.columns: list[str] | None = None  # all; set to what the later passes read

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pool, k = pa.default_memory_pool(), 0
        for f in self.files:
            parquet, pending = pq.ParquetFile(f, buffer_size=READ_BUFFER, pre_buffer=False), None
            for i in range(parquet.metadata.num_row_groups):
                for piece in self._pieces(parquet, i):
                    pending = piece if pending is None else pa.concat_tables([pending, piece])
                    del piece
                    while pending.num_rows >= self.rows:
                        yield k, self._take(pending, pool)
                        pending, k = pending.slice(self.rows), k + 1
            if pending is not None and pending.num_rows:
                yield k, self._take(pending, pool)
                k += 1

    def _pieces(self, parquet: Any, i: int) -> Iterator[Any]:
        """Row group ``i`` as Arrow tables: whole when it fits in a batch, else streamed a
        batch at a time through the small read buffer (an export's row group may hold many
        batches' worth of rows; pyarrow still decodes the group's values, but the compressed
        group is not held besides them: a 400k-row group of 91 columns peaked at 1,450 MB
        RSS read whole, 1,037 MB streamed)."""
        import pyarrow as pa

        if parquet.metadata.row_group(i).num_rows <= self.rows:
            yield parquet.read_row_group(i, columns=self.columns, use_threads=False)
            return
        for batch in parquet.iter_batches(batch_size=self.rows, row_groups=[i],
                                          columns=self.columns, use_threads=False):
            yield pa.Table.from_batches([batch])

    def _take(self, pending: Any, pool: Any) -> Any:
        """The first batch of ``pending`` as pandas, Arrow's unused memory given back."""
        pdf = pending.slice(0, self.rows).to_pandas()
        pool.release_unused()
        return pdf


def row_bytes(files: Sequence[Path]) -> float:
    """A row's size in pandas (deep), from the first rows of the first part that has any."""
    import pyarrow.parquet as pq

    for f in files:
        first = next(pq.ParquetFile(f).iter_batches(batch_size=SIZE_ROWS), None)
        if first is not None and first.num_rows:
            pdf = first.to_pandas()
            return max(1.0, float(pdf.memory_usage(deep=True, index=False).sum()) / len(pdf))
    return 1.0


def _train_iter(batches: Batches, typed: Callable[[int, Any], Any], model: ModelInputs,
                cache_prefix: str) -> Any:
    """An XGBoost DataIter over the training rows of each batch: one batch in memory."""
    import numpy as np
    import xgboost as xgb

    class TrainRows(xgb.DataIter):
        def __init__(self) -> None:
            self._rows: Iterator[tuple[int, Any]] | None = None
            super().__init__(cache_prefix=cache_prefix, release_data=True)

        def next(self, input_data: Callable[..., None]) -> bool:
            if self._rows is None:
                self._rows = iter(batches)
            item = next(self._rows, None)
            if item is None:
                return False
            part = typed(*item)
            del item
            train = part[~part[TEST]]
            del part
            input_data(data=model.of(train), label=train[Y].to_numpy(dtype=np.float32))
            return True

        def reset(self) -> None:
            self._rows = None

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
    check_columns(columns, target, id_cols)
    batches = Batches(files, s.batch_mb)
    # id columns are not summarised: text ids would keep a set of every id
    schema = build_schema([summarize_part(pdf.drop(columns=list(id_cols)), target)
                           for _, pdf in batches], target, id_cols, positive)
    batches.columns = [target]
    split, n_train, n_test = _split_counts(batches, schema, target, s)
    _check_sizes(n_train, n_test, s.folds)
    tune_n = _tune_rows(s.tune_rows, sum(n_train.values()), s.tune_sample)
    chosen = _sample_thresholds(batches, schema, target, split, n_train, n_test, tune_n, s)
    batches.columns = [*schema.features, target, *id_cols]

    def typed(k: int, pdf: Any) -> Any:
        part = model_part(pdf, schema, target, id_cols, partition_info={"number": k})
        return mark_part(part, TEST, s.seed, TEST_STREAM, split)

    model = ModelInputs(schema, s.categorical == "native")
    sample, explain_rows, moments = _second_pass(batches, typed, schema, chosen, s)
    stages = Stages()
    tuning, trials = search(model, sample, n_train, s, on_trial)
    with tempfile.TemporaryDirectory(prefix="mltk-extmem-") as cache:
        booster, fit_seconds, per_round = _refit(batches, typed, model, tuning, cache,
                                                 cut_rows(model, sample))
    predictions, p_test = _test_predictions(batches, typed, model, booster, id_cols, n_test)
    metrics = threshold_metrics(predictions["y_true"].to_numpy(), p_test, s.threshold_steps)
    predictions["predicted"] = (p_test >= metrics["best_threshold"]).astype("int8")

    def profile() -> list[dict]:
        rows = stages.run("profile", group_profile, sample[schema.features],
                          sample[Y].to_numpy(), schema.categories) or []
        for row in rows:
            exact_moments(row, moments)
        rows.sort(key=lambda r: -abs(r["smd"]))
        return rows

    def external(report: dict[str, Any], explained: Any) -> None:
        report["external_memory"] = {"files": len(files), "row_groups": _row_groups(files),
                                     "batches": len(schema.rows), "batch_rows": batches.rows,
                                     "batch_mb": s.batch_mb,
                                     "row_bytes": round(batches.row_bytes, 1),
                                     "rows_read": int(sum(schema.rows)),
                                     "seconds_per_round": round(per_round, 4),
                                     "samples": samples(sample, explained)}

    return sampled_analysis(
        SampledFit(target, id_cols, schema, model, sample, n_train, n_test, tuning, trials,
                   booster, fit_seconds, predictions, metrics, explain_rows),
        s, stages, profile, external, t_start)


def _row_groups(files: Sequence[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)


def _labels(batches: Batches, schema: Any, target: str) -> Iterator[tuple[Any, Any]]:
    """(positions, classes) of each batch's rows with a target (read: the target column)."""
    for k, pdf in batches:
        _, rows, y = labels_part(pdf, schema, target, k)
        yield rows, y


def _split_counts(batches: Batches, schema: Any, target: str, s: XgbSettings
                  ) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """(the hold-out's thresholds, training and test rows per class): two passes over the
    target column (:func:`mltk.xgb.split.thresholds_over`)."""
    split, counts, n_test = thresholds_over(lambda: _labels(batches, schema, target), s.seed,
                                            TEST_STREAM, s.test_size)
    return split, {c: counts[c] - n_test[c] for c in (0, 1)}, n_test


def _sample_thresholds(batches: Batches, schema: Any, target: str, split: Mapping[int, int],
                       n_train: Mapping[int, int], n_test: Mapping[int, int],
                       tune_n: int | None, s: XgbSettings) -> dict[str, Any]:
    """The thresholds of the tuning sample (training rows) and of the explained rows (test
    rows), each two more passes over the target column."""
    def rows_of(test: bool) -> Callable[[], Iterator[tuple[Any, Any]]]:
        def read() -> Iterator[tuple[Any, Any]]:
            for rows, y in _labels(batches, schema, target):
                taken = member(rows, y, s.seed, TEST_STREAM, split) == test
                yield rows[taken], y[taken]
        return read

    train_total, test_total = sum(n_train.values()), sum(n_test.values())
    tune_share = 1.0 if not tune_n else min(1.0, tune_n / train_total)
    explain_share = min(1.0, s.explain_rows / max(1, test_total))
    return {"tune": thresholds_over(rows_of(False), s.seed, TUNE_STREAM, tune_share)[0],
            "explain": thresholds_over(rows_of(True), s.seed, EXPLAIN_STREAM,
                                       explain_share)[0]}


def _check_sizes(n_train: Mapping[int, int], n_test: Mapping[int, int], folds: int) -> None:
    """As the in-memory run checks the smaller group, from the counts (no array of rows)."""
    smaller = min(n_train[c] + n_test[c] for c in (0, 1))
    if smaller < folds * 2:
        raise InputError(f"too few rows of the smaller group ({smaller}) for "
                         f"{folds}-fold cross-validation and a test set")


def _second_pass(batches: Batches, typed: Callable[[int, Any], Any], schema: Any,
                 chosen: Mapping[str, Mapping[int, int]], s: XgbSettings
                 ) -> tuple[Any, Any, Any]:
    """(the stratified tuning sample of training rows, the test rows to explain, both in
    table order, the group profile's moments), one batch at a time."""
    import pandas as pd

    samples, explain, moments = [], [], None
    for k, pdf in batches:
        part = typed(k, pdf)
        del pdf
        samples.append(select_part(part[~part[TEST]], s.seed, TUNE_STREAM, chosen["tune"]))
        explain.append(select_part(part[part[TEST]], s.seed, EXPLAIN_STREAM,
                                   chosen["explain"]))
        m = moments_part(part, schema.features, schema.categories)
        moments = m if moments is None else moments + m
    return (pd.concat(samples, ignore_index=True), pd.concat(explain, ignore_index=True),
            moments)


def cut_rows(model: ModelInputs, sample: Any) -> Any:
    """The rows the histogram bins are cut from: the stratified tuning sample's model inputs,
    and one row per level of each categorical column (missing elsewhere) so that every level
    has its bin."""
    import numpy as np
    import pandas as pd

    extra = max((len(levels) for levels in model.categories.values()), default=0)
    rows = pd.DataFrame({col: (np.full(extra, np.nan) if col not in model.categories else
                               pd.Categorical([model.categories[col][i % len(
                                   model.categories[col])] for i in range(extra)],
                                   categories=model.categories[col]))
                         for col in model.raw})
    return model.of(pd.concat([sample[model.raw], rows], ignore_index=True))


def _refit(batches: Batches, typed: Callable[[int, Any], Any], model: ModelInputs,
           tuning: Mapping[str, Any], cache: str, cuts: Any) -> tuple[Any, float, float]:
    """(the booster trained on every training row through external memory, its seconds,
    seconds per boosting round). The histogram bins are cut from ``cuts`` (a sample): XGBoost
    sketching every row itself keeps a sketch that grows with the rows (measured: 140 MB
    more for 240k rows than for 20k of 90 columns)."""
    import xgboost as xgb

    t0 = time.perf_counter()
    ref = xgb.QuantileDMatrix(cuts, enable_categorical=model.native)
    dtrain = xgb.ExtMemQuantileDMatrix(_train_iter(batches, typed, model,
                                                   os.path.join(cache, "train")),
                                       enable_categorical=model.native, ref=ref)
    del ref
    t1 = time.perf_counter()
    booster = xgb.train(dict(tuning["params"]), dtrain, num_boost_round=tuning["rounds"])
    per_round = (time.perf_counter() - t1) / max(1, tuning["rounds"])
    del dtrain  # before its cache folder goes (XGBoost warns of a missing cache file)
    # a copy is the model alone: the trained one keeps its updater's buffers for every page
    return booster.copy(), time.perf_counter() - t0, per_round


def _test_predictions(batches: Batches, typed: Callable[[int, Any], Any], model: ModelInputs,
                      booster: Any, id_cols: Sequence[str], n_test: Mapping[int, int]
                      ) -> tuple[Any, Any]:
    """(test_predictions.csv's rows, their probabilities), one batch at a time into arrays
    sized for the test rows: 13 bytes a test row (row, y, probability) and the id columns."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    total = sum(n_test.values())
    rows = np.empty(total, dtype=np.int64)
    y = np.empty(total, dtype=np.int8)
    p = np.empty(total, dtype=np.float32)
    ids: dict[str, list[Any]] = {c: [] for c in id_cols}
    at = 0
    for k, pdf in batches:
        part = typed(k, pdf)
        del pdf
        test = part[part[TEST]]
        del part
        end = at + len(test)
        p[at:end] = booster.predict(xgb.DMatrix(model.of(test),
                                                enable_categorical=model.native))
        rows[at:end], y[at:end] = test[ROW].to_numpy(), test[Y].to_numpy()
        for c in id_cols:
            ids[c].append(test[c].to_numpy())
        at = end
    columns = {c: np.concatenate(v) if v else np.empty(0) for c, v in ids.items()}
    pred = pd.DataFrame({**columns, "row": rows, "y_true": y, "probability": p}, copy=False)
    return pred, p
