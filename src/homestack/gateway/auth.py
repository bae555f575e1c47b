"""Bearer-key checks, in constant time."""

from __future__ import annotations

import hmac

from ..errors import Forbidden, Unauthorized
from ..observe.metrics import key_label


class Auth:
    def __init__(self, api_keys: list[str], admin_keys: list[str]):
        self._admin = [k.encode() for k in admin_keys]
        self._any = [k.encode() for k in api_keys] + self._admin
        self._labels = [key_label(k) for k in api_keys + admin_keys]
        self.enabled = bool(self._any)

    def check(self, authorization: bytes | None, admin: bool) -> str | None:
        """The matching key's label (None when auth is off); raise if the key is missing or wrong."""
        if not self.enabled:
            return None
        if not authorization or not authorization.startswith(b"Bearer "):
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        key = authorization[7:].strip()
        found = _match(key, self._any)
        if found is None:
            raise Unauthorized("invalid API key")
        if admin and _match(key, self._admin) is None:
            raise Forbidden("this route needs an admin key")
        return self._labels[found]


def _match(key: bytes, keys: list[bytes]) -> int | None:
    found = None
    for index, candidate in enumerate(keys):  # no early exit: every key is compared
        if hmac.compare_digest(key, candidate):
            found = index
    return found
