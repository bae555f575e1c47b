"""Choosing a route's target: pure functions of the route table and the caller.

A caller (an API key's name, a ``user``, a header's value) is hashed with the
route's name into a point in [0, 1) that falls on one target's share of the
weights: the same caller lands on the same target on every request and across
restarts (sha256, not Python's salted ``hash``), while callers spread over the
targets by weight. A request without a caller draws its point at random.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any, Iterable

from ..config.routes import RouteSpec

_SCALE = float(1 << 64)


def _point(route: str, caller: str | None) -> float:
    if caller is None:
        return random.random()
    digest = hashlib.sha256(f"{route}\0{caller}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def pick(name: str, route: RouteSpec, caller: str | None) -> str:
    """The target of ``route`` (called ``name``) that ``caller`` lands on."""
    point = _point(name, caller) * sum(route.targets.values())
    chosen = None
    for target, weight in route.targets.items():
        if weight > 0:
            chosen = target
            point -= weight
            if point < 0:
                break
    assert chosen is not None  # the config rejects weights that do not add up to something positive
    return chosen


def chain(routes: Mapping[str, RouteSpec], name: str, caller: str | None) -> list[str]:
    """The fleet models to try for a request to route ``name``, in order: the chosen target, then the
    fallbacks; a target or fallback that is itself a route contributes its own chain. No model twice."""
    return list(dict.fromkeys(_expand(routes, name, caller)))


def _expand(routes: Mapping[str, RouteSpec], name: str, caller: str | None) -> Iterable[str]:
    route = routes.get(name)
    if route is None:  # a model (the config rejects unknown names and cycles)
        yield name
        return
    for target in (pick(name, route, caller), *route.fallbacks):
        yield from _expand(routes, target, caller)


def caller_of(sticky: str, key: str | None, payload: Mapping[str, Any],
              headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Who is calling, as ``sticky`` says to tell callers apart; None when the request does not say."""
    if sticky == "key":
        return key
    if sticky == "user":
        user = payload.get("user")
        if user is None:  # Anthropic's Messages API names its caller here
            metadata = payload.get("metadata")
            user = metadata.get("user_id") if isinstance(metadata, Mapping) else None
        return str(user) if isinstance(user, str | int) and user != "" else None
    if sticky.startswith("header:"):
        wanted = sticky.removeprefix("header:").lower().encode()
        value = next((v for n, v in headers if n == wanted), b"")
        return value.decode("latin-1") or None
    return None  # "none"
