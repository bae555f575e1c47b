"""What each peer holds, kept fresh by polling its admin API; the routes' view of the other hosts.

Each peer is polled on its own task: ``/admin/running?all=1`` (models, states, sizes, its host
name) and ``/admin/plan`` (budget and what is held per device), within the peer's timeout. A peer
that fails a poll, or a forwarded request, is down until a poll succeeds again; polls of a down
peer back off (doubling up to ``max_backoff``) so a dead host costs almost nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from typing import Any

import orjson

from ..config import FleetConfig
from ..config.peers import Peer
from ..errors import ConfigError
from ..gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout
from .choice import PeerModel, PeerView, rank

_POLL_ERRORS = (OSError, TimeoutError, UpstreamError, UpstreamTimeout, ValueError, KeyError, TypeError)


class PeerDirectory:
    def __init__(self, peers: dict[str, Peer], keys: dict[str, str | None]):
        self.specs = peers
        self._auth = {name: f"Authorization: Bearer {key}\r\n".encode() if key else b"" for name, key in keys.items()}
        self.secrets = {name: (key,) if key else () for name, key in keys.items()}
        self.views = {name: PeerView(name, name) for name in peers}
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def for_fleet(cls, fleet: FleetConfig) -> "PeerDirectory":
        """The fleet's peers with their keys read from the environment (ConfigError when one is unset)."""
        keys: dict[str, str | None] = {}
        for name, peer in fleet.peers.items():
            keys[name] = None
            if peer.key_env is not None:
                keys[name] = os.environ.get(peer.key_env, "").strip()
                if not keys[name]:
                    raise ConfigError(f"peers.{name}.key_env: the environment variable {peer.key_env} is not set; "
                                      "set it to a key with the admin role on that peer")
        return cls(dict(fleet.peers), keys)

    def start(self, pool: UpstreamPool) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._poll(pool, name)) for name in self.specs]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def choose(self, model: str) -> list[tuple[PeerView, PeerModel]]:
        """The peers to try for ``model``, best first (see choice.rank)."""
        return rank(model, self.views.values())

    def models(self) -> list[tuple[PeerView, PeerModel]]:
        """Each model the up peers serve, once, with the peer a request for it would go to now."""
        names = dict.fromkeys(m.name for peer in self.views.values() if peer.up for m in peer.models)
        return [self.choose(name)[0] for name in names]

    def url(self, name: str) -> str:
        return self.specs[name].url.rstrip("/")

    def auth_header(self, name: str) -> bytes:
        return self._auth[name]

    def mark_down(self, name: str, reason: object) -> None:
        """A forwarded request could not reach the peer: skip it until a poll finds it up again."""
        if self.views[name].up:
            _say(f"peer {name} at {self.url(name)} is down: {reason}")
        self.views[name] = replace(self.views[name], up=False)

    async def _poll(self, pool: UpstreamPool, name: str) -> None:
        spec = self.specs[name]
        delay = spec.poll_interval
        while True:
            try:
                view = await asyncio.wait_for(self._read(pool, name), spec.timeout)
            except _POLL_ERRORS as exc:
                delay = spec.poll_interval if self.views[name].up else min(delay * 2, spec.max_backoff)
                self.mark_down(name, str(exc) or type(exc).__name__)
            else:
                if not self.views[name].up:
                    _say(f"peer {name} at {self.url(name)} is up as host {view.host} with "
                         f"{len(view.models)} models")
                self.views[name], delay = view, spec.poll_interval
            await asyncio.sleep(delay)

    async def _read(self, pool: UpstreamPool, name: str) -> PeerView:
        running = await self._get(pool, name, "/admin/running?all=1")
        plan = await self._get(pool, name, "/admin/plan")
        models = tuple(_model(entry) for entry in running["running"])
        free = {d["id"]: int(d["budget"]) - int(d.get("held_estimated") or 0) for d in plan["devices"]}
        return PeerView(name, str(running.get("host") or name), True, models, free)

    async def _get(self, pool: UpstreamPool, name: str, path: str) -> Any:
        resp = await pool.request(b"GET", self.url(name), path, headers=self._auth[name])
        try:
            body = await resp.read()
        finally:
            resp.close()
        if resp.status != 200:
            raise ValueError(f"GET {path} answered {resp.status} (is the key in key_env an admin key there?)")
        return orjson.loads(body)


def _model(entry: dict[str, Any]) -> PeerModel:
    return PeerModel(
        name=entry["name"], aliases=tuple(entry.get("aliases") or ()), state=entry["state"],
        size=int(entry.get("memory_estimated") or 0), device=entry.get("device"), runner=entry.get("runner"),
    )


def _say(line: str) -> None:
    print(f"homestack: {line}", file=sys.stderr, flush=True)
