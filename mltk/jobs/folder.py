"""A job is a folder: its plan, one atomic part per finished chunk, failures, leases.

    JOB_DIR/job.json               kind, inputs, settings, model identity, chunk plan, version
    JOB_DIR/items.ndjson           the work items, one per line (colors, predict, tfrecord-build)
    JOB_DIR/parts/chunk-00003.ndjson   the output records of chunk 3 (renamed into place when
                                       complete: a chunk whose part exists is done)
    JOB_DIR/stats/chunk-00003.json     items, errors and seconds of that chunk
    JOB_DIR/failed/chunk-00003.json    why chunk 3 failed for good (removed when it is re-run)
    JOB_DIR/leases/chunk-00003.json    held by the worker running it; its mtime is a heartbeat
    JOB_DIR/cancelled              present once the job is cancelled

Everything a worker writes is written under a temporary name and renamed, so a worker killed at
any moment leaves either nothing or a whole file; outputs are a pure function of the inputs and
settings, so a chunk run twice writes the same bytes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mltk._atomic import write_json, write_text
from mltk.errors import InputError


class JobFolder:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()

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
            return json.loads(self.job_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.job_file}: unreadable ({exc})") from None

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
        return self.part(index).is_file()

    def write_part(self, index: int, records: list[dict[str, Any]], seconds: float) -> None:
        from mltk._json import dumps

        errors = sum(1 for r in records if r.get("error"))
        write_json(self._file("stats", index, ".json"), {
            "items": len(records), "errors": errors, "seconds": round(seconds, 3),
            "finished": time.time(), "worker": worker_id()})
        write_text(self.part(index), "".join(dumps(r) + "\n" for r in records))
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

    def records(self, n_chunks: int) -> Iterator[dict[str, Any]]:
        """Every output record, in input order (chunk by chunk); missing parts raise."""
        for i in range(n_chunks):
            if not self.is_done(i):
                raise InputError(f"{self.path}: chunk {i} is not done (see mltk jobs status)")
            with open(self.part(i), encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
