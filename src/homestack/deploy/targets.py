"""`homestack render` targets that deploy homestack itself, each a pure function from the fleet and its plan
to files (relative path -> text); writing them is the only effect."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from . import compose, kubernetes, nginx, systemd
from .context import DeployContext

TARGETS: dict[str, Callable[[DeployContext], dict[str, str]]] = {
    "systemd": systemd.render,
    "nginx": nginx.render,
    "compose": compose.render,
    "kubernetes": kubernetes.render,
}
_SECRETS = {"homestack.env", "gateway.key"}  # owner-only, as is the fleet file when it holds keys


def render(target: str, ctx: DeployContext, dest: Path) -> list[Path]:
    """Render ``target`` and write its files under ``dest``; the paths written."""
    private = _SECRETS | ({"fleet.yaml"} if ctx.fleet.auth_enabled else set())
    written = []
    for relative, text in TARGETS[target](ctx).items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.name in private
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if hidden else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(path, 0o600 if hidden else 0o644)  # an existing file keeps its mode through O_CREAT
        written.append(path)
    return written
