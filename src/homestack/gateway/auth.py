"""Bearer-key checks, in constant time."""

from __future__ import annotations

import hmac

from ..errors import Forbidden, Unauthorized


class Auth:
    def __init__(self, api_keys: list[str], admin_keys: list[str]):
        self._admin = [k.encode() for k in admin_keys]
        self._any = [k.encode() for k in api_keys] + self._admin
        self.enabled = bool(self._any)

    def check(self, authorization: bytes | None, admin: bool) -> None:
        if not self.enabled:
            return
        if not authorization or not authorization.startswith(b"Bearer "):
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        key = authorization[7:].strip()
        if not _matches(key, self._any):
            raise Unauthorized("invalid API key")
        if admin and not _matches(key, self._admin):
            raise Forbidden("this route needs an admin key")


def _matches(key: bytes, keys: list[bytes]) -> bool:
    found = False
    for candidate in keys:  # no early exit: every key is compared
        found |= hmac.compare_digest(key, candidate)
    return found
