"""A runner's captured output: appended to a per-model file, kept as an in-memory tail.

Secrets the runner was configured with (a remote API's key, key-like options
and environment values) are replaced by ``***`` in every line.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from pathlib import Path
from typing import Any, Iterable

REDACTED = "***"
_SECRET_NAME = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)


def secrets_of(spec: Any) -> tuple[str, ...]:
    """What a model's config holds that must never be shown: its ``api_key``, environment values and
    command-line option values whose names say key, token, secret or password."""
    found = [getattr(spec, "api_key", None)]
    found += [value for name, value in (getattr(spec, "env", None) or {}).items() if _SECRET_NAME.search(name)]
    argv = list(getattr(spec, "command", None) or ()) + list(getattr(spec, "args", None) or ())
    for option, value in zip(argv, argv[1:]):
        if option.startswith("-") and "=" not in option and _SECRET_NAME.search(option):
            found.append(value)
    found += [arg.split("=", 1)[1] for arg in argv
              if arg.startswith("-") and "=" in arg and _SECRET_NAME.search(arg.split("=", 1)[0])]
    # Longest first, so a secret containing another is replaced whole; very short values would hide normal text.
    return tuple(sorted({s for s in found if s and len(s) >= 4}, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class LogTail:
    def __init__(self, path: Path, max_lines: int = 2000, secrets: tuple[str, ...] = ()):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.secrets = secrets
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._file = path.open("a", encoding="utf-8", errors="replace", buffering=1)
        self._followers: set[asyncio.Queue[str]] = set()
        self._watches: list[tuple[re.Pattern[str], asyncio.Future[str]]] = []

    def write(self, line: str) -> None:
        line = line.rstrip("\n")
        if self.secrets:
            line = redact(line, self.secrets)
        self._lines.append(line)
        self._file.write(line + "\n")
        for queue in self._followers:
            queue.put_nowait(line)
        if self._watches:
            self._match(line)

    def tail(self, n: int | None = None) -> list[str]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []

    def follow(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._followers.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[str]) -> None:
        self._followers.discard(queue)

    def watch(self, pattern: re.Pattern[str]) -> asyncio.Future[str]:
        """A future set to the first line written from now on that matches ``pattern``. The line is
        matched as it is written, so its waiter wakes once, not for every line of a load. Cancel the
        future to stop watching."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._watches.append((pattern, future))
        return future

    def _match(self, line: str) -> None:
        for pattern, future in self._watches:
            if not future.done() and pattern.search(line):
                future.set_result(line)
        self._watches = [(pattern, future) for pattern, future in self._watches if not future.done()]

    def close(self) -> None:
        self._file.close()
