"""mltk.serving.server and mltk.serving.protocol in-process: uvicorn with mltk's guarded
connections, run in a thread of the test on a free loopback port with the colours model, and
raw sockets for the clients that misbehave. Fast enough for the day-to-day lane; the server as a
process, with every limit and signal, is tests/test_serve_limits.py (slow)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time

import pytest

pytest.importorskip("uvicorn")

import httpx  # noqa: E402

from mltk.serving import readiness, server  # noqa: E402
from mltk.serving.launcher import free_port  # noqa: E402
from mltk.serving.protocol import raw_response  # noqa: E402
from mltk.serving.settings import ServeSettings  # noqa: E402
from tests.test_serve_limits import PING, read_all, read_response, status_of  # noqa: E402

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@contextlib.contextmanager
def logging_restored():
    """The app factory gives uvicorn's loggers a handler of their own: undone afterwards, so
    the rest of the session logs as before."""
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
             for n in UVICORN_LOGGERS}
    try:
        yield
    finally:
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate


@contextlib.contextmanager
def threaded(settings: ServeSettings):
    """``mltk serve``'s uvicorn server (its config, its Server class, the app factory of its
    workers) in a thread, waited on until ready; stopped as SIGTERM stops it."""
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.setenv(server.SETTINGS_ENV, settings.to_json())
        mp.setenv("MLTK_SERVE_PARENT", str(os.getpid()))  # the mltk logger is left alone
        mp.delenv(readiness.STATE_ENV, raising=False)
        srv = server.Server(server.uvicorn_config(settings))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{settings.port}"
        deadline = time.monotonic() + 120
        try:
            while True:  # the condition: the port answers and the model is loaded
                assert thread.is_alive(), "the server thread ended before it was ready"
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url + "/v2/health/ready").status_code == 200:
                        break
                assert time.monotonic() < deadline, "not ready after 120 s"
                time.sleep(0.02)
            yield srv, url
        finally:
            srv.handle_exit(15, None)  # SIGTERM's handler: stop accepting, finish, exit
            thread.join(60)
            assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def live():
    # short time limits keep the tests quick; a client sends its request as soon as it has
    # connected, well within them even on a loaded machine
    settings = ServeSettings(models=("colors",), port=free_port(), max_connections=3,
                             header_timeout=0.5, body_timeout=0.5, max_header_kb=1.0)
    with threaded(settings) as (srv, url):
        yield srv, settings


def connect(settings: ServeSettings) -> socket.socket:
    return socket.create_connection(("127.0.0.1", settings.port), timeout=60)


def idle(srv: server.Server) -> None:
    """Wait until the server holds no connection (those of earlier tests are gone)."""
    deadline = time.monotonic() + 60
    while srv.server_state.connections:
        assert time.monotonic() < deadline, srv.server_state.connections
        time.sleep(0.01)


def error_of(response: bytes) -> str:
    return json.loads(response.partition(b"\r\n\r\n")[2])["error"]


def test_raw_response_is_a_complete_json_error():
    head, _, body = raw_response(503, "busy").partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    assert {"connection: close", "retry-after: 1", f"content-length: {len(body)}"} <= set(lines)
    assert json.loads(body) == {"error": "busy"}
    assert b"retry-after" not in raw_response(431, "big")


def test_the_server_answers_with_its_own_config(live):
    srv, settings = live
    with connect(settings) as sock:
        for _ in range(2):  # keep-alive: two requests on one connection
            sock.sendall(PING)
            assert status_of(read_response(sock)) == 200
    config = srv.config
    assert config.connection_limits.max_header_bytes == 1024
    assert config.connection_limits.max_connections == 3
    assert not config.server_header and config.workers == 1


def test_connections_over_the_limit_get_503_at_once(live):
    srv, settings = live
    idle(srv)
    held = [connect(settings) for _ in range(3)]
    try:
        for sock in held:  # each is open on the server's side once it has been answered
            sock.sendall(PING)
            assert status_of(read_response(sock)) == 200
        with connect(settings) as extra:  # it sends nothing: refused when accepted
            answer = read_all(extra)
        assert status_of(answer) == 503 and b"retry-after: 1" in answer
        assert "too many open connections" in error_of(answer)
    finally:
        for sock in held:
            sock.close()
    idle(srv)
    with connect(settings) as sock:  # a place freed: served again
        sock.sendall(PING)
        assert status_of(read_response(sock)) == 200


def test_headers_over_the_cap_get_431_and_the_connection_is_closed(live):
    _, settings = live
    with connect(settings) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2048 + b"\r\n\r\n")
        answer = read_all(sock)  # ends: the server closed the connection
    assert status_of(answer) == 431 and "max_header_kb (1 KB)" in error_of(answer)


def test_a_slow_head_and_a_slow_body_get_408(live):
    _, settings = live
    with connect(settings) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost:")  # the rest never comes
        answer = read_all(sock)
    assert status_of(answer) == 408 and "header_timeout (0.5 s)" in error_of(answer)
    with connect(settings) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 100\r\n\r\nonly this")
        answer = read_all(sock)
    assert status_of(answer) == 408 and "body_timeout (0.5 s)" in error_of(answer)


def test_a_connection_that_says_nothing_is_closed_without_an_answer(live):
    _, settings = live
    with connect(settings) as sock:
        assert read_all(sock) == b""


def test_a_model_that_cannot_load_stops_run_with_its_name(tmp_path, monkeypatch):
    """server.run in this process: the model fails to load, the server stops by itself and
    run raises StartFailed naming it (the environment it sets for its workers is restored)."""
    for name in (server.SETTINGS_ENV, readiness.STATE_ENV, "MLTK_SERVE_PARENT"):
        monkeypatch.setenv(name, "")  # run sets them; monkeypatch puts them back
    (tmp_path / "broken").mkdir()
    settings = ServeSettings(models=(f"broken={tmp_path / 'broken'}",), port=free_port())
    with logging_restored(), pytest.raises(server.StartFailed,
                                           match="model 'broken' .* failed to load"):
        server.run(settings)
    assert not os.path.exists(os.environ[readiness.STATE_ENV])  # its folder is removed
