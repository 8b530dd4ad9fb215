"""Training images per second, with compilation and validation left out.

The clock starts at a step after the first ``skip`` of the process (those trace and compile)
and stops where the training steps of a ``fit`` are all dispatched; at both marks the device is
waited for (the optimizer's step count is read), so the figure counts steps that have run, not
steps queued.
"""

from __future__ import annotations

import time

from mltk.classify.callbacks.steps import DispatchedSteps, optimizer_step

SKIP_STEPS = 2  # steps left out of the figure (tracing and compilation)


class Throughput(DispatchedSteps):
    """``images_per_second`` over the timed steps of every ``fit`` so far (None: none timed)."""

    def __init__(self, global_batch: int, skip: int = SKIP_STEPS) -> None:
        super().__init__()
        self.global_batch = int(global_batch)
        self.skip = int(skip)
        self.local_steps = 0
        self.mark: tuple[int, float] | None = None
        self.timed_steps = 0
        self.timed_seconds = 0.0

    def on_train_begin(self, logs: object = None) -> None:
        super().on_train_begin(logs)
        self.mark = None

    def on_step(self) -> None:
        self.local_steps += 1
        if self.mark is None and self.local_steps > self.skip and self.fit_done < self.fit_steps:
            optimizer_step(self.model)
            self.mark = (self.fit_done, time.perf_counter())

    def on_steps_end(self) -> None:
        if self.mark is not None:
            optimizer_step(self.model)
            self.timed_steps += self.fit_done - self.mark[0]
            self.timed_seconds += time.perf_counter() - self.mark[1]

    @property
    def images_per_second(self) -> float | None:
        if not self.timed_steps or self.timed_seconds <= 0:
            return None
        return self.timed_steps * self.global_batch / self.timed_seconds
