"""What a training run returns: :class:`TrainingSummary` (summary.json, the CLI's output)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainingSummary:
    """The run's figures; :meth:`to_dict` is summary.json, keys in this order.

    ``stop_reason`` is ``completed``, ``early_stopping`` or ``interrupted`` (``signal`` then
    names the signal, or is None for a read error); ``checkpoint`` says an interrupted run can
    be resumed. ``images_per_second`` leaves compilation and validation out (None when too few
    steps ran to time); ``best`` is the best ``best_metric``, reached at ``best_epoch``;
    ``final`` the last epoch's history row.
    """

    run_dir: str
    model: str
    classes: int
    backend: str
    devices: list[str]
    replicas: int
    workers: int
    precision: str
    accelerator: str
    global_batch: int
    recipe: str
    optimizer: str
    learning_rate: float
    train_records: int | None
    val_records: int | None
    steps: int
    steps_per_epoch: int
    epochs: float
    resumed_from_step: int
    interrupted: bool
    signal: str | None
    stop_reason: str
    checkpoint: bool
    seconds: float
    images_per_second: float | None
    best_metric: str
    best: float | None
    best_epoch: int | None
    early_stopping: int | None
    final: dict[str, Any] | None
    synthetic: bool
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
