"""Small routes: health, the model list, Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..errors import ModelNotFound
from ..observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..peers.choice import PeerModel, PeerView
from ..runners import Runner, State
from .asgi import send_response
from .context import Request, Services

_RUNNER_SCRAPE = 2.0  # seconds a runner's /metrics may take before the scrape goes on without it
_HEALTHY = b'{"status":"ok"}'


async def health(services: Services, req: Request) -> None:
    await send_response(req.send, 200, _HEALTHY, headers=req.headers)


async def list_models(services: Services, req: Request) -> None:
    """The models the caller's key may use (all of them when auth is off)."""
    key = req.key
    data = [_model(services, r) for r in services.scheduler.runners.values()
            if key is None or key.may_use(r.name, *r.spec.aliases)]
    data += [_route(services, name) for name in services.fleet.routes if key is None or key.may_route(name)]
    if services.peers is not None:  # the union: a model held here is served here
        data += [_peer_model(services, peer, m) for peer, m in services.peers.models()
                 if m.name not in services.scheduler.runners and (key is None or key.may_use(*m.names))]
    await send_response(req.send, 200, orjson.dumps({"object": "list", "data": data}), headers=req.headers)


async def get_model(services: Services, req: Request) -> None:
    name = req.params["name"]
    if name in services.fleet.routes:
        services.auth.scope_route(req.key, name)
        await send_response(req.send, 200, orjson.dumps(_route(services, name)), headers=req.headers)
        return
    try:
        runner = services.scheduler.resolve(name)
    except ModelNotFound:
        services.auth.scope(req.key, name)  # out of scope: 403, whether the model exists or not
        on_peers = services.peers.choose(name) if services.peers is not None else []
        if not on_peers:
            raise
        peer, model = on_peers[0]
        await send_response(req.send, 200, orjson.dumps(_peer_model(services, peer, model)), headers=req.headers)
        return
    services.auth.scope(req.key, name, runner.name, *runner.spec.aliases)
    await send_response(req.send, 200, orjson.dumps(_model(services, runner)), headers=req.headers)


async def metrics(services: Services, req: Request) -> None:
    assert services.metrics is not None  # the route exists only when metrics are on
    body = services.metrics.render(await runner_metrics(services))
    await send_response(req.send, 200, body, METRICS_CONTENT_TYPE.encode(), req.headers)


async def runner_metrics(services: Services, names: set[str] | None = None) -> dict[str, str | None]:
    """Each ready runner's own /metrics text (for kinds that have one; only ``names`` when given),
    fetched concurrently; None where it failed."""
    runners = [r for r in services.scheduler.runners.values() if r.metrics_path and r.state is State.READY
               and (names is None or r.name in names)]

    async def fetch(runner: Runner) -> str | None:
        try:
            status, body = await asyncio.wait_for(
                services.upstream.get(runner.origin, runner.metrics_path), _RUNNER_SCRAPE
            )
        except (OSError, TimeoutError):
            return None
        return body.decode("utf-8", "replace") if status == 200 else None

    texts = await asyncio.gather(*(fetch(r) for r in runners))
    return dict(zip((r.name for r in runners), texts))


def _model(services: Services, runner: Runner) -> dict[str, Any]:
    return {
        "id": runner.name,
        "object": "model",
        "created": services.created,
        "owned_by": "homestack",
        "aliases": list(runner.spec.aliases),
        "runner": runner.kind,
        "state": runner.state.value,
        "host": services.request_log.host,
    }


def _peer_model(services: Services, peer: PeerView, model: PeerModel) -> dict[str, Any]:
    """A model a peer serves, as its last poll described it."""
    return {
        "id": model.name,
        "object": "model",
        "created": services.created,
        "owned_by": "homestack",
        "aliases": list(model.aliases),
        "runner": model.runner,
        "state": model.state,
        "host": peer.host,
    }


def _route(services: Services, name: str) -> dict[str, Any]:
    """A route (virtual model), marked as one: its weights, fallbacks and what keeps a caller on a target."""
    route = services.fleet.routes[name]
    return {
        "id": name,
        "object": "model",
        "created": services.created,
        "owned_by": "homestack",
        "runner": "route",
        "route": {"targets": route.targets, "fallbacks": route.fallbacks, "sticky": route.sticky},
    }
