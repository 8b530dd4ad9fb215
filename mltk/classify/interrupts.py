"""SIGINT and SIGTERM during training: stop at the next safe point, with a checkpoint.

Kubernetes stops a pod with SIGTERM and kills it 30 s later; a person presses Ctrl-C. Either
way a run should leave a checkpoint (when a step has run) and exit 130 (SIGINT) or 143
(SIGTERM). Raising from the signal handler itself could land anywhere, in the middle of writing
a checkpoint or of Keras' own bookkeeping, so once the first step has been dispatched the
handler only records the signal; training checks it at each batch's start (training and
validation alike) and after writing each epoch's files, and raises :class:`Interrupted` there.
Before the first step (loading data, building the model, tracing the first step) nothing would
be lost, so the handler raises at once and compilation is cut short.

A SIGINT that is ignored when training starts (``nohup``, a background shell job) stays
ignored: only SIGTERM is then handled.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("mltk.classify")

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training was stopped by a signal; ``signum`` says which (exit status 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class StopRequests:
    """A context manager that turns SIGINT and SIGTERM into :class:`Interrupted`.

    ``defer()`` switches from raising at once to recording the signal; ``check()`` raises a
    recorded one (call it at safe points); ``finish()`` makes later signals only recorded, so
    that writing the final checkpoint cannot be interrupted. Outside the main thread (where
    Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self.deferring = False
        self.finishing = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in HANDLED:
            current = signal.getsignal(signum)
            if current == signal.SIG_IGN:
                log.debug("%s is ignored by this process: leaving it ignored",
                          signal.Signals(signum).name)
                continue
            self._previous[signum] = current
            signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler installed for SIGINT and SIGTERM while the context is active."""
        if self.pending is None:
            self.pending = signum
        if self.finishing:
            return
        if self.deferring:
            log.debug("%s received: stopping at the next safe point",
                      signal.Signals(signum).name)
            return
        raise Interrupted(signum)

    def defer(self) -> None:
        """From now on, record signals and let :meth:`check` raise them."""
        self.deferring = True

    def finish(self) -> None:
        """From now on, only record signals (the run is writing its last files)."""
        self.finishing = True

    def check(self) -> None:
        """Raise :class:`Interrupted` for a recorded signal (a safe point)."""
        if self.pending is not None and not self.finishing:
            raise Interrupted(self.pending)
