"""The model-serving handler every surface's routes share.

It reads the body once, lets the route's surface parse it (to find the model),
waits for a slot on the model's runner, and forwards the original bytes untouched.
"""

from __future__ import annotations

import asyncio

from ..errors import BadRequest, ClientClosed, ModelNotFound
from ..keys import Role
from ..peers.choice import PeerModel, PeerView
from ..peers.forward import forward_to_peers, forwarded
from ..runners import Runner
from ..scheduler import Scheduler, Ticket
from .asgi import Receive, read_body, wait_disconnect
from .context import Request, Services
from .proxy import forward


async def serve_model(services: Services, req: Request) -> None:
    rec = req.record
    operation = req.operation
    auth = services.auth
    key = req.key
    kb_possible = operation.name == "chat" and services.knowledge_target is not None
    if key is not None and not (kb_possible and Role.KNOWLEDGE_READ in key.roles):
        auth.require(key, Role.INFERENCE)  # before the body: no kb: model can make this request allowed
    body = await read_body(req.receive, services.fleet.max_body_bytes, req.content_length)
    payload = operation.surface.parse(body, operation)
    rec.model = payload["model"]
    rec.stream = payload.get("stream") is True
    scheduler = services.scheduler
    on_peers: list[tuple[PeerView, PeerModel]] = []
    try:
        runner = scheduler.resolve(rec.model)
    except ModelNotFound:
        runner = None
        if services.peers is not None and not forwarded(req.scope["headers"]):
            on_peers = services.peers.choose(rec.model)
        if not on_peers and (services.knowledge_target is None or not rec.model.startswith("kb:")):
            auth.require(req.key, Role.INFERENCE)  # a key without the role learns nothing of the fleet
            auth.scope(req.key, rec.model)
            raise
    # The route admits any valid key; the model decides the role: kb:<collection> chats read knowledge.
    auth.require(req.key, Role.INFERENCE if runner is not None or on_peers else Role.KNOWLEDGE_READ)
    names = (runner.name, *runner.spec.aliases) if runner is not None else on_peers[0][1].names if on_peers else ()
    auth.scope(req.key, rec.model, *names)
    limited = auth.admit(req.key, req.headers)
    try:
        if runner is not None:
            await _serve_runner(services, req, runner, body)
        elif services.peers is not None and on_peers:
            await forward_to_peers(services.peers, on_peers, services.upstream, req.operation, body, rec, req.send,
                                   req.receive, req.headers, services.request_log.host)
        else:
            await _ask_knowledge(services, req, body)
    finally:
        if limited:
            auth.finish(req.key, (rec.tokens_in or 0) + (rec.tokens_out or 0))


async def _ask_knowledge(services: Services, req: Request, body: bytes) -> None:
    """A kb:<collection> model: the knowledge service retrieves, prompts the chat model and cites."""
    rec = req.record
    if req.operation.name != "chat":
        raise BadRequest(f"{rec.model} answers chat completions only", param="model")
    rec.runner = rec.runner_kind = "knowledge"
    await forward(services.upstream, services.knowledge_target, req.operation, body, rec, req.send, req.receive,
                  req.headers)


async def _serve_runner(services: Services, req: Request, runner: Runner, body: bytes) -> None:
    rec = req.record
    scheduler = services.scheduler
    rec.runner, rec.runner_kind, rec.runner_version = runner.name, runner.kind, runner.version
    operation = req.operation
    if runner.operations is not None and operation.name not in runner.operations:
        served = " and ".join(sorted(runner.operations))
        raise BadRequest(f"model {runner.name} serves {served}, not {operation.name}", param="model",
                         code="unsupported_operation")
    ticket = scheduler.acquire(runner)
    if ticket is not None:
        await _wait_turn(scheduler, ticket, req.receive)
    try:
        await forward(services.upstream, runner, req.operation, body, rec, req.send, req.receive, req.headers)
    finally:
        scheduler.release(runner)


async def _wait_turn(scheduler: Scheduler, ticket: Ticket, receive: Receive) -> None:
    """Wait in the model's queue; leave it if the client goes away (which may cancel a load)."""
    gone = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait((ticket.future, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        scheduler.cancel(ticket)
        raise
    finally:
        gone.cancel()
    if not ticket.future.done():
        scheduler.cancel(ticket)
        raise ClientClosed("the client went away while its request waited in the queue")
    ticket.future.result()  # the load's error, if it failed
