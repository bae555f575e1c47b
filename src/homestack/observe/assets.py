"""Shipped monitoring files (Grafana dashboard and provisioning, Prometheus alert rules) and promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"


def ensure_promtool() -> str:
    """The path of ``promtool``, installing Debian's ``prometheus`` package first if it is not on PATH."""
    found = shutil.which("promtool")
    if found:
        return found
    # Not root (a CI runner, say): go through sudo, never prompting for a password.
    sudo = ["sudo", "-n"] if os.geteuid() != 0 and shutil.which("sudo") else []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
        try:
            subprocess.run(sudo + argv, env=env, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as exc:
            output = getattr(exc, "stderr", None) or str(exc)
            last = output.strip().splitlines()[-1] if output.strip() else "no output"
            raise RuntimeError(f"promtool is not on PATH and `{' '.join(argv)}` failed: {last}") from None
    found = shutil.which("promtool")
    if not found:
        raise RuntimeError("installed the Debian package 'prometheus' but promtool is still not on PATH")
    return found
