"""`homestack knowledge serve` as a child process on a port the OS picks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from helpers import wait_for_banner

_BANNER = re.compile(r"homestack knowledge serving (http://\S+) ")


class KnowledgeProcess:
    def __init__(self, home: Path, gateway_url: str, config: str | None = None):
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.stderr_path = home / "knowledge.stderr"
        argv = [sys.executable, "-m", "homestack", "knowledge", "serve", "--port", "0", "--gateway", gateway_url]
        if config is not None:
            (home / "fleet.yaml").write_text(config)
            argv += ["--config", str(home / "fleet.yaml")]
        self.env = {**os.environ, "HOMESTACK_HOME": str(home / "data")}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("wb"),
                                     stdin=subprocess.DEVNULL, env=self.env)
        self.url = wait_for_banner(self.proc, self.stderr, _BANNER, "knowledge service")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.url + "/v1/knowledge" + path, timeout=300, **kwargs)

    def kb(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "homestack", "kb", *args], capture_output=True, text=True,
                                timeout=timeout, env={**self.env, "HOMESTACK_KNOWLEDGE_URL": self.url})
        if check and result.returncode != 0:
            raise AssertionError(f"homestack kb {' '.join(args)} failed: {result.stderr}")
        return result

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
