"""`homestack knowledge serve` as a child process on a port the OS picks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from harness import ServerProcess


class KnowledgeProcess(ServerProcess):
    what = "knowledge service"

    def __init__(self, home: Path, gateway_url: str, config: str | None = None):
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        argv = [sys.executable, "-m", "homestack", "knowledge", "serve", "--port", "0", "--gateway", gateway_url]
        if config is not None:
            (home / "fleet.yaml").write_text(config)
            argv += ["--config", str(home / "fleet.yaml")]
        self.env = {**os.environ, "HOMESTACK_HOME": str(home / "data")}
        super().__init__(argv, home / "knowledge.stderr", env=self.env)

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.url + "/v1/knowledge" + path, timeout=300, **kwargs)

    def kb(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "homestack", "kb", *args], capture_output=True, text=True,
                                timeout=timeout, env={**self.env, "HOMESTACK_KNOWLEDGE_URL": self.url})
        if check and result.returncode != 0:
            raise AssertionError(f"homestack kb {' '.join(args)} failed: {result.stderr}")
        return result
