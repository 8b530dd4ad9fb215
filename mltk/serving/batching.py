"""Adaptive batching: concurrent requests gathered into one model call.

Requests put prepared inputs on a bounded queue; one collector per model takes the first waiting
input, then keeps gathering until the batch holds ``max_batch_size`` inputs or ``max_latency``
seconds have passed since that first input, whichever comes first, and scores the batch in the
model's own thread (one thread per model: Keras models are not re-entrant). The data plane
bounds the inputs waiting per model: past ``max_queue`` a request is refused at once
(:class:`QueueFull`, HTTP 503) rather than left to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class QueueFull(Exception):
    """The model's queue holds ``max_queue`` inputs already."""


_drain_hooks: list[Callable[[], None]] = []
_shutting_down = False


def drain_all() -> None:
    """Shutting down: every batcher scores what it holds at once and stops waiting for more.

    Called from the SIGTERM handler (any thread), so in-flight requests finish within the
    graceful period even with a long ``max_latency``. A batcher made after this call (the first
    request of a model was still being prepared when SIGTERM came) starts draining at once.
    """
    global _shutting_down
    _shutting_down = True
    for hook in list(_drain_hooks):
        hook()


class Batcher:
    def __init__(self, score: Callable[[Sequence[Any]], list[Any]], max_batch_size: int,
                 max_latency: float, executor: ThreadPoolExecutor,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.score = score
        self.max_batch_size = max(1, max_batch_size)
        self.max_latency = max(0.0, max_latency)
        self.executor = executor
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._draining: asyncio.Event | None = None
        self._hook: Callable[[], None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._draining = asyncio.Event()
        self._task = loop.create_task(self._collect())
        draining = self._draining
        self._hook = lambda: loop.call_soon_threadsafe(draining.set)
        _drain_hooks.append(self._hook)
        if _shutting_down:
            draining.set()

    async def stop(self) -> None:
        if self._hook in _drain_hooks:
            _drain_hooks.remove(self._hook)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """Outcomes for ``items`` (scored with whatever else is waiting)."""
        assert self._queue is not None, "Batcher.start() not called"
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            fut = loop.create_future()
            self._queue.put_nowait((item, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _gather(self) -> list[tuple[Any, asyncio.Future]]:
        """The next batch: the first waiting input and what arrives before the deadline."""
        assert self._queue is not None and self._draining is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_latency
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._draining.is_set():
                break
            getter = asyncio.ensure_future(self._queue.get())
            drained = asyncio.ensure_future(self._draining.wait())
            done, _ = await asyncio.wait({getter, drained}, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            if getter in done:
                batch.append(getter.result())
            else:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if getter.done() and not getter.cancelled():
                    batch.append(getter.result())
                break
        return batch

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [(x, f) for x, f in batch if not f.done()]  # cancelled by a timeout
            if not live:
                continue
            if self.on_batch:
                self.on_batch(len(live))
            try:
                outcomes = await loop.run_in_executor(self.executor, self.score,
                                                      [x for x, _ in live])
            except Exception as exc:  # the model failed: every caller gets the error
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for (_, f), outcome in zip(live, outcomes, strict=True):
                if not f.done():
                    f.set_result(outcome)
