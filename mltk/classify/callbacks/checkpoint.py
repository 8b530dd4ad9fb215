"""The checkpoint a run resumes from, and last.keras.

``checkpoint/latest.weights.h5`` holds the model's and the optimizer's state (written to a
temporary name and renamed), ``checkpoint/state.json`` the step, the global batch, the best
value and the history; both are written every ``every`` steps and at each epoch's end, when
last.keras is saved too. The position in the run is the optimizer's step count, so a resumed
run continues mid-epoch with the learning-rate schedule where it was. Only the chief of a
multi-worker run writes.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from mltk._atomic import atomic_path, write_json
from mltk.classify import run_folder
from mltk.classify.callbacks.steps import DispatchedSteps, optimizer_step
from mltk.errors import ConfigError, InputError, describe

log = logging.getLogger("mltk.classify")


def save_model(model: Any, path: Path) -> None:
    """``model`` as a ``.keras`` file, written atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


class Checkpointer(DispatchedSteps):
    """Checkpoints of the run in ``out``. ``history`` and ``best`` (the :class:`History` and
    :class:`BestModel` of the run) give what state.json records besides the step."""

    def __init__(self, out: Path, every: int | None, steps_per_epoch: int, global_batch: int,
                 history: Any, best: Any, is_chief: bool = True) -> None:
        super().__init__()
        self.out = Path(out)
        self.folder = self.out / run_folder.CHECKPOINT_DIR
        self.every = int(every or 0)
        self.steps_per_epoch = int(steps_per_epoch)
        self.global_batch = int(global_batch)
        self.history = history
        self.best = best
        self.is_chief = is_chief
        self.since = 0

    def on_step(self) -> None:
        self.since += 1
        if self.every and self.since >= self.every:
            self.save()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        super().on_epoch_end(epoch, logs)
        self.save()
        self.save_last()

    def save(self) -> None:
        """The checkpoint, now."""
        self.since = 0
        if not self.is_chief:
            return
        model = self.model
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".latest-{os.getpid()}.weights.h5"  # Keras wants this suffix
        model.save_weights(tmp)
        os.replace(tmp, self.folder / run_folder.WEIGHTS)
        step = optimizer_step(model)
        write_json(self.folder / run_folder.STATE, {
            "step": step, "epoch": step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch, "global_batch": self.global_batch,
            "best": self.best.best, "best_metric": self.best.metric,
            "history": self.history.rows, "time": time.time()})
        log.debug("checkpoint at step %d", step)

    def save_last(self) -> None:
        """last.keras, now."""
        if self.is_chief:
            save_model(self.model, self.out / "last.keras")

    def restore(self) -> int:
        """Load the checkpoint into the model (set with ``set_model``; there must be a
        checkpoint: see :func:`~mltk.classify.run_folder.resume_problem`), and the history and
        best into their callbacks; returns the step. A damaged checkpoint is an
        :class:`InputError` naming its file."""
        problem = run_folder.resume_problem(self.out)
        if problem:
            raise InputError(problem)
        state = run_folder.read_state(self.folder / run_folder.STATE)
        if state.get("global_batch") != self.global_batch:
            raise ConfigError(f"`resume`: the checkpoint was trained with a global batch of "
                              f"{state.get('global_batch')}, this run has {self.global_batch} "
                              "(the same `gpus` and `batch_per_replica` are needed)")
        model = self.model
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        _load_weights(model, self.folder / run_folder.WEIGHTS)
        self.history.rows = list(state.get("history") or [])
        self.best.restore(self.history.rows, state.get("best"))
        return optimizer_step(model)


def _load_weights(model: Any, weights: Path) -> None:
    from mltk.classify.models import check_weights_file

    try:
        check_weights_file(weights)
        model.load_weights(weights)
    except InputError as exc:
        raise InputError(f"{exc}; `overwrite` starts the run over") from None
    except Exception as exc:  # h5py's OSError for a damaged file, ValueError, KeyError...
        raise InputError(f"{weights}: damaged checkpoint weights ({describe(exc)}); "
                         f"`overwrite` starts the run over") from None
