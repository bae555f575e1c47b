"""`homestack mcp`: the tools on stdin/stdout, backed by the running knowledge service."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import anyio

from .backends import HttpBackend
from .server import build_server


def run_stdio(client, roots: Sequence[Path], read_only: bool) -> None:
    anyio.run(build_server(HttpBackend(client, roots), read_only).run_stdio_async)
