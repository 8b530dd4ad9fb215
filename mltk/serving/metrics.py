"""Prometheus metrics of the server (prometheus-client; multiprocess mode with several workers).

With ``--workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so
every worker writes its samples there and ``/metrics`` in any worker reports the sum.
"""

from __future__ import annotations

import os

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                    60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
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

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe(self, model: str, protocol: str, status: int, seconds: float) -> None:
        self.requests.labels(model, protocol, str(status)).inc()
        self.latency.labels(model, protocol).observe(seconds)

