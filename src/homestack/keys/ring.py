"""The key ring: every key the gateway accepts, found by the sha256 of the presented secret.

Keys come from the fleet file (`keys:` with secrets by reference; the older
`api_keys` / `admin_keys` lists) and from the key store (`homestack keys`), and
are looked up by digest, so no secret is kept or compared in the clear. The
store is re-read when its mtime changes: checked at most every
``REFRESH_INTERVAL`` seconds, and on every lookup that finds nothing.
"""

from __future__ import annotations

import enum
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .store import KeyStore, StoredKey, parse_time

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

    def may_use(self, *names: str) -> bool:
        """Whether the key's model globs match any of ``names`` (a model's name and its aliases)."""
        return any(fnmatchcase(name, pattern) for name in names for pattern in self.models)

    def may_route(self, route: str) -> bool:
        """Whether the key's route globs match ``route`` (a virtual model)."""
        return any(fnmatchcase(route, pattern) for pattern in self.routes)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(timezone.utc)) >= _aware(self.expires)


def digest(secret: str | bytes) -> bytes:
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


REFRESH_INTERVAL = 0.1  # seconds between checks of the key store's mtime on the hot path


class KeyRing:
    """Fixed keys (the fleet file's, and any the gateway adds for its own services) and the stored keys."""

    def __init__(self, keys: dict[bytes, Key], store: KeyStore | None = None):
        self._fixed = dict(keys)
        self._added: dict[bytes, Key] = {}  # keys for services the gateway runs; they never turn auth on
        self._store = store
        self._stored: dict[bytes, Key] = {}
        self._stamp: tuple[int, int, int] | None = None  # the store file's (inode, mtime_ns, size) last read
        self._checked = 0.0
        self._by_digest = self._fixed
        if store is not None:
            self._reload(_stamp(store.path), strict=True)

    @classmethod
    def load(cls, fleet: "FleetConfig") -> "KeyRing":
        """The fleet file's keys (secrets read now: a missing one is a ConfigError naming its key) and
        the key store under ``fleet.data_dir``."""
        return cls(_fleet_keys(fleet), KeyStore(fleet.data_dir))

    @classmethod
    def from_fleet(cls, fleet: "FleetConfig") -> "KeyRing":
        """The fleet file's keys only."""
        return cls(_fleet_keys(fleet))

    @property
    def enabled(self) -> bool:
        """Keys are required: the fleet file names some, or a key store exists (even emptied by revokes)."""
        self.refresh()
        return bool(self._fixed) or self._stamp is not None

    def add(self, secret: str | bytes, key: Key) -> None:
        """Accept ``secret`` as ``key`` from now on (e.g. a token the gateway made for a service it runs)."""
        self._added[digest(secret)] = key
        self._by_digest = {**self._stored, **self._fixed, **self._added}

    def lookup(self, secret: bytes) -> Key | None:
        found = digest(secret)
        self.refresh()
        key = self._by_digest.get(found)
        if key is None and self.refresh(force=True):  # a key added a moment ago works at once
            key = self._by_digest.get(found)
        return key

    def keys(self) -> list[Key]:
        self.refresh()
        return list(self._by_digest.values())

    def refresh(self, force: bool = False) -> bool:
        """Re-read the store if its file changed; True if it did. Cheap: one clock read between checks."""
        if self._store is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_INTERVAL:
            return False
        self._checked = now
        stamp = _stamp(self._store.path)
        if stamp == self._stamp:
            return False
        return self._reload(stamp, strict=False)

    def _reload(self, stamp: tuple[int, int, int] | None, strict: bool) -> bool:
        try:
            stored = self._store.read() if stamp is not None else {}
        except ConfigError as exc:
            if strict:
                raise
            # A store broken by hand: keep serving with the keys read last, say so once per change.
            print(f"homestack: {exc.message}; keeping the keys read before", file=sys.stderr, flush=True)
            self._stamp = stamp
            return False
        fixed_names = {k.name for k in self._fixed.values()}
        self._stored = {bytes.fromhex(s.sha256): _stored_key(name, s) for name, s in stored.items()
                        if name not in fixed_names}  # a fleet key's name always means the fleet key
        self._by_digest = {**self._stored, **self._fixed, **self._added}
        self._stamp = stamp
        return True


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _fleet_keys(fleet: "FleetConfig") -> dict[bytes, Key]:
    keys: dict[bytes, Key] = {}
    everything = frozenset(ROLES)
    legacy = frozenset({Role.INFERENCE, Role.KNOWLEDGE_READ})
    for index, secret in enumerate(fleet.api_keys):
        keys[digest(secret)] = Key(f"api_keys[{index}]", legacy)
    for index, secret in enumerate(fleet.admin_keys):
        keys[digest(secret)] = Key(f"admin_keys[{index}]", everything)
    for name, spec in fleet.keys.items():
        keys[digest(_secret(name, spec))] = _key(name, spec)
    return keys


def _stored_key(name: str, stored: StoredKey) -> Key:
    return Key(name, frozenset(Role(r) for r in stored.roles), tuple(stored.models), ("*",), stored.rpm,
               stored.tpm, stored.concurrency, parse_time(stored.expires) if stored.expires else None,
               source="key store")


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
