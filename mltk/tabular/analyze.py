"""``xgb-analyze``: the whole two-group analysis in one call, and scoring new rows.

Steps: check the data, profile the groups, hold out a stratified test set, tune XGBoost
(DART by default) with hyperopt over stratified CV (on a stratified sample for large data),
refit on all training rows with the tuned parameters and a fixed number of rounds, measure on
the test set, explain (importances, SHAP, permutation, regression), and write every artefact.

The explanations and plots are optional stages: one that fails (a singular Hessian on
separable data, say) is logged as a warning and listed under ``not_computed`` in the report,
and the rest of the analysis is still written.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk import __version__
from mltk._atomic import atomic_path, write_json, write_text
from mltk.errors import ConfigError, InputError
from mltk.tabular import explain
from mltk.tabular.data import Prepared, onehot, prepare
from mltk.tabular.explain import group_profile, threshold_metrics
from mltk.tabular.tune import base_params, clean_params, tune

log = logging.getLogger(__name__)
TUNE_SAMPLE_ABOVE = 200_000


def _check_settings(s: Mapping[str, Any]) -> None:
    if s["booster"] not in ("dart", "gbtree"):
        raise ConfigError(f"booster must be dart or gbtree, got {s['booster']!r}")
    if s["device"] not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {s['device']!r}")
    if s["categorical"] not in ("native", "onehot"):
        raise ConfigError(f"categorical must be native or onehot, got {s['categorical']!r}")
    if not 0 < float(s["test_size"]) < 1:
        raise ConfigError(f"test_size must be between 0 and 1, got {s['test_size']}")
    if int(s["folds"]) < 2 or int(s["max_evals"]) < 1:
        raise ConfigError("folds must be >= 2 and max_evals >= 1")


def _tune_rows(setting: Any, n_train: int, sample: int) -> int | None:
    if setting in (None, "auto"):
        return sample if n_train > TUNE_SAMPLE_ABOVE else None
    if setting in (0, "all", "none"):
        return None
    try:
        n = int(setting)
    except (TypeError, ValueError):
        raise ConfigError(f"tune_rows must be auto, all or a number, got {setting!r}") from None
    return n if n < n_train else None


def analyze(df: Any, target: str, settings: Mapping[str, Any], out: str | os.PathLike,
            id_cols: Sequence[str] = (), positive: Any = None,
            on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the analysis and write every artefact to ``out``; returns the report dict."""
    import numpy as np
    import xgboost as xgb
    from sklearn.model_selection import train_test_split

    _check_settings(settings)
    t_start = time.perf_counter()
    seed = int(settings["seed"])
    prep = prepare(df, target, id_cols, positive)
    smaller = int(min(prep.y.sum(), len(prep.y) - prep.y.sum()))
    if smaller < int(settings["folds"]) * 2:
        raise InputError(f"too few rows of the smaller group ({smaller}) for "
                         f"{settings['folds']}-fold cross-validation and a test set")
    stages = Stages()
    profile = stages.run("profile", group_profile, prep.X, prep.y,
                         {c: prep.categories[c] for c in prep.categorical}) or []
    native = settings["categorical"] == "native"
    X = prep.X if native else onehot(prep.X, prep.categories)
    features = [str(c) for c in X.columns]
    idx = np.arange(len(X))
    tr, te = train_test_split(idx, test_size=float(settings["test_size"]), stratify=prep.y,
                              random_state=seed)
    X_tr, y_tr, X_te, y_te = X.iloc[tr], prep.y[tr], X.iloc[te], prep.y[te]
    spw = settings.get("scale_pos_weight")
    spw = float(spw) if spw is not None else float((y_tr == 0).sum() / max(1, (y_tr == 1).sum()))
    base = base_params(settings["booster"], settings["device"], seed, spw)
    tune_n = _tune_rows(settings.get("tune_rows"), len(tr), int(settings["tune_sample"]))
    if tune_n:
        sub, _ = train_test_split(np.arange(len(tr)), train_size=tune_n, stratify=y_tr,
                                  random_state=seed)
        X_tune, y_tune = X_tr.iloc[np.sort(sub)], y_tr[np.sort(sub)]
        log.info(f"tuning on a stratified sample of {tune_n:,} of {len(tr):,} training rows")
    else:
        X_tune, y_tune = X_tr, y_tr
    space = dict(settings["space"])
    if settings["booster"] == "dart":
        space.update(settings.get("dart_space") or {})
    t0 = time.perf_counter()
    best, trials = tune(X_tune, y_tune, base, space, categorical=native,
                        folds=int(settings["folds"]),
                        max_evals=int(settings["max_evals"]),
                        max_rounds=int(settings["dart_max_rounds"]
                                       if settings["booster"] == "dart"
                                       else settings["max_rounds"]),
                        early_stopping=int(settings["early_stopping"]), seed=seed,
                        timeout=settings.get("timeout"), on_trial=on_trial)
    tune_seconds = time.perf_counter() - t0
    params = {**base, **clean_params({k: best[k] for k in space})}
    rounds = int(best["rounds"])
    # Refit with a FIXED number of rounds: with DART, early stopping does not give back the
    # model it evaluated, so the model is trained to exactly the chosen length, never sliced.
    t0 = time.perf_counter()
    booster = xgb.train(params, xgb.DMatrix(X_tr, label=y_tr, enable_categorical=native),
                        num_boost_round=rounds)
    fit_seconds = time.perf_counter() - t0
    dtest = xgb.DMatrix(X_te, label=y_te, enable_categorical=native)
    p_test = booster.predict(dtest)
    metrics = threshold_metrics(y_te, p_test, int(settings["threshold_steps"]))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.ubj") as tmp:
        booster.save_model(os.fspath(tmp))
    reloaded = xgb.Booster(model_file=os.fspath(out_dir / "model.ubj"))
    gap = float(np.abs(reloaded.predict(dtest) - p_test).max())
    if gap != 0.0:
        raise RuntimeError(f"the saved model does not reproduce the predictions (gap {gap})")
    n_explain = min(len(te), int(settings["explain_rows"]))
    rng = np.random.default_rng(seed)
    ex_idx = np.sort(rng.choice(len(te), n_explain, replace=False))
    imp_rows, imp_extra = _importances(stages, booster, X_te.iloc[ex_idx], y_te[ex_idx],
                                       features, native, int(settings["permutation_repeats"]),
                                       seed)
    regression = _regression(stages, prep.X.iloc[tr], y_tr,
                             {c: prep.categories[c] for c in prep.categorical})
    report = {
        "mltk_version": __version__,
        "data": {"rows": int(len(prep.y)), "features": features,
                 "categorical": prep.categorical, "dropped": prep.dropped,
                 "target": target, "positive": _plain(prep.positive),
                 "negative": _plain(prep.negative),
                 "positive_share": float(prep.y.mean()), "train_rows": int(len(tr)),
                 "test_rows": int(len(te)), "tune_rows": int(len(y_tune))},
        "profile": profile,
        "tuning": {"best": best, "trials": len(trials), "seconds": round(tune_seconds, 2),
                   "params": params, "rounds": rounds},
        "fit_seconds": round(fit_seconds, 2),
        "metrics": metrics,
        "importance": imp_rows,
        "importance_rank_correlation": imp_extra["rank_correlation"],
        "shap_additivity_max_gap": imp_extra["shap_additivity_max_gap"],
        "regression": regression,
        "not_computed": stages.not_computed,
        "seconds": None,
    }
    _write_outputs(out_dir, report, trials, prep, X_te, y_te, p_test, te, df, id_cols,
                   imp_extra["shap_values"], X_te.iloc[ex_idx], settings, stages)
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(out_dir / "report.json", report)
    return report


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


class Stages:
    """Runs the optional stages (explanations, plots): one that fails is logged as a warning
    and recorded in ``not_computed`` (stage -> reason), never raised, so that it cannot take
    the analysis down."""

    def __init__(self) -> None:
        self.not_computed: dict[str, str] = {}

    def run(self, stage: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``, or None when it raises."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # any failure of an optional stage; the analysis goes on
            log.debug(f"{stage} failed:\n{traceback.format_exc()}")  # shown with -v
            self.skip(stage, _reason(exc))
            return None

    def skip(self, stage: str, reason: str) -> None:
        self.not_computed[stage] = reason
        log.warning(f"{stage} could not be computed ({reason}); the rest of the report is "
                    "written without it")


def _reason(exc: Exception) -> str:
    """The exception's type and first sentence (library messages go on with advice)."""
    text = " ".join(str(exc).split()) or "no message"
    end = text.find(". ")
    if 0 < end < 200:
        text = text[:end + 1]
    elif len(text) > 200:
        text = text[:200] + " ..."
    return f"{type(exc).__name__}: {text}"


def _importances(stages: Stages, booster: Any, X: Any, y: Any, features: list[str],
                 native: bool, repeats: int, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """Importance rows with a consensus rank over the measures that could be computed."""
    import numpy as np

    measures = dict(stages.run("importance", explain.booster_importances, booster, features)
                    or {})
    shap = stages.run("shap", explain.shap_values, booster, X, native)
    if shap is not None:
        measures["mean_abs_shap"] = np.abs(shap[0]).mean(0).tolist()
    measures.update(stages.run("permutation", explain.permutation_auc_drop, booster, X, y,
                               native, repeats, seed) or {})
    rows, rank_corr = explain.consensus(features, measures)
    return rows, {"rank_correlation": rank_corr,
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


def _write_outputs(out: Path, report: dict[str, Any], trials: list[dict], prep: Prepared,
                   X_te: Any, y_te: Any, p_test: Any, te: Any, df: Any, id_cols: Sequence[str],
                   shap_values: Any, X_explain: Any, settings: Mapping[str, Any],
                   stages: Stages) -> None:
    import pandas as pd

    from mltk import _config

    with atomic_path(out / "trials.csv") as tmp:
        pd.DataFrame(trials).to_csv(tmp, index=False)
    t = report["metrics"]["best_threshold"]
    pred = pd.DataFrame({"row": te, "y_true": y_te, "probability": p_test,
                         "predicted": (p_test >= t).astype(int)})
    for col in id_cols:
        pred.insert(0, col, df[col].iloc[te].to_numpy())
    with atomic_path(out / "test_predictions.csv") as tmp:
        pred.to_csv(tmp, index=False)
    _config.save(out / "config.yaml", {
        **settings, "target": report["data"]["target"], "id_cols": list(id_cols),
        "positive": report["data"]["positive"], "negative": report["data"]["negative"],
        "threshold": t, "features": report["data"]["features"],
        "categorical_mode": settings["categorical"],
        "raw_features": prep.features, "categories": prep.categories,
        "tuned_params": report["tuning"]["params"], "rounds": report["tuning"]["rounds"],
        "mltk_version": __version__})
    _plots(stages, out, report, y_te, p_test, shap_values, X_explain)
    write_text(out / "report.md", render_markdown(report))


def _plots(stages: Stages, out: Path, report: dict[str, Any], y_te: Any, p_test: Any,
           shap_values: Any, X_explain: Any) -> None:
    """Each plot as an optional stage; a plot not drawn leaves no stale file from a former
    run in the folder."""
    from mltk.tabular import plots

    drawing = {"roc.png": (plots.roc, out, report, y_te, p_test),
               "mcc.png": (plots.mcc, out, report),
               "importance.png": (plots.importance, out, report),
               "shap_summary.png": (plots.shap_summary, out, report, shap_values, X_explain),
               "correlation.png": (plots.correlation, out, report)}
    for name, (func, *args) in drawing.items():
        if name == "shap_summary.png" and shap_values is None:
            stages.skip(name, "needs the SHAP values, which were not computed")
        else:
            stages.run(name, func, *args)
        if name in stages.not_computed:
            (out / name).unlink(missing_ok=True)


def render_markdown(r: dict[str, Any]) -> str:
    d = r["data"]
    lines = [
        "# What separates the two groups", "",
        f"{d['rows']:,} rows; positive group `{d['positive']}` is {d['positive_share']:.1%} "
        f"of them (vs `{d['negative']}`). Train {d['train_rows']:,} rows, test "
        f"{d['test_rows']:,} (stratified); tuning used {d['tune_rows']:,} rows.", "",
    ]
    if d["dropped"]:
        lines += ["Dropped columns: " + ", ".join(f"`{k}` ({v})" for k, v in
                                                  d["dropped"].items()), ""]
    missing = r.get("not_computed") or {}
    if missing:
        lines += ["Not computed (the rest of the report is complete):", ""]
        lines += [f"- {stage}: {why}" for stage, why in missing.items()] + [""]
    lines += _profile_md(r) + _model_md(r) + _importance_md(r) + _regression_md(r)
    lines += ["", "## What separates the groups", ""]
    for f in r["importance"][:5]:
        prof = next((p for p in r["profile"] if p["feature"] == f["feature"]), None)
        direction = ""
        if prof and prof["mean_positive"] is not None and prof["mean_negative"] is not None:
            direction = (" — higher in the positive group" if prof["smd"] > 0
                         else " — lower in the positive group")
        lines.append(f"- **{f['feature']}** (consensus rank {f['consensus_rank']}){direction}")
    return "\n".join(lines) + "\n"


def _images(r: dict[str, Any], *names: str) -> list[str]:
    """Markdown image links for the plots that were drawn."""
    shown = " ".join(f"![{alt}]({name})" for name, alt in
                     (n.split("|") for n in names) if name not in r.get("not_computed", {}))
    return [shown, ""] if shown else []


def _profile_md(r: dict[str, Any]) -> list[str]:
    lines = ["## The groups, feature by feature", ""]
    if "profile" in r.get("not_computed", {}):
        return lines + [f"Not computed: {r['not_computed']['profile']}", ""]
    lines += ["| feature | mean (pos) | mean (neg) | median (pos) | median (neg) | SMD |",
              "|---|---|---|---|---|---|"]
    for p in r["profile"][:15]:
        lines.append(f"| {p['feature']} | {_f(p['mean_positive'])} | {_f(p['mean_negative'])} "
                     f"| {_f(p['median_positive'])} | {_f(p['median_negative'])} "
                     f"| {p['smd']:+.3f} |")
    return lines


def _model_md(r: dict[str, Any]) -> list[str]:
    t, m = r["tuning"], r["metrics"]
    return ["", "## Model", "",
            f"XGBoost `{t['params']['booster']}` tuned by hyperopt TPE ({t['trials']} trials,"
            f" stratified CV AUC {t['best']['cv_auc_mean']:.4f} ± {t['best']['cv_auc_std']:.4f}"
            f"), refit on all training rows for {t['rounds']} rounds.", "",
            "| test metric | value |", "|---|---|",
            f"| ROC AUC | {m['roc_auc']:.4f} |", f"| PR AUC | {m['pr_auc']:.4f} |",
            f"| log loss | {m['log_loss']:.4f} |",
            f"| best MCC | {m['best_mcc']:.4f} at threshold {m['best_threshold']:.3f} |",
            f"| F1 / precision / recall | {m['f1']:.3f} / {m['precision']:.3f} / "
            f"{m['recall']:.3f} |",
            f"| confusion (tn fp fn tp) | {m['confusion_matrix']['tn']} "
            f"{m['confusion_matrix']['fp']} {m['confusion_matrix']['fn']} "
            f"{m['confusion_matrix']['tp']} |", "",
            *_images(r, "roc.png|ROC", "mcc.png|MCC vs threshold")]


def _importance_md(r: dict[str, Any]) -> list[str]:
    lines = ["## Top features", ""]
    for stage, what in (("shap", "Mean |SHAP|"), ("permutation", "Permutation importance"),
                        ("importance", "XGBoost's gain")):
        if stage in r.get("not_computed", {}):
            lines += [f"{what} could not be computed ({r['not_computed'][stage]}); the "
                      "consensus rank uses the other measures.", ""]
    lines += ["| rank | feature | gain | mean abs SHAP | permutation AUC drop |",
              "|---|---|---|---|---|"]
    for f in r["importance"][:10]:
        lines.append(f"| {f['consensus_rank']} | {f['feature']} | {_f(f['gain'], '.3f')} | "
                     f"{_f(f['mean_abs_shap'], '.4f')} | "
                     f"{_f(f['permutation_auc_drop'], '.4f')} |")
    return lines + ["", *_images(r, "importance.png|importance", "shap_summary.png|SHAP")]


def _regression_md(r: dict[str, Any]) -> list[str]:
    reg, missing = r["regression"], r.get("not_computed", {})
    lines = ["## Regression", ""]
    if "regression" in missing:
        lines += [f"The logistic regression could not be computed: {missing['regression']}", ""]
    else:
        lines += ["Standardized logistic regression on the training rows (coefficient per SD; "
                  "positive = more likely in the positive group)." + (f" {reg['note']}"
                                                                      if reg["note"] else ""),
                  "", "| feature | coef | std err | p-value | VIF |", "|---|---|---|---|---|"]
    vif = {v["feature"]: v["vif"] for v in reg["vif"]}
    for c in reg["coefficients"][:15]:
        lines.append(f"| {c['feature']} | {c['coef']:+.3f} | {_f(c['std_err'])} | "
                     f"{_p(c['p_value'])} | {_f(vif.get(c['feature']))} |")
    for stage, what in (("vif", "Variance inflation factors"), ("correlation", "Correlations")):
        if stage in missing:
            lines += ["", f"{what} could not be computed: {missing[stage]}"]
    collinear = [v["feature"] for v in reg["vif"] if v["collinear"]]
    if collinear:
        lines += ["", f"Collinear features (VIF > 5): {', '.join(collinear)} — read their "
                  "separate effects with care."]
    return lines + ["", *_images(r, "correlation.png|correlation")][:-1]


def _f(v: Any, spec: str = ".4g") -> str:
    return "" if v is None else f"{v:{spec}}"


def _p(v: Any) -> str:
    return "" if v is None else ("<0.0001" if v < 1e-4 else f"{v:.4f}")


def predict(model_dir: str | os.PathLike, df: Any, unknown_categories: str = "error") -> Any:
    """Probability and label at the tuned threshold for new rows (a DataFrame); see
    :class:`mltk.tabular.model.TwoGroupModel`, which loads the model once for many calls."""
    from mltk.tabular.model import TwoGroupModel

    return TwoGroupModel(model_dir).score(df, unknown_categories=unknown_categories)
