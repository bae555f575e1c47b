"""Writing a route's new targets into the fleet file: atomically, with a backup, the rest kept.

The file is read and written with ruamel.yaml's round trip, which keeps comments,
key order and the other sections; only quoting and indentation of flow-style
mappings may come out differently, and a comment on a target that is replaced goes with it. The new text is validated as a whole fleet
file before it replaces the old one (by rename, so a reader sees one or the
other); the old file is kept beside it as FILE.bak.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml import YAML

from ..config import load_fleet
from ..errors import ConfigError


def write_targets(fleet_file: str, route: str, targets: Mapping[str, float]) -> Path:
    """Set ``routes.<route>.targets`` in ``fleet_file``; the backup's path. ConfigError leaves the file as it was."""
    path = Path(fleet_file)
    yaml = YAML()  # round trip: comments and order survive
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # long lines stay as they were written
    try:
        original = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the fleet file: {exc.strerror}") from None
    doc = yaml.load(original)
    try:
        entry = doc["routes"][route]
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: routes.{route}: not in the file; add the route there first") from None
    _replace(entry, {t: _number(w) for t, w in targets.items()})
    text = io.StringIO()
    yaml.dump(doc, text)
    temporary = path.with_name(f".{path.name}.promote.tmp")
    backup = path.with_name(path.name + ".bak")
    try:
        temporary.write_text(text.getvalue())
        load_fleet(str(temporary))  # the whole file must still validate
        backup.write_text(original)
        with temporary.open("rb") as f:
            os.fsync(f.fileno())
        temporary.replace(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the fleet file: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return backup


def _replace(entry, targets: dict[str, int | float]) -> None:
    """Change the targets mapping in place, so its style (flow or block) and the comments of the targets
    that stay are kept; a new target takes the place of the one it follows in ``targets``."""
    current = entry.get("targets")
    if not hasattr(current, "insert"):  # not a mapping the round trip made: write it anew
        entry["targets"] = targets
        return
    for name in [t for t in current if t not in targets]:
        del current[name]
    for position, (name, weight) in enumerate(targets.items()):
        if name in current:
            current[name] = weight
        else:
            current.insert(position, name, weight)


def _number(weight: float) -> int | float:
    return int(weight) if float(weight).is_integer() else weight
