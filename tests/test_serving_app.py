"""The serving app in-process (Starlette's TestClient runs its lifespan and routes, no socket):
the error codes of both protocols, fast enough for the day-to-day lane. The server as a
process, with every model kind, is tests/test_serve.py (slow)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from mltk.predictors.image import gray_png as png  # noqa: E402
from mltk.serving.app import create_app  # noqa: E402
from mltk.serving.settings import ServeSettings  # noqa: E402
from tests.test_serve import huge_png  # noqa: E402


@pytest.fixture(scope="module")
def client():
    settings = ServeSettings(models=("colors",), max_body_mb=1.0, token="s3cret")
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = "Bearer s3cret"
        deadline = time.monotonic() + 120
        while c.get("/v2/health/ready").status_code != 200:  # the condition: models loaded
            assert time.monotonic() < deadline, c.get("/v2/health/ready").text
            time.sleep(0.05)
        yield c


def post(client, body, ctype, **headers):
    return client.post("/invocations", content=body, headers={"Content-Type": ctype, **headers})


def test_a_good_image_is_named(client):
    answer = post(client, png(64), "image/png")
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["colors"][0]["name"] == "gray"


@pytest.mark.parametrize("request_, status, words", [
    (("/invocations", b"abc", "image/png", {}), 400, "not an image"),
    (("/invocations", b"x", "image/png", {"X-Amzn-SageMaker-Target-Model": "nope"}), 404,
     "nope"),
    (("/invocations", "PNG", "image/png", {"Accept": "text/html"}), 406, "text/html"),
    (("/invocations", b"x", "text/plain", {}), 415, "text/plain"),
    (("/invocations", b"x" * (1024 * 1024 + 1), "image/png", {}), 413, "max_body"),
    (("/invocations", "HUGE", "image/png", {}), 413, "20000x20000"),
    (("/invocations", b"x", "image/png", {"Authorization": "Bearer wrong"}), 401, "token"),
])
def test_sagemaker_error_codes(client, request_, status, words):
    path, body, ctype, headers = request_
    body = {"PNG": png(16), "HUGE": huge_png()}.get(body, body) if isinstance(body, str) else body
    answer = client.post(path, content=body, headers={"Content-Type": ctype, **headers})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"], answer.text


def test_v2_and_http_error_codes(client):
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/colors/versions/999").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    wrong_method = client.delete("/invocations")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    bad = client.post("/v2/models/colors/infer", json={"inputs": [
        {"name": "image", "shape": [1], "datatype": "NOPE", "data": ["x"]}]})
    assert bad.status_code == 400 and "datatype" in bad.json()["error"]
    assert client.get("/ping", headers={"Authorization": ""}).status_code == 200  # open
    assert client.get("/v2/models/colors", headers={"Authorization": ""}).status_code == 401
    # the server is still fine afterwards
    assert post(client, png(32), "image/png").status_code == 200
