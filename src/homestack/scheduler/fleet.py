"""The scheduler: one asyncio task that owns fleet state.

Requests, admin calls and runner exits only send it messages: a ticket in a
model's queue, a wake-up. Its task decides everything that changes the fleet:
which queued requests go ahead, which model loads, which is evicted to make
room (idle, unpinned, least recently used first), what unloads after its TTL.
The one shortcut is on the hot path: a request for a ready model with a free
slot and nobody ahead of it goes straight through, which is the decision the
task would make anyway (the event loop runs one callback at a time).

Anti-thrash: while a model that does not fit waits, the resident model keeps
serving its own queue. It makes room as soon as it is idle with nothing queued;
while it has work, it serves for at least ``scheduling.min_residency`` after
loading and until the newcomer has waited ``scheduling.max_wait`` since then.
Only then does it stop taking new requests, drain and go.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import traceback
from collections import Counter
from typing import Callable

from ..config import FleetConfig
from ..errors import ClientClosed, Conflict, HomestackError, ModelNotFound, RunnerTimeout, TooManyRequests
from ..planner import CapacityPlan, GpuProvider, build_plan, probe_devices
from ..planner.devices import process_memory
from ..runners import HealthProbe, Runner, State
from ..runners.launch import plan_fleet
from ..runners.process import retry_delay
from .entry import Entry, Ticket
from .policy import eviction_order, pick_victims

_TICK = 0.25  # seconds between passes when nothing wakes the task (TTL, max_wait, min_residency)
_SAMPLE_EVERY = 2.0  # seconds between resident-memory samples
_UNLOAD_DRAIN = 30.0  # seconds in-flight requests get when a model is unloaded by hand


class Scheduler:
    def __init__(self, runners: dict[str, Runner], capacity: CapacityPlan, fleet: FleetConfig,
                 gpus: GpuProvider | None = None):
        self.runners = runners
        self.capacity = capacity
        # (event, model, reason) -> count; events: loaded, swap, evicted, load_failed, restart
        self.counters: Counter[tuple[str, str, str]] = Counter()
        self.on_loaded: Callable[[str, float], None] | None = None  # (model, seconds), e.g. a histogram
        self._entries = {name: Entry(r, capacity.models[name]) for name, r in runners.items()}
        self._by_name = {alias: r for r in runners.values() for alias in (r.name, *r.spec.aliases)}
        self.queue_depth = fleet.scheduling.queue_depth
        self._max_wait = fleet.scheduling.max_wait
        self._min_residency = fleet.scheduling.min_residency
        self._queued = 0  # tickets in all queues: release() only wakes the task when someone waits
        self._yielding: set[str] = set()  # models that take no new requests while they drain for another
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._sampled_at = 0.0
        self.gpus = gpus  # the GPU provider (NVML unless a test gives a fake)

    @classmethod
    def build(cls, fleet: FleetConfig, source: str, gpus: GpuProvider | None = None) -> "Scheduler":
        """Plan every runner and its memory now, so problems surface at start-up, all at once."""
        launch = plan_fleet(fleet, source)
        capacity = build_plan(fleet, launch, probe_devices(gpus), source)
        runners = {}
        for name, spec in fleet.models.items():
            plan, env = launch[name], capacity.models[name].env
            if env:  # the device the plan chose; the model's own env: wins
                plan = dataclasses.replace(plan, env={**env, **plan.env})
            runners[name] = Runner(name, spec, fleet, plan)
        return cls(runners, capacity, fleet, gpus)

    def resolve(self, name: str) -> Runner:
        runner = self._by_name.get(name)
        if runner is None:
            known = ", ".join(self.runners) or "(none)"
            raise ModelNotFound(f"model {name!r} does not exist; available models: {known}", param="model")
        return runner

    # -- messages from requests -------------------------------------------------------------

    def acquire(self, runner: Runner) -> Ticket | None:
        """Take a slot on ``runner`` for one request: None when taken at once, else a ticket to await.

        The request must call ``release`` once the slot is granted, or ``cancel`` if it gives up first.
        """
        entry = self._entries[runner.name]
        if (
            not entry.queue and runner.state is State.READY and entry.has_room()
            and runner.name not in self._yielding
        ):
            runner.inflight += 1
            return None
        if len(entry.queue) >= self.queue_depth:
            raise TooManyRequests(
                f"model {runner.name!r} has {len(entry.queue)} requests waiting, the limit "
                "(scheduling.queue_depth); retry later",
                retry_after=entry.retry_after(),
            )
        ticket = Ticket(entry, asyncio.get_running_loop().create_future())
        entry.queue.append(ticket)
        runner.cancel_requested = False  # someone wants this load after all
        self._queued += 1
        self._wakeup.set()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The request gave up waiting (its client went away)."""
        if ticket.future.done():
            if not ticket.future.cancelled() and ticket.future.exception() is None:
                self.release(ticket.entry.runner)  # granted just as it gave up
            return
        ticket.future.cancel()
        entry = ticket.entry
        entry.queue.remove(ticket)
        self._queued -= 1
        runner = entry.runner
        if runner.state is State.STARTING and not entry.queue and not entry.load_waiters and not runner.pinned:
            runner.cancel_requested = True
        self._wakeup.set()

    def release(self, runner: Runner) -> None:
        runner.inflight -= 1
        runner.last_used = time.monotonic()
        if self._queued or self._yielding:
            self._wakeup.set()

    # -- admin messages ----------------------------------------------------------------------

    async def load(self, name: str) -> Runner:
        runner = self.resolve(name)
        if runner.state is not State.READY:
            waiter = asyncio.get_running_loop().create_future()
            self._entries[runner.name].load_waiters.append(waiter)
            self._wakeup.set()
            await waiter
        return runner

    async def unload(self, name: str) -> Runner:
        runner = self.resolve(name)
        if runner.pinned:
            raise Conflict(f"model {runner.name!r} is pinned (always on); remove 'pinned: true' to unload it")
        if runner.state is not State.STOPPED:
            self._entries[runner.name].last_reason = "unloaded by admin"
            self.counters["evicted", runner.name, "admin"] += 1
        await runner.stop(drain=_UNLOAD_DRAIN)
        return runner

    def describe(self, runner: Runner) -> dict[str, object]:
        return self._describe(self._entries[runner.name])

    def plan_report(self) -> dict[str, object]:
        """The capacity plan, with each device's free memory now and what the runners hold on it."""
        return {**self.capacity.to_dict(), "devices": self.device_report()}

    def device_report(self) -> list[dict[str, object]]:
        """Each device: total, budget, free now, and what the resident runners hold (estimated, measured)."""
        free = {d.id: d.free for d in probe_devices(self.gpus)}
        resident = [e for e in self._entries.values() if e.resident]
        report = []
        for device in self.capacity.devices.values():
            info = {**device.to_dict(), "free": free.get(device.id, device.free),
                    "budget": self.capacity.budgets[device.id],
                    "held_estimated": sum(e.plan.need.get(device.id, 0) for e in resident)}
            if device.id == "cpu":  # resident set size is RAM; GPU memory is not sampled per process
                info["held_measured"] = sum(e.measured or 0 for e in resident)
            report.append(info)
        return report

    def running(self, everything: bool = False) -> list[dict[str, object]]:
        """Models that hold memory or have requests waiting (every model with ``everything``)."""
        return [self._describe(e) for e in self._entries.values() if everything or e.resident or e.queue]

    def _describe(self, entry: Entry) -> dict[str, object]:
        """The entry's view plus its load and eviction counts (the counters are the one record of them)."""
        info = entry.describe()
        counts = [(event, reason, n) for (event, model, reason), n in self.counters.items() if model == entry.name]
        info["loads"] = sum(n for event, _, n in counts if event == "loaded")
        info["evictions"] = sum(n for event, reason, n in counts if event == "evicted" and reason != "admin")
        return info

    # -- the task ----------------------------------------------------------------------------

    async def start(self, probe: HealthProbe) -> None:
        for runner in self.runners.values():
            runner.bind(probe)
            runner.on_stopped = self._runner_stopped
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._background):
            task.cancel()
        for runner in self.runners.values():
            runner.cancel_requested = True  # a load in progress ends at its next health check
        await asyncio.gather(*(r.stop() for r in self.runners.values()), return_exceptions=True)
        for runner in self.runners.values():
            runner.log.close()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), _TICK)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                self._schedule(time.monotonic())
            except Exception:  # a bug must not stop the fleet's only owner
                traceback.print_exc(file=sys.stderr)

    def _schedule(self, now: float) -> None:
        if now - self._sampled_at >= _SAMPLE_EVERY:
            self._sample_memory(now)
        self._unload_idle(now)
        # Grant first: a model that just became ready serves what waits for it before
        # anyone may count it idle and evict it (else two models could evict each other forever).
        for entry in self._entries.values():
            if entry.runner.state is State.READY and entry.name not in self._yielding:
                self._grant(entry)
        yielding: set[str] = set()
        waiting = [e for e in self._entries.values() if e.wants_load(now)]
        for entry in sorted(waiting, key=lambda e: -e.waited(now)):  # the longest wait first
            self._admit(entry, now, yielding)
        self._yielding = yielding

    def _grant(self, entry: Entry) -> None:
        for waiter in entry.load_waiters:
            if not waiter.done():
                waiter.set_result(None)
        entry.load_waiters.clear()
        runner = entry.runner
        while entry.queue and entry.has_room():
            ticket = entry.queue.popleft()
            self._queued -= 1
            runner.inflight += 1
            ticket.future.set_result(None)

    def _admit(self, entry: Entry, now: float, yielding: set[str]) -> None:
        """Load ``entry`` if it fits; else make room, or wait (anti-thrash) until its wait is long enough."""
        resident = [e for e in self._entries.values() if e.resident and e.plan.need]
        names = [e.name for e in resident]
        if self.capacity.fits([*names, entry.name]):
            self._start_load(entry)
            return
        if any(self._entries[name].runner.state is State.STOPPING for name in entry.made_room):
            return  # the models already evicted for it are still stopping: wait, evict no more
        waited = entry.waited(now)

        def must_yield(e: Entry) -> bool:
            # A model with work waiting keeps serving it for min_residency after it loaded, and
            # until the newcomer has waited max_wait counted from then: a queue that built up
            # during the last swap does not cut the new residency short.
            return now - e.loaded_at >= self._min_residency and min(waited, now - e.loaded_at) >= self._max_wait

        evictable = [e for e in resident if e.runner.state is State.READY and not e.runner.pinned]
        # Idle with nothing queued: holding it only keeps the newcomer waiting.
        idle = [e for e in evictable if e.runner.inflight == 0 and (not e.queue or must_yield(e))]
        victims = pick_victims(self.capacity, entry.name, names, [e.name for e in eviction_order(idle)])
        if victims:
            for name in victims:
                self._evict(self._entries[name], f"evicted for {entry.name}", "room")
            entry.made_room += victims
            return
        # Stop feeding the models in the way whose turn is over, so they drain; they go once idle.
        overdue_ones = [e for e in evictable if must_yield(e)]
        blocking = pick_victims(self.capacity, entry.name, names, [e.name for e in eviction_order(overdue_ones)])
        yielding.update(blocking or ())

    def _start_load(self, entry: Entry) -> None:
        entry.load_task = self._spawn(self._load(entry))

    async def _load(self, entry: Entry) -> None:
        if not (entry.queue or entry.load_waiters or entry.runner.pinned):
            entry.load_task = None  # every request left before the load began
            self._wakeup.set()
            return
        started = time.monotonic()
        cause = "pinned" if entry.runner.pinned else "request" if entry.queue else "admin"
        evicted, entry.made_room = entry.made_room, []
        try:
            await entry.runner.ensure_ready()
        except HomestackError as exc:
            if isinstance(exc, ClientClosed):
                # Its waiters left; requests that came since then get a load of their own.
                kind, entry.last_reason = "cancelled", "load cancelled"
            else:
                kind = "timeout" if isinstance(exc, RunnerTimeout) else "error"
                entry.last_reason = f"load failed: {exc.message}"
                self._fail_waiters(entry, exc)
            self.counters["load_failed", entry.name, kind] += 1
            if entry.runner.pinned:
                entry.failures += 1
                entry.retry_at = time.monotonic() + retry_delay(entry.failures)
        else:
            entry.loaded_at = time.monotonic()
            entry.load_seconds = entry.loaded_at - started
            entry.failures = 0
            self.counters["loaded", entry.name, cause] += 1
            entry.last_reason = {"pinned": "loaded (pinned)", "request": "loaded for a request", "admin": "loaded by admin"}[cause]
            if evicted:
                self.counters["swap", entry.name, ""] += 1
                entry.last_reason += "; evicted " + ", ".join(evicted)
            if self.on_loaded is not None:
                self.on_loaded(entry.name, entry.load_seconds)
        finally:
            entry.load_task = None
            self._wakeup.set()

    def _fail_waiters(self, entry: Entry, exc: HomestackError) -> None:
        while entry.queue:
            ticket = entry.queue.popleft()
            self._queued -= 1
            ticket.future.set_exception(exc)
        for waiter in entry.load_waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        entry.load_waiters.clear()

    def _evict(self, entry: Entry, reason: str, kind: str) -> None:
        entry.last_reason = reason
        self.counters["evicted", entry.name, kind] += 1
        entry.runner.log.write(f"[homestack] {entry.name}: {reason}")
        entry.runner.begin_stop()

    def _unload_idle(self, now: float) -> None:
        for entry in self._entries.values():
            runner = entry.runner
            if (
                runner.state is State.READY
                and runner.pid is not None  # a remote URL has nothing to unload
                and not runner.pinned
                and runner.ttl > 0
                and runner.inflight == 0
                and not entry.queue
                and now - runner.last_used >= runner.ttl
            ):
                self._evict(entry, f"idle for {runner.ttl:g} s (ttl)", "ttl")

    def _sample_memory(self, now: float) -> None:
        self._sampled_at = now
        for entry in self._entries.values():
            pid = entry.runner.pid
            entry.measured = process_memory(pid) if pid else None

    def _runner_stopped(self, runner: Runner, reason: str | None) -> None:
        entry = self._entries[runner.name]
        entry.measured = None
        if reason and reason.startswith("exited"):
            entry.last_reason = reason
            entry.retry_at = time.monotonic() + retry_delay(1)  # a pinned model restarts after a breath
            self.counters["restart", runner.name, ""] += 1
        self._wakeup.set()

    def _spawn(self, coro) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
