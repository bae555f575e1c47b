"""The gateway's one route table: method, path, who may call it, handler.

Dispatch is one dictionary lookup for a fixed path (every model-serving route
is one) and a short scan of the parameterised paths otherwise. A path that
exists under another method is a 405 naming the allowed ones; no path is a 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

from ..errors import MethodNotAllowed, NotFound
from . import admin, handlers, knowledge, openapi, ui
from ..keys import Role
from .context import Request, Services
from .asgi import send_response
from .inference import serve_model
from .surfaces import Operation, Surface
from .surfaces.anthropic import ANTHROPIC, COUNT_TOKENS, MESSAGES
from .surfaces.openai import CHAT, COMPLETIONS, EMBEDDINGS, OPENAI
from .surfaces.responses import RESPONSES, RESPONSES_SURFACE

Handler = Callable[[Services, Request], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{name}" matches one path segment, "{rest:path}" the rest of the path
    role: Role
    handler: Handler
    operation: Operation | None = None  # a model-serving route: its surface and runner path
    logged: bool = False  # writes a request log line (and request metrics)
    surface: Surface = field(default=OPENAI)  # the shape of its errors

    def __post_init__(self) -> None:
        if self.operation is not None:
            object.__setattr__(self, "surface", self.operation.surface)


def _model_route(path: str, operation: Operation) -> Route:
    # INFERENCE, or KNOWLEDGE_READ for a kb:<collection> model: serve_model checks it once the model is known.
    return Route("POST", path, Role.INFERENCE, serve_model, operation, logged=True)


SURFACES = (OPENAI, ANTHROPIC, RESPONSES_SURFACE)  # every API surface the table uses
_KNOWLEDGE = "/v1/knowledge"
_READ, _WRITE = Role.KNOWLEDGE_READ, Role.KNOWLEDGE_WRITE


def routes(metrics: bool = True, metrics_role: Role = Role.ANY) -> list[Route]:
    """Every route the gateway serves (``/metrics`` only when metrics are on, for ``metrics_role``)."""
    table = [
        _model_route("/v1/chat/completions", CHAT),
        _model_route("/v1/completions", COMPLETIONS),
        _model_route("/v1/embeddings", EMBEDDINGS),
        _model_route("/v1/messages", MESSAGES),
        _model_route("/v1/messages/count_tokens", COUNT_TOKENS),
        _model_route("/v1/responses", RESPONSES),
        Route("GET", "/v1/models", Role.INFERENCE, handlers.list_models),
        Route("GET", "/v1/models/{name}", Role.INFERENCE, handlers.get_model),
        Route("GET", "/health", Role.PUBLIC, handlers.health),
        Route("HEAD", "/health", Role.PUBLIC, handlers.health),
        Route("GET", "/openapi.json", Role.PUBLIC, _openapi),
        # The status page is static; the page sends the user's key to /admin itself.
        Route("GET", "/ui", Role.PUBLIC, ui.page),
        Route("HEAD", "/ui", Role.PUBLIC, ui.page),
        Route("GET", "/ui/", Role.PUBLIC, ui.page),
        Route("HEAD", "/ui/", Role.PUBLIC, ui.page),
        Route("GET", "/ui/{file}", Role.PUBLIC, ui.page),
        Route("HEAD", "/ui/{file}", Role.PUBLIC, ui.page),
        Route("GET", "/admin/running", Role.ADMIN, admin.running),
        Route("GET", "/admin/requests", Role.ADMIN, admin.requests),
        Route("GET", "/admin/plan", Role.ADMIN, admin.plan),
        Route("POST", "/admin/models/{name}/load", Role.ADMIN, admin.load),
        Route("POST", "/admin/models/{name}/unload", Role.ADMIN, admin.unload),
        Route("GET", "/admin/logs/{name}", Role.ADMIN, admin.logs),
        Route("POST", "/admin/reload", Role.ADMIN, admin.reload),
        # The knowledge service's API, relayed unchanged: reads need knowledge-read; writes, backups
        # (every document's text) and restores knowledge-write.
        *(Route(method, _KNOWLEDGE + path, role, knowledge.relay) for method, path, role in (
            ("GET", "/collections", _READ), ("POST", "/collections", _WRITE),
            ("GET", "/collections/{name}", _READ), ("DELETE", "/collections/{name}", _WRITE),
            ("POST", "/collections/{name}/documents", _WRITE),
            ("GET", "/collections/{name}/sources", _READ), ("DELETE", "/collections/{name}/sources", _WRITE),
            ("POST", "/search", _READ), ("POST", "/ask", _READ), ("POST", "/chat/completions", _READ),
            ("GET", "/stats", _READ), ("GET", "/models", _READ), ("GET", "/fleet", _READ),
            ("GET", "/backup", _WRITE), ("POST", "/restore", _WRITE),
        )),
    ]
    if metrics:
        table.append(Route("GET", "/metrics", metrics_role, handlers.metrics))
    return table


async def _openapi(services: Services, req: Request) -> None:
    """The API described from this very table (see gateway/openapi.py)."""
    table = routes(metrics=services.metrics is not None)
    body = openapi.describe(table, SURFACES, list(services.scheduler.runners))
    await send_response(req.send, 200, body, headers=req.headers)


_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def _pattern(path: str) -> re.Pattern[str]:
    parts, at = [], 0
    for m in _PARAM.finditer(path):
        parts.append(re.escape(path[at:m.start()]))
        parts.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})")
        at = m.end()
    parts.append(re.escape(path[at:]))
    return re.compile("".join(parts) + r"\Z")


class RouteTable:
    def __init__(self, table: Iterable[Route]):
        self.routes = list(table)
        self._fixed: dict[str, dict[str, Route]] = {}
        self._patterns: dict[str, tuple[re.Pattern[str], dict[str, Route]]] = {}
        for route in self.routes:
            if "{" in route.path:
                methods = self._patterns.setdefault(route.path, (_pattern(route.path), {}))[1]
            else:
                methods = self._fixed.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"route {route.method} {route.path} is listed twice")
            methods[route.method] = route

    def surface_for(self, path: str) -> Surface:
        """The error shape for a path no route takes: that of the longest route path it starts with."""
        best, surface = -1, OPENAI
        for fixed, methods in self._fixed.items():
            if path.startswith(fixed) and len(fixed) > best:
                best, surface = len(fixed), next(iter(methods.values())).surface
        return surface

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method`` and ``path`` and its path parameters; else NotFound or MethodNotAllowed."""
        methods = self._fixed.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for pattern, candidates in self._patterns.values():
                m = pattern.match(path)
                if m is not None:
                    methods, params = candidates, m.groupdict()
                    break
            else:
                raise NotFound(f"no route {method} {path}")
        route = methods.get(method)
        if route is None:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use {allowed}", allowed=allowed)
        return route, params
