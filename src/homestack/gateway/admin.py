"""Admin routes: what is running, load, unload, runner logs (tail or follow)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from ..errors import BadRequest, MethodNotAllowed, NotFound
from .asgi import Headers, Receive, Scope, Send, send_response, wait_disconnect

if TYPE_CHECKING:
    from .app import Gateway

_FOLLOW_HEARTBEAT = 15.0  # seconds between SSE comments, so proxies keep the stream open


async def handle(gw: "Gateway", scope: Scope, path: str, method: str, send: Send, receive: Receive,
                 headers: Headers) -> None:
    parts = path.split("/")  # ['', 'admin', ...]
    if parts[2:] == ["running"]:
        _expect(method, "GET", path)
        everything = _flag(parse_qs(scope.get("query_string", b"").decode()), "all")
        counters = [
            {"event": event, "model": model, "reason": reason, "count": count}
            for (event, model, reason), count in gw.scheduler.counters.items()
        ]
        body = orjson.dumps({"running": gw.scheduler.running(everything), "counters": counters})
        await send_response(send, 200, body, headers=headers)
    elif parts[2:] == ["requests"]:
        _expect(method, "GET", path)
        limit = _number(parse_qs(scope.get("query_string", b"").decode()), "limit", 50)
        body = orjson.dumps({"requests": gw.request_log.latest(limit)})
        await send_response(send, 200, body, headers=headers)
    elif parts[2:] == ["plan"]:
        _expect(method, "GET", path)
        await send_response(send, 200, orjson.dumps(gw.scheduler.plan_report()), headers=headers)
    elif len(parts) == 5 and parts[2] == "models" and parts[4] in ("load", "unload"):
        _expect(method, "POST", path)
        action = gw.scheduler.load if parts[4] == "load" else gw.scheduler.unload
        runner = await action(parts[3])
        await send_response(send, 200, orjson.dumps(gw.scheduler.describe(runner)), headers=headers)
    elif len(parts) == 4 and parts[2] == "logs":
        _expect(method, "GET", path)
        runner = gw.scheduler.resolve(parts[3])
        query = parse_qs(scope.get("query_string", b"").decode())
        lines = _number(query, "lines", 100)
        if _flag(query, "follow"):
            await _follow(runner.log, lines, send, receive, headers)
        else:
            text = "\n".join(runner.log.tail(lines)).encode()
            await send_response(send, 200, text + (b"\n" if text else b""), b"text/plain; charset=utf-8", headers)
    else:
        raise NotFound(f"no admin route {method} {path}")


def _expect(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {allowed}")


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["0"])[0] in ("1", "true", "yes")


def _number(query: dict[str, list[str]], name: str, default: int) -> int:
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
