"""Jobs: plan once into a folder, run chunks anywhere (local pool or Celery workers), merge.

The job id is a hash of the kind, inputs, settings and model, so submitting the same job again
finds the same folder and redoes nothing. A chunk is run by :func:`run_chunk`, which does
nothing when the chunk's part exists, holds a lease with a heartbeat while it works and writes
its part atomically; :func:`supervise` re-enqueues chunks whose lease went stale (the worker
died), so a job completes without waiting for the broker's visibility timeout. A kind with a
last step (tfrecord-build: labels.txt and manifest.json) is finished by :func:`finalize`,
idempotently, by whoever sees every chunk done first: the worker of the last chunk, the local
run, ``mltk jobs wait`` or ``mltk jobs results``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mltk import __version__
from mltk.errors import InputError, MltkError
from mltk.jobs import kinds
from mltk.jobs.folder import JobFolder

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256
DEFAULT_LEASE_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """How a job is cut and run (not part of its identity)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # a lease older than this is stale
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise InputError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        if not self.lease_seconds > 0:
            raise InputError(f"lease_seconds must be positive, got {self.lease_seconds!r}")


def job_id(plan: kinds.Plan) -> str:
    from mltk._json import dumps

    items = hashlib.sha256(dumps(plan.items).encode()).hexdigest() if plan.items else None
    doc = dumps({"kind": plan.kind, "inputs": plan.inputs, "items": items,
                 "settings": plan.settings, "model": plan.model}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def create(folder: JobFolder, kind: str, args: Sequence[str], options: Mapping[str, Any],
           settings: JobSettings = JobSettings(), broker: str | None = None) -> dict[str, Any]:
    """Plan the job into ``folder`` (job.json, items.ndjson); the same job again is a no-op.

    A folder that holds another job is an error: job folders are never overwritten.
    """
    from mltk._atomic import write_json, write_text
    from mltk._json import dumps

    plan = kinds.plan(kind, args, options)
    jid = job_id(plan)
    if folder.exists():
        job = folder.load()
        if job.get("id") != jid:
            raise MltkError(f"{folder.path} holds another job ({job.get('kind')} "
                            f"{job.get('id')}); give a new `out` folder")
        if broker and job.get("broker") != broker:
            job["broker"] = broker
            write_json(folder.job_file, job)
        return job
    size = plan.chunk_size or settings.chunk_size
    chunks = [[i, min(plan.total, i + size)] for i in range(0, plan.total, size)]
    job = {"id": jid, "kind": plan.kind, "inputs": plan.inputs, "settings": plan.settings,
           "model": plan.model, "items": plan.total, "chunk_size": size, "chunks": chunks,
           "lease_seconds": settings.lease_seconds, "max_attempts": settings.max_attempts,
           "broker": broker, "mltk_version": __version__, "created": time.time()}
    folder.path.mkdir(parents=True, exist_ok=True)
    if plan.items is not None:
        write_text(folder.path / "items.ndjson", "".join(dumps(x) + "\n" for x in plan.items))
    write_json(folder.job_file, job)  # last: a folder with job.json is complete
    return job


# -- one chunk --------------------------------------------------------------------------------
def run_chunk(job_dir: str, index: int, attempt: int = 1, final: bool = True) -> str:
    """Run chunk ``index`` of the job in ``job_dir``: ``done``, ``skipped`` or ``failed``.

    Bad input (InputError) fails the chunk for good at once; any other error is raised for the
    caller to retry, after recording the failure when ``final`` (the last attempt).
    """
    folder = JobFolder(job_dir)
    job = folder.load()
    if folder.cancelled or folder.is_done(index):
        return "skipped"
    start, stop = job["chunks"][index]
    folder.take_lease(index)
    beat = _Heartbeat(folder, index, float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS))
    t0 = time.perf_counter()
    try:
        items = folder.items(start, stop) if (folder.path / "items.ndjson").exists() else None
        records = kinds.run(job, items, start, stop)
        if folder.is_done(index):  # another worker finished it meanwhile: same bytes anyway
            return "skipped"
        folder.write_part(index, records, time.perf_counter() - t0)
    except InputError as exc:
        folder.mark_failed(index, str(exc), attempt)
        return "failed"
    except Exception as exc:
        if final:
            from mltk.cli._common import describe

            folder.mark_failed(index, describe(exc), attempt)
        raise
    finally:
        beat.stop()
        folder.drop_lease(index)
    _finalize_quietly(folder, job)
    return "done"


class _Heartbeat:
    """Touches the lease every quarter of the lease time while the chunk runs."""

    def __init__(self, folder: JobFolder, index: int, lease_seconds: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(folder, index,
                                                                 lease_seconds / 4),
                                        daemon=True)
        self._thread.start()

    def _run(self, folder: JobFolder, index: int, every: float) -> None:
        while not self._stop.wait(every):
            folder.beat(index)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def finalize(folder: JobFolder) -> Any:
    """The kind's last step once every chunk is done (see :func:`kinds.finalize`); None while
    chunks remain or when the kind has none. Safe to call any number of times, anywhere."""
    job = folder.load()
    n = len(job["chunks"])
    if not kinds.has_final_step(job["kind"]) or not all(folder.is_done(i) for i in range(n)):
        return None
    finished = [(folder.stats(i) or {}).get("finished") for i in range(n)]
    last = max((t for t in finished if t), default=time.time())
    return kinds.finalize(job, list(folder.records(n)), max(0.0, last - float(job["created"])))


def _finalize_quietly(folder: JobFolder, job: Mapping[str, Any]) -> None:
    """After a chunk: finish the job if it was the last one. A failure here is not the chunk's
    (its part is written); ``wait`` and ``results`` finish the job again."""
    if not kinds.has_final_step(job["kind"]):
        return
    try:
        finalize(folder)
    except Exception as exc:
        log.warning(f"{folder.path}: could not finish the job yet ({exc})")


#: Errors worth another try (a file system or broker that went away); anything else is bad
#: input or a bug, and would fail the same way again.
TRANSIENT = (OSError, ConnectionError, TimeoutError)


def _local_chunk(job_dir: str, index: int, attempts: int) -> str:
    for attempt in range(1, attempts + 1):
        try:
            return run_chunk(job_dir, index, attempt, final=False)
        except TRANSIENT as exc:
            if attempt == attempts:
                mark_failed(job_dir, index, exc, attempt)
            else:
                time.sleep(min(30, 2 ** attempt))  # back off before the next try
        except Exception as exc:
            mark_failed(job_dir, index, exc, attempt)
            return "failed"
    return "failed"


def mark_failed(job_dir: str, index: int, exc: BaseException, attempt: int) -> None:
    """Record that chunk ``index`` failed for good, with the one-line reason."""
    from mltk.cli._common import describe

    JobFolder(job_dir).mark_failed(index, describe(exc), attempt)


def run_local(folder: JobFolder, jobs: int = 1,
              on_chunk: Callable[[int, str], None] | None = None) -> None:
    """Run every chunk without a part in a local process pool (no broker needed)."""
    from concurrent.futures import ProcessPoolExecutor

    from mltk._parallel import process_context

    job = folder.load()
    folder.clear_failures()
    todo = [i for i in range(len(job["chunks"])) if not folder.is_done(i)]
    attempts = int(job.get("max_attempts") or 1)
    if jobs <= 1 or len(todo) <= 1:
        for i in todo:
            status = _local_chunk(str(folder.path), i, attempts)
            if on_chunk:
                on_chunk(i, status)
    else:
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=process_context()) as pool:
            futures = {pool.submit(_local_chunk, str(folder.path), i, attempts): i
                       for i in todo}
            for fut in futures:
                status = fut.result()
                if on_chunk:
                    on_chunk(futures[fut], status)
    finalize(folder)


# -- status -----------------------------------------------------------------------------------
def status(folder: JobFolder) -> dict[str, Any]:
    """Chunks done/running/failed/pending, items done and with errors, rate and ETA."""
    job = folder.load()
    n = len(job["chunks"])
    lease = float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS)
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    items_done = errors = 0
    failures: list[dict[str, Any]] = []
    first = last = None
    for i in range(n):
        if folder.is_done(i):
            counts["done"] += 1
            s = folder.stats(i) or {}
            items_done += int(s.get("items", 0))
            errors += int(s.get("errors", 0))
            t = s.get("finished")
            if t:
                first, last = min(first or t, t), max(last or t, t)
            continue
        failure = folder.failure(i)
        age = folder.lease_age(i)
        if age is not None and age <= lease:
            counts["running"] += 1
        elif failure is not None:
            counts["failed"] += 1
            failures.append({"chunk": i, **failure})
        else:
            counts["pending"] += 1
    elapsed = (last or time.time()) - float(job["created"])
    rate = items_done / elapsed if items_done and elapsed > 0 else None
    left = job["items"] - items_done
    return {"id": job["id"], "kind": job["kind"], "chunks": n, **counts,
            "items": job["items"], "items_done": items_done, "errors": errors,
            "rate": round(rate, 3) if rate else None,
            "eta_seconds": round(left / rate, 1) if rate and left else (0 if not left else None),
            "cancelled": folder.cancelled, "complete": counts["done"] == n,
            "failures": failures}


def stale_chunks(folder: JobFolder, job: Mapping[str, Any]) -> list[int]:
    """Chunks without a part whose lease went stale: their worker died."""
    lease = float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS)
    out = []
    for i in folder.leased():  # only the chunks that hold a lease: workers call this often
        age = folder.lease_age(i)
        if age is not None and age > lease and not folder.is_done(i):
            out.append(i)
    return out


def pending_chunks(folder: JobFolder, job: Mapping[str, Any]) -> list[int]:
    return [i for i in range(len(job["chunks"])) if not folder.is_done(i)]


def results(folder: JobFolder) -> Any:
    job = folder.load()
    finalize(folder)
    return folder.records(len(job["chunks"]))


def to_json(obj: Any) -> str:
    return json.dumps(obj)
