"""Jobs: plan once into a folder, run chunks anywhere (local pool or Celery workers), merge.

The job id is a hash of the kind, inputs, settings and model, so submitting the same job again
finds the same folder and redoes nothing; the plan hash adds the chunking, and every part carries
it (in its stats, with its record count and sha256), so a part counts only for the plan that
made it and only while it is whole (see :mod:`mltk.jobs.folder`). :func:`mltk.jobs.submit` is the
one way in, for the CLI and the server alike. A chunk is run by :func:`run_chunk`, which does
nothing when the chunk's part is sound, holds a lease with a heartbeat while it works and writes
its part atomically; :class:`mltk.jobs.queue.Supervisor` re-enqueues chunks whose lease went
stale (the worker died), so a job completes without waiting for the broker's visibility
timeout. A kind with a last step (tfrecord-build: labels.txt and manifest.json) is finished by
:func:`finalize`, idempotently, by whoever sees every chunk done first: the worker of the last
chunk, the local run, ``mltk jobs wait`` or ``mltk jobs results``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from mltk import __version__
from mltk.errors import InputError, MltkError, describe
from mltk.jobs import kinds
from mltk.jobs.folder import JobFolder

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_CHUNK_SECONDS = 3600.0  # a chunk running longer fails (a hung read, a stuck model)


class ChunkTimeLimit(MltkError):
    """A chunk ran past its job's time limit (``chunk_seconds``)."""


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """How a job is cut and run (not part of its identity; the chunking is part of its plan).

    ``chunk_size`` None: the plan of a job submitted again, else DEFAULT_CHUNK_SIZE.
    """

    chunk_size: int | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # a lease older than this is stale
    max_attempts: int = 3
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS  # time limit of one chunk

    def __post_init__(self) -> None:
        if self.chunk_size is not None and (not _is_int(self.chunk_size)
                                            or self.chunk_size < 1):
            raise InputError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        for name in ("lease_seconds", "chunk_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < float("inf"):
                raise InputError(f"{name} must be a positive number of seconds, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def job_id(plan: kinds.Plan) -> str:
    from mltk._json import dumps

    items = hashlib.sha256(dumps(plan.items).encode()).hexdigest() if plan.items else None
    doc = dumps({"kind": plan.kind, "inputs": plan.inputs, "items": items,
                 "settings": plan.settings, "model": plan.model}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def plan_hash(job: Mapping[str, Any]) -> str:
    """The hash of what a part's records depend on: the job (kind, inputs, items, settings,
    model: its id) and how it is cut into chunks."""
    from mltk._json import dumps

    doc = dumps({"id": job["id"], "kind": job["kind"], "inputs": job["inputs"],
                 "settings": job["settings"], "model": job["model"], "chunks": job["chunks"]},
                sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def create(folder: JobFolder, kind: str, args: Sequence[str], options: Mapping[str, Any],
           settings: JobSettings = JobSettings(), broker: str | None = None,
           roots: Sequence[str] = ()) -> dict[str, Any]:
    """Plan the job into ``folder`` (job.json, items.ndjson); the same job again is a no-op.

    A folder that holds another job, or this job cut into other chunks, is an error: job
    folders are never overwritten, and of two submissions racing on one folder only one writes
    job.json (the other uses its plan when it is the same, else fails). The broker URL is
    stored without its password. With ``roots``, the job is kept to them
    (:mod:`mltk.jobs.roots`).
    """
    from mltk.jobs.urls import redact

    plan = kinds.plan(kind, args, options, roots)
    jid = job_id(plan)
    if folder.exists():
        return _existing(folder, jid, plan, settings, broker)
    size = plan.chunk_size or settings.chunk_size or DEFAULT_CHUNK_SIZE
    chunks = [[i, min(plan.total, i + size)] for i in range(0, plan.total, size)]
    job = {"id": jid, "kind": plan.kind, "inputs": plan.inputs, "settings": plan.settings,
           "model": plan.model, "items": plan.total, "chunk_size": size, "chunks": chunks,
           "lease_seconds": settings.lease_seconds, "max_attempts": settings.max_attempts,
           "chunk_seconds": settings.chunk_seconds, "listed": plan.items is not None,
           "broker": redact(broker, keep_password=False) if broker else None,
           "mltk_version": __version__, "created": time.time()}
    job["plan"] = plan_hash(job)
    with _items_file(folder, plan.items) as publish:
        if not folder.create_job_file(job):  # another submission was first
            job = _existing(folder, jid, plan, settings, broker)
        publish()  # this job's items (the same bytes whoever wrote job.json)
    return job


@contextlib.contextmanager
def _items_file(folder: JobFolder, items: list[Any] | None) -> Iterator[Callable[[], None]]:
    """Write items.ndjson under a temporary name; ``publish()`` renames it into place (only
    once job.json is known to be this job's, so a losing racer never replaces it)."""
    import os
    import tempfile

    from mltk._json import dumps

    if items is None:
        yield lambda: None
        return
    folder.path.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".items.ndjson.", suffix=".tmp", dir=folder.path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(dumps(x) + "\n" for x in items))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        yield lambda: os.replace(tmp, folder.path / "items.ndjson")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _existing(folder: JobFolder, jid: str, plan: kinds.Plan, settings: JobSettings,
              broker: str | None) -> dict[str, Any]:
    """The job already planned in ``folder``, when it is this one cut the same way."""
    from mltk._atomic import write_json
    from mltk.jobs.urls import redact

    job = folder.load()
    if job.get("id") != jid:
        raise MltkError(f"{folder.path} holds another job ({job.get('kind')} "
                        f"{job.get('id')}); give a new `out` folder")
    if not job.get("plan"):
        raise MltkError(f"{folder.path} holds this job as planned by an older mltk (its parts "
                        "cannot be checked); give a new `out` folder")
    size = None if plan.chunk_size else settings.chunk_size
    if size is not None and size != job["chunk_size"]:
        raise MltkError(f"{folder.path} holds this job cut into chunks of {job['chunk_size']} "
                        f"items, not {size}: submit it with `chunk_size` {job['chunk_size']} (or "
                        "none) to go on with it, or give a new `out` folder")
    # how it runs is the latest submission's (not part of the plan)
    run = {"lease_seconds": settings.lease_seconds, "chunk_seconds": settings.chunk_seconds,
           "max_attempts": settings.max_attempts}
    if broker:
        run["broker"] = redact(broker, keep_password=False)
    if any(job.get(k) != v for k, v in run.items()):
        job.update(run)
        write_json(folder.job_file, job)
    return job


# -- one chunk --------------------------------------------------------------------------------
def run_chunk(job_dir: str, index: int, attempt: int = 1, final: bool = True,
              roots: Sequence[str] = ()) -> str:
    """Run chunk ``index`` of the job in ``job_dir``: ``done``, ``skipped``, ``failed`` or
    ``refused``.

    Bad input (InputError) fails the chunk for good at once; any other error is raised for the
    caller to retry, after recording the failure when ``final`` (the last attempt). With
    ``roots`` (the worker's own job roots; job.json is never asked), what the chunk reads and
    writes is kept to them (:mod:`mltk.jobs.roots`): a job folder with a link at its top that
    leads outside is ``refused`` and nothing is written into it.
    """
    folder = JobFolder(job_dir)
    if roots and not _folder_kept(folder, roots, index):
        return "refused"
    job = folder.load()
    if folder.cancelled or folder.is_done(index):
        return "skipped"
    start, stop = job["chunks"][index]
    folder.take_lease(index)
    beat = _Heartbeat(folder, index, float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS))
    t0 = time.perf_counter()
    try:
        with time_limit(float(job.get("chunk_seconds") or DEFAULT_CHUNK_SECONDS)):
            listed = job.get("listed", (folder.path / "items.ndjson").exists())
            items = folder.items(start, stop) if listed else None  # missing: retried
            records = kinds.run(job, items, start, stop, roots)
        if folder.is_done(index):  # another worker finished it meanwhile: same bytes anyway
            return "skipped"
        if roots and not _folder_kept(folder, roots, index):  # a link made while the chunk ran
            return "refused"
        folder.write_part(index, records, time.perf_counter() - t0)
    except (InputError, ChunkTimeLimit) as exc:
        folder.mark_failed(index, str(exc), attempt)
        return "failed"
    except Exception as exc:
        if final:
            folder.mark_failed(index, describe(exc), attempt)
        raise
    finally:
        beat.stop()
        folder.drop_lease(index)
    _finalize_quietly(folder, job, roots)
    return "done"


def _folder_kept(folder: JobFolder, roots: Sequence[str], index: int) -> bool:
    """False (logged) when the job folder, or an entry at its top (parts/, leases/...), leads
    outside ``roots``: the chunk is marked failed only where failed/ itself is safe (so that
    ``wait`` ends), and nothing else is written."""
    from mltk.jobs.roots import OutsideRoots, check, check_entries, real_roots

    real = real_roots(roots)
    try:
        check_entries(folder.path, real)
    except OutsideRoots as exc:
        log.error(f"chunk {index} refused, nothing written: {exc}")
        try:
            check(folder.path / "failed", real)
        except OutsideRoots:
            return False
        folder.mark_failed(index, str(exc), 1)
        return False
    return True


def time_limit_message(seconds: float) -> str:
    return (f"ran longer than its time limit of {seconds:g} s (chunk_seconds); submit the job "
            "again with a longer limit, or in smaller chunks")


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ChunkTimeLimit in the block after ``seconds`` (SIGALRM: the main thread of a
    process of its own, as a local pool's or a Celery prefork worker's; elsewhere Celery's
    soft time limit does the same)."""
    if threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    expired = False

    def expire(signum: int, frame: Any) -> None:
        nonlocal expired
        expired = True
        raise ChunkTimeLimit(time_limit_message(seconds))

    # The alarm repeats until the block ends, and an expired block fails even when the code it
    # interrupted swallowed the exception (a library's `except Exception` around an import).
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, max(seconds, 1.0))
    try:
        yield
    except ChunkTimeLimit:
        raise
    except BaseException:
        if expired:
            raise ChunkTimeLimit(time_limit_message(seconds)) from None
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if expired:
        raise ChunkTimeLimit(time_limit_message(seconds))


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


def finalize(folder: JobFolder, roots: Sequence[str] = ()) -> Any:
    """The kind's last step once every chunk is done (see :func:`kinds.finalize`); None while
    chunks remain or when the kind has none. Safe to call any number of times, anywhere. With
    ``roots``, the folder it writes is kept to them."""
    job = folder.load()
    n = len(job["chunks"])
    if not kinds.has_final_step(job["kind"]) or not all(folder.is_done(i) for i in range(n)):
        return None
    finished = [(folder.stats(i) or {}).get("finished") for i in range(n)]
    last = max((t for t in finished if t), default=time.time())
    return kinds.finalize(job, list(folder.records(n)), max(0.0, last - float(job["created"])),
                          roots)


def _finalize_quietly(folder: JobFolder, job: Mapping[str, Any],
                      roots: Sequence[str] = ()) -> None:
    """After a chunk: finish the job if it was the last one. A failure here is not the chunk's
    (its part is written); ``wait`` and ``results`` finish the job again."""
    if not kinds.has_final_step(job["kind"]):
        return
    try:
        finalize(folder, roots)
    except Exception as exc:
        log.warning(f"{folder.path}: could not finish the job yet ({exc})")


#: Errors worth another try (a file system or broker that went away); anything else is bad
#: input or a bug, and would fail the same way again.
TRANSIENT = (OSError, ConnectionError, TimeoutError)


def _local_chunk(job_dir: str, index: int, attempts: int, roots: Sequence[str] = ()) -> str:
    for attempt in range(1, attempts + 1):
        try:
            return run_chunk(job_dir, index, attempt, final=False, roots=roots)
        except TRANSIENT as exc:
            if attempt == attempts:
                mark_failed(job_dir, index, exc, attempt)
            else:
                time.sleep(min(30, 2 ** attempt))  # back off before the next try
        except Exception as exc:
            mark_failed(job_dir, index, exc, attempt)
            return "failed"
    return "failed"


def mark_failed(job_dir: str, index: int, exc: BaseException | str, attempt: int) -> None:
    """Record that chunk ``index`` failed for good, with the one-line reason."""
    JobFolder(job_dir).mark_failed(index, exc if isinstance(exc, str) else describe(exc),
                                   attempt)


def run_local(folder: JobFolder, jobs: int = 1,
              on_chunk: Callable[[int, str], None] | None = None,
              roots: Sequence[str] = ()) -> None:
    """Run every chunk without a part in a local process pool (no broker needed); with
    ``roots``, each chunk is kept to them (:func:`run_chunk`)."""
    from concurrent.futures import ProcessPoolExecutor

    from mltk._parallel import process_context

    job = folder.load()
    folder.clear_failures()
    todo = [i for i in range(len(job["chunks"])) if not folder.is_done(i)]
    attempts = int(job.get("max_attempts") or 1)
    if jobs <= 1 or len(todo) <= 1:
        for i in todo:
            status = _local_chunk(str(folder.path), i, attempts, roots)
            if on_chunk:
                on_chunk(i, status)
    else:
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=process_context()) as pool:
            futures = {pool.submit(_local_chunk, str(folder.path), i, attempts, roots): i
                       for i in todo}
            for fut in futures:
                status = fut.result()
                if on_chunk:
                    on_chunk(futures[fut], status)
    finalize(folder, roots)


# -- status -----------------------------------------------------------------------------------
def status(folder: JobFolder) -> dict[str, Any]:
    """Chunks done/running/failed/pending, items done and with errors, rate and ETA."""
    job = folder.load()
    n = len(job["chunks"])
    lease = float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS)
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    items_done = errors = 0
    failures: list[dict[str, Any]] = []
    damaged: list[dict[str, Any]] = []
    last = None
    for i in range(n):
        problem = folder.part_problem(i)
        if problem is None:
            counts["done"] += 1
            s = folder.stats(i) or {}
            items_done += int(s.get("items", 0))
            errors += int(s.get("errors", 0))
            last = max(last or 0.0, float(s.get("finished") or 0.0)) or None
            continue
        if problem != "no part":  # counted as not done: it is run again
            damaged.append({"chunk": i, "reason": problem})
        state = _chunk_state(folder, i, lease)
        counts[state] += 1
        if state == "failed":
            failures.append({"chunk": i, **(folder.failure(i) or {})})
    complete = counts["done"] == n
    elapsed = (last or time.time()) - float(job["created"])
    rate = items_done / elapsed if items_done and elapsed > 0 else None
    left = job["items"] - items_done
    running = counts["running"] > 0 and not folder.cancelled  # no ETA for a job not moving
    return {"id": job["id"], "kind": job["kind"], "chunks": n, **counts,
            "items": job["items"], "items_done": items_done, "errors": errors,
            "rate": round(rate, 3) if rate else None,
            "eta_seconds": 0 if complete else (round(left / rate, 1) if rate and running
                                               else None),
            "cancelled": folder.cancelled, "complete": complete,
            "failures": failures, "damaged": damaged}


def _chunk_state(folder: JobFolder, index: int, lease: float) -> str:
    """running (a live lease), failed (for good) or pending, for a chunk without a part."""
    age = folder.lease_age(index)
    if age is not None and age <= lease and not folder.lease_holder_dead(index):
        return "running"
    return "failed" if folder.failure(index) is not None else "pending"


def stale_chunks(folder: JobFolder, job: Mapping[str, Any]) -> list[int]:
    """Chunks without a part whose lease went stale, or whose worker on this host is gone:
    their worker died."""
    lease = float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS)
    out = []
    for i in folder.leased():  # only the chunks that hold a lease: workers call this often
        age = folder.lease_age(i)
        if age is not None and (age > lease or folder.lease_holder_dead(i)) \
                and not folder.is_done(i):
            out.append(i)
    return out


def pending_chunks(folder: JobFolder, job: Mapping[str, Any]) -> list[int]:
    return [i for i in range(len(job["chunks"])) if not folder.is_done(i)]


def results(folder: JobFolder) -> Any:
    """The job's records in input order. Decided before the first record: a job with a chunk
    not done (cancelled, failed, running, or a part that fails its check) raises, naming it."""
    job = folder.load()
    n = len(job["chunks"])
    if folder.cancelled:
        done = sum(1 for i in range(n) if folder.is_done(i))
        if done < n:
            raise MltkError(f"job {job['id']} was cancelled with {done} of {n} chunks done; "
                            "submit it again to resume it")
    folder.check_parts(n)
    finalize(folder)
    return folder.records(n)


def to_json(obj: Any) -> str:
    return json.dumps(obj)
