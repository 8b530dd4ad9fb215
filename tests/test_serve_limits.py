"""mltk serve against clients that hold its resources: slow and idle connections, huge headers,
made-up model names, many large images at once; its token; and its readiness when a model
cannot load or a worker dies. Real servers on loopback, raw sockets where a client misbehaves;
every wait is on a condition (a socket's answer, a log line, a process exit), never a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.test_serve import Server

pytestmark = pytest.mark.slow


def serve(tmp_path: Path, *models: str, **settings: object) -> Server:
    """A server of ``models`` with ``settings`` in a config file, waited on until ready."""
    config = tmp_path / f"serve-{uuid.uuid4().hex[:8]}.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    s = Server(*(models or ("colors",)), "--config", str(config))
    try:
        s.wait_ready()
    except BaseException:
        s.stop()
        raise
    return s


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One response (head and a Content-Length body) on a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


PING = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"


# -- connections ---------------------------------------------------------------------------------
def test_slow_head_and_slow_body_get_408_while_others_are_served(tmp_path):
    s = serve(tmp_path, header_timeout=1, body_timeout=1)
    try:
        slow_head = connect(s)
        slow_head.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le")
        slow_body = connect(s)
        slow_body.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                          b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
        silent = connect(s)  # connected, sent nothing: closed without an answer
        assert httpx.get(s.url + "/ping").status_code == 200  # others are served meanwhile
        head_answer = read_all(slow_head)
        assert status_of(head_answer) == 408, head_answer
        assert b"header_timeout" in head_answer
        body_answer = read_all(slow_body)
        assert status_of(body_answer) == 408, body_answer
        assert b"body_timeout" in body_answer
        assert read_all(silent) == b""
        assert httpx.get(s.url + "/ping").status_code == 200
    finally:
        assert s.stop() == 0, s.log()


def test_connections_over_the_limit_get_503_and_are_closed(tmp_path):
    limit = 3
    s = serve(tmp_path, max_connections=limit, keep_alive_timeout=120, header_timeout=120)
    held: list[socket.socket] = []
    try:
        for _ in range(50):  # hold `limit` idle keep-alive connections, each answered once
            if len(held) == limit:
                break
            sock = connect(s)
            answer = read_response(sock) if not sock.sendall(PING) else b""
            if status_of(answer) == 200:
                held.append(sock)
            else:  # a connection the server had not yet seen closed still counted
                assert status_of(answer) == 503, answer
                sock.close()
        assert len(held) == limit
        extra = connect(s)
        answer = read_all(extra)  # refused at once, before it sends anything
        assert status_of(answer) == 503 and b"retry-after: 1" in answer.lower(), answer
        assert b"too many open connections" in answer
        held.pop().close()
        for _ in range(500):  # condition: the server has seen the close
            r = httpx.get(s.url + "/ping")
            if r.status_code == 200:
                break
        assert r.status_code == 200
    finally:
        for sock in held:
            sock.close()
        assert s.stop() == 0, s.log()


def test_idle_keep_alive_connection_is_closed(tmp_path):
    s = serve(tmp_path, keep_alive_timeout=1)
    try:
        sock = connect(s)
        sock.sendall(PING)
        assert status_of(read_response(sock)) == 200
        assert read_all(sock) == b""  # closed by the server after 1 s idle
    finally:
        assert s.stop() == 0, s.log()


def test_headers_over_the_cap_get_431_without_reading_the_rest(tmp_path):
    s = serve(tmp_path)  # the default cap: 16 KB, as h11's
    try:
        sock = connect(s)  # one header of 20 KB: 431
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = read_all(sock)
        assert status_of(answer) == 431 and b"max_header_kb (16 KB)" in answer, answer
        sock = connect(s)  # headers that never end: refused once past the cap
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: 0123456789\r\n" * 1000)
        answer = read_all(sock)
        assert status_of(answer) == 431, answer
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))  # within the cap: served
        sock = connect(s)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert status_of(read_response(sock)) == 200
    finally:
        assert s.stop() == 0, s.log()


def test_sigterm_does_not_wait_for_a_slow_body(tmp_path):
    """A request whose body trickles in is answered 503 at SIGTERM; the server exits 0 at once,
    not after graceful_timeout (300 s here)."""
    s = serve(tmp_path, graceful_timeout=300)
    try:
        sock = connect(s)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
        # condition: the app is reading the body (uvicorn answers 100 Continue on its receive)
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        sock.sendall(b"x" * 10)
        s.proc.send_signal(signal.SIGTERM)
        answer = read_all(sock)
        assert status_of(answer) == 503 and b"stopping" in answer, answer
        assert s.proc.wait(120) == 0, s.log()
    finally:
        assert s.stop() == 0, s.log()


# -- metrics ------------------------------------------------------------------------------------
def test_unknown_model_names_share_one_metrics_label(tmp_path):
    s = serve(tmp_path)
    try:
        names = [uuid.uuid4().hex for _ in range(500)]
        with httpx.Client(base_url=s.url) as client:
            for name in names:
                assert client.post(f"/v2/models/{name}/infer", json={"inputs": []}
                                   ).status_code == 404
        text = httpx.get(s.url + "/metrics").text
        assert not any(name in text for name in names)
        assert 'mltk_requests_total{model="-",protocol="v2",status="404"} 500.0' in text
        assert len(text) < 20_000
    finally:
        assert s.stop() == 0, s.log()


# -- token --------------------------------------------------------------------------------------
def test_bearer_scheme_in_any_case_and_one_authorization_header_only(tmp_path):
    s = Server("colors", env={"MLTK_SERVE_TOKEN": "s3cret"})
    try:
        s.wait_ready()
        url = s.url + "/execution-parameters"
        assert httpx.get(s.url + "/ping").status_code == 200
        assert httpx.get(url).status_code == 401
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert httpx.get(url, headers={"Authorization": f"{scheme} s3cret"}
                             ).status_code == 200
        assert httpx.get(url, headers={"Authorization": "Bearer s3creT"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Basic s3cret"}).status_code == 401
        two = httpx.Headers([("Authorization", "Bearer s3cret"),
                             ("Authorization", "Bearer other")])
        r = httpx.get(url, headers=two)
        assert r.status_code == 400 and "more than one Authorization" in r.json()["error"]
    finally:
        assert s.stop() == 0, s.log()


def test_token_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("fr0m-a-file\n")  # as `echo TOKEN > file` writes it
    s = Server("colors", "--token-file", str(token_file), env={"MLTK_SERVE_TOKEN": ""})
    try:
        s.wait_ready()
        url = s.url + "/execution-parameters"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer fr0m-a-file"}
                         ).status_code == 200
    finally:
        assert s.stop() == 0, s.log()


def test_token_file_that_cannot_be_read_is_an_error_naming_it(tmp_path, mltk_proc):
    missing = tmp_path / "no-such-token"
    r = mltk_proc("serve", "colors", "--token-file", str(missing), timeout=120)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(missing) in errors[0], r.stderr


def test_serve_help_says_how_auth_works(mltk_proc):
    text = " ".join(mltk_proc("serve", "--help", env={"COLUMNS": "200"}).stdout.split())
    for words in ("--token-file", "MLTK_SERVE_TOKEN", "Authorization: Bearer TOKEN", "/ping",
                  "/v2/health/ready"):
        assert words in text, words


# -- readiness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_that_fails_to_load_stops_the_server(models, tmp_path, mltk_proc, workers):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((models["cancer"] / "config.yaml").read_text())
    (broken / "model.ubj").write_bytes(b"not a model")
    from tests.conftest import free_port

    r = mltk_proc("serve", "colors", f"bad={broken}", "--workers", workers, "--port",
                  str(free_port()), timeout=300)
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.stderr
    assert "model 'bad'" in errors[0] and str(broken) in errors[0], errors


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _workers(pid: int) -> list[int]:
    out = []
    for kid in _children(pid):
        try:
            cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(kid)
    return out


def test_readiness_does_not_flap_when_a_worker_is_replaced(tmp_path):
    s = Server("colors", "--workers", "2")
    try:
        s.wait_ready()
        loaded = "loaded and warmed up"
        assert s.log().count(loaded) == 2
        workers = _workers(s.proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        statuses = []
        with httpx.Client(base_url=s.url) as client:
            end = time.monotonic() + 300
            while s.log().count(loaded) < 3:  # condition: the replacement has loaded
                assert time.monotonic() < end, s.log()
                statuses.append(client.get("/ping").status_code)
            statuses.append(client.get("/ping").status_code)
        assert set(statuses) == {200}, statuses
    finally:
        assert s.stop() == 0, s.log()


# -- decode budget ------------------------------------------------------------------------------
def _solid_png(side: int) -> bytes:
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.full((side, side, 3), 90, np.uint8))
    assert ok
    return buf.tobytes()


def test_decode_budget_bounds_pixels_decoded_at_once(tmp_path):
    """Six 3000x3000 PNGs at once on three colours models (three decodes in parallel without a
    budget) with a budget of one image: never more than one decoded at once; those that find
    no room and no place in the queue get 503 with Retry-After, the others 200."""
    side = 3000
    s = serve(tmp_path, "a=colors", "b=colors", "c=colors", decode_budget_pixels=side * side)
    try:
        png = _solid_png(side)
        results: list[httpx.Response] = []

        def call(model: str) -> None:
            results.append(httpx.post(s.url + "/invocations", content=png, timeout=120,
                                      headers={"Content-Type": "image/png",
                                               "X-Amzn-SageMaker-Target-Model": model}))

        threads = [threading.Thread(target=call, args=(m,)) for m in "abcabc"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(results) == 6
        assert {r.status_code for r in results} <= {200, 503}, [r.text for r in results]
        assert any(r.status_code == 200 for r in results)
        for r in results:
            if r.status_code == 503:
                assert r.headers["retry-after"] and "decode budget" in r.json()["error"]
        text = httpx.get(s.url + "/metrics").text
        peak = next(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("mltk_decode_pixels_peak "))
        assert 0 < peak <= side * side
        assert "mltk_decode_pixels 0.0" in text
    finally:
        assert s.stop() == 0, s.log()


@pytest.fixture(scope="module")
def models(tmp_path_factory, cancer_model):
    return {"cancer": cancer_model / "model"}
