"""The unbatched hot path of ``mltk serve``, in-process (no socket): the inference routes
dispatched past FastAPI answer byte for byte as through FastAPI, and a small request to a
two-group model with ``--max-batch-size 1`` is scored on the event loop, with no thread hop,
to the same records."""

from __future__ import annotations

import asyncio
import json
import math
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi import FastAPI, Request  # noqa: E402

from mltk import settings  # noqa: E402
from mltk.serving.app import create_app  # noqa: E402
from mltk.serving.codecs import json_bytes  # noqa: E402
from mltk.serving.dataplane import DataPlane  # noqa: E402
from mltk.serving.direct import DirectRoutes  # noqa: E402
from mltk.serving.settings import ServeSettings  # noqa: E402
from mltk.xgb import analyze  # noqa: E402
from tests.test_xgb_inputs import FAST, small_table  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("direct")
    analyze(small_table(), "group", settings.load("xgb", **FAST), id_cols=["uid"]).save(out)
    return out


def unbatched(model_dir, name: str = "shop") -> ServeSettings:
    return ServeSettings(models=(f"{name}={model_dir}",), max_batch_size=1, max_body_mb=0.01)


class PassThrough:
    """A user's middleware that does nothing: with one, every request goes through FastAPI."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def apps(model_dir):
    """The same loaded data plane behind two apps: ``direct`` (the shortcut) and ``fastapi``
    (a pass-through middleware added, so FastAPI dispatches everything)."""
    s = unbatched(model_dir)
    plane = DataPlane(s)
    plane.load()
    assert plane.loaded, plane.load_error
    direct, through = create_app(s, plane), create_app(s, plane)
    through.app.add_middleware(PassThrough)
    return direct, through


def scope_of(method: str, path: str, headers: dict[str, str], root_path: str = "") -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": root_path, "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


async def call(app, method: str, path: str, body: bytes, headers: dict[str, str]):
    """(status, headers, body) of one request sent in two pieces."""
    pieces = [body[:len(body) // 2], body[len(body) // 2:]]

    async def receive():
        if pieces:
            chunk = pieces.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
        await asyncio.Event().wait()

    sent = []

    async def send(message):
        sent.append(message)

    await app(scope_of(method, path, headers), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent
                                                        if m["type"] == "http.response.body")


ROW = {"uid": 7, "age": 41.0, "city": "Osaka", "member": True}
V2_ROW = {"id": "r1", "inputs": [
    {"name": "age", "shape": [1], "datatype": "FP64", "data": [41.0]},
    {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["Osaka"]},
    {"name": "member", "shape": [1], "datatype": "BYTES", "data": ["True"]}]}
JSON = {"Content-Type": "application/json"}
REQUESTS = [
    ("/invocations", json.dumps({"instances": [ROW]}), JSON),
    ("/invocations", json.dumps([ROW, {**ROW, "age": None}, {**ROW, "uid": 8}]), JSON),
    ("/invocations", "uid,age,city,member\n1,30,Tokyo,False\n2,,Kyoto,true\n",
     {"Content-Type": "text/csv", "Accept": "text/csv;header=present"}),
    ("/invocations", json.dumps(ROW) + "\n" + json.dumps(ROW),
     {"Content-Type": "application/jsonlines", "Accept": "application/jsonlines",
      "X-Amzn-SageMaker-Custom-Attributes": "trace=1"}),
    ("/invocations", json.dumps({**ROW, "city": "Sapporo"}), JSON),  # 400: unseen category
    ("/invocations", json.dumps({**ROW, "age": "1e400"}), JSON),  # 400: not finite
    ("/invocations", "{", JSON),  # 400: not JSON
    ("/invocations", json.dumps(ROW), {**JSON, "Accept": "text/html"}),  # 406
    ("/invocations", "x", {"Content-Type": "text/plain"}),  # 415
    ("/invocations", json.dumps(ROW), {**JSON, "X-Amzn-SageMaker-Target-Model": "nope"}),
    ("/invocations", json.dumps([ROW] * 200), JSON),  # 413: past max_body_mb, no length
    ("/v2/models/shop/infer", json.dumps(V2_ROW), JSON),
    ("/v2/models/shop/infer", json.dumps({**V2_ROW, "parameters": {
        "binary_data_output": True}}), JSON),
    ("/v2/models/shop/infer", json.dumps({"inputs": [{"name": "rows", "shape": [2, 3],
                                                      "datatype": "FP64",
                                                      "data": [30, 1, 0, 50, 2, 1]}]}), JSON),
    ("/v2/models/shop/infer", json.dumps({"inputs": [{"name": "age"}]}), JSON),  # 400
    ("/v2/models/nope/infer", json.dumps(V2_ROW), JSON),  # 404
]


@pytest.mark.slow
@pytest.mark.parametrize("path, body, headers", REQUESTS)
def test_the_shortcut_answers_as_fastapi_does(apps, path, body, headers):
    direct, through = apps
    s = scope_of("POST", path, headers)
    assert DirectRoutes(direct.app).match(s) is not None
    assert DirectRoutes(through.app).match(s) is None  # added middleware: FastAPI's way
    a = asyncio.run(call(direct, "POST", path, body.encode(), headers))
    b = asyncio.run(call(through, "POST", path, body.encode(), headers))
    assert a == b
    assert a[0] in (200, 400, 404, 406, 413, 415), a


def test_only_the_exact_inference_routes_take_the_shortcut():
    app = create_app(ServeSettings(models=("colors",)))  # routes only: nothing loaded
    routes = DirectRoutes(app.app)
    for path in ("/invocations", "/v2/models/m/infer", "/v2/models/a%20b/infer"):
        assert routes.match(scope_of("POST", path, {})) is not None, path
    for method, path, root in [("GET", "/invocations", ""), ("POST", "/invocations/", ""),
                               ("POST", "/invocations", "/prefix"),
                               ("PUT", "/v2/models/m/infer", ""),
                               ("POST", "/v2/models/m/versions/1/infer", ""),
                               ("POST", "/v2/models//infer", ""),
                               ("POST", "/v2/models/a/b/infer", ""), ("POST", "/ping", "")]:
        assert routes.match(scope_of(method, path, {}, root)) is None, (method, path, root)
    app.app.add_middleware(PassThrough)
    assert DirectRoutes(app.app).match(scope_of("POST", "/invocations", {})) is None
    other = FastAPI()

    @other.post("/invocations")
    async def invocations(request: Request): ...

    @other.post("/v2/models/{name}/infer")  # a parameter more, which FastAPI would fill
    async def infer(name: str, request: Request, trace: str | None = None): ...

    routes = DirectRoutes(other)
    assert routes.match(scope_of("POST", "/invocations", {})) is not None
    assert routes.match(scope_of("POST", "/v2/models/m/infer", {})) is None
    # a path left to FastAPI is answered as before (405 with the JSON error body)
    status, _, body = asyncio.run(call(app, "GET", "/invocations", b"", {}))
    assert status == 405 and "error" in json.loads(body)


def model_threads(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"model-{name}")]


@pytest.mark.slow
def test_a_small_unbatched_request_is_scored_on_the_event_loop(model_dir):
    """--max-batch-size 1: one row is prepared and scored on the event loop (the model's
    thread never starts); 17 rows (more than the model's inline_inputs) go to that thread.
    Both give the predictor's own records."""
    plane = DataPlane(unbatched(model_dir, "inline"))
    plane.load()
    p = plane.models["inline"]
    rows = small_table(40, seed=3).drop(columns=["group"]).to_dict("records")
    rows = [{**r, "uid": int(r["uid"]), "member": bool(r["member"])} for r in rows]
    assert 1 <= p.inline_inputs < 17

    async def go():
        try:
            assert await plane.infer("inline", rows[:1]) == p.predict(rows[:1])
            assert model_threads("inline") == []
            assert await plane.infer("inline", rows[:17]) == p.predict(rows[:17])
            assert model_threads("inline") != []
        finally:
            await plane.close()

    asyncio.run(go())


@pytest.mark.slow
def test_batching_still_gathers_small_requests(model_dir):
    """With batching on (the default), a one-row request still goes to the batcher, which
    scores in the model's thread."""
    plane = DataPlane(ServeSettings(models=(f"batched={model_dir}",), max_latency_ms=0.0))
    plane.load()

    async def go():
        try:
            assert await plane.infer("batched", [ROW]) == plane.models["batched"].predict([ROW])
            assert model_threads("batched") != []
        finally:
            await plane.close()

    asyncio.run(go())


def test_json_answers_keep_nan_and_inf_as_null():
    doc = {"a": float("nan"), "b": np.float32(1.5), "c": [np.float64("inf"), 2.0],
           "d": np.array([1.0, math.inf])}
    assert json_bytes(doc) == b'{"a":null,"b":1.5,"c":[null,2.0],"d":[1.0,null]}'
    assert json_bytes({"x": [1, "NaN", 0.1]}) == b'{"x":[1,"NaN",0.1]}'


def test_no_access_line_is_built_without_the_access_log():
    """mltk gives "uvicorn.access" a handler (for --access-log); without the option, the
    connection must not build a line per response that the log level then drops."""
    import logging

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from mltk.serving.protocol import GuardedHttpToolsProtocol

    async def app(scope, receive, send): ...

    access = logging.getLogger("uvicorn.access")
    kept = access.handlers[:], access.propagate, access.level
    loop = asyncio.new_event_loop()
    try:
        for wanted in (False, True):
            config = Config(app, access_log=wanted, log_config=None, lifespan="off")
            config.load()
            access.addHandler(logging.NullHandler())  # as mltk.serving.server does
            assert GuardedHttpToolsProtocol(config, ServerState(), {}, loop).access_log is wanted
    finally:
        loop.close()
        access.handlers[:], access.propagate = kept[0], kept[1]
        access.setLevel(kept[2])
