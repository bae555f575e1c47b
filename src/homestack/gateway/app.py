"""The gateway's ASGI app: lifespan, then for each request one route-table lookup, the route's role, its handler.

Errors are rendered in the shape of the route's API surface. Model-serving
routes write one request log line each, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import traceback
from typing import Callable

from ..config import FleetConfig
from ..errors import HomestackError
from ..observe import RequestLog, RequestRecord
from ..observe.metrics import Metrics
from ..promotion.metrics import PromotionCollector
from ..peers.directory import PeerDirectory
from ..scheduler import Scheduler
from .asgi import Receive, Scope, Send, send_error
from ..keys import Key, KeyRing, Role
from .auth import Auth
from .context import KnowledgeTarget, Request, Services
from .knowledge import KnowledgeSupervisor, new_token, token_header
from ..promotion.driver import Promotions
from .reload import on_hangup, reload_fleet, watch_fleet_file
from .routes import SURFACES, RouteTable, routes
from .surfaces import Surface
from .surfaces.openai import OPENAI
from .upstream import UpstreamPool

# Every header a surface may take a key from.
_KEY_HEADERS = frozenset(s.api_key_header for s in SURFACES if s.api_key_header is not None)


class GatewayApp:
    def __init__(self, fleet: FleetConfig, scheduler: Scheduler, request_log: RequestLog | None = None,
                 knowledge_url: str | None = None, fleet_file: str | None = None):
        request_log = request_log or RequestLog(host=fleet.host_name)
        metrics = Metrics(scheduler, fleet.host_name) if fleet.metrics else None
        if metrics is not None:
            request_log.metrics = metrics
            scheduler.on_loaded = metrics.model_loaded
        self.auth = Auth(KeyRing.load(fleet), metrics.key_rejected if metrics is not None else None)
        # The knowledge service: /v1/knowledge/* is relayed to it, kb:<collection> chats too, with its token.
        self.knowledge_token = new_token() if knowledge_url else None
        if self.knowledge_token is not None:  # the service calls back for embeddings and answers with it
            self.auth.ring.add(self.knowledge_token, Key("knowledge-service", frozenset({Role.INFERENCE})))
        self.services = Services(
            fleet=fleet,
            scheduler=scheduler,
            request_log=request_log,
            upstream=UpstreamPool(fleet.timeouts.connect, fleet.timeouts.read),
            metrics=metrics,
            knowledge_url=knowledge_url,
            knowledge_target=KnowledgeTarget(knowledge_url + "/v1/knowledge",
                                             upstream_headers=token_header(self.knowledge_token))
            if knowledge_url else None,
            created=int(time.time()),
            auth=self.auth,
            fleet_file=fleet_file,
            peers=PeerDirectory.for_fleet(fleet) if fleet.peers else None,
        )
        self.services.promotions = Promotions(self.services, self, reload_fleet)
        request_log.listeners.append(self.services.promotions.observe)
        if metrics is not None:
            metrics.registry.register(PromotionCollector(self.services))
        self.routes = RouteTable(routes(metrics=metrics is not None, metrics_role=Role(fleet.metrics_access)))
        self.supervisor: KnowledgeSupervisor | None = None
        self.on_started: Callable[[], None] | None = None  # e.g. print the banner
        self.reload_on_hangup = False  # SIGHUP reloads the fleet file (the served gateway; not in-process tests)
        self.watch_fleet = False  # `serve --watch`: a change to the fleet file reloads it

    @property
    def scheduler(self) -> Scheduler:
        return self.services.scheduler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        services = self.services
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await services.scheduler.start(services.upstream.status)
                for ended in services.promotions.resume():
                    print(f"homestack: promotion {ended['promotion']} of route {ended['route']} ({ended['from']} -> "
                          f"{ended['to']}) {ended['event']}: {ended['detail']}", file=sys.stderr, flush=True)
                if self.reload_on_hangup:
                    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hangup, services)
                if self.watch_fleet and services.fleet_file is not None:
                    watcher = asyncio.get_running_loop().create_task(watch_fleet_file(services))
                    services.background.add(watcher)
                if services.peers is not None:
                    services.peers.start(services.upstream)
                if self.supervisor is not None:
                    self.supervisor.start()
                if self.on_started is not None:
                    self.on_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                services.promotions.close()  # unfinished: the next start records them aborted
                for task in list(services.background):
                    task.cancel()
                if self.supervisor is not None:
                    await self.supervisor.close()
                if services.peers is not None:
                    await services.peers.close()
                await services.scheduler.close()
                services.upstream.close()
                services.request_log.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = request_id = content_length = None
        other_keys: dict[bytes, bytes] = {}  # headers some surfaces take a bare key from (x-api-key)
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name in _KEY_HEADERS:
                other_keys[name] = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
        rid = request_id.decode("latin-1") if request_id else os.urandom(8).hex()
        rid_header = [(b"x-request-id", request_id or rid.encode())]
        surface: Surface = OPENAI
        rec = route = req = None
        try:
            route, params = self.routes.match(scope["method"], scope["path"])
            surface = route.surface
            if authorization is None and surface.api_key_header in other_keys:
                authorization = b"Bearer " + other_keys[surface.api_key_header]
            req = Request(scope, receive, send, rid_header, content_length, params)
            if route.logged:
                req.record = rec = RequestRecord(rid, req.method, req.path)
                req.operation = route.operation
            # A model route's role depends on the model (kb:<collection> reads knowledge): serve_model checks it.
            req.key = self.auth.check(authorization, route.role if route.operation is None else Role.ANY)
            if rec is not None and req.key is not None:
                rec.key = req.key.name
            await route.handler(self.services, req)
        except HomestackError as exc:
            if route is None:  # no route took the path: answer in its neighbours' shape
                surface = self.routes.surface_for(scope["path"])
            if rec is not None:
                rec.status, rec.outcome = exc.status, exc.code or exc.type
            # The request's own send: a stream kept alive while waiting turns the error into an event.
            await send_error(send if req is None else req.send, exc, surface.error_body(exc), rid_header)
        except Exception:
            if rec is not None:
                rec.status, rec.outcome = 500, "internal_error"
            await _internal_error(send if req is None else req.send, surface, rid_header)
        finally:
            if rec is not None:
                self.services.request_log.write(rec)


async def _internal_error(send: Send, surface: Surface, headers) -> None:
    """A bug, not a user error: the traceback goes to the operator's log, the client gets JSON."""
    traceback.print_exc(file=sys.stderr)
    exc = HomestackError("internal error in the gateway; see its log")
    try:
        await send_error(send, exc, surface.error_body(exc), headers)
    except Exception:  # the response had already started
        pass
