"""What a route handler gets: the gateway's services, and the request it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import FleetConfig
from ..config.routes import RouteSpec
from ..observe import RequestLog, RequestRecord
from ..scheduler import Scheduler
from .asgi import Headers, Receive, Scope, Send
from .slots import SlotTables
from .surfaces import Operation
from .upstream import UpstreamPool

if TYPE_CHECKING:
    from ..keys import Key
    from ..peers.directory import PeerDirectory
    from ..observe.metrics import Metrics
    from .auth import Auth
    from .response_store import ResponseStore


@dataclass(frozen=True)
class KnowledgeTarget:
    """Where chat requests for kb:<collection> go; shaped like a runner for the proxy."""

    base_url: str
    name: str = "knowledge"
    upstream_headers: bytes = b""
    secrets: tuple[str, ...] = ()


@dataclass
class Services:
    """The gateway's long-lived parts, shared by every handler."""

    fleet: FleetConfig
    scheduler: Scheduler
    request_log: RequestLog
    upstream: UpstreamPool
    metrics: "Metrics | None"
    knowledge_url: str | None
    knowledge_target: KnowledgeTarget | None
    created: int  # the "created" time /v1/models reports
    auth: "Auth"
    fleet_file: str | None = None  # what a reload reads (None: the embedded default fleet)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    background: set[asyncio.Task[Any]] = field(default_factory=set)  # tasks nobody awaits (a SIGHUP's reload)
    peers: "PeerDirectory | None" = None  # other gateways, for models not held here
    slots: SlotTables = field(default_factory=SlotTables)  # runners' slots, for prompt-cache affinity
    responses: "ResponseStore | None" = None  # stored Responses answers, made on first use
    # A promotion's weights for its route, over the fleet file's (in memory only: a restart drops them).
    route_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    promotions: Any = None  # promotion.driver.Promotions (which uses these services: named, not imported)

    def routes(self) -> Mapping[str, RouteSpec]:
        """The routes requests resolve with now: the fleet file's, with any promotion's weights."""
        routes = self.fleet.routes
        if not self.route_weights:
            return routes
        moved = {name: routes[name].model_copy(update={"targets": weights})
                 for name, weights in self.route_weights.items() if name in routes}
        return {**routes, **moved}


class Request:
    """One HTTP request as the router hands it to a handler."""

    __slots__ = ("scope", "receive", "send", "method", "path", "params", "headers", "content_length",
                 "record", "key", "operation")

    def __init__(self, scope: Scope, receive: Receive, send: Send, headers: Headers,
                 content_length: bytes | None, params: dict[str, str]):
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.params = params
        self.headers = headers  # sent back with every answer (the request id)
        self.content_length = content_length
        self.record: RequestRecord | None = None  # set on routes that write a request log line
        self.key: "Key | None" = None  # the caller's key, when keys are configured
        self.operation: Operation | None = None  # a model-serving route's surface and runner path

    @property
    def query(self) -> bytes:
        return self.scope.get("query_string", b"")
