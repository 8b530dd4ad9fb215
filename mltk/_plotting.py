"""Matplotlib on the Agg backend, and PNGs written atomically (shared by every report)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mltk._atomic import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path, dpi: int = 110) -> None:
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(os.fspath(tmp), format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
