"""report.md: the analysis in words and tables, from the report dict (report.json)."""

from __future__ import annotations

from typing import Any


def render_markdown(r: dict[str, Any]) -> str:
    """report.md of a report dict (the plots it links are those not in ``not_computed``)."""
    d = r["data"]
    lines = [
        "# What separates the two groups", "",
        f"{d['rows']:,} rows; positive group `{d['positive']}` is {d['positive_share']:.1%} "
        f"of them (vs `{d['negative']}`). Train {d['train_rows']:,} rows, test "
        f"{d['test_rows']:,} (stratified); tuning used {d['tune_rows']:,} rows.", "",
    ]
    lines += _cluster_md(r)
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


def _cluster_md(r: dict[str, Any]) -> list[str]:
    """Where a distributed run ran (``xgb-analyze --dask``), and what was sampled."""
    c = r.get("cluster")
    if not c:
        return []
    s = c["samples"]
    t = c.get("tuning") or {"on": "sample"}
    tuned = (f"every tuning trial was trained by the workers on {t['fit_rows']:,} training "
             f"rows and validated on {t['validation_rows']:,} (keyed by row and seed); "
             if t["on"] == "cluster" else
             f"tuning used a stratified sample of {s['tuning']:,} training rows (in the "
             "mltk process); ")
    return [f"Ran on a Dask cluster: scheduler `{c['scheduler']}`, {c['workers']} workers "
            f"({c['threads']} threads), {c['partitions']} partitions, {c['rows_read']:,} rows "
            "read by the workers. The refit, the test metrics and the group profile's means "
            f"used every row; {tuned}SHAP and permutation importance {s['explained']:,} "
            "test rows, and the profile's medians, the regression and the drift profile a "
            f"stratified sample of {s['regression']:,} training rows.", ""]


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


# -- report.html ----------------------------------------------------------------------------

#: The plots of report.html: file, alt text, caption.
HTML_PLOTS = (
    ("roc.png", "ROC curve of the test set", "How well the probability ranks the test rows: "
     "the higher the curve above the diagonal, the better."),
    ("mcc.png", "Matthews correlation at each threshold", "The label threshold is the one "
     "with the best MCC (red line)."),
    ("importance.png", "Feature importance: gain, mean absolute SHAP and permutation AUC drop",
     "Three measures of importance side by side; the consensus rank combines them."),
    ("shap_summary.png", "SHAP values per feature, coloured by the feature's value",
     "Points right of zero push a row towards the positive group; red is a high value of "
     "the feature, blue a low one."),
    ("correlation.png", "Correlation matrix of the standardized features",
     "Strongly correlated features share their effect: read their separate ranks with care."),
)


def direction(r: dict[str, Any], feature: str) -> str:
    """How ``feature`` differs in the positive group, from the group profile: 'higher' or
    'lower' for a number, the level most over-represented for a categorical ('=level more
    common'), '' when unknown."""
    rows = [p for p in r.get("profile") or [] if p["feature"] == feature
            or p["feature"].startswith(f"{feature}=")]
    if not rows:
        return ""
    best = max(rows, key=lambda p: abs(p["smd"]))
    if best["smd"] == 0:
        return ""
    if best["feature"] == feature:
        return "higher" if best["smd"] > 0 else "lower"
    level = best["feature"][len(feature) + 1:]
    return f"more often {level}" if best["smd"] > 0 else f"less often {level}"


def answer(r: dict[str, Any], top: int = 3) -> list[str]:
    """The answer of report.html in two sentences, with its numbers."""
    d, m = r["data"], r["metrics"]
    first = (f"The model tells {d['positive']} from {d['negative']} with a test ROC AUC of "
             f"{m['roc_auc']:.3f} on {d['test_rows']:,} held-out rows (best MCC "
             f"{m['best_mcc']:.3f} at threshold {m['best_threshold']:.3f}).")
    named = []
    for f in r["importance"][:top]:
        how = direction(r, f["feature"])
        named.append(f"{f['feature']} ({how} in {d['positive']})" if how else f["feature"])
    second = ("The features that separate the groups most are " + _and(named) + ".") \
        if named else "No feature importance could be computed."
    return [first, second]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def render_html(r: dict[str, Any], folder: Any, config: dict[str, Any] | None = None) -> str:
    """report.html of a report dict, with the plots of ``folder`` embedded."""
    from pathlib import Path

    from mltk import _report

    d, m = r["data"], r["metrics"]
    folder = Path(folder)
    importance = [{"rank": f["consensus_rank"], "feature": f["feature"],
                   "direction": direction(r, f["feature"]), "gain": f["gain"],
                   "mean |SHAP|": f["mean_abs_shap"],
                   "permutation AUC drop": f["permutation_auc_drop"]} for f in r["importance"]]
    profile = [{"feature": p["feature"], f"mean {d['positive']}": p["mean_positive"],
                f"mean {d['negative']}": p["mean_negative"], "SMD": p["smd"]}
               for p in r.get("profile") or []]
    vif = {v["feature"]: v["vif"] for v in r["regression"]["vif"]}
    coefficients = [{"feature": c["feature"], "coefficient per SD": c["coef"],
                     "std err": c["std_err"], "p-value": c["p_value"], "VIF": vif.get(c["feature"])}
                    for c in r["regression"]["coefficients"]]
    return _report.render(
        "xgb.html.j2", title=f"What separates {d['positive']} from {d['negative']}",
        kicker=f"mltk xgb-analyze · target {d['target']} · {d['rows']:,} rows",
        question=f"What separates {d['positive']} from {d['negative']} ({d['target']})?",
        answer=answer(r),
        headline=[("test ROC AUC", f"{m['roc_auc']:.3f}"), ("PR AUC", f"{m['pr_auc']:.3f}"),
                  ("best MCC", f"{m['best_mcc']:.3f}"),
                  (f"share of {d['positive']}", f"{d['positive_share']:.1%}")],
        plots=[(_report.file_uri(folder / name), alt, caption)
               for name, alt, caption in HTML_PLOTS if name not in r.get("not_computed", {})],
        importance=_report.table(importance, caption="Features by consensus rank", limit=20,
                                 full_csv="report.json"),
        metrics=_report.table(_metric_rows(m), caption="Test-set metrics"),
        profile=_report.table(profile, caption="Group profile (standardized mean difference, "
                              "positive minus negative)", full_csv="report.json"),
        coefficients=_report.table(coefficients, caption="Standardized logistic regression",
                                   full_csv="report.json"),
        regression_note=r["regression"].get("note"),
        data=d, not_computed=r.get("not_computed") or {}, tuning=r["tuning"],
        settings={k: v for k, v in (config or {}).items()
                  if k not in ("raw_features", "features", "categories", "tuned_params")})


def _metric_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    cm = m["confusion_matrix"]
    named = (("ROC AUC", "roc_auc"), ("PR AUC", "pr_auc"), ("log loss", "log_loss"),
             ("threshold (best MCC)", "best_threshold"), ("MCC", "best_mcc"), ("F1", "f1"),
             ("precision", "precision"), ("recall", "recall"))
    return [{"metric": label, "value": m[key]} for label, key in named] + [
        {"metric": "confusion tn / fp / fn / tp",
         "value": f"{cm['tn']} / {cm['fp']} / {cm['fn']} / {cm['tp']}"}]
