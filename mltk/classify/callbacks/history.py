"""One row per epoch, kept in memory and written as history.csv and curves.png after each.

A row is the epoch (from 1), the optimizer's step count, the epoch's logs (6 decimals), the
learning rate, the epoch's seconds and its images per second (validation included). A resumed
run starts from the rows its checkpoint holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._atomic import write_csv
from mltk._keras import import_keras
from mltk.classify.callbacks.steps import optimizer_step

keras = import_keras()
log = logging.getLogger("mltk.classify")


class History(keras.callbacks.Callback):
    """``rows``: one dict per epoch. ``folder`` None (a worker other than the chief): nothing is
    written."""

    def __init__(self, folder: Path | None, global_batch: int,
                 rows: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__()
        self.folder = folder
        self.global_batch = int(global_batch)
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.rows.append(self.row(epoch, logs or {}, time.perf_counter() - self.started))
        self.write()

    def row(self, epoch: int, logs: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """The row of epoch ``epoch`` (from 0, as Keras counts) from its logs."""
        import numpy as np

        model = self.model
        steps = int((self.params or {}).get("steps") or 0)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": optimizer_step(model)}
        for key, value in logs.items():
            if value is not None:
                row[key] = round(float(value), 6)
        row["lr"] = float(f"{float(np.asarray(model.optimizer.learning_rate)):.6g}")
        row["seconds"] = round(seconds, 2)
        row["images_per_second"] = (round(steps * self.global_batch / seconds, 1) if seconds
                                    else None)
        return row

    def write(self) -> None:
        """history.csv and curves.png (the latter only where matplotlib is installed)."""
        if self.folder is None or not self.rows:
            return
        write_csv(self.folder / "history.csv", self.rows)
        try:
            from mltk.classify.plots import training_curves

            training_curves(self.folder / "curves.png", self.rows)
        except ImportError:  # matplotlib is optional on GPU hosts
            log.warning("matplotlib is not installed: no curves.png")
