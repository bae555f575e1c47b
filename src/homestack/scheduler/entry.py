"""The scheduler's record of one model: its runner, plan, queue and history."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from ..planner import ModelPlan
from ..runners import Runner, State
from .state import ModelView


class Ticket:
    """One request waiting for its turn on a model."""

    __slots__ = ("entry", "future", "since")

    def __init__(self, entry: "Entry", future: asyncio.Future[None]):
        self.entry = entry
        self.future = future
        self.since = time.monotonic()


class Entry:
    def __init__(self, runner: Runner, plan: ModelPlan):
        self.runner = runner
        self.plan = plan
        spec = runner.spec
        # Requests forwarded at once: the runner's slots unless max_concurrency says otherwise.
        self.limit: int | None = spec.max_concurrency or runner.slots
        self.queue: deque[Ticket] = deque()
        self.load_waiters: list[asyncio.Future[None]] = []  # admin loads: want the model ready, hold no slot
        self.load_task: asyncio.Task[None] | None = None
        self.loaded_at = 0.0
        self.load_seconds: float | None = None  # how long the last load took
        self.retry_at = 0.0  # a pinned model that failed to load or exited is retried after this
        self.failures = 0
        self.measured: int | None = None  # resident bytes, sampled
        self.last_reason: str | None = None  # why it last loaded or unloaded
        self.made_room: list[str] = []  # models evicted for this one's pending load

    @property
    def name(self) -> str:
        return self.runner.name

    def has_room(self) -> bool:
        return self.limit is None or self.runner.inflight < self.limit

    def view(self) -> ModelView:
        """This model now, as plain data for ``decide``."""
        runner = self.runner
        return ModelView(
            name=runner.name, state=runner.state, pinned=runner.pinned, ttl=runner.ttl,
            has_process=runner.pid is not None, planned=bool(self.plan.need), size=self.plan.total,
            inflight=runner.inflight, limit=self.limit, queue=tuple(t.since for t in self.queue),
            admin_waiting=bool(self.load_waiters), loading=self.load_task is not None, last_used=runner.last_used,
            loaded_at=self.loaded_at, load_seconds=self.load_seconds, retry_at=self.retry_at,
            failures=self.failures, made_room=tuple(self.made_room),
        )

    def describe(self) -> dict[str, object]:
        runner = self.runner
        info = runner.describe()
        ttl_left = None
        if runner.state is State.READY and runner.pid and not runner.pinned and runner.ttl > 0:
            idle = 0.0 if runner.inflight or self.queue else time.monotonic() - runner.last_used
            ttl_left = round(max(0.0, runner.ttl - idle), 1)
        info.update(
            queue=len(self.queue),
            limit=self.limit,
            device=self.plan.device,
            gpu_layers=self.plan.offload,
            memory_estimated=self.plan.total or None,
            memory_basis=self.plan.basis,
            memory_measured=self.measured if runner.state is not State.STOPPED else None,
            ttl_remaining=ttl_left,
            last_swap_reason=self.last_reason,
            load_seconds=round(self.load_seconds, 2) if self.load_seconds is not None else None,
        )
        return info
