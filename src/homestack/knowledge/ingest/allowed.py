"""Files read on a caller's behalf (MCP's add_document(path=...)): only inside `knowledge.allowed_paths`.

The path is resolved (symlinks, `..`) before the check, and the file actually
opened is checked again through its /proc/self/fd link, so a symlink swapped in
between the two is caught as well. No folders configured: path ingest is off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ...errors import BadRequest, Forbidden

_OFF = "path ingest is off: name the folders it may read in knowledge.allowed_paths (or send the text)"


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the resolved ``path`` lies in one of the (resolved) ``roots``."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def allowed_file(path: str, roots: Sequence[Path]) -> Path:
    """``path`` resolved, if it lies inside ``roots``; Forbidden otherwise (naming only what was asked)."""
    if not roots:
        raise Forbidden(_OFF, param="path", code="path_not_allowed")
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    if not inside(resolved, [Path(os.path.realpath(r)) for r in roots]):
        raise Forbidden(f"{path} is outside knowledge.allowed_paths ({', '.join(map(str, roots))})",
                        param="path", code="path_not_allowed")
    return resolved


def read_allowed(path: str, roots: Sequence[Path]) -> tuple[Path, bytes]:
    """The resolved path and bytes of a file inside ``roots``."""
    resolved = allowed_file(path, roots)
    try:
        with open(resolved, "rb", opener=_open_no_follow) as handle:
            opened = os.readlink(f"/proc/self/fd/{handle.fileno()}")
            if Path(opened) != resolved:  # a component was swapped for a symlink after the check
                raise Forbidden(f"{path} changed while it was opened", param="path", code="path_not_allowed")
            return resolved, handle.read()
    except OSError as exc:
        raise BadRequest(f"{path}: {exc.strerror}", param="path") from None


def _open_no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
