"""The server's business logic, shared by the SageMaker and the V2 routes (no HTTP here).

Holds the loaded predictors, readiness, per-model queues (adaptive batching where the model
gains from it, a bounded count of waiting inputs everywhere), the request timeout and metrics.
Models load in a background thread after the server process starts, so liveness answers at
once and readiness only once every model is loaded and has made one real prediction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mltk.errors import InputError, MltkError
from mltk.predictors.base import merge_outcomes, prepared_inputs
from mltk.serving.batching import Batcher, QueueFull
from mltk.serving.drift import DriftMonitor
from mltk.serving.metrics import Metrics
from mltk.serving.readiness import mark_worker_ready, server_ready, workers_ready
from mltk.serving.settings import ServeSettings

log = logging.getLogger(__name__)


class NotFound(MltkError):
    """Nothing of that name here (HTTP 404)."""


class ModelNotFound(NotFound):
    """No loaded model of that name (HTTP 404)."""


class NotReady(MltkError):
    """Models are still loading, or failed to (HTTP 503)."""


class DataPlane:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.models: dict[str, Any] = {}
        self.loaded = False  # this process's models are loaded and warm
        self.load_error: str | None = None
        self._done_loading = threading.Event()
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._batchers: dict[str, Batcher] = {}
        self._waiting: dict[str, int] = {}
        self._loader: threading.Thread | None = None
        self.last_used: dict[str, float] = {}  # monotonic time of each model's last request
        #: recent rows of two-group models against their training data (GET /drift)
        self.drift = DriftMonitor(settings.drift_window, self.metrics.registry)
        self._schemas: dict[str, tuple[Any, tuple[list[str], Any, list[Any]]]] = {}

    # -- loading ---------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load and warm up every model in a background thread (readiness says when done)."""
        self._loader = threading.Thread(target=self.load, name="mltk-load", daemon=True)
        self._loader.start()

    @property
    def ready(self) -> bool:
        """Every model loaded and warm, in every worker (see mltk.serving.readiness)."""
        return server_ready(self.loaded, self.settings.workers)

    async def wait_own_load(self) -> None:
        """Before the first request of a worker that is still loading: when the other workers
        are ready (the server has said so), wait for this one rather than refuse."""
        if self.loaded or self.load_error or not workers_ready(1):
            return
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self._done_loading.wait, self.settings.timeout)

    def load(self) -> None:
        """Load and warm up every model now; a failure is kept in ``load_error``."""
        from mltk.predictors import parse_model_spec

        try:
            for spec in self.settings.models:
                name, path = parse_model_spec(spec)
                if name in self.models:
                    raise InputError(f"two models are named {name!r}: name them NAME=PATH")
                self.install(name, self.open_model(name, path))
            _freeze_loaded_objects()
            self.loaded = True
            mark_worker_ready()
        except Exception as exc:  # reported by readiness and every request, never a crash
            from mltk.errors import describe

            self.load_error = describe(exc)
            log.error("loading models failed: %s", self.load_error)
        finally:
            self._done_loading.set()

    # -- requests --------------------------------------------------------------------------
    def check_ready(self) -> None:
        if self.load_error:
            raise NotReady(f"models failed to load: {self.load_error}")
        if not self.loaded:
            raise NotReady("models are loading")

    def get(self, name: str | None) -> Any:
        self.check_ready()
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise ModelNotFound(f"{len(self.models)} models are loaded ("
                                f"{', '.join(self.models)}): name one with the "
                                "X-Amzn-SageMaker-Target-Model header")
        try:
            return self.models[name]
        except KeyError:
            raise ModelNotFound(f"no model named {name!r} (loaded: "
                                f"{', '.join(self.models)})") from None

    def schema(self, p: Any) -> tuple[list[str], Any, list[Any]]:
        """(input names, categories or None, output TensorSpecs) of a loaded predictor, made
        once per predictor object rather than on every V2 request."""
        cached = self._schemas.get(p.name)
        if cached is None or cached[0] is not p:
            cached = (p, ([t.name for t in p.inputs()], getattr(p, "categories", None),
                          p.outputs()))
            self._schemas[p.name] = cached
        return cached[1]

    async def infer(self, name: str, items: Sequence[Any]) -> list[Any]:
        """One outcome per input (a record, or the InputError for that input), in order.

        A request goes to the model in slices of at most ``max_batch_size`` inputs, one after
        the other, and holds at most one slice of the queue: a SageMaker batch transform's
        thousands of rows are answered whole, and refused only when the queue is full."""
        p = self.models.get(name)
        if p is None:  # unloaded since the route found it (mltk.serving.repository)
            raise ModelNotFound(f"model {name!r} was unloaded")
        self.last_used[name] = time.monotonic()
        step = max(1, min(self.settings.max_batch_size, self.settings.max_queue))
        held = min(len(items), step)
        if self._waiting[name] + held > self.settings.max_queue:
            raise QueueFull(f"model {name!r} has {self._waiting[name]} inputs waiting "
                            f"(max_queue {self.settings.max_queue})")
        self.drift.observe(name, items)
        if len(items) <= getattr(p, "inline_inputs", 0) and (step == 1 or not p.batchable):
            return self._infer_inline(name, p, items)
        self._waiting[name] += held
        self.metrics.queue_depth.labels(name).inc(held)
        try:
            return await asyncio.wait_for(self._infer_slices(name, p, items, step),
                                          self.settings.timeout)
        finally:
            self._waiting[name] -= held
            self.metrics.queue_depth.labels(name).dec(held)

    def _infer_inline(self, name: str, p: Any, items: Sequence[Any]) -> list[Any]:
        """A small request to a model that scores it in well under a millisecond, with no
        batching to join: prepared and scored here on the event loop. Two thread hops (prepare,
        then the model's thread) would cost more CPU than the work itself."""
        staged = p.prepare_all(items)
        good = prepared_inputs(staged)
        scored: list[Any] = []
        if good:
            self.metrics.observe_batch(name, len(good))
            scored = p.predict_prepared(good)
        return merge_outcomes(staged, scored)

    async def _infer_slices(self, name: str, p: Any, items: Sequence[Any],
                            step: int) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(items), step):
            out += await self._infer(name, p, items[start:start + step])
        return out

    async def _infer(self, name: str, p: Any, items: Sequence[Any]) -> list[Any]:
        from starlette.concurrency import run_in_threadpool

        staged = await run_in_threadpool(p.prepare_all, items)
        good = prepared_inputs(staged)
        scored: list[Any] = []
        if good:
            if p.batchable and self.settings.max_batch_size > 1:
                scored = await self._batcher(name, p).submit(good)
            else:
                self.metrics.batch_size.labels(name).observe(len(good))
                loop = asyncio.get_running_loop()
                scored = await loop.run_in_executor(self._executors[name], p.predict_prepared,
                                                    good)
        return merge_outcomes(staged, scored)

    def _batcher(self, name: str, p: Any) -> Batcher:
        b = self._batchers.get(name)
        if b is None:
            b = Batcher(p.predict_prepared, self.settings.max_batch_size,
                        self.settings.max_latency_ms / 1000.0, self._executors[name],
                        self.metrics.batch_size.labels(name).observe)
            b.start()
            self._batchers[name] = b
        return b

    async def close(self) -> None:
        for b in self._batchers.values():
            await b.stop()
        for ex in self._executors.values():
            ex.shutdown(wait=False)
        if self.loaded:
            import gc

            gc.unfreeze()  # the models may go now (a process that opens another plane)


    # -- models loaded and unloaded live (mltk.serving.repository) --------------------------
    def open_model(self, name: str, path: str) -> Any:
        """The predictor of one model, opened and warmed up (blocking: call it in a thread)."""
        from mltk.predictors import open_predictor

        t0 = time.perf_counter()
        p = open_predictor(path, name, top_k=self.settings.top_k)
        if hasattr(p, "max_pixels") and self.settings.max_pixels:
            p.max_pixels = self.settings.max_pixels
        p.limit_threads(1)  # concurrency comes from batching and workers
        p.warmup()
        seconds = time.perf_counter() - t0
        self.metrics.load_seconds.labels(name).set(seconds)
        log.info("model %s (%s) loaded and warmed up in %.1f s", name, p.kind, seconds)
        return p

    def install(self, name: str, p: Any) -> None:
        """Serve an opened predictor under ``name`` from now on."""
        self._executors[name] = ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}")
        self._waiting[name] = 0
        self.last_used[name] = time.monotonic()
        self.models[name] = p
        self.drift.add(name, p)

    async def discard(self, name: str) -> None:
        """Stop serving ``name``: new requests get 404 at once; the caller has waited for the
        requests in flight (their predictor, executor and batcher stay theirs until now)."""
        self.models.pop(name, None)
        self.last_used.pop(name, None)
        self.drift.remove(name)
        batcher = self._batchers.pop(name, None)
        if batcher is not None:
            await batcher.stop()
        executor = self._executors.pop(name, None)
        if executor is not None:
            executor.shutdown(wait=False)
        self._waiting.pop(name, None)


def _freeze_loaded_objects() -> None:
    """Move every object alive after loading (modules, models, their libraries) out of the
    garbage collector's reach. Otherwise each full collection walks them all: with TensorFlow
    or pandas and XGBoost loaded that is a pause of ~100 ms every few seconds under load, which
    every request in flight waits out (the p99 latency)."""
    import gc

    gc.collect()
    gc.freeze()
