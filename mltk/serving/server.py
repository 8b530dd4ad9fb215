"""Running the app on uvicorn: one process, or ``workers`` processes sharing one socket.

Worker processes are started by uvicorn's supervisor with ``spawn`` and each loads every model
itself after it starts (a TensorFlow model loaded before a fork hangs in the child), reading
the settings from ``MLTK_SERVE_SETTINGS``. SIGTERM is a normal stop: uvicorn stops accepting,
finishes the requests in flight (``graceful_timeout`` seconds at most) and the process exits 0.
Connections are served by :mod:`mltk.serving.protocol` (connection, time and header limits).
A model that fails to load in any worker stops the server: :func:`run` raises
:class:`StartFailed` naming it (see :mod:`mltk.serving.readiness`).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from mltk.errors import MltkError
from mltk.serving import readiness
from mltk.serving.settings import ServeSettings

SETTINGS_ENV = "MLTK_SERVE_SETTINGS"


def app_from_env() -> Any:
    """App factory for uvicorn's worker processes."""
    from mltk.serving.app import create_app

    _log_to_stderr(mltk_too=os.getpid() != int(os.environ.get("MLTK_SERVE_PARENT", "0")))
    return create_app(ServeSettings.from_json(os.environ[SETTINGS_ENV]))


class StartFailed(MltkError):
    """A model could not be loaded: the server stopped instead of staying unready for ever."""


class Server(uvicorn.Server):
    """uvicorn's server, for which SIGTERM is a clean stop (exit 0), not a death by signal, and
    which stops when its models failed to load."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)

    async def on_tick(self, counter: int) -> bool:
        if readiness.failure():
            self.should_exit = True
        return await super().on_tick(counter)


class Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes, which stops them all when one could not load
    its models (rather than restarting it for ever)."""

    def keep_subprocess_alive(self) -> None:
        if readiness.failure():
            self.should_exit.set()
            return
        super().keep_subprocess_alive()


def run(settings: ServeSettings) -> None:
    """Serve until stopped (SIGTERM: exit normally; SIGINT: KeyboardInterrupt)."""
    import shutil

    made = [tempfile.mkdtemp(prefix="mltk-serve-")]  # readiness of every worker
    os.environ[SETTINGS_ENV] = settings.to_json()
    os.environ[readiness.STATE_ENV] = made[0]
    os.environ["MLTK_SERVE_PARENT"] = str(os.getpid())
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made.append(tempfile.mkdtemp(prefix="mltk-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made[-1]
    try:
        _serve(settings)
        failed = readiness.failure()
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
    if failed:
        raise StartFailed(failed)


def uvicorn_config(settings: ServeSettings) -> uvicorn.Config:
    """uvicorn's settings for ``settings``: the app factory of the workers (it reads
    ``MLTK_SERVE_SETTINGS``) on :mod:`mltk.serving.protocol`'s guarded connections."""
    from mltk.serving.protocol import ConnectionLimits, GuardedHttpToolsProtocol

    config = uvicorn.Config(
        "mltk.serving.server:app_from_env", factory=True, host=settings.host,
        port=settings.port, workers=settings.workers, access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout), log_config=None,
        log_level="info" if settings.access_log else "warning", lifespan="on",
        proxy_headers=False, server_header=False, http=GuardedHttpToolsProtocol, ws="none",
        timeout_keep_alive=settings.keep_alive_timeout)  # type: ignore[arg-type]
    config.connection_limits = ConnectionLimits(  # type: ignore[attr-defined]
        settings.max_connections, settings.header_timeout, settings.body_timeout,
        settings.max_header_bytes, linger_bytes=max(64 * 1024 * 1024, settings.max_body_bytes))
    return config


def _serve(settings: ServeSettings) -> None:
    config = uvicorn_config(settings)
    _allow_open_files(settings.max_connections + 256)
    server = Server(config)
    if settings.workers > 1:
        sock = config.bind_socket()
        Supervisor(config, sockets=[sock]).run()
    else:
        _log_to_stderr(mltk_too=False)  # the CLI already sends mltk's log lines to stderr
        server.run()


def _allow_open_files(wanted: int) -> None:
    """Raise the soft limit of open files (inherited by the workers) to ``wanted`` where the
    hard limit allows: ``max_connections`` is the limit on sockets, not the process's."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _log_to_stderr(mltk_too: bool) -> None:
    """uvicorn's own messages (and access lines with -v) on stderr, one line each."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
    mltk_log = logging.getLogger("mltk")
    if mltk_too and not mltk_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        mltk_log.addHandler(handler)
        mltk_log.setLevel(logging.INFO)
