"""The promotion history: one JSON line per event in the state dir (promotions.jsonl), appended.

Events: started, gate (smoke or eval, with scores), step (a stage began, with
the weights), stage_ok (a stage ended with its figures), promoted, rolled_back,
gate_failed, aborted. Each names its promotion, route, who asked, when, from and to.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

HISTORY_FILE = "promotions.jsonl"


class History:
    def __init__(self, data_dir: Path):
        self.path = data_dir / HISTORY_FILE

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Write ``event`` (with its time) and flush it to disk before returning it."""
        event = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ts": round(time.time(), 3), **event}
        with self.path.open("ab") as out:
            out.write(orjson.dumps(event) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return event

    def read(self, route: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The events, oldest first (a torn last line, from a crash mid-write, is skipped)."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        if route is not None:
            events = [e for e in events if e.get("route") == route]
        return events[-limit:] if limit else events
