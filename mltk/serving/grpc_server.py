"""The Open Inference Protocol (KServe V2) over gRPC: ``inference.GRPCInferenceService``.

A thin adapter over the same :class:`~mltk.serving.dataplane.DataPlane` as the REST routes,
run by ``grpc.aio`` on the event loop of each server process (``serve.grpc_port``), so gRPC
calls share the models, the adaptive batching, the queue bound and the timeout with REST.

- A request becomes the REST binary-extension body (a JSON header and the raw tensors) and goes
  through the same parsing and checks (:func:`mltk.serving.v2codec.parse_request`): typed
  ``contents`` are packed into raw bytes first. The answer is ``raw_output_contents`` when the
  request sent ``raw_input_contents`` (as tritonclient.grpc does), typed ``contents`` otherwise.
- Errors are gRPC status codes of the REST statuses: 400 INVALID_ARGUMENT, 401
  UNAUTHENTICATED, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 504
  DEADLINE_EXCEEDED, 500 INTERNAL. A message over ``max_body_mb`` is refused by gRPC itself
  (RESOURCE_EXHAUSTED); more than ``max_connections`` calls at once likewise.
- With a token, every call but ServerLive and ServerReady needs the metadata
  ``authorization: Bearer TOKEN``.
- SIGTERM: the server stops taking calls at once and the calls in flight finish
  (``graceful_timeout`` at most), the batchers scoring what they hold without waiting.
- The repository calls: with live models (``--model-repository``, ``--multi-model``) they are
  the REST repository routes' (:mod:`mltk.serving.repository`), and inference waits on the
  same per-worker sync and in-flight counts; otherwise the index lists the served models and
  loading and unloading by name answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import struct
import time
import warnings
from collections.abc import Callable
from typing import Any

import grpc

from mltk import __version__
from mltk.serving import v2codec
from mltk.serving.codecs import CodecError
from mltk.serving.dataplane import DataPlane, NotFound, NotReady
from mltk.serving.settings import ServeSettings

with warnings.catch_warnings():  # gencode of protobuf 6 under a protobuf 7 runtime: it works
    warnings.filterwarnings("ignore", message=".*[Pp]rotobuf gencode version",
                            category=UserWarning)
    from mltk.serving import grpc_predict_v2_pb2 as pb
    from mltk.serving import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: gRPC status code of each HTTP status the REST routes answer with.
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
         500: grpc.StatusCode.INTERNAL}
#: Calls open without the bearer token (health checks), as /v2/health/live and ready.
OPEN_METHODS = frozenset({"ServerLive", "ServerReady"})
#: The field of InferTensorContents that holds each datatype, and its NumPy type.
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
_NUMPY = {"BOOL": "bool", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
          "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2",
          "FP32": "<f4", "FP64": "<f8"}


class Unauthenticated(Exception):
    """No bearer token, or the wrong one (HTTP 401)."""


# -- requests -> the REST binary body, and back -------------------------------------------------
def request_body(request: Any) -> tuple[bytes, int, bool]:
    """(body, header length, raw) for :func:`v2codec.parse_request`: the JSON header of the
    binary tensor extension and every input's raw bytes; ``raw``: the request sent
    ``raw_input_contents`` (its answer does too)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise CodecError(400, f"raw_input_contents holds {len(raw)} tensors for "
                         f"{len(request.inputs)} inputs (one per input, in order)")
    inputs, blobs = [], []
    for i, t in enumerate(request.inputs):
        if raw and t.HasField("contents"):
            raise CodecError(400, f"input {t.name!r}: both 'contents' and raw_input_contents "
                             "(send one or the other)")
        blob = raw[i] if raw else pack_contents(t.contents, t.datatype, t.name)
        inputs.append({"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
                       "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    head: dict[str, Any] = {"inputs": inputs}
    if request.id:
        head["id"] = request.id
    if request.outputs:
        head["outputs"] = [{"name": o.name} for o in request.outputs]
    header = json.dumps(head).encode()
    return header + b"".join(blobs), len(header), bool(raw) or not request.inputs


def pack_contents(contents: Any, datatype: str, name: str) -> bytes:
    """Typed tensor contents as raw bytes (little-endian; BYTES length-prefixed)."""
    field = CONTENTS.get(datatype)
    if field is None:  # parse_request names the datatypes; FP16 only comes raw
        if datatype == "FP16":
            raise CodecError(400, f"input {name!r}: FP16 values come in raw_input_contents")
        return b""
    stray = [f.name for f, _ in contents.ListFields() if f.name != field]
    if stray:
        raise CodecError(400, f"input {name!r}: {datatype} values belong in "
                         f"contents.{field}, not {', '.join(stray)}")
    values = getattr(contents, field)
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in values)
    import numpy as np

    try:
        return np.asarray(list(values), dtype=_NUMPY[datatype]).tobytes()
    except OverflowError:
        raise CodecError(400, f"input {name!r}: a value out of the range of {datatype}") \
            from None


def fill_response(response: Any, tensors: list[dict[str, Any]], blobs: list[bytes],
                  raw: bool) -> None:
    """The output tensors, as raw bytes or typed contents."""
    for t in tensors:
        out = response.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        if not raw:
            data = t["data"]
            if t["datatype"] == "BYTES":
                data = [v.encode("utf-8") for v in data]
            getattr(out.contents, CONTENTS[t["datatype"]]).extend(data)
    if raw:
        response.raw_output_contents.extend(blobs)


def status_code(exc: BaseException) -> tuple[grpc.StatusCode, str, int]:
    """(gRPC code, message, HTTP status) of an exception raised while answering a call."""
    from mltk.serving.outcomes import message_of, status_of

    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc), 401
    status = status_of(exc)
    code = CODES.get(status, grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500
                     else grpc.StatusCode.INTERNAL)
    if status == 500:
        log.error("internal error answering a gRPC call", exc_info=exc)
    return code, message_of(exc), status


# -- the service --------------------------------------------------------------------------------
class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over a data plane (coroutines for grpc.aio)."""

    def __init__(self, plane: DataPlane, settings: ServeSettings, live: Any = None) -> None:
        self.plane = plane
        self.settings = settings
        self.live = live  # mltk.serving.repository.LiveModels when models load live
        self.token = settings.token.encode() if settings.token else None

    def _authorize(self, context: Any, method: str) -> None:
        if self.token is None or method in OPEN_METHODS:
            return
        given = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
        scheme, _, credentials = (given[0] if len(given) == 1 else "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                credentials.strip().encode(), self.token):
            raise Unauthenticated("missing or wrong bearer token (send the metadata "
                                  "authorization: Bearer TOKEN)")

    async def _admit(self, name: str) -> None:
        """With live models: this worker in step with the shared set, and the model's own load
        (if one runs) awaited; a model being unloaded or failed is refused as REST does."""
        if self.live is None:
            return
        self.live.sync()
        refusal = await self.live.admit(name)
        if refusal is not None:
            raise CodecError(*refusal)

    def _model(self, name: str, version: str) -> Any:
        from mltk.serving.outcomes import MODEL_VERSION

        p = self.plane.get(name)
        if version and version != MODEL_VERSION:
            raise NotFound(f"model {name!r} has no version {version!r} (versions: "
                           f"{MODEL_VERSION})")
        return p

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        """Ready or not (an unknown model is not ready), as Triton answers."""
        try:
            self._authorize(context, "ModelReady")
            try:
                await self._admit(request.name)
                self._model(request.name, request.version)
            except (NotFound, NotReady, CodecError):
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)
        except Exception as exc:
            return _refuse(context, exc, pb.ModelReadyResponse())

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        try:
            self._authorize(context, "ServerMetadata")
            return pb.ServerMetadataResponse(name="mltk", version=__version__,
                                             extensions=["binary_tensor_data"])
        except Exception as exc:
            return _refuse(context, exc, pb.ServerMetadataResponse())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            self._authorize(context, "ModelMetadata")
            await self._admit(request.name)
            meta = self._model(request.name, request.version).metadata()
            return pb.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t)
                         for t in meta["outputs"]])
        except Exception as exc:
            return _refuse(context, exc, pb.ModelMetadataResponse())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        t0, name, status = time.perf_counter(), "-", 500
        try:
            self._authorize(context, "ModelInfer")
            await self.plane.wait_own_load()
            await self._admit(request.model_name)
            p = self._model(request.model_name, request.model_version)
            name = p.name
            if self.live is not None:
                self.live.enter(name)  # an unload waits for this call
            try:
                response = await self._infer(p, request)
            finally:
                if self.live is not None:
                    self.live.leave(name)
            status = 200
            return response
        except Exception as exc:
            status = status_code(exc)[2]
            return _refuse(context, exc, pb.ModelInferResponse())
        finally:
            self.plane.metrics.observe(name, "grpc", status, time.perf_counter() - t0)

    async def _infer(self, p: Any, request: Any) -> Any:
        from mltk.serving.outcomes import LARGE_BODY, MODEL_VERSION, answer_records

        body, header, raw = request_body(request)
        if len(body) > LARGE_BODY:
            from starlette.concurrency import run_in_threadpool

            req, values = await run_in_threadpool(v2codec.parse_request, body, str(header))
        else:
            req, values = v2codec.parse_request(body, str(header))
        items = v2codec.to_items(p.input_kind, values, req, [t.name for t in p.inputs()],
                                 getattr(p, "categories", None))
        records = answer_records(await self.plane.infer(p.name, items), p.input_kind)
        tensors, blobs = v2codec.outputs(records, {**req, "parameters": {
            "binary_data_output": raw}}, p.outputs())
        response = pb.ModelInferResponse(model_name=p.name, model_version=MODEL_VERSION,
                                         id=req.get("id", ""))
        fill_response(response, tensors, blobs, raw)
        return response

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        """The served models: READY once loaded, LOADING before, UNAVAILABLE if they failed."""
        try:
            self._authorize(context, "RepositoryIndex")
            if self.live is not None:
                return pb.RepositoryIndexResponse(models=[
                    pb.RepositoryIndexResponse.ModelIndex(**entry)
                    for entry in await self.live.index(request.ready)])
            return pb.RepositoryIndexResponse(models=list(self._index(request.ready)))
        except Exception as exc:
            return _refuse(context, exc, pb.RepositoryIndexResponse())

    def _index(self, ready_only: bool) -> Any:
        from mltk.predictors import parse_model_spec
        from mltk.serving.outcomes import MODEL_VERSION

        plane = self.plane
        for spec in self.settings.models:
            name = parse_model_spec(spec)[0]
            if name in plane.models and plane.loaded:
                state, reason = "READY", ""
            elif plane.load_error:
                state, reason = "UNAVAILABLE", plane.load_error
            else:
                state, reason = "LOADING", ""
            if state == "READY" or not ready_only:
                yield pb.RepositoryIndexResponse.ModelIndex(name=name, version=MODEL_VERSION,
                                                            state=state, reason=reason)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        """Load a model of ``--model-repository`` by name (as POST .../load)."""
        if self.live is None or not self.settings.model_repository:
            return _unimplemented(context, pb.RepositoryModelLoadResponse())
        try:
            self._authorize(context, "RepositoryModelLoad")
            await self.live.load_from_repository(request.model_name)
            return pb.RepositoryModelLoadResponse()
        except Exception as exc:
            return _refuse(context, exc, pb.RepositoryModelLoadResponse())

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        """Unload a live model by name (as POST .../unload), once no call uses it."""
        if self.live is None:
            return _unimplemented(context, pb.RepositoryModelUnloadResponse())
        try:
            self._authorize(context, "RepositoryModelUnload")
            await self.live.remove(request.model_name)
            return pb.RepositoryModelUnloadResponse()
        except Exception as exc:
            return _refuse(context, exc, pb.RepositoryModelUnloadResponse())


def _refuse(context: Any, exc: BaseException, empty: Any) -> Any:
    code, message, _ = status_code(exc)
    context.set_code(code)
    context.set_details(message)
    return empty


def _unimplemented(context: Any, empty: Any) -> Any:
    context.set_code(grpc.StatusCode.UNIMPLEMENTED)
    context.set_details("models are loaded at start: start mltk serve with --model-repository "
                        "(or --multi-model) to load and unload them by name")
    return empty


# -- the server ---------------------------------------------------------------------------------
class GrpcServer:
    """A started ``grpc.aio`` server; :meth:`stop` lets the calls in flight finish."""

    def __init__(self, server: Any, port: int, grace: float) -> None:
        self.server = server
        self.port = port
        self.grace = grace
        self._stopping: asyncio.Task | None = None
        self.restore_signals: Callable[[], None] = lambda: None

    def stop_soon(self) -> None:
        """Stop taking calls now (from the event loop), finishing those in flight."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self.server.stop(self.grace))

    async def stop(self) -> None:
        self.stop_soon()
        assert self._stopping is not None
        await self._stopping
        self.restore_signals()


def server_options(settings: ServeSettings) -> list[tuple[str, Any]]:
    """The channel options that carry the REST limits over to gRPC."""
    return [("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1)]  # every worker process binds the one port


async def start(plane: DataPlane, settings: ServeSettings,
                live: Any = None) -> GrpcServer | None:
    """Serve ``plane`` over gRPC on ``settings.grpc_port`` until :meth:`GrpcServer.stop`.

    A port that cannot be bound stops the server as a model that cannot load does (``mltk
    serve`` exits 1 naming it; None is returned meanwhile); OSError in a process of its own."""
    import os

    from mltk.serving import readiness

    server = grpc.aio.server(options=server_options(settings),
                             maximum_concurrent_rpcs=settings.max_connections)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane, settings, live),
                                                       server)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    try:
        port = server.add_insecure_port(f"{host}:{settings.grpc_port}")
    except RuntimeError:
        message = (f"gRPC cannot listen on {host}:{settings.grpc_port} (the port is in use, "
                   "or the address is not this machine's)")
        if not os.environ.get(readiness.STATE_ENV):
            raise OSError(message) from None
        readiness.record_failure(message)
        return None
    await server.start()
    running = GrpcServer(server, port, settings.graceful_timeout)
    running.restore_signals = _stop_on_signal(running)
    log.debug("gRPC (Open Inference Protocol) on %s:%d", host, port)
    return running


def _stop_on_signal(running: GrpcServer) -> Callable[[], None]:
    """Chain a stop of the gRPC server before the SIGTERM/SIGINT handling in place (uvicorn's):
    no new calls from the signal on, the ones in flight finish. Returns what puts the previous
    handlers back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    replaced = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(running.stop_soon)
            previous(signum, frame)

        signal.signal(sig, handler)
        replaced[sig] = (previous, handler)

    def restore() -> None:
        for sig, (previous, handler) in replaced.items():
            if signal.getsignal(sig) is handler:  # not replaced again since
                signal.signal(sig, previous)

    return restore
