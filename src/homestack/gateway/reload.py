"""Hot reload: read the fleet file again, validate all of it, then apply only what changed.

Nothing is applied unless everything validates (the schema, the secrets of the
keys, the memory plan): an invalid file leaves the running fleet serving. The
address, TLS, data directory and knowledge service are the running gateway's
until a restart.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ..config import DEFAULT_FLEET, FleetConfig, load_fleet
from ..errors import ConfigError
from ..keys import KeyRing
from .context import Services

# Settings a running gateway keeps until it restarts (its socket, its files, its child service).
_KEPT = ("host", "port", "tls_cert", "tls_key", "data_dir", "knowledge")


async def reload_fleet(services: Services) -> dict[str, Any]:
    """Apply the fleet file as it is now; ConfigError (naming file, key and fix) changes nothing."""
    async with services.reload_lock:
        source = services.fleet_file
        running = services.fleet
        fleet, ring, planned = await asyncio.to_thread(_prepare, source, running, services)
        changes = services.scheduler.reconfigure(fleet, planned)
        services.auth.ring = ring
        services.fleet = fleet
        services.upstream.connect_timeout = fleet.timeouts.connect
        services.upstream.read_timeout = fleet.timeouts.read
        return {"file": source or DEFAULT_FLEET, "models": changes, "routes": list(fleet.routes)}


def _prepare(source: str | None, running: FleetConfig, services: Services) -> tuple[FleetConfig, KeyRing, Any]:
    fleet = load_fleet(source)
    fleet = fleet.model_copy(update={name: getattr(running, name) for name in _KEPT})
    ring = KeyRing.load(fleet)
    return fleet, ring, services.scheduler.plan(fleet, source or DEFAULT_FLEET)


def on_hangup(services: Services) -> None:
    """SIGHUP: reload, and say on stderr what changed, or why nothing did."""

    async def run() -> None:
        try:
            result = await reload_fleet(services)
        except ConfigError as exc:
            print(f"homestack: reload refused, still serving the previous fleet: {exc.message}", file=sys.stderr,
                  flush=True)
            return
        print(f"homestack: reloaded {summary(result)}", file=sys.stderr, flush=True)

    task = asyncio.get_running_loop().create_task(run())
    services.background.add(task)
    task.add_done_callback(services.background.discard)


def summary(result: dict[str, Any]) -> str:
    """One line: the file, and the models each way (unchanged ones counted)."""
    models = result["models"]
    parts = [f"{len(models['unchanged'])} unchanged"]
    parts += [f"{what} {', '.join(names)}" for what, names in models.items() if what != "unchanged" and names]
    routes = ", ".join(result["routes"]) or "none"
    return f"{result['file']}: models {'; '.join(parts)}; routes: {routes}"
