"""sha256 manifests: verify a model file once, then trust it while its identity holds.

Identity is (size, mtime_ns, inode): hashing a few hundred MB on every start
would cost seconds; stat costs microseconds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError

_BLOCK = 1 << 20


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def is_verified(path: Path, sha256: str) -> bool:
    """True when a manifest says ``path`` (as it is now) has this sha256."""
    try:
        recorded = _manifest_path(path).read_text().split()
        return recorded == [sha256, _identity(path)]
    except OSError:
        return False


def verify(path: Path, sha256: str) -> None:
    """Hash ``path`` unless its manifest vouches for it; record the result."""
    if is_verified(path, sha256):
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise ConfigError(f"{path}: sha256 is {actual}, expected {sha256}; delete it to rebuild")
    _manifest_path(path).write_text(f"{sha256} {_identity(path)}\n")


def verified_copy(parts: Iterable[Path], target: Path, sha256: str) -> Path:
    """Concatenate ``parts`` into ``target`` (once) and verify its sha256."""
    if target.exists() and is_verified(target, sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_BLOCK):
                        out.write(block)
        os.replace(partial, target)
    verify(target, sha256)
    return target
