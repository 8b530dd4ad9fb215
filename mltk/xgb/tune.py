"""Hyperparameter search for XGBoost: hyperopt TPE over a real space, scored by stratified
k-fold CV AUC (mean over the folds, per round) with early stopping choosing the rounds."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from mltk.errors import ConfigError

log = logging.getLogger(__name__)
INT_PARAMS = {"max_depth", "max_bin", "max_leaves"}


def build_space(space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """hyperopt expressions from the YAML description (see configs/xgb.yaml)."""
    from hyperopt import hp

    out = {}
    for name, spec in space.items():
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        try:
            if kind == "uniform":
                out[name] = hp.uniform(name, float(spec["low"]), float(spec["high"]))
            elif kind == "loguniform":
                out[name] = hp.loguniform(name, math.log(float(spec["low"])),
                                          math.log(float(spec["high"])))
            elif kind == "quniform":
                out[name] = hp.quniform(name, float(spec["low"]), float(spec["high"]),
                                        float(spec.get("q", 1)))
            elif kind == "choice":
                out[name] = hp.choice(name, list(spec["values"]))
            else:
                raise ConfigError(f"search space {name!r}: unknown type {kind!r} "
                                  "(uniform, loguniform, quniform, choice)")
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"search space {name!r}: malformed entry {dict(spec)} ({exc})"
                              ) from None
    return out


def base_params(booster: str, device: str, seed: int, scale_pos_weight: float) -> dict[str, Any]:
    params = {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist",
              "booster": booster, "device": device, "seed": seed,
              "scale_pos_weight": scale_pos_weight, "nthread": 0}
    if booster == "dart":
        params.update(sample_type="uniform", normalize_type="tree")
    return params


def clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (int(v) if k in INT_PARAMS else float(v) if isinstance(v, float) else v)
            for k, v in params.items()}


def tune(X: Any, y: Any, base: Mapping[str, Any], space: Mapping[str, Any], *, folds: int,
         max_evals: int, max_rounds: int, early_stopping: int, seed: int,
         timeout: float | None = None, categorical: bool = True,
         on_trial: Callable[[dict[str, Any]], None] | None = None) -> tuple[dict, list[dict]]:
    """Run the search; returns (best trial, all trials). Each trial: params, cv_auc_mean,
    cv_auc_std, rounds, seconds."""
    import numpy as np
    import xgboost as xgb
    from hyperopt import STATUS_OK, Trials, fmin, tpe
    from sklearn.model_selection import StratifiedKFold

    trials_log: list[dict[str, Any]] = []

    folds_idx = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        np.zeros(len(y)), y))
    fold_data = [(X.iloc[tr], y[tr], X.iloc[te], y[te]) for tr, te in folds_idx]

    def objective(sampled: dict[str, Any]) -> dict[str, Any]:
        params = {**base, **clean_params(sampled)}
        t0 = time.perf_counter()
        # Our own fold loop rather than xgb.cv: only the held-out fold is evaluated each round,
        # which matters with DART, whose per-round predictions cannot be cached.
        curves = []
        for X_tr, y_tr, X_te, y_te in fold_data:
            dtr = xgb.DMatrix(X_tr, label=y_tr, enable_categorical=categorical)
            dte = xgb.DMatrix(X_te, label=y_te, enable_categorical=categorical)
            history: dict[str, Any] = {}
            xgb.train(params, dtr, num_boost_round=max_rounds, evals=[(dte, "test")],
                      early_stopping_rounds=early_stopping, evals_result=history,
                      verbose_eval=False)
            curves.append(history["test"]["auc"])
        n = min(len(c) for c in curves)
        auc = np.array([c[:n] for c in curves])
        mean = auc.mean(0)
        best = int(mean.argmax())
        record = {"trial": len(trials_log), **clean_params(sampled),
                  "cv_auc_mean": float(mean[best]), "cv_auc_std": float(auc[:, best].std()),
                  "rounds": best + 1, "seconds": round(time.perf_counter() - t0, 3)}
        trials_log.append(record)
        if on_trial:
            on_trial(record)
        return {"loss": -record["cv_auc_mean"], "status": STATUS_OK}

    fmin(objective, build_space(space), algo=tpe.suggest, max_evals=max_evals,
         trials=Trials(), rstate=np.random.default_rng(seed), timeout=timeout,
         show_progressbar=False)
    if not trials_log:
        raise ConfigError("no tuning trial finished within the timeout setting "
                          f"({timeout:g} s); raise it" if timeout else "no tuning trial finished")
    best = max(trials_log, key=lambda r: (r["cv_auc_mean"], -r["trial"]))
    return best, trials_log


def search(X: Any, y: Any, s: Any, scale_pos_weight: float, categorical: bool,
           on_trial: Callable[[dict[str, Any]], None] | None = None
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Tune with the settings ``s`` (an ``XgbSettings``) on ``X``, ``y``: (the report's
    ``tuning`` section, every trial). The one-process run, the cluster and external memory
    all tune through this."""
    base = base_params(s.booster, s.device, s.seed, scale_pos_weight)
    space = s.tuned_space()
    t0 = time.perf_counter()
    best, trials = tune(X, y, base, space, categorical=categorical, folds=s.folds,
                        max_evals=s.max_evals, max_rounds=s.rounds_cap(),
                        early_stopping=s.early_stopping, seed=s.seed, timeout=s.timeout,
                        on_trial=on_trial)
    tuning = {"best": best, "trials": len(trials),
              "seconds": round(time.perf_counter() - t0, 2),
              "params": {**base, **clean_params({k: best[k] for k in space})},
              "rounds": int(best["rounds"])}
    return tuning, trials
