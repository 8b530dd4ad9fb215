"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's ``lr_find``).

A short run from the model's starting weights with the learning rate rising exponentially, one
step at a time, from ``lr_find_min`` to ``lr_find_max`` over ``lr_find_steps`` steps, with the
run's own optimizer, batch, augmentation and loss. The loss of each step is smoothed (an
exponential moving average with fastai's 0.98, debiased); the test stops early once the smoothed
loss exceeds four times its minimum or is not finite. The suggestion is fastai's "valley": the
rate two thirds of the way down the longest stretch over which the smoothed loss keeps falling
(Zach Mueller's rule, fastai 2.4+), a rate low enough to be stable and high enough to learn fast.

It writes ``lr_find.csv`` (step, lr, loss, smoothed_loss) and ``lr_find.png`` (smoothed loss
against the rate on a log scale, the suggestion marked) and leaves no model behind.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._atomic import write_csv
from mltk._keras import import_keras
from mltk.errors import MltkError

log = logging.getLogger("mltk.classify")

SMOOTHING = 0.98
DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum


def rates(lr_min: float, lr_max: float, steps: int) -> list[float]:
    """``steps`` rates rising exponentially from ``lr_min`` to ``lr_max``."""
    if steps < 2:
        return [lr_min]
    ratio = lr_max / lr_min
    return [lr_min * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: Sequence[float], beta: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average (the first value is the first loss)."""
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def diverged(smoothed: Sequence[float], skip: int = 5) -> bool:
    """The last smoothed loss is not finite, or above ``DIVERGED`` x the lowest one so far."""
    last = smoothed[-1]
    if not math.isfinite(last):
        return True
    return len(smoothed) > skip and last > DIVERGED * min(smoothed)


def valley(lrs: Sequence[float], smoothed: Sequence[float]) -> float:
    """fastai's "valley" suggestion: along the longest run of falling loss (longest decreasing
    subsequence), the rate two thirds of the way from its start to its end."""
    n = len(smoothed)
    if n < 3:
        raise MltkError(f"the learning-rate finder needs at least 3 steps, it ran {n}")
    length = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[max_end] < length[i]:
            max_end = i
            max_start = max_end - length[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def run_test(step: Callable[[], float], lrs: Sequence[float]) -> list[dict[str, float]]:
    """Call ``step`` (one training step at the next rate; returns its loss) for each rate,
    stopping on divergence."""
    rows: list[dict[str, float]] = []
    losses: list[float] = []
    for i, lr in enumerate(lrs):
        loss = float(step())
        losses.append(loss if math.isfinite(loss) else float("inf"))
        smoothed = smooth(losses)
        rows.append({"step": i, "lr": lr, "loss": loss, "smoothed_loss": smoothed[-1]})
        if diverged(smoothed):
            log.debug("the loss diverged at lr %.3g (step %d): stopping", lr, i)
            break
    return rows


def suggest(rows: Sequence[Mapping[str, float]]) -> float:
    """The suggested rate for the rows of a test. As fastai does, the first tenth (the
    smoothing's start) and the last five steps (the divergence) are left out when there are
    enough of them."""
    usable = [r for r in rows if math.isfinite(r["smoothed_loss"])]
    if len(usable) > 20:
        usable = usable[len(usable) // 10:-5]
    return valley([r["lr"] for r in usable], [r["smoothed_loss"] for r in usable])


def sweep(trainer: Any, out: Path) -> dict[str, Any]:
    """Run the test for a prepared :class:`~mltk.classify.trainer.Trainer` (its model, batch,
    augmentation and loss, on a schedule of its own); write lr_find.csv/png in ``out``."""
    settings = trainer.settings
    steps = settings.lr_find_steps
    lrs = rates(settings.lr_find_min, settings.lr_find_max, steps)
    keras = import_keras()
    schedule = keras.optimizers.schedules.ExponentialDecay(lrs[0], max(1, steps - 1),
                                                           lrs[-1] / lrs[0])
    model = trainer.compile(schedule)
    train_ds, _ = trainer.datasets(validation=False)
    batches = iter(train_ds)

    def step() -> float:
        logs = model.train_on_batch(*next(batches), return_dict=True)
        return float(logs["loss"])

    log.info("finding a learning rate: up to %d steps from %.2g to %.2g", steps, lrs[0],
             lrs[-1])
    rows = run_test(step, lrs)
    suggestion = suggest(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "lr_find.csv", [{"step": int(r["step"]), **{
        k: float(f"{r[k]:.6g}") for k in ("lr", "loss", "smoothed_loss")}} for r in rows])
    _plot(out / "lr_find.png", rows, suggestion)
    return {"suggested_lr": float(f"{suggestion:.3g}"), "steps": len(rows),
            "min_loss_lr": float(min(rows, key=lambda r: r["smoothed_loss"])["lr"]),
            "diverged": len(rows) < steps, "csv": os.fspath(out / "lr_find.csv"),
            "png": os.fspath(out / "lr_find.png")}


def _plot(path: Path, rows: Sequence[Mapping[str, float]], suggestion: float) -> None:
    try:
        from mltk.classify.plots import lr_find_curve
    except ImportError:  # matplotlib is optional on GPU hosts
        log.warning("matplotlib is not installed: no %s", path.name)
        return
    lr_find_curve(path, [r["lr"] for r in rows], [r["smoothed_loss"] for r in rows],
                  suggestion)


def find_lr(settings: Any, out: str | os.PathLike, data: Sequence[str] | None = None,
            val: Sequence[str] | None = None, split: str | None = None,
            synthetic: bool = False, strict_data: bool = False) -> dict[str, Any]:
    """The learning-rate range test on its own: the suggestion, and the files in ``out``.

    ``settings``: a :class:`~mltk.classify.settings.TrainSettings` (or a mapping of the
    ``train`` settings)."""
    from mltk.classify import interrupts
    from mltk.classify.trainer import Trainer

    with interrupts.StopRequests():
        trainer = Trainer.prepare(settings, data, val, split, synthetic, strict_data)
        result = sweep(trainer, Path(out))
    result["learning_rate"] = float(f"{result['suggested_lr'] / trainer.lr_scale:.6g}")
    result["lr_reference_batch"] = trainer.settings.lr_reference_batch
    result["recipe"] = trainer.settings.recipe
    return result
