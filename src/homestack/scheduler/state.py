"""What the scheduler's decisions read: a plain-data snapshot of the fleet.

The loop (``fleet.py``) copies it from its runners and queues before each
decision; ``decide`` never sees a process, a future or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

from ..runners import State

# The scheduler's counters, keyed (event, model, reason): each event and the reasons it is
# counted by (None: it has no reason, counted with ""). The one list of them: the decisions
# count only these, and /metrics exports every model x reason from it, at 0 from the start.
COUNTER_REASONS: dict[str, tuple[str, ...] | None] = {
    "loaded": ("request", "pinned", "admin"),
    "swap": None,
    "evicted": ("room", "ttl", "admin"),
    "load_failed": ("error", "timeout", "cancelled"),
    "restart": None,
}


class Fits(Protocol):
    """What decisions need of the capacity plan."""

    def fits(self, names: Iterable[str]) -> bool: ...


@dataclass(frozen=True)
class Settings:
    queue_depth: int  # requests that may wait per model before 429
    max_wait: float  # seconds a model that does not fit waits before the resident one must yield
    min_residency: float  # seconds a loaded model with work keeps serving before it must yield
    residency_per_reload: float = 0.0  # it serves at least this x the last reload cost there and back...
    max_residency: float = 0.0  # ...up to this many seconds (or min_residency if longer)

    @classmethod
    def of(cls, scheduling: Any) -> "Settings":
        """From the fleet file's ``scheduling`` section."""
        s = scheduling
        return cls(s.queue_depth, s.max_wait, s.min_residency, s.residency_per_reload, s.max_residency)


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model as the scheduler sees it at one instant."""

    name: str
    state: State = State.STOPPED
    pinned: bool = False
    ttl: float = 0.0  # seconds idle before unloading; 0: never
    has_process: bool = True  # a remote URL has nothing to unload
    planned: bool = True  # holds memory the capacity plan counts (a remote model does not)
    size: int = 0  # planned bytes, all devices: the cheaper reload wins a tie
    inflight: int = 0
    limit: int | None = None  # requests at once; None: no limit
    queue: tuple[float, ...] = ()  # when each waiting request arrived, oldest first
    admin_waiting: bool = False  # an admin load waits for it to be ready
    loading: bool = False  # a load was decided and has not finished
    last_used: float = 0.0
    loaded_at: float = 0.0
    load_seconds: float | None = None  # how long its last load took
    retry_at: float = 0.0  # a pinned model whose load failed or that exited is retried after this
    failures: int = 0  # failed loads in a row (pinned models)
    made_room: tuple[str, ...] = ()  # models evicted for its pending load

    @property
    def resident(self) -> bool:
        """Holds memory, is about to (a load was decided) or still does (stopping)."""
        return self.state is not State.STOPPED or self.loading

    @property
    def room(self) -> int | None:
        """Free slots; None: no limit."""
        return None if self.limit is None else max(0, self.limit - self.inflight)

    def wants_load(self, now: float) -> bool:
        if self.state is not State.STOPPED or self.loading:
            return False
        return bool(self.queue or self.admin_waiting) or (self.pinned and now >= self.retry_at)

    def waited(self, now: float) -> float:
        """Seconds the oldest request has waited; a pinned model or an admin load counts as waiting forever."""
        if self.pinned or self.admin_waiting:
            return float("inf")
        return now - self.queue[0] if self.queue else 0.0

    @property
    def retry_after(self) -> int:
        """Seconds a client turned away should wait: about one load, or one second when ready."""
        if self.state is State.READY:
            return 1
        return max(1, round(self.load_seconds or 5))


@dataclass(frozen=True)
class FleetState:
    models: Mapping[str, ModelView]  # in configuration order
    capacity: Fits
    settings: Settings
    yielding: frozenset[str] = frozenset()  # models that take no new requests while they drain for another
