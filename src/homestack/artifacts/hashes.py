"""sha256 of files, cached by file identity (device, inode, size, mtime): stat instead of re-reading."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .manifest import sha256_file


def identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


class HashCache:
    """A JSON file of path -> (identity, sha256); a file whose identity changed is hashed again."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._entries: dict[str, list[str]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._entries = {}
        self._dirty = False

    def sha256(self, path: Path) -> str:
        key, ident = str(path), identity(path)
        cached = self._entries.get(key)
        if cached and cached[0] == ident:
            return cached[1]
        digest = sha256_file(path)
        self._entries[key] = [ident, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(self._entries, indent=0))
            os.replace(partial, self.path)
        except OSError:  # an unwritable cache costs a re-hash next time, nothing else
            pass
        self._dirty = False
