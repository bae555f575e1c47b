"""Workloads shipped as JSONL request files, chosen by name with ``homestack bench --workload NAME``.

code-edit: "rewrite this function with one change" chats, whose answers repeat most of their
prompt: the case where n-gram speculative decoding pays off (bench/speculative.py).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED_WORKLOADS = ("code-edit",)


def shipped_workload(name: str) -> Path:
    return Path(str(files(__package__).joinpath(f"{name}.jsonl")))
