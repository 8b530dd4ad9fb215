"""Counting the training steps Keras dispatches, without waiting for the device.

An ``on_train_batch_end`` hook would make Keras turn every step's logs into Python numbers, a
wait for the device after each step that leaves it idle while the host dispatches the next one.
Batch ``b`` starting means ``b`` steps of this ``fit`` were dispatched; the last one is counted
where the training part of the ``fit`` ends (validation's start or the epoch's end, whichever
comes first). :class:`DispatchedSteps` turns Keras' hooks into :meth:`~DispatchedSteps.on_step`
and :meth:`~DispatchedSteps.on_steps_end`; :class:`StepCounter` counts the run's steps with it.
"""

from __future__ import annotations

from typing import Any

from mltk._keras import import_keras

keras = import_keras()


def optimizer_step(model: Any) -> int:
    """The optimizer's step count; reading it waits until the dispatched steps have run (JAX
    and TensorFlow run asynchronously), and syncs JAX's trainer state back into the model."""
    import numpy as np

    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
    return int(np.asarray(model.optimizer.iterations))


class DispatchedSteps(keras.callbacks.Callback):
    """Base class: :meth:`on_step` once per training step dispatched, :meth:`on_steps_end` once
    all of a ``fit``'s training steps are. ``fit_steps`` comes from Keras' ``params``."""

    def __init__(self) -> None:
        super().__init__()
        self.fit_steps = 0
        self.fit_done = 0
        self.fit_open = False

    def on_train_begin(self, logs: Any = None) -> None:
        self.fit_steps = int((self.params or {}).get("steps") or 0)
        self.fit_done, self.fit_open = 0, True

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if batch:
            self._dispatched()

    def on_test_begin(self, logs: Any = None) -> None:
        self._close()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._close()

    def on_step(self) -> None:
        """One more training step of this ``fit`` was dispatched (``fit_done`` counts it)."""

    def on_steps_end(self) -> None:
        """Every training step of this ``fit`` is dispatched."""

    def _dispatched(self) -> None:
        self.fit_done += 1
        self.on_step()

    def _close(self) -> None:
        if not self.fit_open:
            return
        self.fit_open = False
        if self.fit_done < self.fit_steps:
            self._dispatched()
        self.on_steps_end()


class StepCounter(DispatchedSteps):
    """The run's step count (``step``, from ``start`` on a resumed run) and this process's
    (``local_steps``). The first step also makes a signal wait for a safe point:
    ``stops.defer()`` (see :mod:`mltk.classify.interrupts`)."""

    def __init__(self, start: int = 0, stops: Any = None) -> None:
        super().__init__()
        self.step = int(start)
        self.local_steps = 0
        self.stops = stops

    def on_step(self) -> None:
        if self.stops is not None:
            self.stops.defer()  # a step has run: a signal now waits for a checkpoint
        self.step += 1
        self.local_steps += 1
