"""`homestack knowledge serve` as a child process on a port the OS picks."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx

from harness import ServerProcess


# A knowledge service alone needs a key: the tests' key holds both knowledge roles (in the
# environment, as $HOMESTACK_API_KEY for `homestack kb` and `homestack mcp`).
KEYS = """
keys:
  kb-tests:
    secret_env: KB_TESTS_KEY
    roles: [knowledge-read, knowledge-write]
"""


class KnowledgeProcess(ServerProcess):
    what = "knowledge service"

    def __init__(self, home: Path, gateway_url: str, config: str = "", keys: dict[str, str] | None = None,
                 host: str = "127.0.0.1"):
        """``config``: more of the fleet file (its keys: section is the tests' key, unless given);
        ``keys``: environment variables holding more keys' secrets; ``host``: a loopback address to bind."""
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.host = host
        self.key = secrets.token_urlsafe(24)
        (home / "fleet.yaml").write_text(config if "keys:" in config else config + KEYS)
        argv = [sys.executable, "-m", "homestack", "knowledge", "serve", "--port", "0", "--gateway", gateway_url,
                "--config", str(home / "fleet.yaml"), "--host", host]
        self.env = {**os.environ, "HOMESTACK_HOME": str(home / "data"), "KB_TESTS_KEY": self.key,
                    "HOMESTACK_API_KEY": self.key, **(keys or {})}
        super().__init__(argv, home / "knowledge.stderr", env=self.env)

    def api(self, method: str, path: str, key: str | None = "", **kwargs) -> httpx.Response:
        """A call to the API with the tests' key (``key``: another one; None: none)."""
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.request(method, self.url + "/v1/knowledge" + path, timeout=300,
                             headers={**headers, **kwargs.pop("headers", {})}, **kwargs)

    @contextlib.asynccontextmanager
    async def mcp(self, key: str | None = "", **headers: str):
        """An MCP client over streamable HTTP at /mcp, with the tests' key (``key``: another; None: none)."""
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        key = self.key if key == "" else key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
            async with Client(streamable_http_client(self.url + "/mcp", http_client=http)) as client:
                yield client

    def kb(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "homestack", "kb", *args], capture_output=True, text=True,
                                timeout=timeout, env={**self.env, "HOMESTACK_KNOWLEDGE_URL": self.url})
        if check and result.returncode != 0:
            raise AssertionError(f"homestack kb {' '.join(args)} failed: {result.stderr}")
        return result
