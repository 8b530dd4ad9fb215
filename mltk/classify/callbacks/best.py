"""The best epoch so far (best.keras) and early stopping when it is too long ago.

The metric is ``val_accuracy`` when the run has validation data, else ``accuracy``; higher is
better, and an epoch must beat the best strictly (the first epoch to reach the best value is
the best epoch). Values are compared at the 6 decimals history.csv keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._keras import import_keras
from mltk.classify.callbacks.checkpoint import save_model

keras = import_keras()


def _value(v: Any) -> float | None:
    """A usable metric value (None for a missing or NaN one)."""
    if v is None:
        return None
    v = round(float(v), 6)
    return None if math.isnan(v) else v


class BestModel(keras.callbacks.Callback):
    """``best`` and ``best_epoch`` (from 1) of ``metric``; ``path``: where the model of each
    better epoch is saved (None: not saved, as for synthetic data). ``improved`` says whether
    the last epoch was saved as the best; an epoch without the metric counts as one until
    there is a best."""

    def __init__(self, metric: str = "val_accuracy", path: Path | None = None) -> None:
        super().__init__()
        self.metric = metric
        self.path = path
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.improved = False

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.improved = self.update(epoch + 1, (logs or {}).get(self.metric))
        if self.improved and self.path is not None:
            save_model(self.model, self.path)

    def update(self, epoch: int, value: Any) -> bool:
        """Take epoch ``epoch``'s value; whether it is the best so far."""
        value = _value(value)
        if value is None:
            return self.best is None
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def restore(self, rows: Sequence[Mapping[str, Any]], best: float | None) -> None:
        """The state of a resumed run: its history rows and the best its checkpoint records."""
        self.best, self.best_epoch = best, None
        top = None
        for row in rows:
            v = _value(row.get(self.metric))
            if v is not None and (top is None or v > top):
                top, self.best_epoch = v, row.get("epoch")


class EarlyStopping(keras.callbacks.Callback):
    """Stop once ``patience`` epochs have passed without a better value than ``best``'s
    (``patience`` None or 0: never). ``stopped`` says it did; the model's ``stop_training``
    is set too, as Keras' own EarlyStopping does."""

    def __init__(self, best: BestModel, patience: int | None) -> None:
        super().__init__()
        self.best = best
        self.patience = int(patience or 0)
        self.stopped = False

    def epochs_since_best(self, epoch: int) -> int:
        """Epochs after the best one, at the end of epoch ``epoch`` (from 1)."""
        return 0 if self.best.best_epoch is None else epoch - self.best.best_epoch

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.patience and self.epochs_since_best(epoch + 1) >= self.patience:
            self.stopped = True
            if self.model is not None:
                self.model.stop_training = True
