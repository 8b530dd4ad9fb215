"""Hyperparameter search for XGBoost: hyperopt TPE over a real space, scored by stratified
k-fold CV AUC (mean over the folds, per round) with early stopping choosing the rounds."""

from __future__ import annotations

import logging
import math
import os
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


#: A trial's evaluation: the tuned parameters -> one AUC-per-round curve per held-out split
#: (the CV folds, or a cluster's validation split); their mean picks the rounds.
Evaluate = Callable[[dict[str, Any]], list[list[float]]]


def tune(X: Any, y: Any, base: Mapping[str, Any], space: Mapping[str, Any], *, folds: int,
         max_evals: int, max_rounds: int, early_stopping: int, seed: int,
         timeout: float | None = None, categorical: bool = True,
         on_trial: Callable[[dict[str, Any]], None] | None = None) -> tuple[dict, list[dict]]:
    """Run the search over stratified k-fold CV of ``X``, ``y``; returns (best trial, all
    trials). Each trial: params, cv_auc_mean, cv_auc_std, rounds, seconds."""
    with CrossValidation(X, y, folds=folds, seed=seed, max_rounds=max_rounds,
                         early_stopping=early_stopping, categorical=categorical,
                         device=base.get("device", "cpu")) as cv:
        return tune_with(cv, base, space, max_evals=max_evals, seed=seed, timeout=timeout,
                         on_trial=on_trial)


def fold_threads(folds: int, device: str, cpus: int | None = None) -> tuple[int, int]:
    """(folds trained at once, XGBoost threads each): on the CPU, the folds in parallel, each
    with its share of the cores (one thread each when there are no more cores than folds);
    on a GPU one fold at a time. Whole folds side by side rather than every thread on one
    fold: a tuning sample is small, so one fold's rounds are short, and OpenMP's threads
    spin at the end of each of its parallel loops; on a busy machine a spinning thread holds
    the core its partner needs (5-20x slower rounds measured with 2 threads on 2 shared
    cores). The trees are the same whatever the thread count."""
    if device != "cpu":
        return 1, 0
    cpus = cpus or usable_cpus()
    parallel = max(1, min(folds, cpus))
    return parallel, max(1, cpus // parallel)


def usable_cpus() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class CrossValidation:
    """The one-process :data:`Evaluate`: stratified k-fold CV, the folds trained side by side
    (:func:`fold_threads`; ``cpus``: the cores to share, default all this process may use),
    only the held-out fold evaluated each round (which matters with DART, whose per-round
    predictions cannot be cached), early stopping on it. Use it as a context manager."""

    def __init__(self, X: Any, y: Any, *, folds: int, seed: int, max_rounds: int,
                 early_stopping: int, categorical: bool, device: str = "cpu",
                 cpus: int | None = None) -> None:
        import numpy as np
        from sklearn.model_selection import StratifiedKFold

        split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(
            np.zeros(len(y)), y)
        self.folds = [(X.iloc[tr], y[tr], X.iloc[te], y[te]) for tr, te in split]
        self.max_rounds, self.early_stopping = max_rounds, early_stopping
        self.categorical = categorical
        self.parallel, self.nthread = fold_threads(folds, device, cpus)
        self._pool: Any = None

    def __enter__(self) -> CrossValidation:
        from concurrent.futures import ThreadPoolExecutor

        if self.parallel > 1:
            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="mltk-fold")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __call__(self, params: dict[str, Any]) -> list[list[float]]:
        params = {**params, "nthread": self.nthread} if self.nthread else params
        if self._pool is None:
            return [self._fold(params, fold) for fold in self.folds]
        return list(self._pool.map(lambda fold: self._fold(params, fold), self.folds))

    def _fold(self, params: dict[str, Any], fold: tuple) -> list[float]:
        import xgboost as xgb

        X_tr, y_tr, X_te, y_te = fold
        dtr = xgb.DMatrix(X_tr, label=y_tr, enable_categorical=self.categorical,
                          nthread=params.get("nthread", 0))
        dte = xgb.DMatrix(X_te, label=y_te, enable_categorical=self.categorical,
                          nthread=params.get("nthread", 0))
        history: dict[str, Any] = {}
        xgb.train(params, dtr, num_boost_round=self.max_rounds, evals=[(dte, "test")],
                  early_stopping_rounds=self.early_stopping, evals_result=history,
                  verbose_eval=False)
        return list(history["test"]["auc"])


def tune_with(evaluate: Evaluate, base: Mapping[str, Any], space: Mapping[str, Any], *,
              max_evals: int, seed: int, timeout: float | None = None,
              on_trial: Callable[[dict[str, Any]], None] | None = None
              ) -> tuple[dict, list[dict]]:
    """The search: hyperopt TPE over ``space``, each trial's parameters (``base`` and the
    drawn ones) scored by ``evaluate`` (mean AUC over its curves, at the best round); returns
    (best trial, all trials)."""
    import numpy as np
    from hyperopt import STATUS_OK, Trials, fmin, tpe

    trials_log: list[dict[str, Any]] = []

    def objective(sampled: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        curves = evaluate({**base, **clean_params(sampled)})
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
    """Tune with the settings ``s`` (an ``XgbSettings``) by stratified CV on ``X``, ``y``:
    (the report's ``tuning`` section, every trial). The one-process run, the cluster's and
    external memory's sample all tune through this."""
    with CrossValidation(X, y, folds=s.folds, seed=s.seed, max_rounds=s.rounds_cap(),
                         early_stopping=s.early_stopping, categorical=categorical,
                         device=s.device) as cv:
        return search_with(cv, s, scale_pos_weight, on_trial)


def search_with(evaluate: Evaluate, s: Any, scale_pos_weight: float,
                on_trial: Callable[[dict[str, Any]], None] | None = None
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`search` with each trial scored by ``evaluate`` (a :data:`Evaluate`): the
    cross-validation of a sample, or trials trained on a cluster's partitions."""
    base = base_params(s.booster, s.device, s.seed, scale_pos_weight)
    space = s.tuned_space()
    t0 = time.perf_counter()
    best, trials = tune_with(evaluate, base, space, max_evals=s.max_evals, seed=s.seed,
                             timeout=s.timeout, on_trial=on_trial)
    tuning = {"best": best, "trials": len(trials),
              "seconds": round(time.perf_counter() - t0, 2),
              "params": {**base, **clean_params({k: best[k] for k in space})},
              "rounds": int(best["rounds"])}
    return tuning, trials
