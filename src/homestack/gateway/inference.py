"""The model-serving handler every surface's routes share.

It reads the body once, lets the route's surface parse it (to find the model),
resolves the model (a route: the targets to try, in order), waits for a slot on
the model's runner, and forwards the original bytes untouched: unless the runner
does not speak the surface's protocol (then the surface translates to chat
completions and back), ``max_tokens`` asks for more than the model may give
(then it is capped, not refused), or the runner has several slots (then the
request names the slot holding its conversation's prompt: prompt-cache affinity). A route's next target is tried only while
nothing has been sent to the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..errors import BadRequest, ClientClosed, ModelNotFound, RunnerError, TooManyRequests
from ..keys import Role
from ..routing import caller_of, chain
from ..routing.affinity import conversation_key
from ..peers.choice import PeerModel, PeerView
from ..peers.forward import forward_to_peers, forwarded
from ..runners import Runner
from ..scheduler import Scheduler, Ticket
from .asgi import Receive, read_body, wait_disconnect
from .context import Request, Services
from .keepalive import Keepalive
from .proxy import forward
from .slots import affine_request

# What makes a route try its next target: the runner could not take or answer the request.
_UNSERVED = (RunnerError, TooManyRequests)


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
    if operation.surface.drop_volatile(payload):
        body = orjson.dumps(payload)
    rec.model = payload["model"]
    rec.stream = payload.get("stream") is True
    keepalive = None
    if rec.stream and operation.surface.ping is not None:  # pinged while the answer is slow to start
        keepalive = Keepalive(req.send, operation.surface, req.headers)
        req.send = keepalive.send
    try:
        await _serve_model(services, req, body, payload)
    finally:
        if keepalive is not None:
            keepalive.close()


async def _serve_model(services: Services, req: Request, body: bytes, payload: dict[str, Any]) -> None:
    rec, auth = req.record, services.auth
    on_peers: list[tuple[PeerView, PeerModel]] = []
    try:
        runners = resolve_target(services, req, payload)
    except ModelNotFound:
        if services.peers is not None and not forwarded(req.scope["headers"]):
            on_peers = services.peers.choose(rec.model)
        if not on_peers and (services.knowledge_target is None or not rec.model.startswith("kb:")):
            auth.require(req.key, Role.INFERENCE)  # a key without the role learns nothing of the fleet
            auth.scope(req.key, rec.model)
            raise
        runners = []
    # The route admits any valid key; the model decides the role: kb:<collection> chats read knowledge.
    auth.require(req.key, Role.INFERENCE if runners or on_peers else Role.KNOWLEDGE_READ)
    if rec.route is None:
        names = (runners[0].name, *runners[0].spec.aliases) if runners else on_peers[0][1].names if on_peers else ()
        auth.scope(req.key, rec.model, *names)
    limited = auth.admit(req.key, req.headers)
    try:
        if runners:
            await _serve_targets(services, req, runners, body, payload)
        elif on_peers:
            await forward_to_peers(services.peers, on_peers, services.upstream, req.operation, body, rec, req.send,
                                   req.receive, req.headers, services.request_log.host)
        else:
            await _ask_knowledge(services, req, body)
    finally:
        if limited:
            auth.finish(req.key, (rec.tokens_in or 0) + (rec.tokens_out or 0))


def resolve_target(services: Services, req: Request, payload: dict[str, Any]) -> list[Runner]:
    """The runners to try for the request's model, in order: its own for a model; for a route (a
    virtual model) the target its caller lands on, then the fallbacks. ModelNotFound for neither."""
    name = req.record.model
    routes = services.routes()
    route = routes.get(name)
    if route is None:
        return [services.scheduler.resolve(name)]
    services.auth.require(req.key, Role.INFERENCE)
    services.auth.scope_route(req.key, name)
    req.record.route = name
    caller = caller_of(route.sticky, req.key.name if req.key else None, payload, req.scope["headers"])
    return [services.scheduler.resolve(model) for model in chain(routes, name, caller)]


async def _ask_knowledge(services: Services, req: Request, body: bytes) -> None:
    """A kb:<collection> model: the knowledge service retrieves, prompts the chat model and cites."""
    rec = req.record
    if req.operation.name != "chat":
        raise BadRequest(f"{rec.model} answers chat completions only", param="model")
    rec.runner = rec.runner_kind = "knowledge"
    await forward(services.upstream, services.knowledge_target, req.operation, body, rec, req.send, req.receive,
                  req.headers)


def output_cap(runner: Runner) -> int | None:
    """The most tokens one answer may ask for: the model's max_output_tokens and its context."""
    caps = [c for c in (runner.spec.max_output_tokens, runner.plan.kind.context_tokens(runner.spec)) if c]
    return min(caps, default=None)


def _cap_max_tokens(payload: dict[str, Any], field: str | None, runner: Runner) -> bool:
    """Lower ``payload[field]`` to what the model may give; whether it changed."""
    cap = output_cap(runner)
    asked = payload.get(field) if field else None
    if cap is None or not isinstance(asked, int) or asked <= cap:
        return False
    payload[field] = cap
    return True


def _name_upstream_model(payload: dict[str, Any], runner: Runner) -> bool:
    """Give ``payload`` the model name the runner answers to, if it insists on one; whether it changed."""
    name = runner.plan.kind.upstream_model(runner.name, runner.spec)
    if name is None or payload.get("model") == name:
        return False
    payload["model"] = name
    return True


async def _serve_targets(services: Services, req: Request, runners: list[Runner], body: bytes,
                         payload: dict[str, Any]) -> None:
    """Serve with the first runner that can; each failure before anything was sent moves to the next."""
    last = len(runners) - 1
    for index, runner in enumerate(runners):
        try:
            await _serve_runner(services, req, runner, body, payload, fallback=index < last)
            return
        except _UNSERVED as exc:
            if index == last:
                raise
            req.record.fell_back_from.append(runner.name)
            req.record.status, req.record.outcome = 200, "ok"  # what the next target's answer makes them
            runner.log.write(f"[homestack] request {req.record.request_id} for route {req.record.route}: "
                             f"trying {runners[index + 1].name} instead: {exc.message}")


async def _serve_runner(services: Services, req: Request, runner: Runner, body: bytes, payload: dict[str, Any],
                        fallback: bool) -> None:
    rec, operation = req.record, req.operation
    capped = _cap_max_tokens(payload, operation.max_tokens_field, runner)
    if _name_upstream_model(payload, runner) or capped:
        body = orjson.dumps(payload)
    kind = runner.plan.kind
    native = operation.upstream_path in kind.serves
    translation = operation.surface.translation(operation, payload, native)
    affine = affine_request(runner, operation, payload)
    if affine and translation is None and operation.upstream_path not in kind.slot_paths:
        translation = operation.surface.translation(operation, payload, False)  # a path that can name a slot
    affine = affine and (translation or operation).upstream_path in kind.slot_paths
    scheduler = services.scheduler
    rec.runner, rec.runner_kind, rec.runner_version = runner.name, runner.kind, runner.version
    capability = translation.capability if translation is not None and translation.capability else operation.capability
    if runner.operations is not None and capability not in runner.operations:
        served = " and ".join(sorted(runner.operations - {"vision"}))
        raise BadRequest(f"model {runner.name} serves {served}, not {capability}", param="model",
                         code="unsupported_operation")
    if (missing := runner.lacks(capability)) is not None:
        raise BadRequest(f"model {runner.name} cannot serve {capability}: {missing}", param="model",
                         code="unsupported_operation")
    if runner.operations is not None and "vision" not in runner.operations and operation.surface.has_images(payload):
        raise BadRequest(f"model {runner.name} cannot see images (it has no vision; a llama.cpp model needs "
                         "--mmproj): send text only, or choose a model with vision",
                         param=operation.surface.conversation_field, code="image_not_supported")
    ticket = scheduler.acquire(runner)
    if ticket is not None:
        await _wait_turn(scheduler, ticket, req.receive)
    headers = [*req.headers, (b"x-homestack-model", runner.name.encode())]
    table = services.slots.table(runner) if affine else None  # after the wait: this process, its slots now
    slot = None if table is None else table.take(conversation_key(payload, req.scope["headers"]), len(body))
    try:
        await forward(services.upstream, runner, operation, body, rec, req.send, req.receive, headers,
                      translation, fallback=fallback, pin=None if slot is None else (kind.slot_field, slot))
    finally:
        if slot is not None:
            table.give_back(slot)
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
