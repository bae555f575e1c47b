"""The state dir's format version: written on first use, checked at every start.

An upgraded homestack reads a state dir an older one wrote (migrating it when a format changes);
a state dir from a newer homestack is refused with one line, before anything in it is touched.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from .errors import ConfigError

STATE_FILE = "state.json"
STATE_FORMAT = "homestack-state"
STATE_VERSION = 1  # raise it with a migration whenever what homestack keeps in data_dir changes


def check_state_dir(data_dir: Path) -> int:
    """The state dir's version, after recording it on first use; ConfigError if this homestack cannot read it."""
    path = data_dir / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        _write(path)
        return STATE_VERSION
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot read {path}: {exc.strerror}") from None
    try:
        state = orjson.loads(raw)
        version = state["version"] if state.get("format") == STATE_FORMAT else None
    except (orjson.JSONDecodeError, AttributeError, KeyError):
        version = None
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"data_dir: {path} is not a homestack state file; move it away or set another data_dir")
    if version > STATE_VERSION:
        raise ConfigError(f"data_dir: {data_dir} was written by a newer homestack (state version {version}; this "
                          f"one reads up to {STATE_VERSION}): upgrade homestack, or set another data_dir")
    if version < STATE_VERSION:  # no format change yet: older versions need no migration, only the new number
        _write(path)
    return STATE_VERSION


def _write(path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(orjson.dumps({"format": STATE_FORMAT, "version": STATE_VERSION}) + b"\n")
        temporary.replace(path)
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot write {path}: {exc.strerror}") from None
