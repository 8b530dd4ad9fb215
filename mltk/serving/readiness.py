"""Readiness across the worker processes of one ``mltk serve``, kept as files in a folder that
the server makes for its workers (``MLTK_SERVE_STATE_DIR``).

- ``ready-<pid>``: that worker has loaded and warmed up every model.
- ``ready``: every worker was ready once. From then on the server stays ready while a worker
  that died is replaced: the others serve, and the replacement's first requests wait for its
  own models (so ``/ping`` does not flap to 503 for the seconds a replacement takes to load).
- ``failed``: a worker could not load a model; the server stops and exits 1 with that message
  (strict, like Triton's default model control: never live but unready for ever).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_ENV = "MLTK_SERVE_STATE_DIR"  # set by mltk.serving.server for all its workers


def _state() -> Path | None:
    state = os.environ.get(STATE_ENV)
    return Path(state) if state else None


def mark_worker_ready() -> None:
    state = _state()
    if state:
        (state / f"ready-{os.getpid()}").touch()


def workers_ready(needed: int) -> bool:
    """At least ``needed`` live worker processes have loaded their models."""
    state = _state()
    if state is None:
        return True  # an app run on its own: this process is the only worker
    live = 0
    for marker in state.glob("ready-*"):
        pid = int(marker.name.split("-", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:  # a worker that died (and was replaced) is not ready
            marker.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        live += 1
    return live >= needed


def server_ready(loaded_here: bool, workers: int) -> bool:
    """Whether the server is ready: every worker loaded once (and this one, before that), and
    no model failed to load. A worker replaced later does not make it unready again."""
    state = _state()
    if state is None:
        return loaded_here
    if (state / "failed").exists():
        return False
    if (state / "ready").exists():
        return True
    if loaded_here and workers_ready(workers):
        (state / "ready").touch()
        return True
    return False


def record_failure(message: str) -> None:
    """Say why this worker cannot serve; the server process stops and reports it."""
    state = _state()
    if state:
        tmp = state / f"failed-{os.getpid()}.tmp"
        tmp.write_text(message)
        os.replace(tmp, state / "failed")


def failure() -> str | None:
    """The message of a worker that could not load its models, if any."""
    state = _state()
    try:
        return (state / "failed").read_text() if state else None
    except FileNotFoundError:
        return None
