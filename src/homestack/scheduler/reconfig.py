"""What a reload changes: each model's settings in the old fleet against the new one (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RELOAD_DRAIN = 30.0  # seconds in-flight requests of a changed or removed model get to finish


@dataclass(frozen=True)
class Changes:
    unchanged: tuple[str, ...]  # keep their runners, queues and in-flight requests untouched
    changed: tuple[str, ...]  # drain, then start again with the new settings when wanted
    removed: tuple[str, ...]  # drain and stop
    added: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"unchanged": list(self.unchanged), "changed": list(self.changed), "removed": list(self.removed),
                "added": list(self.added)}


def diff(old: Mapping[str, object], new: Mapping[str, object]) -> Changes:
    """``old`` and ``new`` map each model to everything its runner is started with."""
    return Changes(
        unchanged=tuple(n for n in new if n in old and old[n] == new[n]),
        changed=tuple(n for n in new if n in old and old[n] != new[n]),
        removed=tuple(n for n in old if n not in new),
        added=tuple(n for n in new if n not in old),
    )
