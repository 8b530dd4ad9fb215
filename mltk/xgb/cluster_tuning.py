"""``xgb-analyze --dask ... --tune-on cluster``: every tuning trial trained by the workers.

By default a cluster run tunes on a stratified sample pulled to the mltk process
(``tune_on: sample``, as in the one-process run). With ``tune_on: cluster`` each hyperopt trial
is an ``xgboost.dask`` training on the cluster's training partitions, evaluated each round on a
validation split drawn per partition (stratified, ``1/folds`` of each partition's training rows
of each class, seeded by the seed and the partition's number), early stopping on it choosing
the rounds. The search is :func:`mltk.xgb.tune.search_with`, the one the CV of a sample goes
through; :class:`ClusterTrials` is only how a trial is scored. The refit then trains on every
training row, validation rows included.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mltk.xgb.cluster import training_matrix, watch_workers

log = logging.getLogger(__name__)
VALID = "__mltk_valid"
#: What ``tune_on`` may say: where the trials train.
TUNE_ON = ("sample", "cluster")


def mark_validation(pdf: Any, share: float, seed: int, y_col: str,
                    partition_info: dict | None = None) -> Any:
    """One partition with ``__mltk_valid``: ``share`` of the rows of each class, drawn with
    the seed and the partition's number."""
    import numpy as np

    number = partition_info["number"] if partition_info else 0
    rng = np.random.default_rng([seed, number, 2])
    y = pdf[y_col].to_numpy()
    valid = np.zeros(len(pdf), dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        valid[rng.choice(idx, int(round(len(idx) * share)), replace=False)] = True
    return pdf.assign(**{VALID: valid})


class ClusterTrials:
    """A :data:`mltk.xgb.tune.Evaluate` whose trials the workers train together.

    ``model`` is the run's :class:`~mltk.xgb.distributed.ModelInputs`, ``train`` the
    persisted training rows (a dask DataFrame with the ``y_col`` labels). Each call trains
    on the fit rows and returns the validation AUC of every round (one curve).
    """

    def __init__(self, client: Any, model: Any, train: Any, y_col: str, *, folds: int,
                 seed: int, max_rounds: int, early_stopping: int) -> None:
        self.client, self.model, self.y_col = client, model, y_col
        self.max_rounds, self.early_stopping = max_rounds, early_stopping
        # Not persisted again: the flag is redrawn from the persisted training rows where
        # they are, the same on every call (seeded), which costs little beside a training.
        meta = mark_validation(train._meta, 0.0, seed, y_col)
        marked = train.map_partitions(mark_validation, 1.0 / folds, seed, y_col, meta=meta)
        self.fit_rows, self.valid_rows = marked[~marked[VALID]], marked[marked[VALID]]
        counts = marked[VALID].value_counts().compute().to_dict()
        self.rows = {"fit": int(counts.get(False, 0)), "validation": int(counts.get(True, 0))}
        self.trials = 0
        self._matrices: dict[Any, tuple[Any, Any]] = {}

    def describe(self) -> dict[str, Any]:
        """The report's ``cluster.tuning``."""
        return {"on": "cluster", "fit_rows": self.rows["fit"],
                "validation_rows": self.rows["validation"], "trials": self.trials}

    def _data(self, params: Mapping[str, Any]) -> tuple[Any, Any]:
        """(fit, validation) matrices for ``params``' booster and ``max_bin`` (a quantile
        sketch is made for it); made once for each."""
        key = (params.get("booster"), params.get("max_bin"))
        if key not in self._matrices:
            native, model = self.model.native, self.model
            dfit = training_matrix(self.client, model.of_dask(self.fit_rows),
                                   self.fit_rows[self.y_col], dict(params), native)
            dvalid = training_matrix(self.client, model.of_dask(self.valid_rows),
                                     self.valid_rows[self.y_col], dict(params), native,
                                     ref=dfit)
            self._matrices[key] = (dfit, dvalid)
        return self._matrices[key]

    def __call__(self, params: Mapping[str, Any]) -> list[list[float]]:
        import xgboost.dask as dxgb

        params = {k: v for k, v in params.items() if k != "nthread"}  # the workers' threads
        dfit, dvalid = self._data(params)

        def train() -> Any:
            return dxgb.train(self.client, params, dfit, num_boost_round=self.max_rounds,
                              evals=[(dvalid, "valid")],
                              early_stopping_rounds=self.early_stopping, verbose_eval=False)

        out = watch_workers(self.client, train, "tuning")
        self.trials += 1
        return [list(out["history"]["valid"]["auc"])]
