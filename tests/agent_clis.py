"""The real coding-agent CLIs (Claude Code, Codex), installed with npm into the repository's .cache.

Pinned versions, installed once per checkout (about 800 MB: both ship native binaries); a test
that needs them is skipped, saying so, where Node.js or npm is missing. Each CLI runs with a
throw-away HOME and nothing but what it needs: no telemetry, no update checks, no error reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(__file__).parent.parent / ".cache" / "agent-clis"
PACKAGES = {"claude": ("@anthropic-ai/claude-code", "2.1.332"), "codex": ("@openai/codex", "0.171.0")}
# Claude Code: no telemetry, error reports, update checks or other traffic beside the API's.
CLAUDE_QUIET = {"DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def codex_config(provider: str) -> str:
    """A config.toml: ``provider`` (top-level keys and tables) with no update checks and no analytics."""
    return f"check_for_update_on_startup = false\n{provider}\n[analytics]\nenabled = false\n"


def agent_clis() -> dict[str, Path]:
    """The CLIs' executables by name, installed if they are not yet; skips the test without Node.js."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to install Claude Code and Codex (apt-get install nodejs npm)")
    wanted = {package: version for package, version in PACKAGES.values()}
    if _installed() != wanted:
        CACHE.mkdir(parents=True, exist_ok=True)
        specs = [f"{package}@{version}" for package, version in wanted.items()]
        done = subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--loglevel=error",
                               *specs], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"npm install {' '.join(specs)} failed: {done.stderr[-2000:]}"
        assert _installed() == wanted, f"npm installed {_installed()}, not {wanted}"
    return {name: CACHE / "node_modules" / ".bin" / name for name in PACKAGES}


def _installed() -> dict[str, str]:
    found = {}
    for package, _ in PACKAGES.values():
        try:
            found[package] = json.loads((CACHE / "node_modules" / package / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    return found


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with a fresh HOME and none of the user's API settings."""
    home.mkdir(parents=True, exist_ok=True)
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "TMPDIR") if name in os.environ}
    return {**keep, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "NO_COLOR": "1", **extra}
