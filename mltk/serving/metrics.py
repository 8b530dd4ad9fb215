"""Prometheus metrics of the server (prometheus-client; multiprocess mode with several workers).

With ``--workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so
every worker writes its samples there and ``/metrics`` in any worker reports the sum.
"""

from __future__ import annotations

import os
from collections.abc import Container
from typing import Any

#: The ``model`` label of requests naming no model that is served (a label per name that a
#: client makes up would grow /metrics without bound).
UNKNOWN_MODEL = "-"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                    60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        #: the names that get their own ``model`` label (None: any name)
        self.known_models: Container[str] | None = None
        # Our own registry: several apps in one process (tests) must not collide.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mltk_requests", "Requests by model, protocol and status.",
                                ["model", "protocol", "status"], registry=r)
        self.latency = Histogram("mltk_request_seconds", "Request latency in seconds.",
                                 ["model", "protocol"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("mltk_batch_size", "Inputs per model call.", ["model"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("mltk_queue_depth", "Inputs waiting or being scored.",
                                 ["model"], registry=r, multiprocess_mode="livesum")
        self.load_seconds = Gauge("mltk_model_load_seconds", "Seconds to load and warm up a "
                                  "model.", ["model"], registry=r, multiprocess_mode="max")
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._batch_children: dict[str, Any] = {}
        self.decode_pixels = Gauge("mltk_decode_pixels", "Image pixels being decoded (the decode "
                                   "budget in use).", registry=r, multiprocess_mode="livesum")
        self.decode_peak = Gauge("mltk_decode_pixels_peak", "Most image pixels decoded at once "
                                 "in one worker.", registry=r, multiprocess_mode="max")

    def decode_changed(self, budget: Any) -> None:
        """Follow the decode budget (an mltk._imaging.PixelBudget) of this worker."""
        self.decode_pixels.set(budget.in_flight)
        self.decode_peak.set(budget.peak)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe(self, model: str, protocol: str, status: int, seconds: float) -> None:
        if self.known_models is not None and model not in self.known_models:
            model = UNKNOWN_MODEL
        key = (model, protocol, status)
        children = self._children.get(key)
        if children is None:  # .labels() looks up and locks: once per label set, not per call
            children = (self.requests.labels(model, protocol, str(status)),
                        self.latency.labels(model, protocol))
            if self.known_models is not None:  # a bounded set of names: kept
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, model: str, size: int) -> None:
        """One model call of ``size`` inputs (``model``: a served model's name)."""
        child = self._batch_children.get(model)
        if child is None:
            child = self._batch_children[model] = self.batch_size.labels(model)
        child.observe(size)

