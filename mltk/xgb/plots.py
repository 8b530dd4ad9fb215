"""PNG plots of an xgb-analyze report (matplotlib, Agg backend, written atomically).

One function per plot, so that the analysis can run each as an optional stage; a figure is
closed even when drawing it fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mltk._plotting import pyplot
from mltk._plotting import save_png as _save


@contextlib.contextmanager
def _figure(path: Path, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    plt = pyplot()
    fig, ax = plt.subplots(**kwargs)
    try:
        yield fig, ax
        _save(fig, path)
    finally:
        plt.close(fig)


def roc(out: Path, report: dict[str, Any], y_test: Any, p_test: Any) -> None:
    from sklearn.metrics import roc_curve

    m = report["metrics"]
    fpr, tpr, _ = roc_curve(y_test, p_test)
    with _figure(out / "roc.png", figsize=(4.5, 4.5)) as (_, ax):
        ax.plot(fpr, tpr, label=f"AUC {m['roc_auc']:.3f}")
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate",
               title="ROC (test set)")
        ax.legend(loc="lower right")


def mcc(out: Path, report: dict[str, Any]) -> None:
    m = report["metrics"]
    with _figure(out / "mcc.png", figsize=(5.5, 3.5)) as (_, ax):
        ax.plot(m["sweep"]["thresholds"], m["sweep"]["mcc"])
        ax.axvline(m["best_threshold"], color="red", lw=0.8)
        ax.set(xlabel="threshold", ylabel="MCC",
               title=f"MCC vs threshold (best {m['best_mcc']:.3f} at "
                     f"{m['best_threshold']:.3f})")


def importance(out: Path, report: dict[str, Any]) -> None:
    """Gain, mean |SHAP| and permutation AUC drop side by side (the ones computed)."""
    imp = report["importance"][:20][::-1]
    panels = [(key, title) for key, title in (("gain", "gain"), ("mean_abs_shap", "mean |SHAP|"),
                                              ("permutation_auc_drop", "permutation AUC drop"))
              if imp and all(f[key] is not None for f in imp)]
    if not panels:
        raise ValueError("no importance measure was computed")
    with _figure(out / "importance.png", nrows=1, ncols=len(panels), squeeze=False,
                 figsize=(13 * len(panels) / 3, 0.35 * len(imp) + 1.5), sharey=True
                 ) as (_, axes):
        for ax, (key, title) in zip(axes[0], panels, strict=True):
            ax.barh([f["feature"] for f in imp], [f[key] for f in imp])
            ax.set_title(title)


def shap_summary(out: Path, report: dict[str, Any], shap_values: Any, X_explain: Any) -> None:
    import numpy as np

    order = [f["feature"] for f in report["importance"][:15]]
    cols = list(X_explain.columns)
    rng = np.random.default_rng(0)
    with _figure(out / "shap_summary.png", figsize=(7, 0.4 * len(order) + 1.5)) as (_, ax):
        for row, name in enumerate(reversed(order)):
            vals = shap_values[:, cols.index(name)]
            ax.scatter(vals, row + rng.uniform(-0.3, 0.3, len(vals)),
                       c=_colour(X_explain[name]), cmap="coolwarm", s=4, alpha=0.6)
        ax.set_yticks(range(len(order)), list(reversed(order)))
        ax.axvline(0, color="grey", lw=0.8)
        ax.set(xlabel="SHAP value (log-odds of the positive group)",
               title="SHAP summary (colour: feature value, low to high)")


def _colour(raw: Any) -> Any:
    """Feature values scaled to 0..1 between their 5th and 95th percentiles (missing: 0.5)."""
    import numpy as np

    colour = raw.cat.codes.to_numpy(dtype=float) if hasattr(raw, "cat") else \
        raw.to_numpy(dtype=float)
    finite = np.isfinite(colour)
    if finite.any():
        lo, hi = np.nanpercentile(colour[finite], [5, 95])
        colour = np.clip((colour - lo) / (hi - lo if hi > lo else 1), 0, 1)
    return np.nan_to_num(colour, nan=0.5)


def correlation(out: Path, report: dict[str, Any]) -> None:
    import numpy as np

    corr = report["regression"]["correlation"]
    if not corr:
        raise ValueError("the correlation matrix was not computed")
    names = list(corr)
    mat = np.array([[corr[a][b] for b in names] for a in names])
    with _figure(out / "correlation.png",
                 figsize=(0.45 * len(names) + 3, 0.45 * len(names) + 2.5)) as (fig, ax):
        im = ax.imshow(mat, cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        fig.colorbar(im, ax=ax, shrink=0.7)
        ax.set_title("feature correlation")
