"""The HTTP side of ``mltk serve``: a FastAPI app speaking two protocols over one data plane.

- SageMaker's inference container contract: ``GET /ping``, ``POST /invocations``,
  ``GET /execution-parameters``.
- The Open Inference Protocol (KServe V2) over REST, with the binary tensor data extension.
- ``GET /metrics`` (Prometheus), ``GET /openapi.json`` and an offline ``GET /docs`` page.

Routes only parse, delegate to :class:`~mltk.serving.dataplane.DataPlane` and pick status
codes; every error is a JSON body ``{"error": "..."}``.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from mltk import __version__
from mltk.serving import codecs, v2codec
from mltk.serving.codecs import CodecError
from mltk.serving.dataplane import DataPlane, NotFound, NotReady
from mltk.serving.outcomes import LARGE_BODY, MODEL_VERSION, answer_records, message_of, status_of
from mltk.serving.settings import ServeSettings

log = logging.getLogger(__name__)

#: Routes open without the bearer token (health checks of SageMaker and Kubernetes).
OPEN_PATHS = frozenset({"/ping", "/v2/health/live", "/v2/health/ready"})
_BINARY_HEADER = "Inference-Header-Content-Length"
_CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {}}, "text/csv": {"schema": {"type": "string"}},
    "application/jsonlines": {"schema": {"type": "string"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}}}}}
_V2_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object", "required": [
            "name", "shape", "datatype"], "properties": {
            "name": {"type": "string"}, "shape": {"type": "array", "items": {
                "type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": list(v2codec.DATATYPES)}, "data": {},
            "parameters": {"type": "object"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                               "properties": {"name": {"type": "string"}}}},
        "parameters": {"type": "object"}}}}}}}


#: Seconds a client is asked to wait before retrying a 503 (loading, or the queue full).
RETRY_AFTER = "1"


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Any:
    """The JSON error answer; a 503 says when to retry (RFC 9110 ``Retry-After``)."""
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("Retry-After", RETRY_AFTER)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def failure(exc: BaseException, headers: Mapping[str, str] | None = None) -> Any:
    """The error answer for an exception raised by a route; a 500 (a bug, not the client's
    fault) is logged on stderr with its traceback."""
    status = status_of(exc)
    if status == 500:  # the traceback in the message: every handler of mltk's log shows it
        import traceback

        log.error("internal error answering a request:\n%s",
                  "".join(traceback.format_exception(exc)).rstrip())
    return error(status, message_of(exc), headers)






def create_app(settings: ServeSettings, plane: DataPlane | None = None) -> Any:
    """The ASGI app (body limit and token checks wrap it). Models load when it starts."""
    import asyncio
    import contextlib

    from mltk import _imaging

    plane = plane or DataPlane(settings)
    plane.metrics.known_models = plane.models  # requests for other names share one label
    _imaging.decode_budget.configure(settings.decode_budget, wait=settings.timeout,
                                     on_change=plane.metrics.decode_changed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        _drain_on_stop()
        plane.start_loading()
        watcher = asyncio.create_task(_report_load_failure(plane, settings))
        grpc_server = await _start_grpc(plane, settings, getattr(app.state, "live_models", None))
        yield
        watcher.cancel()
        if grpc_server is not None:
            await grpc_server.stop()  # in-flight calls finish (graceful_timeout at most)
        await plane.close()

    app = FastAPI(title="mltk serve", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan,
                  description="mltk models behind the SageMaker container contract and the "
                  "Open Inference Protocol (V2).")
    app.state.plane = plane
    _document_model_names(app, settings)
    _exception_handlers(app)
    _sagemaker_routes(app, plane, settings)
    _v2_routes(app, plane)
    _misc_routes(app, plane)
    _drift_routes(app, plane)
    if settings.multi_model or settings.model_repository:  # models loaded and unloaded live
        from mltk.serving import repository

        repository.add_routes(app, plane, settings)
    if settings.broker:
        _job_routes(app, settings)
    return _Guard(app, settings)


async def _start_grpc(plane: DataPlane, settings: ServeSettings, live: Any = None) -> Any:
    """The gRPC server on the same data plane, when ``grpc_port`` is set (None otherwise);
    ``live``: the worker's live models (mltk.serving.repository), when they are on."""
    if settings.grpc_port is None:
        return None
    from mltk.serving import grpc_server

    return await grpc_server.start(plane, settings, live)


async def _report_load_failure(plane: DataPlane, settings: ServeSettings) -> None:
    """When this worker's models fail to load, say which and why: the server stops and exits 1
    with that message (mltk.serving.readiness), rather than staying live and never ready."""
    import asyncio

    from mltk.predictors import parse_model_spec
    from mltk.serving import readiness

    while not plane.loaded and not plane.load_error:
        await asyncio.sleep(0.05)
    if plane.load_error:
        specs = settings.models
        name, path = parse_model_spec(specs[min(len(plane.models), len(specs) - 1)])
        readiness.record_failure(f"model {name!r} ({path}) failed to load: {plane.load_error}")


def _document_model_names(app: Any, settings: ServeSettings) -> None:
    """The ``name`` path parameter lists the served models, so clients and fuzzers see them."""
    from mltk.predictors import parse_model_spec

    names = [parse_model_spec(spec)[0] for spec in settings.models]
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = plain()
            for ops in spec.get("paths", {}).values():
                for op in ops.values():
                    for param in op.get("parameters", []):
                        if param.get("in") == "path" and param.get("name") == "name":
                            param["schema"] = {**param.get("schema", {}), "enum": names}
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi


def _drain_on_stop() -> None:
    """Chain a drain of the batchers before uvicorn's own SIGTERM/SIGINT handling, so inputs
    held for a batch are scored at once when the server is asked to stop."""
    import signal
    import threading

    from mltk.serving.batching import drain_all

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            drain_all()
            previous(signum, frame)

        signal.signal(sig, handler)


def _exception_handlers(app: Any) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_req: Any, exc: HTTPException) -> Any:
        return error(exc.status_code, str(exc.detail), exc.headers)  # 405 carries its Allow

    @app.exception_handler(RequestValidationError)
    async def validation_error(_req: Any, exc: RequestValidationError) -> Any:
        return error(400, f"invalid request: {exc.errors()[:3]}")

    @app.exception_handler(Exception)
    async def any_error(_req: Any, exc: Exception) -> Any:
        return failure(exc)


# -- SageMaker ------------------------------------------------------------------------------------
def _sagemaker_routes(app: Any, plane: DataPlane, settings: ServeSettings) -> None:
    @app.get("/ping", summary="SageMaker health check: 200 once every model is ready")
    async def ping() -> Any:
        if not plane.ready:
            return error(503, _not_ready(plane))
        return {"status": "ready"}

    @app.get("/execution-parameters", summary="SageMaker batch transform parameters")
    async def execution_parameters() -> Any:
        return {"MaxConcurrentTransforms": settings.workers, "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": int(settings.max_body_mb)}

    @app.post("/invocations", summary="SageMaker inference: one output per input, in order",
              openapi_extra=_BODY_DOC)
    async def invocations(request: Request) -> Any:
        echo = {k: v for k, v in ((_CUSTOM_ATTRIBUTES, request.headers.get(_CUSTOM_ATTRIBUTES)),)
                if v is not None}
        t0, name, status = time.perf_counter(), "-", 500
        try:
            await plane.wait_own_load()
            p = plane.get(request.headers.get(_TARGET_MODEL))
            name = p.name
            accept = codecs.negotiate(request.headers.get("accept"))
            body = await request.body()
            items = await _work(len(body) > LARGE_BODY, lambda: _decode(
                p, request.headers.get("content-type"), body))
            outcomes = await plane.infer(p.name, items)
            records = answer_records(outcomes, p.input_kind)
            body, ctype = await _work(len(records) > LARGE_ANSWER,
                                      lambda: codecs.encode(records, accept))
            if ctype == codecs.CSV and "header=present" in (request.headers.get("accept") or ""):
                body = codecs.csv_header(records) + body
            status = 200
            return Response(body, media_type=ctype, headers=echo)
        except Exception as exc:
            status = status_of(exc)
            return failure(exc, echo)
        finally:
            plane.metrics.observe(name, "sagemaker", status, time.perf_counter() - t0)


#: Answers of more records are encoded in a worker thread (bodies: ``outcomes.LARGE_BODY``).
LARGE_ANSWER = 2000


async def _work(large: bool, work: Callable[[], Any]) -> Any:
    """``work()``: inline, or in the thread pool when ``large``."""
    if not large:
        return work()
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)


def _not_ready(plane: DataPlane) -> str:
    try:
        plane.check_ready()
    except NotReady as exc:
        return str(exc)
    return "models are loading"


def _decode(p: Any, content_type: str | None, body: bytes) -> list[Any]:
    """The predictor's inputs in a request body (a similarity index has codecs of its own)."""
    if p.input_kind == "similar":
        from mltk.serving import similar_codec

        return similar_codec.decode(codecs.media_type(content_type), body)
    return codecs.decode(p.input_kind, content_type, body, _columns(p))


def _columns(p: Any) -> list[str]:
    return list(getattr(p, "features", []) or [])





# -- Open Inference Protocol (V2) -----------------------------------------------------------------
def _v2_routes(app: Any, plane: DataPlane) -> None:
    @app.get("/v2", summary="Server metadata")
    async def server_metadata() -> Any:
        return {"name": "mltk", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", summary="Liveness: 200 while the process runs")
    async def live() -> Any:
        return {"live": True}

    @app.get("/v2/health/ready", summary="Readiness: 200 once every model is ready")
    async def ready() -> Any:
        if not plane.ready:
            return error(503, _not_ready(plane))
        return {"ready": True}

    @app.get("/v2/models/{name}", summary="Model metadata")
    @app.get("/v2/models/{name}/versions/{version}", include_in_schema=False)
    async def model_metadata(name: str, version: str | None = None) -> Any:
        try:
            return _model(plane, name, version).metadata()
        except Exception as exc:
            return failure(exc)

    @app.get("/v2/models/{name}/ready", summary="Model readiness")
    @app.get("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
    async def model_ready(name: str, version: str | None = None) -> Any:
        try:
            _model(plane, name, version)
        except Exception as exc:
            return failure(exc)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", summary="Inference with V2 tensors",
              openapi_extra=_V2_BODY_DOC)
    @app.post("/v2/models/{name}/versions/{version}/infer", include_in_schema=False)
    async def infer(name: str, request: Request, version: str | None = None) -> Any:
        t0, status = time.perf_counter(), 500
        try:
            await plane.wait_own_load()
            p = _model(plane, name, version)
            body = await request.body()
            req, values = await _work(len(body) > LARGE_BODY, lambda: v2codec.parse_request(
                body, request.headers.get(_BINARY_HEADER)))
            names, categories, declared = plane.schema(p)
            items = v2codec.to_items(p.input_kind, values, req, names, categories)
            records = answer_records(await plane.infer(p.name, items), p.input_kind)
            tensors, blobs = v2codec.outputs(records, req, declared)
            doc = {"model_name": p.name, "model_version": MODEL_VERSION, "outputs": tensors}
            if "id" in req:
                doc["id"] = req["id"]  # text: parse_request refuses any other id
            status = 200
            head = codecs.json_bytes(doc)
            if not blobs:
                return Response(head, media_type="application/json")
            return Response(head + b"".join(blobs), media_type="application/octet-stream",
                            headers={_BINARY_HEADER: str(len(head))})
        except Exception as exc:
            status = status_of(exc)
            return failure(exc)
        finally:
            plane.metrics.observe(name, "v2", status, time.perf_counter() - t0)




def _model(plane: DataPlane, name: str, version: str | None) -> Any:
    """The model of that name, at a version it has (404 otherwise)."""
    p = plane.get(name)
    if version is not None and version != MODEL_VERSION:
        raise NotFound(f"model {name!r} has no version {version!r} (versions: {MODEL_VERSION})")
    return p


# -- jobs (with a broker) ------------------------------------------------------------------------
def _job_routes(app: Any, settings: ServeSettings) -> None:
    """The original practice's Flask-to-Celery path: submit a job, follow it by id. Only with a
    bearer token, paths under ``job_roots``, models by served name (see job_requests)."""
    import logging

    from starlette.concurrency import run_in_threadpool

    from mltk.errors import MltkError, describe
    from mltk.jobs.kinds import KINDS
    from mltk.jobs.queue import BrokerError
    from mltk.serving import job_requests

    log = logging.getLogger("mltk.serving")
    doc = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["kind", "args", "out"], "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "args": {"type": "array", "items": {"type": "string"}},
            "out": {"type": "string"}, "chunk_size": {"type": "integer", "minimum": 1},
            "chunk_seconds": {"type": "number", "exclusiveMinimum": 0},
            "options": {"type": "object"}}}}}}}

    def answer(exc: Exception) -> Any:
        """An error body that names the field or input at fault, never a file's content."""
        if isinstance(exc, CodecError):
            return error(exc.status, str(exc))
        if isinstance(exc, BrokerError):
            return error(503, describe(exc), {"Retry-After": "5"})
        if isinstance(exc, NotFound):
            return error(404, str(exc))
        if isinstance(exc, MltkError):
            return error(400, describe(exc))
        log.error("POST/GET /jobs failed", exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); see the server's log")

    @app.post("/jobs", summary="Submit an mltk job to the workers (as mltk jobs submit; needs "
              "the bearer token, paths under job_roots)", status_code=202, openapi_extra=doc)
    async def submit_job(request: Request) -> Any:
        try:
            job_requests.check_allowed(settings.token)
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise CodecError(400, f"invalid JSON ({getattr(exc, 'msg', exc)})") from None
            return JSONResponse(await run_in_threadpool(_submit_job, settings, body), 202)
        except Exception as exc:
            return answer(exc)

    @app.get("/jobs/{job_id}", summary="Progress of a job submitted to the workers")
    async def job_status(job_id: str) -> Any:
        try:
            job_requests.check_allowed(settings.token)
            return await run_in_threadpool(_job_status, settings.broker, job_id)
        except Exception as exc:
            return answer(exc)


def _submit_job(settings: ServeSettings, body: Any) -> dict[str, Any]:
    from mltk.serving import job_requests

    req = job_requests.parse(body, settings.models, settings.job_roots)
    return job_requests.submission_doc(job_requests.submit(req, settings.broker,
                                                           settings.job_roots))


def _job_status(broker: str, job_id: str) -> dict[str, Any]:
    from mltk.jobs import JobFolder, core, queue

    queue.check_broker(broker)  # a broker that is down is 503, as for POST /jobs
    path = queue.registered_jobs(broker).get(job_id)
    if path is None:
        raise NotFound(f"no job {job_id!r} on this broker")
    return core.status(JobFolder(path))


# -- metrics and docs -----------------------------------------------------------------------------
def _misc_routes(app: Any, plane: DataPlane) -> None:
    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Any:
        if plane.loaded:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(plane.drift.refresh_metrics)
        body, ctype = plane.metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/docs", summary="This API, as a page that needs no internet",
             response_class=HTMLResponse)
    async def docs() -> Any:
        return HTMLResponse(render_docs(app.openapi()))


def _drift_routes(app: Any, plane: DataPlane) -> None:
    """``GET /drift``, ``GET /drift/{name}`` (a two-group model's recent rows) and ``POST
    /drift/{name}`` (the rows in the body) against the training data (mltk.serving.drift)."""
    from starlette.concurrency import run_in_threadpool

    from mltk.serving.drift import DriftUnavailable

    @app.get("/drift", summary="Drift of every two-group model: its recent rows against its "
             "training data (PSI per feature)")
    async def drift_all() -> Any:
        try:
            plane.check_ready()
            monitor = plane.drift
            docs = {n: await run_in_threadpool(monitor.report, n) for n in monitor.windows}
            return {"models": docs, "unavailable": monitor.unavailable}
        except Exception as exc:
            return failure(exc)

    @app.get("/drift/{name}", summary="Drift of a two-group model: its recent rows against "
             "its training data (PSI per feature, missing rate, new categories, status)")
    async def drift_one(name: str) -> Any:
        try:
            plane.get(name)  # 503 while loading, 404 for a name not served
            return await run_in_threadpool(plane.drift.report, name)
        except DriftUnavailable as exc:
            return error(404, str(exc))
        except Exception as exc:
            return failure(exc)

    @app.post("/drift/{name}", summary="Drift of the rows in the body (as /invocations takes "
              "them; nothing is scored) against the model's training data",
              openapi_extra=_BODY_DOC)
    async def drift_rows(name: str, request: Request) -> Any:
        try:
            await plane.wait_own_load()
            p = plane.get(name)
            plane.drift.profile(name)  # before reading the body: a model without a profile
            body = await request.body()
            items = await _work(len(body) > LARGE_BODY, lambda: codecs.decode(
                p.input_kind, request.headers.get("content-type"), body, _columns(p)))
            return await run_in_threadpool(plane.drift.check, name, items)
        except DriftUnavailable as exc:
            return error(404, str(exc))
        except Exception as exc:
            return failure(exc)


def render_docs(spec: Mapping[str, Any]) -> str:
    """A self-contained HTML page of the OpenAPI routes (no scripts, no CDN)."""
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            types = ", ".join((op.get("requestBody") or {}).get("content", {}))
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>"
                        f"{html.escape(path)}</code></td><td>{html.escape(op.get('summary', ''))}"
                        f"</td><td>{html.escape(types)}</td></tr>")
    info = spec.get("info", {})
    return ("<!doctype html><html><head><meta charset='utf-8'><title>mltk serve API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 12px;"
            "border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>{html.escape(info.get('title', ''))} {html.escape(info.get('version', ''))}"
            f"</h1><p>{html.escape(info.get('description', ''))}</p>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"
            "<table><tr><th>method</th><th>path</th><th>what</th><th>request body</th></tr>"
            + "".join(rows) + "</table></body></html>")


# -- body limit and token -------------------------------------------------------------------------
class _Guard:
    """ASGI middleware: the bearer token and the body size limit, before any route runs; a
    ``Retry-After`` on every 503 that has none."""

    def __init__(self, app: Any, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.limit = settings.max_body_bytes
        self.token = settings.token.encode() if settings.token else None
        self._routes: Any = None  # mltk.serving.direct.DirectRoutes, made at the first request

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("headers", [])
        if self.token and scope["path"] not in OPEN_PATHS:
            refusal = self._check_token([v for k, v in raw if k.lower() == b"authorization"])
            if refusal:
                await _send_error(send, *refusal)
                return
        length = next((v.decode("latin-1") for k, v in raw if k.lower() == b"content-length"),
                      None)
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _send_error(send, 413, f"the body is {int(length):,} bytes, more than "
                              f"max_body_mb ({self.settings.max_body_mb:g} MB)")
            return
        receive, send = self._limited(receive, send), _retry_after(send)
        direct = self._direct(scope)
        if direct is not None:
            await direct(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _direct(self, scope: dict) -> Any:
        """The inference routes without FastAPI's dispatch (mltk.serving.direct), or None."""
        if self._routes is None:
            from mltk.serving.direct import DirectRoutes

            self._routes = DirectRoutes(self.app)
        return self._routes.match(scope)

    def _check_token(self, given: list[bytes]) -> tuple[int, str, dict[str, str]] | None:
        """None when the one Authorization header is ``Bearer TOKEN`` (the scheme in any case,
        RFC 9110 section 11.1); else the status, message and headers of the refusal."""
        if len(given) > 1:
            return 400, "more than one Authorization header", {}
        scheme, _, credentials = (given[0] if given else b"").strip().partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(),
                                                                 self.token or b"")
        if ok:
            return None
        return 401, "missing or wrong bearer token (send: Authorization: Bearer TOKEN)", {
            "www-authenticate": "Bearer"}

    def _limited(self, receive: Callable[[], Awaitable[dict]], send: Any) -> Any:
        seen = 0
        limit = self.limit

        async def wrapped() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise CodecError(413, f"the body is more than max_body_mb "
                                     f"({self.settings.max_body_mb:g} MB)")
            return message

        return wrapped


def _retry_after(send: Callable[[dict], Awaitable[None]]) -> Callable[[dict], Awaitable[None]]:
    """``send`` adding ``Retry-After: 1`` to a 503 without one (a full queue, models loading,
    no decode budget left: all pass in seconds)."""

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start" and message.get("status") == 503:
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"retry-after" for k, _ in headers):
                message = {**message, "headers": [*headers, (b"retry-after", b"1")]}
        await send(message)

    return wrapped


async def _send_error(send: Any, status: int, message: str,
                      headers: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        raw.append((b"retry-after", b"1"))
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
