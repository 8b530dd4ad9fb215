"""Running a server as a subprocess until a block ends: started, waited on until its
readiness URL answers 200 (failing with its last log lines if it exits first), stopped with
SIGTERM (SIGKILL after a grace period). Used by ``mltk demo`` and the serve benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import IO


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def running(cmd: Sequence[str], ready_url: str, log: IO[bytes], *,
            env: Mapping[str, str] | None = None, timeout: float = 300.0,
            grace: float = 30.0) -> Iterator[subprocess.Popen]:
    """``cmd`` running (stderr to ``log``, a seekable binary file) while the block runs; its
    exit code is ``proc.returncode`` afterwards."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, **(env or {})})
    try:
        _wait_ready(proc, ready_url, log, timeout)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, url: str, log: IO[bytes], timeout: float) -> None:
    t0 = time.monotonic()
    name = " ".join(str(a) for a in proc.args[2:5])
    while True:
        if proc.poll() is not None:
            log.flush()
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{name}... exited with {proc.returncode}: {' | '.join(tail)}")
        with contextlib.suppress(OSError):
            if http_get(url, 2.0)[0] == 200:
                return
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{name}... not ready after {timeout:.0f} s")
        time.sleep(0.2)
