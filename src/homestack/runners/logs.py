"""A runner's captured output: appended to a per-model file, kept as an in-memory tail."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path


class LogTail:
    def __init__(self, path: Path, max_lines: int = 2000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._file = path.open("a", encoding="utf-8", errors="replace", buffering=1)
        self._followers: set[asyncio.Queue[str]] = set()

    def write(self, line: str) -> None:
        line = line.rstrip("\n")
        self._lines.append(line)
        self._file.write(line + "\n")
        for queue in self._followers:
            queue.put_nowait(line)

    def tail(self, n: int | None = None) -> list[str]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []

    def follow(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._followers.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[str]) -> None:
        self._followers.discard(queue)

    def close(self) -> None:
        self._file.close()
