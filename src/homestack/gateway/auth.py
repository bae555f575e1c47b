"""Who may call a route, and how much: the caller's key against the route's role, its models and its limits.

Errors name the key, never its secret. Every refusal of a known key is
reported to ``on_reject(key name, reason)`` (the per-key rejection metric).
"""

from __future__ import annotations

import time
from typing import Callable

from ..errors import Forbidden, TooManyRequests, Unauthorized
from ..keys import Key, KeyRing, Role
from ..keys.limits import Limiter
from .asgi import Headers

_NO_KEY = "(invalid)"  # the metric label for refusals of secrets that name no key


class RateLimited(TooManyRequests):
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int, headers: Headers):
        super().__init__(message, retry_after=retry_after)
        self.limit_headers = headers

    def headers(self) -> Headers:
        return [*super().headers(), *self.limit_headers]


class Auth:
    def __init__(self, ring: KeyRing, on_reject: Callable[[str, str], None] | None = None):
        self.ring = ring
        self.limiter = Limiter()
        self.on_reject = on_reject or (lambda key, reason: None)

    def check(self, authorization: bytes | None, role: Role) -> Key | None:
        """The caller's key (None when auth is off or the route is public); raise if it may not call."""
        if role is Role.PUBLIC or not self.ring.enabled:
            return None
        if not authorization or not authorization.startswith(b"Bearer "):
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        key = self.ring.lookup(authorization[7:].strip())
        if key is None:
            self.on_reject(_NO_KEY, "invalid")
            raise Unauthorized("invalid API key")
        if key.expired():
            self.on_reject(key.name, "expired")
            raise Unauthorized(f"API key {key.name!r} has expired")
        self.require(key, role)
        return key

    def require(self, key: Key | None, role: Role) -> None:
        """Raise 403 unless ``key`` holds ``role`` (None: auth is off)."""
        if key is None or role is Role.ANY or role in key.roles:
            return
        self.on_reject(key.name, "role")
        if role is Role.ADMIN:
            raise Forbidden(f"this route needs an admin key; key {key.name!r} has roles: {_roles(key)}")
        raise Forbidden(f"this route needs the {role.value!r} role; key {key.name!r} has roles: {_roles(key)}",
                        code="role_required")

    def scope(self, key: Key | None, model: str, *names: str) -> None:
        """Raise 403 unless ``key`` may use ``model`` (known also as ``names``: its name and aliases)."""
        if key is not None and not key.may_use(model, *names):
            self.on_reject(key.name, "model")
            raise Forbidden(f"key {key.name!r} may not use model {model!r}", param="model",
                            code="model_not_allowed")

    def scope_route(self, key: Key | None, route: str) -> None:
        """Raise 403 unless ``key`` may use the route (virtual model) ``route``."""
        if key is not None and not key.may_route(route):
            self.on_reject(key.name, "route")
            raise Forbidden(f"key {key.name!r} may not use route {route!r}", param="model",
                            code="model_not_allowed")

    def admit(self, key: Key | None, headers: Headers) -> bool:
        """Count a request against the key's limits, adding x-ratelimit-* to ``headers``; raise 429 past one.
        True when admitted under limits: call ``finish`` when the request ends."""
        if key is None or not Limiter.limited(key):
            return False
        verdict = self.limiter.admit(key, time.monotonic())
        if verdict.reason is not None:
            self.on_reject(key.name, verdict.reason)
            raise RateLimited(f"key {key.name!r} is over its {_LIMITS[verdict.reason]} limit; "
                              f"retry in {verdict.retry_after} s", retry_after=verdict.retry_after,
                              headers=verdict.headers)
        headers += verdict.headers
        return True

    def finish(self, key: Key, tokens: int) -> None:
        self.limiter.finish(key, tokens, time.monotonic())


_LIMITS = {"rpm": "requests-per-minute", "tpm": "tokens-per-minute", "concurrency": "concurrent-requests"}


def _roles(key: Key) -> str:
    return ", ".join(sorted(r.value for r in key.roles))
