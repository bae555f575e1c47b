"""The key ring: every key the gateway accepts, found by the sha256 of the presented secret.

Keys come from the fleet file (`keys:` with secrets by reference; the older
`api_keys` / `admin_keys` lists) and are looked up by digest, so no secret is
kept or compared in the clear.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import FleetConfig
    from ..config.keys import KeySpec


class Role(str, enum.Enum):
    """What a route needs from its caller (when keys are configured; with none, everyone may)."""

    PUBLIC = "public"  # no key, ever
    ANY = "any"  # any valid key
    INFERENCE = "inference"
    KNOWLEDGE_READ = "knowledge-read"
    KNOWLEDGE_WRITE = "knowledge-write"
    ADMIN = "admin"


ROLES = (Role.ADMIN, Role.INFERENCE, Role.KNOWLEDGE_READ, Role.KNOWLEDGE_WRITE)  # roles a key can hold


@dataclass(frozen=True)
class Key:
    name: str
    roles: frozenset[Role]
    models: tuple[str, ...] = ("*",)
    routes: tuple[str, ...] = ("*",)
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    expires: datetime | None = None
    source: str = "fleet file"
    limits: tuple = field(default=(), compare=False)

    def may_use(self, model: str) -> bool:
        return any(fnmatchcase(model, pattern) for pattern in self.models)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(timezone.utc)) >= _aware(self.expires)


def digest(secret: str | bytes) -> bytes:
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


class KeyRing:
    def __init__(self, keys: dict[bytes, Key]):
        self._by_digest = keys

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    def lookup(self, secret: bytes) -> Key | None:
        return self._by_digest.get(digest(secret))

    def keys(self) -> list[Key]:
        return list(self._by_digest.values())

    @classmethod
    def from_fleet(cls, fleet: "FleetConfig") -> "KeyRing":
        """The fleet file's keys, secrets read now; a missing secret is a ConfigError naming its key."""
        keys: dict[bytes, Key] = {}
        everything = frozenset(ROLES)
        legacy = frozenset({Role.INFERENCE, Role.KNOWLEDGE_READ})
        for index, secret in enumerate(fleet.api_keys):
            keys[digest(secret)] = Key(f"api_keys[{index}]", legacy)
        for index, secret in enumerate(fleet.admin_keys):
            keys[digest(secret)] = Key(f"admin_keys[{index}]", everything)
        for name, spec in fleet.keys.items():
            keys[digest(_secret(name, spec))] = _key(name, spec)
        return cls(keys)


def _key(name: str, spec: "KeySpec") -> Key:
    return Key(name, frozenset(Role(r) for r in spec.roles), tuple(spec.models), tuple(spec.routes),
               spec.rpm, spec.tpm, spec.concurrency, spec.expires)


def _secret(name: str, spec: "KeySpec") -> str:
    if spec.secret_env is not None:
        value = os.environ.get(spec.secret_env, "").strip()
        if not value:
            raise ConfigError(f"keys.{name}.secret_env: the environment variable {spec.secret_env} is not set")
        return value
    path = Path(spec.secret_file)
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"keys.{name}.secret_file: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"keys.{name}.secret_file: {path} is empty")
    return value


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
