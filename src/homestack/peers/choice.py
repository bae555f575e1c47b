"""Which peer serves a model this gateway does not hold: a pure decision over what the polls saw.

Best first: a peer where the model is resident (loaded or loading); else one where it fits in
free memory, the most free first; else one where it would evict the least. Peers that are down
or do not serve the model are left out; ties keep the order of the fleet file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

_RESIDENT_STATES = frozenset({"ready", "starting"})


@dataclass(frozen=True)
class PeerModel:
    """One model a peer serves, as its /admin/running reports it."""

    name: str
    aliases: tuple[str, ...] = ()
    state: str = "stopped"
    size: int = 0  # bytes it needs on its device; 0: it holds none there (a remote runner)
    device: str | None = None
    runner: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.name, *self.aliases

    @property
    def resident(self) -> bool:
        return self.state in _RESIDENT_STATES


@dataclass(frozen=True)
class PeerView:
    """A peer as its last poll left it."""

    name: str  # its key under `peers:`
    host: str  # the name it gives itself (its request logs' `host`)
    up: bool = False
    models: tuple[PeerModel, ...] = ()
    free: Mapping[str, int] = field(default_factory=dict)  # device -> budget minus what resident models hold

    def find(self, model: str) -> PeerModel | None:
        return next((m for m in self.models if model in m.names), None)


def rank(model: str, peers: Iterable[PeerView]) -> list[tuple[PeerView, PeerModel]]:
    """The up peers that serve ``model``, best first, each with the model as that peer names it."""
    scored = []
    for order, peer in enumerate(peers):
        found = peer.find(model) if peer.up else None
        if found is not None:
            scored.append((_score(peer, found), order, peer, found))
    scored.sort(key=lambda item: item[:2])
    return [(peer, found) for _, _, peer, found in scored]


def _score(peer: PeerView, model: PeerModel) -> tuple[int, int]:
    """(tier, tie-break): resident; fits, most free first; else least memory to evict."""
    if model.resident:
        return 0, 0
    free = peer.free.get(model.device, 0) if model.device else 0
    if model.size <= free:
        return 1, -free
    return 2, model.size - free
