"""``train``: a training run from settings and data into a run folder, in four steps.

Check the run folder (:mod:`~mltk.classify.run_folder`), prepare the :class:`Trainer` (devices,
data, class weights), find the learning rate when ``learning_rate`` is ``auto``
(:mod:`~mltk.classify.lr_finder`), and fit. The settings are a
:class:`~mltk.classify.settings.TrainSettings` (``mltk.settings.load("train", ...)``); a plain
mapping is checked into one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk.classify import interrupts, run_folder
from mltk.classify.settings import TrainSettings, as_settings
from mltk.classify.summary import TrainingSummary
from mltk.classify.trainer import Trainer

log = logging.getLogger("mltk.classify")


def train(settings: TrainSettings | Mapping[str, Any], out: str | os.PathLike,
          data: Sequence[str] | None = None, val: Sequence[str] | None = None,
          split: str | None = None, synthetic: bool = False, resume: bool = False,
          overwrite: bool = False, on_step: Callable[[int, int], None] | None = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          strict_data: bool = False, callbacks: Sequence[Any] = ()) -> TrainingSummary:
    """Train per ``settings`` into the run folder ``out``; returns the run's summary.

    SIGINT and SIGTERM are handled while it runs: once training has begun, the run stops at the
    next safe point and returns with ``interrupted`` and ``signal`` set in the summary (and a
    checkpoint when a step has run); during the set-up before it (devices, data, the model, the
    learning-rate finder), :class:`~mltk.classify.interrupts.Interrupted` is raised.

    ``resume`` needs a checkpoint in ``out`` (an error names what is missing; with
    ``overwrite`` a run without one starts over). ``strict_data``: a damaged record is an error
    instead of a warning and the rest of its file skipped. ``on_step``, ``on_epoch`` and
    ``callbacks``: see :meth:`Trainer.fit`.
    """
    settings = as_settings(settings)
    out = Path(out)
    with interrupts.StopRequests() as stops:
        resume = run_folder.decide_resume(out, resume, overwrite)
        trainer = Trainer.prepare(settings, data, val, split, synthetic, strict_data)
        if trainer.runtime.is_chief:  # other workers of a multi-worker run share its folder
            run_folder.check_out(out, resume, overwrite)
        if trainer.settings.learning_rate == "auto":
            trainer = trainer.with_learning_rate(_auto_learning_rate(trainer, out, resume))
        if resume:
            run_folder.check_resume_config(out, trainer.settings)
        return trainer.fit(out, resume=resume, on_step=on_step, on_epoch=on_epoch,
                           callbacks=callbacks, stops=stops)


def _auto_learning_rate(trainer: Trainer, out: Path, resume: bool) -> float:
    """learning_rate: auto. A resumed run keeps the rate it was given; a new one runs the
    finder and takes its suggestion (recorded at the reference batch, as configured)."""
    saved = run_folder.saved_config(out) if resume else None
    if saved is not None and isinstance(saved.get("learning_rate"), (int, float)):
        return float(saved["learning_rate"])
    from mltk.classify.lr_finder import sweep

    result = sweep(trainer, out)
    rate = float(f"{result['suggested_lr'] / trainer.lr_scale:.6g}")
    log.info("learning rate from the finder: %.3g (learning_rate %.6g at the reference batch "
             "of %s)", result["suggested_lr"], rate, trainer.settings.lr_reference_batch)
    return rate
