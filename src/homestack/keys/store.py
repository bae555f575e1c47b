"""The key store: keys made by `homestack keys add`, kept as sha256 digests in `DATA_DIR/keys.json`.

The file is the only state: the CLI rewrites it whole (a temporary file renamed
over it, mode 0600, under an exclusive lock so two commands never lose each
other's change) and the gateway re-reads it when its mtime changes. No secret
is ever written; a secret is shown once, when it is made.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, get_args

import orjson

from ..config.keys import RoleName
from ..errors import ConfigError, Conflict, NotFound

STORE_NAME = "keys.json"
SECRET_PREFIX = "hs-"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_VERSION = 1
ROLE_NAMES: tuple[str, ...] = get_args(RoleName)


def new_secret() -> str:
    """``hs-`` and 32 random bytes, url-safe base64 without padding (43 characters)."""
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class StoredKey:
    """One stored key: its digest and what it may do; never its secret."""

    sha256: str
    roles: list[str]
    models: list[str] = field(default_factory=lambda: ["*"])
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    expires: str | None = None  # ISO 8601
    created: str = ""

    @classmethod
    def parse(cls, name: str, raw: Any, where: Path) -> "StoredKey":
        try:
            key = cls(**raw)
            if len(bytes.fromhex(key.sha256)) != 32:
                raise ValueError("sha256 is not 32 bytes")
            if not key.roles or set(key.roles) - set(ROLE_NAMES):
                raise ValueError(f"roles must be some of {', '.join(ROLE_NAMES)}")
            if key.expires is not None:
                parse_time(key.expires)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: keys.{name}: not a stored key ({exc}); "
                              f"revoke it with `homestack keys revoke {name}`") from None
        return key


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class KeyStore:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STORE_NAME

    def read(self) -> dict[str, StoredKey]:
        """Every stored key by name ({} when there is no store yet)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path}: cannot read the key store: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise ConfigError(f"{self.path}: not a homestack key store (no 'keys' mapping)")
        return {name: StoredKey.parse(name, raw, self.path) for name, raw in data["keys"].items()}

    def add(self, name: str, roles: list[str], *, models: list[str] | None = None, rpm: int | None = None,
            tpm: int | None = None, concurrency: int | None = None, expires: str | None = None,
            taken: set[str] = frozenset()) -> str:
        """Store a new key; return its secret (the only time it exists outside the caller)."""
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"key name {name!r}: use letters, digits and . _ : - (starting with a letter or digit)")
        if name in taken:
            raise Conflict(f"key {name!r} is already defined in the fleet file; choose another name")
        secret = new_secret()
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        key = StoredKey(sha256_hex(secret), roles, models or ["*"], rpm, tpm, concurrency, expires, created)
        with self._locked() as keys:
            if name in keys:
                raise Conflict(f"key {name!r} exists; `homestack keys rotate {name}` gives it a new secret")
            keys[name] = key
        return secret

    def revoke(self, name: str) -> None:
        with self._locked() as keys:
            if keys.pop(name, None) is None:
                raise NotFound(f"no stored key named {name!r}")

    def rotate(self, name: str) -> str:
        """A new secret for ``name``; the old one stops working."""
        secret = new_secret()
        with self._locked() as keys:
            if name not in keys:
                raise NotFound(f"no stored key named {name!r}")
            keys[name].sha256 = sha256_hex(secret)
        return secret

    @contextmanager
    def _locked(self) -> Iterator[dict[str, StoredKey]]:
        """The stored keys to change; written back (atomically, 0600) when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self.read()
            yield keys
            self._write(keys)
        finally:
            os.close(lock)

    def _write(self, keys: dict[str, StoredKey]) -> None:
        data = orjson.dumps({"version": _VERSION, "keys": {n: k.__dict__ for n, k in keys.items()}},
                            option=orjson.OPT_INDENT_2)
        temporary = self.path.with_name(f".{STORE_NAME}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
