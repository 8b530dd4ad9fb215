"""mltk.serving.launcher: a server run as a subprocess for the length of a block (Python's own
``http.server``, started in a fraction of a second): ready when its URL answers, stopped with
SIGTERM, and a start that fails names the command and its last log lines."""

from __future__ import annotations

import signal
import sys

import pytest

from mltk.serving.launcher import free_port, http_get, running


def http_server(port: int, folder) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
            "--directory", str(folder)]


def test_a_server_runs_for_the_block_and_is_stopped_with_sigterm(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hello.txt").write_text("hi")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "log", "wb+") as log, \
            running(http_server(port, tmp_path / "site"), url + "/hello.txt", log) as proc:
        assert proc.poll() is None
        assert http_get(url + "/hello.txt") == (200, b"hi")
        status, body = http_get(url + "/missing")  # an HTTP error is an answer too
        assert status == 404 and b"File not found" in body
    assert proc.returncode == -signal.SIGTERM
    assert b"GET /hello.txt" in (tmp_path / "log").read_bytes()  # stderr went to the log


def test_a_server_that_exits_first_fails_with_its_last_log_lines(tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('no such model: x', file=sys.stderr); "
           "sys.exit(3)"]
    with open(tmp_path / "log", "wb+") as log, pytest.raises(
            RuntimeError, match=r"exited with 3: no such model: x$"), \
            running(cmd, f"http://127.0.0.1:{free_port()}/", log):
        pytest.fail("the block ran although the server never became ready")


def test_free_ports_can_be_bound():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname()[1] == port
