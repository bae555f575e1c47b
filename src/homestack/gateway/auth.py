"""Who may call a route: the caller's key, found in the key ring, against the role the route declares."""

from __future__ import annotations

from ..errors import Forbidden, Unauthorized
from ..keys import Key, KeyRing, Role


class Auth:
    def __init__(self, ring: KeyRing):
        self.ring = ring
        self.enabled = ring.enabled

    def check(self, authorization: bytes | None, role: Role) -> Key | None:
        """The caller's key (None when auth is off or the route is public); raise if it may not call."""
        if not self.enabled or role is Role.PUBLIC:
            return None
        if not authorization or not authorization.startswith(b"Bearer "):
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        key = self.ring.lookup(authorization[7:].strip())
        if key is None or key.expired():
            raise Unauthorized("invalid API key" if key is None else f"API key {key.name!r} has expired")
        if role is not Role.ANY and role not in key.roles:
            if role is Role.ADMIN:
                raise Forbidden(f"this route needs an admin key; key {key.name!r} has roles: {_roles(key)}")
            raise Forbidden(f"this route needs the {role.value!r} role; key {key.name!r} has roles: {_roles(key)}",
                            code="role_required")
        return key


def _roles(key: Key) -> str:
    return ", ".join(sorted(r.value for r in key.roles))
