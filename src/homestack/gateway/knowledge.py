"""The knowledge service beside the gateway: a supervised child process, and the relay to it.

`homestack serve` starts `homestack knowledge serve` on its own port, restarts it
if it dies (with backoff), and stops it with the gateway. The gateway forwards
`/v1/knowledge/*` to it, and chat requests for a `kb:<collection>` model to its
OpenAI-compatible endpoint, presenting on each the random token it gave the
service at start (in the environment: argv shows in `ps` and in the log).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from ..errors import NotFound
from ..knowledge.service.access import TOKEN_ENV, bearer
from ..runners.logs import LogTail
from ..runners.process import RunnerProcess, retry_delay, spawn, terminate
from . import proxy
from .asgi import read_body
from .context import Request, Services

_STABLE = 60.0  # seconds up after which a restart counts as a fresh start again


async def relay(services: Services, req: Request) -> None:
    """Pass a /v1/knowledge/* request to the knowledge service unchanged, and its answer back."""
    if services.knowledge_url is None:
        raise NotFound("the knowledge service is not running with this gateway (started with --no-knowledge?)")
    body = await read_body(req.receive, services.fleet.max_body_bytes, req.content_length)
    query = req.query
    target = req.path + ("?" + query.decode("latin-1") if query else "")
    await proxy.relay(services.upstream, services.knowledge_url, req.method.encode(), target, body, req.send,
                      req.headers, services.knowledge_target.upstream_headers)


def new_token() -> str:
    """The token a gateway's knowledge service accepts; a fresh one every `homestack serve`."""
    return secrets.token_urlsafe(32)


def token_header(token: str) -> bytes:
    """The raw header line that presents ``token`` on an upstream request."""
    return b"Authorization: " + bearer(token) + b"\r\n"


class KnowledgeSupervisor:
    def __init__(self, argv: list[str], log_path: Path, token: str):
        self.argv = argv
        self._env = {TOKEN_ENV: token}
        self.log = LogTail(log_path)
        self._task: asyncio.Task[None] | None = None
        self._proc: RunnerProcess | None = None

    @classmethod
    def for_fleet(cls, config: str | None, host: str, port: int, gateway_url: str, data_dir: Path,
                  token: str) -> "KnowledgeSupervisor":
        """The child checks ``token`` on every call, so it may bind any knowledge.host."""
        argv = [sys.executable, "-m", "homestack", "knowledge", "serve", "--host", host, "--port", str(port),
                "--gateway", gateway_url]
        if config is not None:
            argv += ["--config", config]
        return cls(argv, data_dir / "logs" / "knowledge.log", token)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._proc is not None and self._proc.returncode is None:
            await terminate(self._proc)
        self.log.close()

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self.log.write(f"[homestack] starting the knowledge service: {' '.join(self.argv)}")
            started = loop.time()
            try:
                self._proc = await spawn(self.argv, self._env, self.log)
                code = await self._proc.wait()
            except OSError as exc:
                code = f"could not start ({exc})"
            failures = 1 if loop.time() - started > _STABLE else failures + 1
            delay = retry_delay(failures)
            last = self.log.tail(1)  # its own last words, usually why
            message = f"the knowledge service exited ({code}); restarting in {delay:g} s"
            self.log.write(f"[homestack] {message}")
            if failures == 1:  # say it where the operator looks, once per run of failures
                why = f" after: {last[0]}" if last else ""
                print(f"homestack: {message}{why} (log: {self.log.path})", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
