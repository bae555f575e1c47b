"""Who may call the knowledge service: the gateway's token, or a key with the knowledge roles.

`homestack serve` hands the service it supervises a random token in the
environment (never argv, which `ps` shows) and presents it on every relayed
call. A service started alone checks the fleet's keys: `knowledge-read` for
reads, `knowledge-write` for writes. With neither it refuses to start, unless
told `--no-auth` on a loopback address.
"""

from __future__ import annotations

import hmac
import os

from ...config.schema import FleetConfig
from ...errors import ConfigError, Unauthorized
from ...gateway.auth import Auth
from ...keys import Key, KeyRing, Role
from ...listen import is_loopback

TOKEN_ENV = "HOMESTACK_KNOWLEDGE_TOKEN"
# The gateway that supervises the service: full knowledge access, no more.
GATEWAY = Key("gateway", frozenset({Role.KNOWLEDGE_READ, Role.KNOWLEDGE_WRITE}), source="gateway token")


def bearer(token: str) -> bytes:
    return b"Bearer " + token.encode()


class Access:
    def __init__(self, ring: KeyRing, token: str | None = None, open: bool = False):
        self.ring = ring
        self._auth = Auth(ring)
        self._token = bearer(token) if token else None
        self.token = token  # the gateway's token also opens the gateway to this service (embeddings, answers)
        self.open = open  # --no-auth: nothing is checked (loopback only)

    @classmethod
    def for_service(cls, fleet: FleetConfig, host: str, no_auth: bool) -> "Access":
        """The service's access rule; a ConfigError when it would serve with no way to authenticate."""
        token = os.environ.pop(TOKEN_ENV, "").strip() or None  # not inherited by anything it starts
        ring = KeyRing.load(fleet)
        if no_auth:
            if not is_loopback(host):
                raise ConfigError(
                    f"refusing --no-auth on {host}: anyone who reaches it could read and change every collection; "
                    "bind 127.0.0.1, or configure keys with the knowledge-read/knowledge-write roles instead")
            return cls(ring, token, open=True)
        if token is None and not ring.enabled:
            raise ConfigError(
                "refusing to start the knowledge service without keys: add a key with the knowledge-read or "
                "knowledge-write role to the fleet file (keys:), run it under `homestack serve`, or pass --no-auth "
                "(loopback only)")
        return cls(ring, token)

    def check(self, authorization: bytes | None, role: Role) -> Key | None:
        """The caller's key (None when nothing is checked); Unauthorized or Forbidden if it may not call."""
        if self.open or role is Role.PUBLIC:
            return None
        if self._token is not None and authorization and hmac.compare_digest(authorization.strip(), self._token):
            return GATEWAY
        if not self.ring.enabled:  # only the gateway's token opens this service
            raise Unauthorized("invalid API key" if authorization else
                               "missing API key: send 'Authorization: Bearer <key>'")
        return self._auth.check(authorization, role)
