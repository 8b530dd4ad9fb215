"""``xgb-analyze --dask ... --tune-on cluster``: every tuning trial trained by the workers.

By default a cluster run tunes on a stratified sample pulled to the mltk process (``tune_on:
sample``, as in the one-process run). With ``tune_on: cluster`` each hyperopt trial is an
``xgboost.dask`` training on the cluster's training partitions, evaluated each round on a
validation split (stratified, ``1/folds`` of the training rows of each class, keyed by row
position and seed like the hold-out: :mod:`mltk.xgb.split`, the same on any partitioning),
early stopping on it choosing the rounds. The search is :func:`mltk.xgb.tune.search_with`, the
one the CV of a sample goes through; :class:`ClusterTrials` is only how a trial is scored. The
refit then trains on every training row, validation rows included.
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


class ClusterTrials:
    """A :data:`mltk.xgb.tune.Evaluate` whose trials the workers train together.

    ``model`` is the run's :class:`~mltk.xgb.distributed.ModelInputs`, ``marked`` the
    training rows (a dask DataFrame with the ``y_col`` labels) with the validation rows
    flagged in ``VALID``, and ``rows`` how many rows fit and validate. Each call trains on
    the fit rows and returns the validation AUC of every round (one curve).
    """

    def __init__(self, client: Any, model: Any, marked: Any, y_col: str,
                 rows: Mapping[str, int], *, max_rounds: int, early_stopping: int) -> None:
        self.client, self.model, self.y_col = client, model, y_col
        self.max_rounds, self.early_stopping = max_rounds, early_stopping
        self.fit_rows, self.valid_rows = marked[~marked[VALID]], marked[marked[VALID]]
        self.rows = {"fit": int(rows["fit"]), "validation": int(rows["validation"])}
        self.trials = 0
        self._matrices: dict[Any, tuple[Any, Any]] = {}

    def describe(self) -> dict[str, Any]:
        """The report's ``cluster.tuning``."""
        return {"on": "cluster", "fit_rows": self.rows["fit"],
                "validation_rows": self.rows["validation"], "trials": self.trials}

    def _data(self, params: Mapping[str, Any]) -> tuple[Any, Any]:
        """(fit, validation) matrices for ``params``' booster and ``max_bin`` (a quantile
        sketch is made for it); made once for each."""
        dart = params.get("booster") == "dart"  # a DaskDMatrix: no bins of its own
        key = ("dart", None) if dart else (params.get("booster"), params.get("max_bin"))
        if key not in self._matrices:
            native, model = self.model.native, self.model
            dfit = training_matrix(self.client, model.of_dask(self.fit_rows),
                                   self.fit_rows[self.y_col], params, native)
            dvalid = training_matrix(self.client, model.of_dask(self.valid_rows),
                                     self.valid_rows[self.y_col], params, native,
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
