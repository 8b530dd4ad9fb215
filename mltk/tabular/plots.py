"""PNG plots of an xgb-analyze report (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mltk._plotting import pyplot
from mltk._plotting import save_png as _save


def write_all(out: Path, report: dict[str, Any], y_test: Any, p_test: Any, shap_values: Any,
              X_explain: Any) -> None:
    plt = pyplot()
    import numpy as np
    from sklearn.metrics import roc_curve

    m = report["metrics"]
    fpr, tpr, _ = roc_curve(y_test, p_test)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {m['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test set)")
    ax.legend(loc="lower right")
    _save(fig, out / "roc.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(m["sweep"]["thresholds"], m["sweep"]["mcc"])
    ax.axvline(m["best_threshold"], color="red", lw=0.8)
    ax.set(xlabel="threshold", ylabel="MCC",
           title=f"MCC vs threshold (best {m['best_mcc']:.3f} at {m['best_threshold']:.3f})")
    _save(fig, out / "mcc.png")

    imp = report["importance"][:20][::-1]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.35 * len(imp) + 1.5), sharey=True)
    for ax, key, title in zip(axes, ("gain", "mean_abs_shap", "permutation_auc_drop"),
                              ("gain", "mean |SHAP|", "permutation AUC drop"), strict=True):
        ax.barh([f["feature"] for f in imp], [f[key] for f in imp])
        ax.set_title(title)
    _save(fig, out / "importance.png")

    order = [f["feature"] for f in report["importance"][:15]]
    cols = list(X_explain.columns)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(order) + 1.5))
    rng = np.random.default_rng(0)
    for row, name in enumerate(reversed(order)):
        j = cols.index(name)
        vals = shap_values[:, j]
        raw = X_explain[name]
        if hasattr(raw, "cat"):
            colour = raw.cat.codes.to_numpy(dtype=float)
        else:
            colour = raw.to_numpy(dtype=float)
        finite = np.isfinite(colour)
        if finite.any():
            lo, hi = np.nanpercentile(colour[finite], [5, 95])
            colour = np.clip((colour - lo) / (hi - lo if hi > lo else 1), 0, 1)
        ax.scatter(vals, row + rng.uniform(-0.3, 0.3, len(vals)), c=np.nan_to_num(colour, nan=0.5),
                   cmap="coolwarm", s=4, alpha=0.6)
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="SHAP value (log-odds of the positive group)",
           title="SHAP summary (colour: feature value, low to high)")
    _save(fig, out / "shap_summary.png")

    corr = report["regression"]["correlation"]
    names = list(corr)
    mat = np.array([[corr[a][b] for b in names] for a in names])
    fig, ax = plt.subplots(figsize=(0.45 * len(names) + 3, 0.45 * len(names) + 2.5))
    im = ax.imshow(mat, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title("feature correlation")
    _save(fig, out / "correlation.png")
