"""Admin routes for promotions: start one, roll a route back, read the history."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import BadRequest, HomestackError
from .admin import query_params, whole_number
from .asgi import read_body, send_response
from .context import Request, Services

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


async def promote(services: Services, req: Request) -> None:
    """POST /admin/routes/{name}/promote {"to": MODEL, "canary": [10, 50], "step": 60, "watch": 300, "swap": false}:
    202 with the "started" event; the promotion runs on (GET /admin/history follows it)."""
    body = _json(await read_body(req.receive, 64 * 1024, req.content_length))
    to = body.get("to")
    if not isinstance(to, str) or not to:
        raise BadRequest("give the model to promote to: {\"to\": \"MODEL\"}", param="to")
    canary = body.get("canary")
    if canary is not None and (not isinstance(canary, list) or
                               not all(isinstance(c, int | float) and not isinstance(c, bool) for c in canary)):
        raise BadRequest("canary is a list of percentages, e.g. [10, 50]", param="canary")
    started = _promotions(services).start(
        req.params["name"], to, _who(req), canary, _seconds(body, "step"), _seconds(body, "watch"),
        bool(body.get("swap")),
    )
    await send_response(req.send, 202, orjson.dumps(started), headers=req.headers)


async def rollback(services: Services, req: Request) -> None:
    event = await _promotions(services).rollback(req.params["name"], _who(req))
    await send_response(req.send, 200, orjson.dumps(event), headers=req.headers)


async def history(services: Services, req: Request) -> None:
    """GET /admin/history[?route=NAME&limit=N]: the events, oldest first, and the promotions running now."""
    query = query_params(req)
    promotions = _promotions(services)
    route = query.get("route", [None])[0]
    events = promotions.history.read(route, whole_number(query, "limit", 200))
    body = {"events": events, "active": promotions.report(),
            "rollbacks": [{"route": r, "reason": why, "count": n} for (r, why), n in promotions.rollbacks.items()]}
    await send_response(req.send, 200, orjson.dumps(body), headers=req.headers)


def _promotions(services: Services):
    if services.promotions is None:  # built with the app: only a bare test app lacks it
        raise HomestackError("promotions are not available in this gateway")
    return services.promotions


def _who(req: Request) -> str | None:
    return req.key.name if req.key is not None else None


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _seconds(body: dict[str, Any], name: str) -> float | None:
    """A duration as seconds or text with a unit ("90", 90, "30s", "5m", "1h")."""
    value = body.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            text = str(value).strip()
            unit = _DURATION_UNITS.get(text[-1:], None)
            seconds = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a duration like 30s, 5m or 90, got {value!r}", param=name) from None
    if seconds < 0:
        raise BadRequest(f"{name} must not be negative", param=name)
    return seconds
