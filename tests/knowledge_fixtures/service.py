"""`homestack knowledge serve` as a child process on a port the OS picks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

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
        self.url = self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _BANNER.search(self.stderr())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"knowledge service exited with {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.05)
        raise RuntimeError(f"knowledge service not ready after {timeout} s: {self.stderr()}")

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
