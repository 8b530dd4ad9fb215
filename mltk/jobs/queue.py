"""Celery on Redis: the task that runs one chunk, how chunks are enqueued, the worker.

Settings for long tasks, as Celery advises: late acknowledgement (a chunk is acknowledged when
it is done, so a lost worker's chunk is delivered again), requeue when a worker is lost,
prefetch of one task, a visibility timeout longer than the longest chunk (set in the broker's
transport options, where Celery's Redis transport reads it), retries with backoff for transient
errors (a broker or file system that went away), none for bad input. Chunks take references
(the job folder and a chunk number), never payloads; their output goes to the job folder. Each
chunk has a time limit (the job's ``chunk_seconds``: mltk's own alarm in the worker process,
Celery's soft and hard limits a little later as a backstop).

A broker URL's password is never shown (:func:`redact`) nor stored in job.json: whoever uses
the broker (a worker, ``mltk jobs wait``) takes it from its own --broker or MLTK_BROKER_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from mltk.errors import MltkError
from mltk.jobs import core
from mltk.jobs.folder import JobFolder
from mltk.jobs.urls import redact

BROKER_ENV = "MLTK_BROKER_URL"
QUEUE = "mltk"
TASK = "mltk.run_chunk"
REGISTRY = "mltk:jobs"  # Redis hash: job id -> job folder
VISIBILITY_TIMEOUT = 6 * 3600  # longer than any chunk; dead workers are found by their leases
MAX_RETRIES = 3
TRANSIENT = core.TRANSIENT
SOFT_GRACE = 5.0  # Celery's soft time limit: this long after mltk's own
HARD_GRACE = 60.0  # Celery's hard limit (the process is killed): this long after

_apps: dict[str, Any] = {}


class BrokerError(MltkError):
    """The broker cannot be reached or refused us."""


def broker_url(given: str | None = None) -> str | None:
    return given or os.environ.get(BROKER_ENV) or None


def hide_password(text: str, url: str | None) -> str:
    """``text`` (a library's error message) with ``url`` and its password redacted."""
    from urllib.parse import urlsplit

    if not url:
        return text
    text = text.replace(url, redact(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def app_for(broker: str) -> Any:
    """The Celery app for ``broker`` (one per URL and process), with the mltk task."""
    if broker in _apps:
        return _apps[broker]
    from celery import Celery

    app = Celery("mltk", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=QUEUE, task_serializer="json", result_serializer="json",
        accept_content=["json"], result_expires=24 * 3600, task_track_started=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
        worker_hijack_root_logger=False, worker_send_task_events=False,
    )
    _register(app)
    _apps[broker] = app
    return app


def _register(app: Any) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    @app.task(name=TASK, bind=True, max_retries=MAX_RETRIES)
    def run_chunk(self: Any, job_dir: str, index: int) -> str:
        attempt = self.request.retries + 1
        try:
            outcome = core.run_chunk(job_dir, index, attempt, final=False,
                                     roots=worker_roots(app))
        except SoftTimeLimitExceeded:
            limit = (self.request.timelimit or (None, None))[1]
            core.mark_failed(job_dir, index, core.time_limit_message(
                float(limit or 0) - SOFT_GRACE), attempt)
            return "failed"
        except TRANSIENT as exc:
            if self.request.retries < self.max_retries:
                raise self.retry(exc=exc, countdown=min(60, 2 ** attempt)) from exc
            core.mark_failed(job_dir, index, exc, attempt)
            return "failed"
        except Exception as exc:  # a bug or bad data: retrying would fail the same way
            core.mark_failed(job_dir, index, exc, attempt)
            return "failed"
        _requeue_stale(app, job_dir)
        return outcome


def worker_roots(app: Any) -> tuple[str, ...]:
    """The job roots this worker keeps every chunk to: its own (``mltk worker --job-roots``,
    else env MLTK_JOB_ROOTS), never a job's."""
    from mltk.jobs.roots import ROOTS_ENV, parse_roots

    given = app.conf.get("mltk_job_roots")
    if given is None:
        given = parse_roots(ROOTS_ENV, os.environ.get(ROOTS_ENV, ""))
    return tuple(given)


def _requeue_stale(app: Any, job_dir: str) -> None:
    folder = JobFolder(job_dir)
    try:
        job = folder.load()
    except MltkError:
        return
    stale = core.stale_chunks(folder, job)
    if stale:
        enqueue(app, folder, stale, _chunk_seconds(job))


def _chunk_seconds(job: dict[str, Any]) -> float:
    return float(job.get("chunk_seconds") or core.DEFAULT_CHUNK_SECONDS)


def enqueue(app: Any, folder: JobFolder, chunks: Iterable[int],
            chunk_seconds: float | None = None) -> int:
    """Send one task per chunk (stale leases are dropped first), with Celery's time limits a
    little past the job's own (``chunk_seconds``, default: job.json's); returns how many."""
    if chunk_seconds is None:
        chunk_seconds = _chunk_seconds(folder.load())
    n = 0
    for i in chunks:
        folder.drop_lease(i)
        app.send_task(TASK, args=[str(folder.path), int(i)], queue=QUEUE,
                      soft_time_limit=chunk_seconds + SOFT_GRACE,
                      time_limit=chunk_seconds + HARD_GRACE)
        n += 1
    return n


class Supervisor:
    """Finds the chunks that no live worker will run, and enqueues them again.

    Two ways a chunk is lost when a worker dies: it was running (its lease goes stale), or it
    was only reserved — prefetched by the dead worker but not started, so it has no lease and
    its message comes back only after the visibility timeout. The second kind shows as a chunk
    without part, lease or failure while the queue is empty for longer than a lease time.
    """

    def __init__(self, folder: JobFolder, job: dict[str, Any], broker: str) -> None:
        self.folder, self.job, self.broker = folder, job, broker
        self.app = app_for(broker)
        self.lease = float(job.get("lease_seconds") or core.DEFAULT_LEASE_SECONDS)
        self._idle_since: dict[int, float] = {}

    def tick(self) -> list[int]:
        """Re-enqueue the lost chunks now; returns their numbers."""
        import time

        lost = core.stale_chunks(self.folder, self.job)
        if queue_length(self.broker) == 0:
            now = time.monotonic()
            for i in core.pending_chunks(self.folder, self.job):
                if i in lost or self.folder.lease_age(i) is not None \
                        or self.folder.failure(i) is not None:
                    self._idle_since.pop(i, None)
                    continue
                if now - self._idle_since.setdefault(i, now) > self.lease:
                    lost.append(i)
        else:
            self._idle_since.clear()
        for i in lost:
            self._idle_since.pop(i, None)
        if lost:
            enqueue(self.app, self.folder, lost, _chunk_seconds(self.job))
        return sorted(lost)


def queue_length(broker: str) -> int:
    """Messages waiting in the mltk queue (not those a worker has reserved)."""
    import redis

    return int(redis.Redis.from_url(broker).llen(QUEUE))


def register_job(broker: str, job: dict[str, Any], folder: JobFolder) -> None:
    import redis

    redis.Redis.from_url(broker).hset(REGISTRY, job["id"], str(folder.path))


def registered_jobs(broker: str) -> dict[str, str]:
    import redis

    raw = redis.Redis.from_url(broker).hgetall(REGISTRY)
    return {k.decode(): v.decode() for k, v in raw.items()}


def check_broker(broker: str) -> None:
    """Fail fast, in one line, when the broker cannot be reached."""
    import redis

    try:
        redis.Redis.from_url(broker, socket_connect_timeout=5).ping()
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        raise BrokerError(f"the broker {redact(broker)} refused the connection "
                        f"({hide_password(str(exc), broker)}): give its password in --broker "
                        f"or {BROKER_ENV} (redis://:PASSWORD@host:port/db)") from None
    except (redis.RedisError, OSError) as exc:
        raise BrokerError(f"cannot reach the broker {redact(broker)} "
                        f"({hide_password(str(exc), broker)})") from None


def run_worker(broker: str, concurrency: int, queues: str, loglevel: str = "INFO",
               roots: Iterable[str] = ()) -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM: warm shutdown); with
    ``roots``, every chunk it runs is kept to them (:mod:`mltk.jobs.roots`)."""
    app = app_for(broker)
    app.conf.mltk_job_roots = tuple(roots) or None  # None: env MLTK_JOB_ROOTS, read per chunk
    app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}",
                     "-Q", queues, "--pool=prefork", "-O", "fair",
                     "-n", f"mltk-{os.getpid()}@%h",
                     "--without-gossip", "--without-mingle"])
