"""Training curves and the confusion-matrix heatmap (PNG, written atomically)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._plotting import pyplot, save_png


def training_curves(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Loss and accuracy per epoch, training and validation."""
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = [row.get(key) for row in history]
            if any(v not in (None, "") for v in values):
                ax.plot(epochs, [float("nan") if v in (None, "") else v for v in values],
                        style, marker="o", ms=3, label=key)
        ax.set(xlabel="epoch", title=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    save_png(fig, path)


def lr_find_curve(path: Path, lrs: Sequence[float], smoothed: Sequence[float],
                  suggestion: float) -> None:
    """The learning-rate range test: smoothed loss against the rate (log scale), the
    suggested rate marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(lrs, smoothed, "-", lw=1.5, label="smoothed loss")
    ax.axvline(suggestion, color="tab:red", ls="--", lw=1, label=f"suggested {suggestion:.2g}")
    ax.set_xscale("log")
    finite = [v for v in smoothed if v == v and v != float("inf")]
    if finite:  # keep the divergence from flattening the interesting part
        low, top = min(finite), min(max(finite), 1.25 * finite[0])
        ax.set_ylim(low - 0.05 * abs(low), top if top > low else low + 1e-3)
    ax.set(xlabel="learning rate", ylabel="loss", title="Learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_png(fig, path)


def confusion_heatmap(path: Path, matrix: Any, classes: Sequence[str]) -> None:
    """Row-normalised confusion matrix; readable from 2 to a few hundred classes (the figure
    grows with the class count, and tick labels shrink and thin out)."""
    import numpy as np

    plt = pyplot()
    cm = np.asarray(matrix, dtype=float)
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = min(40.0, max(5.0, 0.14 * n + 2))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the true class")
    step = max(1, int(np.ceil(n / 250)))
    ticks = np.arange(0, n, step)
    fontsize = 9 if n <= 20 else max(3, 8 - n // 50)
    ax.set_xticks(ticks, [classes[i] for i in ticks], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [classes[i] for i in ticks], fontsize=fontsize)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised)")
    save_png(fig, path, dpi=110 if n <= 60 else 150)
