"""mltk.serving.job_requests: ``POST /jobs`` and ``GET /jobs/{id}`` in-process (Starlette's
TestClient, a real redis-server as the broker, no worker): every check of a request before
anything runs, and the 202 of one that passes. Jobs run by workers are tests/test_jobs.py
(slow)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from mltk.jobs.queue import queue_length  # noqa: E402
from mltk.predictors.image import gray_png  # noqa: E402
from mltk.serving import job_requests  # noqa: E402
from mltk.serving.app import create_app  # noqa: E402
from mltk.serving.codecs import CodecError  # noqa: E402
from mltk.serving.launcher import free_port  # noqa: E402
from mltk.serving.settings import ServeSettings  # noqa: E402

REDIS = shutil.which("redis-server")
AUTH = {"Authorization": "Bearer t0ken"}


@pytest.fixture(scope="module")
def broker():
    """A redis-server of its own (no persistence), waited on until it answers."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server failed"
            time.sleep(0.01)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(30)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A job root with three photos in ``in/``, and a folder outside every root."""
    root = tmp_path_factory.mktemp("jobs")
    (root / "in").mkdir()
    for i in range(3):
        (root / "in" / f"{i}.png").write_bytes(gray_png(16))
    return root, tmp_path_factory.mktemp("elsewhere")


def client_of(**settings) -> TestClient:
    return TestClient(create_app(ServeSettings(models=("colors",), **settings)))


@pytest.fixture(scope="module")
def client(broker, roots):
    with client_of(token="t0ken", broker=broker, job_roots=(str(roots[0]),)) as c:
        c.headers.update(AUTH)
        yield c


def test_a_checked_request_is_planned_registered_and_enqueued(client, broker, roots):
    root, _ = roots
    body = {"kind": "colors", "args": [str(root / "in")], "out": str(root / "job"),
            "chunk_size": 2}
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["out"] == str(root / "job") and doc["chunks"] == doc["enqueued"] == 2
    assert doc["resumed"] is False and queue_length(broker) == 2
    status = client.get(f"/jobs/{doc['id']}").json()
    assert (status["items"], status["pending"], status["complete"]) == (3, 2, False)
    assert client.get("/jobs/0000").status_code == 404


@pytest.mark.parametrize("body, status, words", [
    ([1], 400, "expected a JSON object"),
    ({"kind": "colors", "args": "x", "out": "/o"}, 400, "args (a list of text)"),
    ({"kind": "paint", "args": [], "out": "/o"}, 400, "unknown job kind 'paint'"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "priority": 1}, 400,
     "unknown field(s) priority"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": ["x"]}, 400,
     "options must be an object"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": []}, 400,
     "options must be an object"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": ""}, 400,
     "options must be an object"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "chunk_size": 0}, 400, "chunk_size"),
    ({"kind": "colors", "args": ["IN"], "out": "relative/out"}, 400,
     "out must be an absolute path"),
    ({"kind": "colors", "args": ["ELSEWHERE"], "out": "OUT"}, 403,
     "args[0]: '{ELSEWHERE}' is not under the server's job_roots"),
    ({"kind": "colors", "args": ["IN/../../.."], "out": "OUT"}, 403, "not under"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": {"palette": "ELSEWHERE"}},
     403, "options.palette"),
    ({"kind": "predict", "args": ["ELSEWHERE", "IN"], "out": "OUT"}, 400,
     "by the name this server serves it under (served: none)"),
])
def test_a_bad_request_is_refused_naming_the_field(client, roots, body, status, words):
    root, elsewhere = roots
    paths = {"IN": str(root / "in"), "OUT": str(root / "refused"), "ELSEWHERE": str(elsewhere)}

    def fill(value):
        if isinstance(value, str):
            return next((value.replace(k, v) for k, v in paths.items() if value.startswith(k)),
                        value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return {k: fill(v) for k, v in value.items()} if isinstance(value, dict) else value

    r = client.post("/jobs", json=fill(body))
    assert r.status_code == status, r.text
    assert words.format(**paths) in r.json()["error"]
    assert not (root / "refused").exists()  # nothing was planned


def test_a_config_file_that_cannot_be_used_is_named_not_quoted(client, roots):
    root, _ = roots
    (root / "bad.yaml").write_text("secret: [1\n")
    r = client.post("/jobs", json={"kind": "colors", "args": [str(root / "in")],
                                   "out": str(root / "cfg-job"),
                                   "options": {"config": str(root / "bad.yaml")}})
    assert r.status_code == 400
    assert r.json()["error"] == (f"options.config: {str(root / 'bad.yaml')!r} is not a valid "
                                 "colors config file (run the job's command with it to see why)")


def test_without_a_token_or_roots_no_job_is_taken(broker, roots):
    root, _ = roots
    body = {"kind": "colors", "args": [str(root / "in")], "out": str(root / "x")}
    with client_of(broker=broker, job_roots=(str(root),)) as c:
        for r in (c.post("/jobs", json=body), c.get("/jobs/abc")):
            assert r.status_code == 403 and "need a bearer token" in r.json()["error"]
    with client_of(token="t0ken", broker=broker) as c:
        r = c.post("/jobs", json=body, headers=AUTH)
        assert r.status_code == 403 and "takes no paths" in r.json()["error"]


def test_a_broker_that_is_down_is_503_for_submit_and_status(roots):
    root, _ = roots
    down = f"redis://127.0.0.1:{free_port()}/0"
    with client_of(token="t0ken", broker=down, job_roots=(str(root),)) as c:
        c.headers.update(AUTH)
        submitted = c.post("/jobs", json={"kind": "colors", "args": [str(root / "in")],
                                          "out": str(root / "down")})
        followed = c.get("/jobs/abc")
    for r in (submitted, followed):
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert "cannot reach the broker" in r.json()["error"]


def test_models_are_taken_by_served_name_never_by_path(roots):
    root, _ = roots
    models = ("colors", f"digits={root / 'model'}")
    req = job_requests.parse({"kind": "predict", "args": ["digits", str(root / "in")],
                              "out": str(root / "p"), "chunk_size": 5}, models, [str(root)])
    assert (req.kind, req.args, req.settings.chunk_size) == (
        "predict", [str(root / "model"), str(root / "in")], 5)
    with pytest.raises(CodecError, match=r"served: digits\), not 'colors'") as err:
        job_requests.parse({"kind": "predict", "args": ["colors"], "out": str(root / "p")},
                           models, [str(root)])
    assert err.value.status == 400
