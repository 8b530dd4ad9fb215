"""Models loaded and unloaded while the server runs, the same set in every worker process.

Two management APIs over one mechanism, on when ``multi_model`` or ``model_repository`` is set:

- SageMaker's multi-model endpoint contract: ``POST /models`` (``{"model_name", "url"}``),
  ``GET /models``, ``GET /models/{name}``, ``DELETE /models/{name}`` and
  ``POST /models/{name}/invoke``. 409 for a name already loaded, 404 for an unknown one, 507
  when ``memory_budget_mb`` would be exceeded (with ``lru_unload``, the least recently used
  models are unloaded to make room instead).
- The V2 repository extension (Triton, MLServer) over ``model_repository``, a folder or URL
  whose sub-folders and archives are models named after them: ``POST /v2/repository/index``,
  ``POST /v2/repository/models/{name}/load`` and ``.../unload``.

The set of models every worker serves (:class:`SharedModels`) is one JSON file in the server's
state folder (``MLTK_SERVE_STATE_DIR``), changed under a lock and replaced atomically. Before
answering a request, a worker compares the file with what it applied (:meth:`LiveModels.sync`:
one ``stat`` when nothing changed), loads what it lacks in a thread and unloads what went; a
request for a model still loading in its worker waits for it, so a model is served by every
worker as soon as a load answers 200. Loading never holds up requests to other models. An
unload first refuses new requests for the model (404), then waits for the ones in flight, then
drops it: never a 500. A model that fails to load is named with the reason (400) and the
server goes on. A model's size, for the budget, is the bytes of its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import functools
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from mltk.errors import MltkError, describe
from mltk.serving.codecs import CodecError
from mltk.serving.dataplane import DataPlane, ModelNotFound, NotFound
from mltk.serving.outcomes import message_of, status_of
from mltk.serving.settings import ServeSettings

log = logging.getLogger(__name__)

STATE_FILE = "models.json"
#: SageMaker's model names are opaque identifiers; anything that fits in a URL path segment.
_NAME = re.compile(r"[^/\s]{1,256}")
_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(/.*)?$")
_SAGEMAKER_MODEL = re.compile(r"^/models/([^/]+)(/invoke)?$")
_TARGET_MODEL = b"x-amzn-sagemaker-target-model"
_PAGE = 1000  # GET /models: models per page


def model_bytes(path: str) -> int:
    """A model's size for the memory budget: the bytes of its files (``colors`` counts its
    config file, if any)."""
    p = Path(path.partition(":")[2]) if path.startswith("colors:") else Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    return 0


def startup_models(settings: ServeSettings) -> tuple[str, ...]:
    """The MODEL specs to load at start: the explicit ones and, unless ``load_on_request``,
    every model of the repository (``NAME=SPEC``)."""
    from mltk.storage import list_models

    specs = tuple(settings.models)
    if settings.model_repository and not settings.load_on_request:
        specs += tuple(f"{name}={spec}" for name, spec in
                       list_models(settings.model_repository).items())
    return specs


class SharedModels:
    """The models every worker serves: ``{"generation", "models": {name: {"url", "path",
    "bytes"}}, "failed": {name: reason}}`` in ``folder/models.json``, or in memory when the
    app runs on its own (one process). Until the first change, the models loaded at start."""

    def __init__(self, folder: Path | None, initial: dict[str, dict[str, Any]]) -> None:
        self.path = folder / STATE_FILE if folder else None
        self._state: dict[str, Any] = {"generation": 0, "models": initial, "failed": {}}

    def stamp(self) -> Any:
        """Changes whenever the state changes (a stat of the file)."""
        if self.path is None:
            return self._state["generation"]
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def read(self) -> dict[str, Any]:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                return json.loads(self.path.read_text())
        return copy.deepcopy(self._state)

    @contextlib.contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """The state, to change in place; saved when the block ends without an exception."""
        if self.path is None:
            state = self.read()
            yield state
            state["generation"] += 1
            self._state = state
            return
        from mltk._atomic import write_json

        with open(self.path.with_name(STATE_FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.read()
                yield state
                state["generation"] += 1
                write_json(self.path, state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class LiveModels:
    """One worker's side: applies the shared set to its :class:`DataPlane`, loads and unloads
    on request, counts the requests in flight per model."""

    def __init__(self, plane: DataPlane, settings: ServeSettings) -> None:
        from mltk.predictors import parse_model_spec
        from mltk.serving import readiness

        self.plane = plane
        self.settings = settings
        initial = {}
        for spec in settings.models:
            name, path = parse_model_spec(spec)
            initial[name] = {"url": path, "path": path, "bytes": model_bytes(path)}
        state = os.environ.get(readiness.STATE_ENV)
        self.shared = SharedModels(Path(state) if state else None, initial)
        self.loading: dict[str, asyncio.Future] = {}  # name -> None or the failure's reason
        self.unloading: dict[str, asyncio.Task] = {}
        self.failed: dict[str, tuple[str, str]] = {}  # failed here: name -> (path, reason)
        self._inflight: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}
        self._stamp: Any = object()
        self._tasks: set[asyncio.Task] = set()  # loads under way (a reference keeps them)

    # -- the shared set, applied here -------------------------------------------------------
    def sync(self) -> None:
        """Start loading what the shared set has and this worker lacks, and unloading what it
        no longer has (a ``stat`` when nothing changed)."""
        if not self.plane.loaded:
            return  # the start-up models are still loading: DataPlane.load owns them
        stamp = self.shared.stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        wanted = self.shared.read()["models"]
        for name in [n for n in self.plane.models if n not in wanted]:
            if name not in self.unloading and name not in self.loading:
                self._unload_task(name)
        for name, entry in wanted.items():
            if name not in self.plane.models and name not in self.loading \
                    and self.failed.get(name, (None,))[0] != entry["path"]:
                self._load_task(name, entry["path"])
        for name in [n for n in self.failed if n not in wanted]:
            del self.failed[name]

    def _load_task(self, name: str, path: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.loading[name] = fut  # before any await: no second load of the same name
        self._spawn(self._load_here(name, path, fut))
        return fut

    def _spawn(self, work: Any) -> asyncio.Task:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _load_here(self, name: str, path: str, fut: asyncio.Future) -> None:
        reason = None
        try:
            if name in self.unloading:
                await asyncio.shield(self.unloading[name])
            p = await asyncio.to_thread(self.plane.open_model, name, path)
            self.plane.install(name, p)
            self.failed.pop(name, None)
        except Exception as exc:  # reported to whoever asked, never a crash
            reason = describe(exc)
            self.failed[name] = (path, reason)
            log.error("model %s (%s) failed to load: %s", name, path, reason)
        finally:
            self.loading.pop(name, None)
            self._stamp = object()  # the set may have changed meanwhile: look again
            fut.set_result(reason)

    def _unload_task(self, name: str) -> asyncio.Task:
        task = self.unloading.get(name)
        if task is None:
            task = self._spawn(self._unload_here(name))
            self.unloading[name] = task
        return task

    async def _unload_here(self, name: str) -> None:
        try:
            if name in self.loading:
                await asyncio.shield(self.loading[name])
            while self._inflight.get(name):  # new requests are refused (404) meanwhile
                await self._idle[name].wait()
            await self.plane.discard(name)
            log.info("model %s unloaded", name)
        finally:
            del self.unloading[name]
            self._stamp = object()

    # -- requests ---------------------------------------------------------------------------
    async def admit(self, name: str) -> tuple[int, str] | None:
        """None when a request for ``name`` may go on (after its load here, if one runs); else
        the status and message of the refusal."""
        if name in self.unloading:
            return 404, f"model {name!r} is being unloaded"
        fut = self.loading.get(name)
        if fut is not None:
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.settings.timeout)
            except TimeoutError:
                return 503, f"model {name!r} is still loading"
        if name in self.failed and name not in self.plane.models:
            return 503, f"model {name!r} failed to load: {self.failed[name][1]}"
        return None

    def enter(self, name: str) -> None:
        self._inflight[name] = self._inflight.get(name, 0) + 1
        self._idle.setdefault(name, asyncio.Event()).clear()

    def leave(self, name: str) -> None:
        self._inflight[name] -= 1
        if not self._inflight[name]:
            del self._inflight[name]
            self._idle.pop(name).set()

    # -- management -------------------------------------------------------------------------
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.shared.read()["models"]

    async def add(self, name: str, url: str) -> dict[str, Any]:
        """Load ``url`` as ``name`` in every worker (here first: answers once it serves)."""
        from mltk.storage import is_remote, localize

        self.plane.check_ready()
        self.sync()
        if name in self.entries() or name in self.loading:
            raise CodecError(409, f"a model named {name!r} is already loaded")
        try:
            path = await asyncio.to_thread(localize, url)
            size = await asyncio.to_thread(model_bytes, path)
        except Exception as exc:
            raise CodecError(400, f"model {name!r} ({url}) failed to load: "
                             f"{describe(exc)}") from None
        if name in self.loading:  # another request for the name got here first
            raise CodecError(409, f"a model named {name!r} is already loaded")
        fut = asyncio.get_running_loop().create_future()
        self.loading[name] = fut
        shown = url.split("?", 1)[0] if is_remote(url) else url  # a pre-signed URL's secret
        try:
            victims = self._reserve(name, {"url": shown, "path": path, "bytes": size})
        except Exception:
            del self.loading[name]
            fut.set_result("not loaded")
            raise
        for victim in victims:
            await self._unload_task(victim)
        self._spawn(self._load_here(name, path, fut))  # it ends self.loading[name]
        reason = await fut
        if reason is not None:
            with self.shared.change() as state:
                if state["models"].get(name, {}).get("path") == path:
                    del state["models"][name]
                state["failed"][name] = reason
            raise CodecError(400, f"model {name!r} ({url}) failed to load: {reason}")
        return {"modelName": name, "modelUrl": shown}

    def _reserve(self, name: str, entry: dict[str, Any]) -> list[str]:
        """Put ``name`` in the shared set (409 if there, 507 over the budget); the names
        taken out to make room (least recently used first, with ``lru_unload``)."""
        with self.shared.change() as state:
            models = state["models"]
            if name in models:
                raise CodecError(409, f"a model named {name!r} is already loaded")
            victims = self._make_room(models, entry["bytes"])
            for victim in victims:
                del models[victim]
            models[name] = entry
            state["failed"].pop(name, None)
        return victims

    def _make_room(self, models: dict[str, dict[str, Any]], size: int) -> list[str]:
        budget = self.settings.memory_budget_mb
        if not budget:
            return []
        limit = int(budget * 2**20)
        used = sum(int(e.get("bytes") or 0) for e in models.values())
        if size > limit:
            raise CodecError(507, f"the model's files are {size / 2**20:.2f} MB, more than "
                             f"memory_budget_mb ({budget:g} MB)")
        victims: list[str] = []
        if used + size > limit and self.settings.lru_unload:
            for victim in sorted(models, key=lambda n: self.plane.last_used.get(n, 0.0)):
                if used + size <= limit:
                    break
                if victim not in self.loading:
                    victims.append(victim)
                    used -= int(models[victim].get("bytes") or 0)
        if used + size > limit:
            raise CodecError(507, f"no room: {used / 2**20:.2f} MB of memory_budget_mb "
                             f"({budget:g} MB) in use, the model needs {size / 2**20:.2f} MB"
                             + ("" if self.settings.lru_unload else
                                " (lru_unload: unload the least recently used instead)"))
        return victims

    async def remove(self, name: str) -> None:
        """Unload ``name`` in every worker (here before answering); 404 if not loaded."""
        self.plane.check_ready()
        self.sync()
        with self.shared.change() as state:
            if name not in state["models"]:
                raise ModelNotFound(f"no model named {name!r} is loaded")
            del state["models"][name]
        await self._unload_task(name)

    async def repository(self) -> dict[str, str]:
        if not self.settings.model_repository:
            return {}
        from mltk.storage import list_models

        return await asyncio.to_thread(list_models, self.settings.model_repository)

    async def load_from_repository(self, name: str) -> None:
        repo = await self.repository()
        if name not in repo:
            raise NotFound(f"no model named {name!r} in the model repository "
                           f"({self.settings.model_repository or 'none configured'})")
        self.sync()
        if name in self.loading:
            await self.admit(name)
        if name in self.plane.models and name in self.entries():
            return  # loaded already (MLServer and Triton answer 200 too)
        await self.add(name, repo[name])

    async def index(self, ready_only: bool) -> list[dict[str, Any]]:
        """Triton's repository index: every model of the repository or loaded, its state."""
        repo = await self.repository()
        state = self.shared.read()
        names = sorted(set(repo) | set(state["models"]) | set(self.plane.models))
        out = []
        for name in names:
            entry = {"name": name, "version": "1", "state": self._state_of(name, state)}
            reason = (self.failed.get(name) or (None, None))[1] or state["failed"].get(name)
            if entry["state"] != "READY" and reason:
                entry["reason"] = reason
            if entry["state"] == "READY" or not ready_only:
                out.append(entry)
        return out

    def _state_of(self, name: str, state: dict[str, Any]) -> str:
        if name in self.unloading:
            return "UNLOADING"
        if name in self.loading:
            return "LOADING"
        if name in self.plane.models:
            return "READY"
        return "UNAVAILABLE"


# -- HTTP ---------------------------------------------------------------------------------------
def add_routes(app: Any, plane: DataPlane, settings: ServeSettings) -> LiveModels:
    """The management routes, and the middleware that keeps this worker in step."""
    live = LiveModels(plane, settings)
    app.state.live_models = live
    app.add_middleware(_KeepInStep, live=live)
    _any_model_name(app)

    @app.post("/models", summary="SageMaker multi-model: load a model (409: the name is "
              "taken; 507: over the memory budget)")
    @_answers
    async def load_model(request: Request) -> Any:
        body = _json_object(await request.body())
        name, url = body.get("model_name"), body.get("url")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or not isinstance(url, str) \
                or not url:
            raise CodecError(400, "expected {\"model_name\": NAME, \"url\": FOLDER_OR_URL}")
        return await live.add(name, url)

    @app.get("/models", summary="SageMaker multi-model: the models loaded")
    @_answers
    async def list_models(next_page_token: str | None = None) -> Any:
        entries = sorted(live.entries().items())
        start = int(next_page_token) if (next_page_token or "").isdigit() else 0
        page = [{"modelName": n, "modelUrl": e["url"]} for n, e in entries[start:start + _PAGE]]
        doc: dict[str, Any] = {"models": page}
        if start + _PAGE < len(entries):
            doc["nextPageToken"] = str(start + _PAGE)
        return doc

    @app.get("/models/{name}", summary="SageMaker multi-model: one loaded model")
    @_answers
    async def get_model(name: str) -> Any:
        entry = live.entries().get(name)
        if entry is None:
            raise ModelNotFound(f"no model named {name!r} is loaded")
        return {"modelName": name, "modelUrl": entry["url"]}

    @app.delete("/models/{name}", summary="SageMaker multi-model: unload a model (answers "
                "once no request uses it)")
    @_answers
    async def unload_model(name: str) -> Any:
        await live.remove(name)
        return {}

    @app.post("/models/{name}/invoke", summary="SageMaker multi-model: inference with one "
              "model (as /invocations)")
    @_answers
    async def invoke(name: str) -> Any:  # pragma: no cover - the middleware routes it
        raise ModelNotFound(f"no model named {name!r} is loaded")

    @app.post("/v2/repository/index", summary="V2 repository: the models and their state")
    @_answers
    async def repository_index(request: Request) -> Any:
        raw = await request.body()
        body = _json_object(raw) if raw.strip() else {}
        return await live.index(bool(body.get("ready")))

    @app.post("/v2/repository/models/{name}/load", summary="V2 repository: load a model of "
              "the repository (answers once it is ready)")
    @_answers
    async def repository_load(name: str) -> Any:
        await live.load_from_repository(name)
        return Response(status_code=200)

    @app.post("/v2/repository/models/{name}/unload", summary="V2 repository: unload a model")
    @_answers
    async def repository_unload(name: str) -> Any:
        await live.remove(name)
        return Response(status_code=200)

    return live


def _any_model_name(app: Any) -> None:
    """The OpenAPI document lists no fixed model names: models come and go."""
    documented = app.openapi

    def openapi() -> dict[str, Any]:
        spec = documented()
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                for param in op.get("parameters", []):
                    if param.get("in") == "path" and param.get("name") == "name":
                        param.get("schema", {}).pop("enum", None)
        return spec

    app.openapi = openapi


def _answers(route: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The route's answer, or its exception as the JSON error every route answers."""

    @functools.wraps(route)
    async def answer(*args: Any, **kwargs: Any) -> Any:
        try:
            return await route(*args, **kwargs)
        except Exception as exc:
            status = _status_of(exc)
            if status == 500:
                log.error("internal error answering a request", exc_info=exc)
            message = message_of(exc) if status == 500 else str(exc)
            headers = {"Retry-After": "1"} if status == 503 else None
            return JSONResponse({"error": message}, status_code=status, headers=headers)

    return answer


def _status_of(exc: Exception) -> int:
    """As every route answers, but a load that fails for a reason mltk names (a folder that is
    not a model, an archive refused) is the request's fault: 400, not 500."""
    status = status_of(exc)
    return 400 if status == 500 and isinstance(exc, MltkError) else status


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CodecError(400, f"invalid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(body, dict):
        raise CodecError(400, "expected a JSON object")
    return body


def model_of(scope: dict, plane: DataPlane) -> tuple[str | None, bool]:
    """The model a request names, and whether it runs inference (counted in flight)."""
    path = scope["path"]
    m = _V2_MODEL.match(path)
    if m:
        return m.group(1), (m.group(2) or "").endswith("/infer")
    m = _SAGEMAKER_MODEL.match(path)
    if m and (m.group(2) or scope["method"] == "GET"):
        return m.group(1), bool(m.group(2))
    if path == "/invocations":
        named = [v for k, v in scope.get("headers", []) if k.lower() == _TARGET_MODEL]
        if named:
            return named[0].decode("latin-1"), True
        if len(plane.models) == 1:
            return next(iter(plane.models)), True
    return None, False


class _KeepInStep:
    """ASGI middleware: before a request, apply the shared set of models; a request for a
    model waits for its load in this worker, is refused while it unloads, and is counted in
    flight (an unload waits for it). ``POST /models/NAME/invoke`` is ``/invocations`` with
    that target model."""

    def __init__(self, app: Any, live: LiveModels) -> None:
        self.app = app
        self.live = live

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.live.sync()
        except (OSError, ValueError) as exc:  # a state file being written: the next request
            log.warning("could not read the shared model set: %s", describe(exc))
        name, counted = model_of(scope, self.live.plane)
        if name is None:
            await self.app(scope, receive, send)
            return
        refusal = await self.live.admit(name)
        if refusal is not None:
            await _send_json(send, *refusal)
            return
        if counted and scope["path"].startswith("/models/"):
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != _TARGET_MODEL]
            scope = {**scope, "path": "/invocations", "raw_path": b"/invocations",
                     "headers": [*headers, (_TARGET_MODEL, name.encode("latin-1"))]}
        if not counted:
            await self.app(scope, receive, send)
            return
        self.live.enter(name)
        try:
            await self.app(scope, receive, send)
        finally:
            self.live.leave(name)


async def _send_json(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["LiveModels", "SharedModels", "add_routes", "model_bytes", "model_of",
           "startup_models"]
