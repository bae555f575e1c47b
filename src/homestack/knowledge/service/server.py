"""Running the knowledge service: settings, the data-dir lock, an extra endpoint (MCP), uvicorn."""

from __future__ import annotations

import contextlib
import fcntl
import sys
from pathlib import Path
from typing import Any, AsyncContextManager, Callable

import uvicorn

from ...config.schema import FleetConfig
from ...errors import ConfigError
from ...listen import bind, url_of
from ..core import KnowledgeBase, Settings, open_store
from ..inference import InferenceClient

# An app mounted beside the API, built on the core (the MCP endpoint): given the core and the
# bound host, its ASGI app (whose routes are added) and the context its sessions run in.
# Passed in by the CLI, so that MCP imports knowledge and never the other way round.
Endpoint = Callable[[KnowledgeBase, str], "tuple[Any, Callable[[], AsyncContextManager[Any]]]"]


def _lock(directory: Path):
    """One service per data dir: Qdrant Edge has one writer."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = (directory / "service.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"another knowledge service already uses {directory}; stop it first "
                          "(or set HOMESTACK_HOME / data_dir for a separate one)") from None
    return handle


def serve(fleet: FleetConfig, host: str | None, port: int | None, gateway_url: str | None,
          no_auth: bool = False, endpoint: Endpoint | None = None) -> None:
    from .access import Access
    from .app import build_app

    host = host or fleet.knowledge.host
    access = Access.for_service(fleet, host, no_auth)
    settings = Settings.from_fleet(fleet, gateway_url)
    lock = _lock(settings.data_dir)
    sock = bind(host, fleet.knowledge.port if port is None else port)
    bound_host = sock.getsockname()[0]
    inference = InferenceClient(settings.gateway_url, settings.embedding_model, settings.chat_model,
                                settings.api_key or access.token)
    k = KnowledgeBase(settings, open_store(settings), inference)
    extra_app, sessions = endpoint(k, bound_host) if endpoint else (None, contextlib.nullcontext)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with sessions():
            url = url_of(sock)
            store = settings.qdrant_url or f"Qdrant Edge at {settings.data_dir / 'collections'}"
            mcp = f", MCP at {url}/mcp" if endpoint else ""
            print(f"homestack knowledge serving {url} (API at {url}/v1/knowledge{mcp})\n"
                  f"  gateway {settings.gateway_url}; embeddings {settings.embedding_model}; "
                  f"answers {settings.chat_model}; chunks sized by the {k.counter.description}\n"
                  f"  store: {store}", file=sys.stderr, flush=True)
            yield
        await k.close()

    app = build_app(k, access, extra_app, lifespan)
    config = uvicorn.Config(app, lifespan="on", access_log=False, log_level="warning", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        lock.close()
