"""The gateway's ASGI app: OpenAI routes, admin routes, auth, limits, request logs.

The hot path reads the body once, parses it once (to find the model), and
forwards the original bytes untouched.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from typing import Any, Callable

import orjson

from ..config import FleetConfig
from ..errors import BadRequest, ClientClosed, HomestackError, MethodNotAllowed, ModelNotFound, NotFound
from ..observe import RequestLog, RequestRecord
from ..observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..observe.metrics import Metrics
from ..runners import Runner, State
from ..scheduler import Scheduler, Ticket
from . import admin, ui
from .asgi import Receive, Scope, Send, read_body, send_error, send_response, wait_disconnect
from .auth import Auth
from .knowledge import KnowledgeSupervisor, KnowledgeTarget
from .proxy import forward, relay
from .upstream import UpstreamPool

_RUNNER_SCRAPE = 2.0  # seconds a runner's /metrics may take before the scrape goes on without it

# Route -> the field a request must carry besides "model".
_OPENAI_ROUTES = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}


class Gateway:
    def __init__(self, fleet: FleetConfig, scheduler: Scheduler, request_log: RequestLog | None = None,
                 knowledge_url: str | None = None):
        self.fleet = fleet
        # The knowledge service: /v1/knowledge/* is relayed to it, kb:<collection> chats too.
        self.knowledge_url = knowledge_url
        self.knowledge_target = KnowledgeTarget(knowledge_url + "/v1/knowledge") if knowledge_url else None
        self.supervisor: KnowledgeSupervisor | None = None
        self.scheduler = scheduler
        self.auth = Auth(fleet.api_keys, fleet.admin_keys)
        self.request_log = request_log or RequestLog()
        self.upstream = UpstreamPool(fleet.timeouts.connect, fleet.timeouts.read)
        self.metrics = Metrics(scheduler) if fleet.metrics else None
        if self.metrics is not None:
            self.request_log.metrics = self.metrics
            scheduler.on_loaded = self.metrics.model_loaded
        self.on_started: Callable[[], None] | None = None  # e.g. print the banner
        self._created = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.scheduler.start(self.upstream.status)
                if self.supervisor is not None:
                    self.supervisor.start()
                if self.on_started is not None:
                    self.on_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.supervisor is not None:
                    await self.supervisor.close()
                await self.scheduler.close()
                self.upstream.close()
                self.request_log.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        authorization = request_id = content_length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
        rid = request_id.decode("latin-1") if request_id else os.urandom(8).hex()
        rid_header = [(b"x-request-id", request_id or rid.encode())]
        method = scope["method"]
        required = _OPENAI_ROUTES.get(path)
        if required is not None and method == "POST":
            await self._openai(path, required, authorization, content_length, rid, rid_header, receive, send)
            return
        try:
            if path == "/health":
                await send_response(send, 200, b'{"status":"ok"}', headers=rid_header)
                return
            if path == "/metrics" and method == "GET" and self.metrics is not None:
                self.auth.check(authorization, admin=False)
                body = self.metrics.render(await self._runner_metrics())
                await send_response(send, 200, body, METRICS_CONTENT_TYPE.encode(), rid_header)
                return
            if path == "/v1/models" and method == "GET":
                self.auth.check(authorization, admin=False)
                body = orjson.dumps({"object": "list", "data": [self._model(r) for r in self.scheduler.runners.values()]})
                await send_response(send, 200, body, headers=rid_header)
                return
            if path.startswith("/v1/models/") and method == "GET":
                self.auth.check(authorization, admin=False)
                runner = self.scheduler.resolve(path.removeprefix("/v1/models/"))
                await send_response(send, 200, orjson.dumps(self._model(runner)), headers=rid_header)
                return
            if path == "/ui" or path.startswith("/ui/"):  # static files; the page sends the key to /admin itself
                await ui.handle(path, method, send, rid_header)
                return
            if path.startswith("/v1/knowledge/"):
                self.auth.check(authorization, admin=False)
                await self._knowledge(scope, path, method, content_length, receive, send, rid_header)
                return
            if path.startswith("/admin/"):
                self.auth.check(authorization, admin=True)
                await admin.handle(self, scope, path, method, send, receive, rid_header)
                return
            if path in _OPENAI_ROUTES or path == "/v1/models":
                raise MethodNotAllowed(f"{method} is not allowed on {path}")
            raise NotFound(f"no route {method} {path}")
        except HomestackError as exc:
            await send_error(send, exc, rid_header)
        except Exception:
            await _internal_error(send, rid_header)

    async def _openai(
        self, path: str, required: str, authorization: bytes | None, content_length: bytes | None,
        rid: str, rid_header, receive: Receive, send: Send,
    ) -> None:
        rec = RequestRecord(rid, "POST", path)
        try:
            rec.key = self.auth.check(authorization, admin=False)
            body = await read_body(receive, self.fleet.max_body_bytes, _int(content_length))
            payload = _parse(body, required)
            rec.model = payload["model"]
            rec.stream = payload.get("stream") is True
            try:
                runner = self.scheduler.resolve(rec.model)
            except ModelNotFound:
                if self.knowledge_target is None or not rec.model.startswith("kb:"):
                    raise
                await self._knowledge_chat(path, body, rec, send, receive, rid_header)
                return
            rec.runner, rec.runner_kind, rec.runner_version = runner.name, runner.kind, runner.version
            ticket = self.scheduler.acquire(runner)
            if ticket is not None:
                await self._wait_turn(ticket, receive)
            try:
                await forward(self.upstream, runner, path, body, rec, send, receive, rid_header)
            finally:
                self.scheduler.release(runner)
        except HomestackError as exc:
            rec.status, rec.outcome = exc.status, exc.code or exc.type
            await send_error(send, exc, rid_header)
        except Exception:
            rec.status, rec.outcome = 500, "internal_error"
            await _internal_error(send, rid_header)
        finally:
            self.request_log.write(rec)

    async def _knowledge(self, scope: Scope, path: str, method: str, content_length: bytes | None,
                         receive: Receive, send: Send, rid_header) -> None:
        if self.knowledge_url is None:
            raise NotFound("the knowledge service is not running with this gateway (started with --no-knowledge?)")
        body = await read_body(receive, self.fleet.max_body_bytes, _int(content_length))
        query = scope.get("query_string", b"")
        target = path + ("?" + query.decode("latin-1") if query else "")
        await relay(self.upstream, self.knowledge_url, method.encode(), target, body, send, rid_header)

    async def _knowledge_chat(self, path: str, body: bytes, rec: RequestRecord, send: Send, receive: Receive,
                              rid_header) -> None:
        """A kb:<collection> model: the knowledge service retrieves, prompts the chat model and cites."""
        if path != "/v1/chat/completions":
            raise BadRequest(f"{rec.model} answers chat completions only", param="model")
        rec.runner = rec.runner_kind = "knowledge"
        await forward(self.upstream, self.knowledge_target, path, body, rec, send, receive, rid_header)

    async def _wait_turn(self, ticket: Ticket, receive: Receive) -> None:
        """Wait in the model's queue; leave it if the client goes away (which may cancel a load)."""
        gone = asyncio.ensure_future(wait_disconnect(receive))
        try:
            await asyncio.wait((ticket.future, gone), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self.scheduler.cancel(ticket)
            raise
        finally:
            gone.cancel()
        if not ticket.future.done():
            self.scheduler.cancel(ticket)
            raise ClientClosed("the client went away while its request waited in the queue")
        ticket.future.result()  # the load's error, if it failed

    async def _runner_metrics(self) -> dict[str, str | None]:
        """Each ready llama.cpp runner's own /metrics text, fetched concurrently; None where it failed."""
        runners = [r for r in self.scheduler.runners.values() if r.kind == "llama.cpp" and r.state is State.READY]

        async def fetch(runner: Runner) -> str | None:
            try:
                status, body = await asyncio.wait_for(self.upstream.get(runner.origin, "/metrics"), _RUNNER_SCRAPE)
            except (OSError, TimeoutError):
                return None
            return body.decode("utf-8", "replace") if status == 200 else None

        texts = await asyncio.gather(*(fetch(r) for r in runners))
        return dict(zip((r.name for r in runners), texts))

    def _model(self, runner: Runner) -> dict[str, Any]:
        return {
            "id": runner.name,
            "object": "model",
            "created": self._created,
            "owned_by": "homestack",
            "aliases": list(runner.spec.aliases),
            "runner": runner.kind,
            "state": runner.state.value,
        }


async def _internal_error(send: Send, headers) -> None:
    """A bug, not a user error: the traceback goes to the operator's log, the client gets JSON."""
    traceback.print_exc(file=sys.stderr)
    try:
        await send_error(send, HomestackError("internal error in the gateway; see its log"), headers)
    except Exception:  # the response had already started
        pass


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None


def _parse(body: bytes, required: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("missing required field 'model'", param="model")
    if payload.get(required) is None:
        raise BadRequest(f"missing required field {required!r}", param=required)
    return payload
