"""The scheduler's vocabulary: events the loop feeds to ``decide``, actions it gets back.

Plain frozen data, so a decision is tested by comparing lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HomestackError

# -- events: what happened ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """A scheduling pass: sent when woken, and at least every tick (TTL, max_wait, min_residency)."""


@dataclass(frozen=True, slots=True)
class Queued:
    """A request must wait for ``model`` (it is not ready, has no free slot, or others wait)."""

    model: str


@dataclass(frozen=True, slots=True)
class Released:
    """A request on ``model`` finished, and someone somewhere waits."""

    model: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A waiting request for ``model`` gave up (its client went away); it has left the queue."""

    model: str


@dataclass(frozen=True, slots=True)
class LoadFinished:
    model: str
    cause: str  # the StartLoad's
    evicted: tuple[str, ...]  # models evicted to make room for it


@dataclass(frozen=True, slots=True)
class LoadFailed:
    model: str
    error: HomestackError  # what its waiters fail with


@dataclass(frozen=True, slots=True)
class LoadCancelled:
    """The load ended early because nobody waited for it any more."""

    model: str


@dataclass(frozen=True, slots=True)
class RunnerStopped:
    model: str
    exited: str | None = None  # why, if it exited on its own; None: stopped as asked, or its load failed


@dataclass(frozen=True, slots=True)
class AdminLoad:
    model: str


@dataclass(frozen=True, slots=True)
class AdminUnload:
    model: str


Event = (Tick | Queued | Released | Cancelled | LoadFinished | LoadFailed | LoadCancelled | RunnerStopped
         | AdminLoad | AdminUnload)

# -- actions: what to do ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartLoad:
    model: str
    cause: str  # a "loaded" counter reason: pinned, request or admin


@dataclass(frozen=True, slots=True)
class Evict:
    """Stop ``model``: record why (``reason``) and count it as ``evicted`` with ``kind``."""

    model: str
    reason: str
    kind: str  # an "evicted" counter reason: room, ttl or admin
    drain: float = 0.0  # seconds in-flight requests get
    for_model: str | None = None  # the model it makes room for


@dataclass(frozen=True, slots=True)
class Grant:
    """Let the first ``tickets`` queued requests go ahead; with ``waiters``, answer the admin loads too."""

    model: str
    tickets: int
    waiters: bool = False


@dataclass(frozen=True, slots=True)
class Enqueue:
    """The request waits in ``model``'s queue (and a load being cancelled is wanted again)."""

    model: str


@dataclass(frozen=True, slots=True)
class Reject:
    """429: the queue is full."""

    model: str
    queued: int
    retry_after: int


@dataclass(frozen=True, slots=True)
class RefuseUnload:
    """409: a pinned model is never unloaded."""

    model: str


@dataclass(frozen=True, slots=True)
class FailWaiters:
    """Fail every queued request and admin load with ``error``."""

    model: str
    error: HomestackError


@dataclass(frozen=True, slots=True)
class CancelLoad:
    """Nobody waits for this load any more: end it at its next health check (or before it begins)."""

    model: str


@dataclass(frozen=True, slots=True)
class SetYielding:
    """These models take no new requests, so they drain and make room."""

    models: frozenset[str]


@dataclass(frozen=True, slots=True)
class RetryAt:
    """A pinned model loads again no sooner than ``at``."""

    model: str
    at: float
    failures: int


@dataclass(frozen=True, slots=True)
class Count:
    event: str  # a key of COUNTER_REASONS
    model: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    """Why the model last loaded or unloaded, as shown to the admin."""

    model: str
    text: str


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Run a pass (a Tick) soon."""


Action = (StartLoad | Evict | Grant | Enqueue | Reject | RefuseUnload | FailWaiters | CancelLoad | SetYielding
          | RetryAt | Count | Note | Reschedule)
