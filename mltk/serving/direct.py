"""The two inference routes called directly, past FastAPI's middleware, routing and injection.

``POST /invocations`` and ``POST /v2/models/{name}/infer`` are most of a server's requests. For
a one-row request to a fast model, FastAPI's layers around them (error and exception
middleware, the exit stack, matching the path against every route, solving the endpoint's
parameters) cost about as much CPU as the model itself. The guard in front of the app
(:mod:`mltk.serving.app`) hands exactly these two paths to the same endpoint functions that
FastAPI would call, with the same Request, so the answers are the same byte for byte: only the
dispatch is shorter. Every other path, method or form (a trailing slash, a ``root_path``, a
version in the path) goes through FastAPI as before, and so does everything when middleware
has been added to the app (it must see every request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

_V2_PREFIX = "/v2/models/"
_V2_SUFFIX = "/infer"

Handler = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                   Awaitable[None]]


class DirectRoutes:
    """The endpoints of the inference routes of a FastAPI ``app``, and a matcher for them."""

    def __init__(self, app: Any) -> None:
        self.invocations: Callable[..., Awaitable[Any]] | None = None
        self.infer: Callable[..., Awaitable[Any]] | None = None
        if getattr(app, "user_middleware", None):
            return  # added middleware must see every request: no shortcut
        for route in getattr(app, "routes", []):
            methods = getattr(route, "methods", None) or ()
            if "POST" not in methods:
                continue
            if route.path == "/invocations" and _takes(route.endpoint, "request"):
                self.invocations = route.endpoint
            elif route.path == _V2_PREFIX + "{name}" + _V2_SUFFIX \
                    and _takes(route.endpoint, "name", "request", "version"):
                self.infer = route.endpoint

    def match(self, scope: dict) -> Handler | None:
        """The handler for this request, or None (FastAPI answers it)."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        path = scope["path"]
        if path == "/invocations" and self.invocations is not None:
            return self._invocations
        if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX) and self.infer is not None:
            name = path[len(_V2_PREFIX):-len(_V2_SUFFIX)]
            if name and "/" not in name:
                return lambda scope, receive, send: self._infer(name, scope, receive, send)
        return None

    async def _invocations(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.requests import Request

        assert self.invocations is not None
        response = await self.invocations(request=Request(scope, receive, send))
        await response(scope, receive, send)

    async def _infer(self, name: str, scope: dict, receive: Any, send: Any) -> None:
        from starlette.requests import Request

        assert self.infer is not None
        response = await self.infer(name=name, request=Request(scope, receive, send),
                                    version=None)
        await response(scope, receive, send)


def _takes(endpoint: Any, *names: str) -> bool:
    """Whether the endpoint's parameters are exactly ``names`` (an endpoint that has gained
    another one, which FastAPI would fill, is left to FastAPI)."""
    import inspect

    return tuple(inspect.signature(endpoint).parameters) == names
