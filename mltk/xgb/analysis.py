"""``xgb-analyze``: the whole two-group analysis in one call, and scoring new rows.

Steps: check the data, profile the groups, hold out a stratified test set, tune XGBoost
(DART by default) with hyperopt over stratified CV (on a stratified sample for large data; the
test set, the sample and the explained rows keyed by row position and seed, the same rows as a
Dask or external-memory run's: :mod:`mltk.xgb.split`), refit on all training rows with the
tuned parameters and a fixed number of rounds, measure on the test set, and explain
(importances, SHAP, permutation, regression). :func:`analyze` returns an
:class:`~mltk.xgb.results.Analysis` in memory; its ``save`` writes every artefact.

The explanations and plots are optional stages: one that fails (a singular Hessian on
separable data, say) is logged as a warning and listed under ``not_computed`` in the report,
and the rest of the analysis goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mltk import __version__
from mltk.drift.profile import DataProfile
from mltk.errors import InputError
from mltk.xgb import explain
from mltk.xgb.data import Prepared, onehot, prepare
from mltk.xgb.explain import group_profile, threshold_metrics
from mltk.xgb.results import Analysis
from mltk.xgb.settings import XgbSettings
from mltk.xgb.stages import Stages
from mltk.xgb.tune import search

log = logging.getLogger(__name__)
TUNE_SAMPLE_ABOVE = 200_000


@dataclasses.dataclass
class _Split:
    """The model's inputs and the stratified hold-out split (positions ``tr`` and ``te``,
    sorted; ``rows``: each input row's position in the table, for the split's keys)."""

    X: Any
    native: bool
    tr: Any
    te: Any
    rows: Any

    @property
    def features(self) -> list[str]:
        return [str(c) for c in self.X.columns]


def _tune_rows(setting: str | int, n_train: int, sample: int) -> int | None:
    """The number of training rows to tune on, None for all of them."""
    if setting == "auto":
        return sample if n_train > TUNE_SAMPLE_ABOVE else None
    if setting == "all":
        return None
    return setting if setting < n_train else None


def analyze(df: Any, target: str, settings: XgbSettings | Mapping[str, Any] | None = None,
            id_cols: Sequence[str] = (), positive: Any = None,
            on_trial: Callable[[dict[str, Any]], None] | None = None) -> Analysis:
    """Run the analysis of ``df`` (a DataFrame) in memory; nothing is written.

    ``settings`` is an :class:`XgbSettings` (``mltk.settings.load("xgb", ...)``), a plain
    mapping of some of its fields, or None for the defaults. ``id_cols`` are dropped from the
    features and echoed in the test predictions; ``positive`` is the value of ``target`` taken
    as the positive group (default: the minority one). ``on_trial`` is called with each tuning
    trial as it finishes. Save the result with :meth:`Analysis.save`.
    """
    import pandas as pd

    s = XgbSettings.of(settings)
    if s.tune_on == "cluster":
        raise InputError("tune_on: cluster needs a Dask cluster (mltk.xgb.distributed); "
                         "one process tunes on its sample (tune_on: sample)")
    t_start = time.perf_counter()
    prep = prepare(df, target, id_cols, positive)
    _check_group_sizes(prep.y, s.folds)
    stages = Stages()
    profile = stages.run("profile", group_profile, prep.X, prep.y, _categories(prep)) or []
    split = _split(prep, s, _table_rows(df, target))
    data_profile = stages.run("data_profile", DataProfile.from_frame, prep.X.iloc[split.tr],
                              prep.categorical)
    tuning, trials, tune_n = _search(split, prep.y, s, on_trial)
    booster, fit_seconds, p_test = _refit(split, prep.y, tuning)
    metrics = threshold_metrics(prep.y[split.te], p_test, s.threshold_steps)
    ex_idx, importance, extras = _importances(stages, booster, split, prep.y, s)
    regression = _regression(stages, prep.X.iloc[split.tr], prep.y[split.tr], _categories(prep))
    report = {
        "mltk_version": __version__,
        "data": _data_summary(prep, target, split, tune_n),
        "profile": profile,
        "tuning": tuning,
        "fit_seconds": round(fit_seconds, 2),
        "metrics": metrics,
        "importance": importance,
        "importance_rank_correlation": extras["rank_correlation"],
        "shap_additivity_max_gap": extras["shap_additivity_max_gap"],
        "regression": regression,
        "not_computed": stages.not_computed,
        "seconds": None,
    }
    seconds = time.perf_counter() - t_start
    report["seconds"] = round(seconds, 2)
    return Analysis(
        model=booster, report=report, trials=pd.DataFrame(trials), settings=s,
        predictions=_predictions(df, target, id_cols, split, prep.y, p_test,
                                 metrics["best_threshold"]),
        config=_model_config(s, prep, report, id_cols), shap_values=extras["shap_values"],
        explained=split.X.iloc[split.te].iloc[ex_idx], compute_seconds=seconds,
        data_profile=data_profile)


def _categories(prep: Prepared) -> dict[str, list[str]]:
    return {c: prep.categories[c] for c in prep.categorical}


def _check_group_sizes(y: Any, folds: int) -> None:
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if smaller < folds * 2:
        raise InputError(f"too few rows of the smaller group ({smaller}) for "
                         f"{folds}-fold cross-validation and a test set")


def _table_rows(df: Any, target: str) -> Any:
    """Each kept row's position in the data, counting rows dropped for a missing target."""
    import numpy as np

    return np.flatnonzero(df[target].notna().to_numpy())


def _split(prep: Prepared, s: XgbSettings, rows: Any) -> _Split:
    """The model's inputs (one-hot encoded unless categorical is native) and the hold-out,
    keyed by the rows' positions and the seed (:mod:`mltk.xgb.split`)."""
    import numpy as np

    from mltk.xgb.split import TEST_STREAM, select

    native = s.categorical == "native"
    X = prep.X if native else onehot(prep.X, prep.categories)
    test = np.zeros(len(X), dtype=bool)
    test[select(rows, prep.y, s.seed, TEST_STREAM, s.test_size)] = True
    return _Split(X, native, np.flatnonzero(~test), np.flatnonzero(test), rows)


def _tuning_rows(split: _Split, y: Any, s: XgbSettings) -> tuple[Any, Any]:
    """The training rows tuned on: all, or a stratified sample (see ``tune_rows``) keyed by
    row position and seed, in table order."""
    from mltk.xgb.split import TUNE_STREAM, select

    X_tr, y_tr = split.X.iloc[split.tr], y[split.tr]
    tune_n = _tune_rows(s.tune_rows, len(split.tr), s.tune_sample)
    if not tune_n:
        return X_tr, y_tr
    sub = select(split.rows[split.tr], y_tr, s.seed, TUNE_STREAM, tune_n / len(split.tr))
    log.info(f"tuning on a stratified sample of {len(sub):,} of {len(split.tr):,} training "
             "rows")
    return X_tr.iloc[sub], y_tr[sub]


def _search(split: _Split, y: Any, s: XgbSettings,
            on_trial: Callable[[dict[str, Any]], None] | None
            ) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(the report's ``tuning`` section, every trial, the rows tuned on)."""
    y_tr = y[split.tr]
    spw = s.scale_pos_weight
    spw = spw if spw is not None else float((y_tr == 0).sum() / max(1, (y_tr == 1).sum()))
    X_tune, y_tune = _tuning_rows(split, y, s)
    tuning, trials = search(X_tune, y_tune, s, spw, split.native, on_trial)
    return tuning, trials, len(y_tune)


def _refit(split: _Split, y: Any, tuning: Mapping[str, Any]) -> tuple[Any, float, Any]:
    """(the booster refit on all training rows, its seconds, its test probabilities).

    The number of rounds is FIXED: with DART, early stopping does not give back the model it
    evaluated, so the model is trained to exactly the chosen length, never sliced. The model
    must give the same predictions once serialised as model.ubj.
    """
    import numpy as np
    import xgboost as xgb

    t0 = time.perf_counter()
    booster = xgb.train(tuning["params"], xgb.DMatrix(split.X.iloc[split.tr], label=y[split.tr],
                                                      enable_categorical=split.native),
                        num_boost_round=tuning["rounds"])
    fit_seconds = time.perf_counter() - t0
    dtest = xgb.DMatrix(split.X.iloc[split.te], label=y[split.te],
                        enable_categorical=split.native)
    p_test = booster.predict(dtest)
    reloaded = xgb.Booster(model_file=booster.save_raw("ubj"))
    gap = float(np.abs(reloaded.predict(dtest) - p_test).max()) if len(p_test) else 0.0
    if gap != 0.0:
        raise RuntimeError(f"the saved model does not reproduce the predictions (gap {gap})")
    return booster, fit_seconds, p_test


def _importances(stages: Stages, booster: Any, split: _Split, y: Any, s: XgbSettings
                 ) -> tuple[Any, list[dict], dict[str, Any]]:
    """(positions in the test set of the rows explained: a stratified sample of about
    ``explain_rows`` keyed by row position and seed; importance rows with a consensus rank
    over the measures that could be computed; SHAP and rank-correlation extras)."""
    import numpy as np

    from mltk.xgb.split import EXPLAIN_STREAM, select

    ex_idx = select(split.rows[split.te], y[split.te], s.seed, EXPLAIN_STREAM,
                    s.explain_rows / max(1, len(split.te)))
    X, y_ex = split.X.iloc[split.te].iloc[ex_idx], y[split.te][ex_idx]
    measures = dict(stages.run("importance", explain.booster_importances, booster,
                               split.features) or {})
    shap = stages.run("shap", explain.shap_values, booster, X, split.native)
    if shap is not None:
        measures["mean_abs_shap"] = np.abs(shap[0]).mean(0).tolist()
    measures.update(stages.run("permutation", explain.permutation_auc_drop, booster, X, y_ex,
                               split.native, s.permutation_repeats, s.seed) or {})
    rows, rank_corr = explain.consensus(split.features, measures)
    return ex_idx, rows, {"rank_correlation": rank_corr,
                          "shap_additivity_max_gap": shap[1] if shap is not None else None,
                          "shap_values": shap[0] if shap is not None else None}


def _regression(stages: Stages, X: Any, y: Any, categories: dict[str, list[str]]
                ) -> dict[str, Any]:
    """Logistic regression, VIFs and correlations, each left empty when it fails."""
    out: dict[str, Any] = {"coefficients": [], "pseudo_r2": None, "vif": [], "note": None,
                           "correlation": {}}
    Z = stages.run("regression", explain.standardized_design, X, categories)
    if Z is None:
        for stage in ("vif", "correlation"):
            stages.skip(stage, "needs the regression's standardized inputs, which failed")
        return out
    out.update(stages.run("regression", explain.logistic_regression, Z, y) or {})
    out["vif"] = stages.run("vif", explain.variance_inflation, Z) or []
    out["correlation"] = stages.run("correlation", explain.correlation, Z) or {}
    return out


def _data_summary(prep: Prepared, target: str, split: _Split, tune_n: int) -> dict[str, Any]:
    return {"rows": int(len(prep.y)), "features": split.features,
            "categorical": prep.categorical, "dropped": prep.dropped,
            "target": target, "positive": _plain(prep.positive),
            "negative": _plain(prep.negative),
            "positive_share": float(prep.y.mean()), "train_rows": int(len(split.tr)),
            "test_rows": int(len(split.te)), "tune_rows": int(tune_n)}


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _predictions(df: Any, target: str, id_cols: Sequence[str], split: _Split, y: Any,
                 p_test: Any, threshold: float) -> Any:
    """The test rows scored (test_predictions.csv): id columns, row (its position in the
    data, counting rows dropped for a missing target), y_true, probability, predicted."""
    import pandas as pd

    rows = split.rows[split.te]
    pred = pd.DataFrame({"row": rows, "y_true": y[split.te], "probability": p_test,
                         "predicted": (p_test >= threshold).astype(int)})
    for col in id_cols:
        pred.insert(0, col, df[col].iloc[rows].to_numpy())
    return pred


def _model_config(s: XgbSettings, prep: Prepared, report: Mapping[str, Any],
                  id_cols: Sequence[str]) -> dict[str, Any]:
    """config.yaml: the settings, and what :class:`~mltk.xgb.model.TwoGroupModel` needs to
    score new rows as at training time."""
    return {**s.to_dict(), "target": report["data"]["target"], "id_cols": list(id_cols),
            "positive": report["data"]["positive"], "negative": report["data"]["negative"],
            "threshold": report["metrics"]["best_threshold"],
            "features": report["data"]["features"], "categorical_mode": s.categorical,
            "raw_features": prep.features, "categories": prep.categories,
            "tuned_params": report["tuning"]["params"], "rounds": report["tuning"]["rounds"],
            "mltk_version": __version__}


def predict(model_dir: str | os.PathLike, df: Any, unknown_categories: str = "error") -> Any:
    """Probability and label at the tuned threshold for new rows (a DataFrame); see
    :class:`mltk.xgb.model.TwoGroupModel`, which loads the model once for many calls."""
    from mltk.xgb.model import TwoGroupModel

    return TwoGroupModel(model_dir).score(df, unknown_categories=unknown_categories)
