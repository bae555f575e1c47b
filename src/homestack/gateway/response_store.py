"""Stored Responses answers on disk: one JSON file each under ``data_dir/responses``.

Each is kept ``responses.store_ttl`` seconds; past ``responses.store_max_bytes``
the oldest go first. An answer is found only by the key that stored it, and
only ids the gateway makes name a file.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import orjson

_ID = re.compile(r"resp_[0-9a-f]{24}\Z")  # the ids the Responses translation makes


class ResponseStore:
    """The files under ``directory``, indexed in memory: id -> (expiry, size)."""

    def __init__(self, directory: Path, ttl: float, max_bytes: int):
        self.directory, self.ttl, self.max_bytes = directory, ttl, max_bytes
        self._index: dict[str, tuple[float, int]] = {}
        try:
            for path in directory.glob("resp_*.json"):
                st = path.stat()
                self._index[path.stem] = (st.st_mtime + ttl, st.st_size)
        except OSError:
            pass  # nothing stored yet

    def save(self, key: str, conversation: list[dict[str, Any]], response: dict[str, Any]) -> None:
        response_id = response.get("id")
        if not isinstance(response_id, str) or not _ID.match(response_id):
            return
        data = orjson.dumps({"key": key, "input": conversation, "response": response})
        if len(data) > self.max_bytes:  # it would push out everything else, and still not fit
            return
        self._make_room(len(data))
        partial = self.directory / f".{response_id}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, self.directory / f"{response_id}.json")
        except OSError:  # the answer was sent already; unstored, it is only not found later
            partial.unlink(missing_ok=True)
            return
        self._index[response_id] = (time.time() + self.ttl, len(data))

    def load(self, response_id: str, key: str) -> dict[str, Any] | None:
        """The stored record if ``key`` created it and it has not expired; else None."""
        entry = self._index.get(response_id) if _ID.match(response_id) else None
        if entry is None:
            return None
        if entry[0] < time.time():
            self._drop(response_id)
            return None
        try:
            record = orjson.loads((self.directory / f"{response_id}.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return record if record.get("key") == key else None

    def _make_room(self, size: int) -> None:
        now = time.time()
        for response_id in [i for i, (expiry, _) in self._index.items() if expiry < now]:
            self._drop(response_id)
        used = sum(s for _, s in self._index.values())
        for response_id in sorted(self._index, key=lambda i: self._index[i][0]):  # oldest first
            if used + size <= self.max_bytes:
                break
            used -= self._index[response_id][1]
            self._drop(response_id)

    def _drop(self, response_id: str) -> None:
        self._index.pop(response_id, None)
        (self.directory / f"{response_id}.json").unlink(missing_ok=True)
