"""A function called at each step, and the safe points where a signal stops the run.

:class:`SafePoint` comes last among the run's callbacks, so that a SIGINT or SIGTERM received
during a step (recorded by :class:`~mltk.classify.interrupts.StopRequests`) stops the run
only once that step's bookkeeping, a due checkpoint included, is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mltk._keras import import_keras
from mltk.classify.callbacks.steps import DispatchedSteps, StepCounter

keras = import_keras()


class Progress(DispatchedSteps):
    """``on_step(step, total)`` after each step dispatched (``step`` from ``counter``)."""

    def __init__(self, counter: StepCounter, total: int,
                 on_step: Callable[[int, int], None] | None) -> None:
        super().__init__()
        self.counter = counter
        self.total = int(total)
        self.callback = on_step

    def on_step(self) -> None:
        if self.callback is not None:
            self.callback(self.counter.step, self.total)


class SafePoint(keras.callbacks.Callback):
    """``stops.check()`` at each training and validation batch's start."""

    def __init__(self, stops: Any) -> None:
        super().__init__()
        self.stops = stops

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.stops.check()  # raises Interrupted for a SIGINT or SIGTERM received

    def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.stops.check()
