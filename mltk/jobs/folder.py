"""A job is a folder: its plan, one atomic part per finished chunk, failures, leases.

    JOB_DIR/job.json               kind, inputs, settings, model identity, chunk plan, version
    JOB_DIR/items.ndjson           the work items, one per line (colors, predict, tfrecord-build)
    JOB_DIR/parts/chunk-00003.ndjson   the output records of chunk 3 (renamed into place when
                                       complete)
    JOB_DIR/stats/chunk-00003.json     the plan hash, records, sha256 and bytes of that part;
                                       items, errors and seconds of that chunk
    JOB_DIR/failed/chunk-00003.json    why chunk 3 failed for good (removed when it is re-run)
    JOB_DIR/leases/chunk-00003.json    held by the worker running it; its mtime is a heartbeat
    JOB_DIR/cancelled              present once the job is cancelled

Everything a worker writes is written under a temporary name and renamed, so a worker killed at
any moment leaves either nothing or a whole file; outputs are a pure function of the inputs and
settings, so a chunk run twice writes the same bytes. A chunk is done only when its part matches
its stats (same plan as job.json, same record count and sha256): a part of another plan, or one
truncated, emptied or cut mid-line since, is not done and is run again. job.json is created
exclusively (a hard link), so two submissions racing on one folder cannot both write a plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mltk._atomic import write_bytes, write_json, write_text
from mltk.errors import InputError

#: Part checks by part file, for as long as neither the part nor its stats change (status is
#: polled; a part is hashed once per version, not once per poll).
_CHECKED: dict[str, tuple[Any, str | None]] = {}
_CHECKED_MAX = 200_000


class JobFolder:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()
        self._job: dict[str, Any] | None = None

    # -- plan --------------------------------------------------------------------------------
    @property
    def job_file(self) -> Path:
        return self.path / "job.json"

    def exists(self) -> bool:
        return self.job_file.is_file()

    def load(self) -> dict[str, Any]:
        if not self.job_file.is_file():
            raise InputError(f"{self.path}: not a job folder (no job.json)")
        try:
            job = json.loads(self.job_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.job_file}: unreadable ({exc})") from None
        if not isinstance(job, dict) or not isinstance(job.get("chunks"), list):
            raise InputError(f"{self.job_file}: not a job plan")
        self._job = job
        return job

    def create_job_file(self, job: dict[str, Any]) -> bool:
        """Write job.json unless it exists (atomically and exclusively: a hard link of a
        complete temporary file); False when another plan got there first."""
        from mltk._json import dumps

        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".job.json.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(dumps(job, indent=2) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.link(tmp, self.job_file)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        self._job = job
        return True

    @property
    def plan(self) -> str | None:
        """The hash of the plan in job.json that parts must carry to count."""
        job = self._job if self._job is not None else self.load()
        return job.get("plan")

    def items(self, start: int, stop: int) -> list[Any]:
        """Items ``start``..``stop`` of items.ndjson."""
        out = []
        with open(self.path / "items.ndjson", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= stop:
                    break
                if i >= start:
                    out.append(json.loads(line))
        return out

    # -- chunk files -------------------------------------------------------------------------
    def _file(self, folder: str, index: int, suffix: str) -> Path:
        return self.path / folder / f"chunk-{index:05d}{suffix}"

    def part(self, index: int) -> Path:
        return self._file("parts", index, ".ndjson")

    def is_done(self, index: int) -> bool:
        """True when chunk ``index`` has a part that matches its stats and this plan."""
        return self.part_problem(index) is None

    def part_problem(self, index: int) -> str | None:
        """Why chunk ``index``'s part cannot be trusted (None: it can): missing, of another
        plan, or not the records and bytes its stats describe."""
        part, stats_file = self.part(index), self._file("stats", index, ".json")
        try:
            ps, ss = part.stat(), stats_file.stat()
        except FileNotFoundError:
            if part.exists():
                return f"{_rel(part)} has no stats file ({_rel(stats_file)})"
            return "no part"
        key = (ps.st_mtime_ns, ps.st_size, ps.st_ino, ss.st_mtime_ns, ss.st_size, ss.st_ino,
               self.plan)
        cached = _CHECKED.get(str(part))
        if cached is not None and cached[0] == key:
            return cached[1]
        problem = self._check_part(part, self.stats(index))
        if len(_CHECKED) >= _CHECKED_MAX:  # a long-lived server following many jobs
            _CHECKED.clear()
        _CHECKED[str(part)] = (key, problem)
        return problem

    def _check_part(self, part: Path, stats: dict[str, Any] | None) -> str | None:
        name = _rel(part)
        if not stats or "sha256" not in stats:
            return f"{name}: its stats file is unreadable or from an older mltk"
        if stats.get("plan") != self.plan:
            return f"{name} was written for another plan of this job (job.json was replaced)"
        data = part.read_bytes()
        if len(data) != stats.get("bytes") or hashlib.sha256(data).hexdigest() != stats["sha256"]:
            return (f"{name} is damaged: {len(data)} bytes, its stats say {stats.get('bytes')} "
                    "bytes with another checksum")
        if data.count(b"\n") != stats.get("records") or (data and not data.endswith(b"\n")):
            return f"{name} is damaged: not the {stats.get('records')} records its stats say"
        return None

    def write_part(self, index: int, records: list[dict[str, Any]], seconds: float) -> None:
        """The part of chunk ``index``, then its stats (which make it count as done)."""
        from mltk._json import dumps

        data = "".join(dumps(r) + "\n" for r in records).encode("utf-8")
        errors = sum(1 for r in records if r.get("error"))
        write_bytes(self.part(index), data)
        write_json(self._file("stats", index, ".json"), {
            "plan": self.plan, "records": len(records), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "items": len(records), "errors": errors, "seconds": round(seconds, 3),
            "finished": time.time(), "worker": worker_id()})
        self._file("failed", index, ".json").unlink(missing_ok=True)

    def mark_failed(self, index: int, reason: str, attempts: int) -> None:
        write_json(self._file("failed", index, ".json"), {
            "reason": reason, "attempts": attempts, "time": time.time(), "worker": worker_id()})

    def failure(self, index: int) -> dict[str, Any] | None:
        f = self._file("failed", index, ".json")
        try:
            return json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def clear_failures(self) -> None:
        for f in (self.path / "failed").glob("chunk-*.json"):
            f.unlink(missing_ok=True)

    def stats(self, index: int) -> dict[str, Any] | None:
        try:
            return json.loads(self._file("stats", index, ".json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    # -- leases ------------------------------------------------------------------------------
    def lease(self, index: int) -> Path:
        return self._file("leases", index, ".json")

    def take_lease(self, index: int) -> None:
        write_json(self.lease(index), {"worker": worker_id(), "started": time.time()})

    def beat(self, index: int) -> None:
        try:
            os.utime(self.lease(index))
        except FileNotFoundError:
            pass

    def drop_lease(self, index: int) -> None:
        self.lease(index).unlink(missing_ok=True)

    def leased(self) -> list[int]:
        """The chunks whose lease file exists, in order."""
        return sorted(int(f.name[6:11]) for f in (self.path / "leases").glob("chunk-*.json"))

    def lease_holder_dead(self, index: int) -> bool:
        """True when the lease was taken on this host by a process that no longer exists."""
        try:
            holder = json.loads(self.lease(index).read_text()).get("worker", "")
        except (OSError, ValueError, AttributeError):
            return False
        host, _, pid = str(holder).rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False  # another machine's worker: only its heartbeat tells
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def lease_age(self, index: int) -> float | None:
        """Seconds since the lease's last heartbeat, or None when nobody holds it."""
        try:
            return max(0.0, time.time() - self.lease(index).stat().st_mtime)
        except FileNotFoundError:
            return None

    # -- cancel ------------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return (self.path / "cancelled").exists()

    def cancel(self) -> None:
        write_text(self.path / "cancelled", f"{time.time()}\n")

    def uncancel(self) -> None:
        (self.path / "cancelled").unlink(missing_ok=True)

    def check_parts(self, n_chunks: int) -> None:
        """Raise, naming the first chunk whose part is missing or cannot be trusted."""
        for i in range(n_chunks):
            problem = self.part_problem(i)
            if problem == "no part":
                raise InputError(f"{self.path}: chunk {i} is not done (see mltk jobs status)")
            if problem:
                raise InputError(f"{self.path}: chunk {i} is not done: {problem}; submit the "
                                 "job again to run it again")

    def records(self, n_chunks: int) -> Iterator[dict[str, Any]]:
        """Every output record, in input order (chunk by chunk). Every part is checked before
        the first record, so a bad part raises before anything is yielded."""
        self.check_parts(n_chunks)
        return self._records(n_chunks)

    def _records(self, n_chunks: int) -> Iterator[dict[str, Any]]:
        for i in range(n_chunks):
            with open(self.part(i), encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:  # changed since it was checked
                        raise InputError(f"{self.part(i)}, line {n}: not a record ({exc.msg})"
                                         ) from None


def _rel(path: Path) -> str:
    """``parts/chunk-00003.ndjson``: a chunk file named from its job folder."""
    return f"{path.parent.name}/{path.name}"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
