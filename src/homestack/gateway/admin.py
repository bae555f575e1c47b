"""Admin routes: what is running, load, unload, runner logs (tail or follow), reload the fleet file."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import orjson

from ..errors import BadRequest, ConfigError
from ..observe.speculative import acceptance
from .asgi import Headers, Receive, Send, send_response, wait_disconnect
from .context import Request, Services
from .handlers import runner_metrics
from .reload import reload_fleet

_FOLLOW_HEARTBEAT = 15.0  # seconds between SSE comments, so proxies keep the stream open


async def running(services: Services, req: Request) -> None:
    everything = _flag(query_params(req), "all")
    scheduler = services.scheduler
    counters = [
        {"event": event, "model": model, "reason": reason, "count": count}
        for (event, model, reason), count in scheduler.counters.items()
    ]
    events = [{"at": at, "event": event, "model": model} for at, event, model in scheduler.events]
    models = scheduler.running(everything)
    await _speculation(services, models)
    body = orjson.dumps({"host": services.request_log.host, "running": models,
                         "counters": counters, "events": events})
    await send_response(req.send, 200, body, headers=req.headers)


async def _speculation(services: Services, models: list[dict]) -> None:
    """Add ``speculative`` (mode, drafted, accepted, acceptance) to the models that speculate, from their runners."""
    modes = {}
    for model in models:
        runner = services.scheduler.runners[model["name"]]
        modes[runner.name] = runner.plan.kind.speculative(runner.spec)
    texts = await runner_metrics(services, {name for name, mode in modes.items() if mode})
    for model in models:
        mode = modes[model["name"]]
        counts = acceptance(texts.get(model["name"])) or {}
        model["speculative"] = {"type": mode, **counts} if mode else None


async def requests(services: Services, req: Request) -> None:
    limit = whole_number(query_params(req), "limit", 50)
    body = orjson.dumps({"requests": services.request_log.latest(limit)})
    await send_response(req.send, 200, body, headers=req.headers)


async def plan(services: Services, req: Request) -> None:
    await send_response(req.send, 200, orjson.dumps(services.scheduler.plan_report()), headers=req.headers)


async def load(services: Services, req: Request) -> None:
    runner = await services.scheduler.load(req.params["name"])
    await send_response(req.send, 200, orjson.dumps(services.scheduler.describe(runner)), headers=req.headers)


async def unload(services: Services, req: Request) -> None:
    runner = await services.scheduler.unload(req.params["name"])
    await send_response(req.send, 200, orjson.dumps(services.scheduler.describe(runner)), headers=req.headers)


async def reload(services: Services, req: Request) -> None:
    try:
        result = await reload_fleet(services)
    except ConfigError as exc:  # the client's file is wrong, not the gateway
        raise BadRequest(f"{exc.message}\n(the gateway keeps serving the fleet it had)",
                         code="invalid_config") from None
    await send_response(req.send, 200, orjson.dumps(result), headers=req.headers)


async def logs(services: Services, req: Request) -> None:
    runner = services.scheduler.resolve(req.params["name"])
    query = query_params(req)
    lines = whole_number(query, "lines", 100)
    if _flag(query, "follow"):
        await _follow(runner.log, lines, req.send, req.receive, req.headers)
    else:
        text = "\n".join(runner.log.tail(lines)).encode()
        await send_response(req.send, 200, text + (b"\n" if text else b""), b"text/plain; charset=utf-8", req.headers)


def query_params(req: Request) -> dict[str, list[str]]:
    return parse_qs(req.query.decode("latin-1"))


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["0"])[0] in ("1", "true", "yes")


def whole_number(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    try:
        return max(0, int(raw))
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}", param=name) from None


async def _follow(log, lines: int, send: Send, receive: Receive, headers: Headers) -> None:
    """Server-sent events: the tail first, then each new line as it is written."""
    queue = log.follow()
    disconnected = asyncio.ensure_future(wait_disconnect(receive))
    start = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")] + headers
    await send({"type": "http.response.start", "status": 200, "headers": start})
    try:
        for line in log.tail(lines):
            await send({"type": "http.response.body", "body": _event(line), "more_body": True})
        while not disconnected.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, disconnected}, timeout=_FOLLOW_HEARTBEAT,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await send({"type": "http.response.body", "body": _event(getter.result()), "more_body": True})
            else:
                getter.cancel()
                if not done:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
    finally:
        log.unfollow(queue)
        disconnected.cancel()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _event(line: str) -> bytes:
    return b"data: " + line.encode() + b"\n\n"
