"""The scheduler's loop: it owns fleet state, feeds events to ``decide`` and applies the actions.

Requests, admin calls, loads and runner exits are events. Each is recorded,
the fleet is snapshotted, ``decide`` (``decide.py``, pure) says what to do, and
the loop does it: start or stop runners, let tickets through, turn requests
away. A snapshot, its decision and the actions run in one go, with no await in
between, so nothing changes under a decision. Passes (``Tick``) run in one
asyncio task, when an event asks for one, when a clock ``next_pass`` names runs out, and at least
every ``_TICK``.

The one shortcut is on the hot path: a request for a ready model with a free
slot and nobody ahead of it goes straight through, and its release only feeds
an event when someone waits; that is what ``decide`` would answer anyway.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import traceback
from collections import Counter, deque
from fnmatch import fnmatchcase
from typing import Callable

from ..config import FleetConfig
from ..errors import ClientClosed, Conflict, HomestackError, ModelNotFound, RunnerError, TooManyRequests
from ..planner import CapacityPlan, GpuProvider, probe_devices
from ..planner.devices import process_memory
from ..runners import HealthProbe, Runner, State
from .decide import UNLOAD_DRAIN, decide, next_pass
from .entry import Entry, Ticket
from .messages import (
    AdminLoad, AdminUnload, CancelLoad, Cancelled, Count, Enqueue, Event, Evict, FailWaiters, Grant,
    LoadCancelled, LoadFailed, LoadFinished, Note, Queued, RefuseUnload, Reject, Released, Reschedule, RetryAt,
    RunnerStopped, SetYielding, StartLoad, Tick,
)
from .reloader import Reloading, plan_with_devices
from .state import FleetState, Settings

_GLOB = re.compile(r"[*?\[]")
_TICK = 0.25  # seconds between passes at most, when nothing wakes the task
# A timed pass (next_pass: TTL, max_wait, min_residency) runs this late, so its clock has surely run out.
_TIMER_SLACK = 0.002
_SAMPLE_EVERY = 2.0  # seconds between resident-memory samples
_EVENT_LOG = 512  # residency events kept: enough for a test or an operator to replay recent swaps


class Scheduler(Reloading):
    def __init__(self, runners: dict[str, Runner], capacity: CapacityPlan, fleet: FleetConfig,
                 gpus: GpuProvider | None = None):
        self.runners = runners
        self.capacity = capacity
        self.fleet = fleet
        # (event, model, reason) -> count; the events and reasons are state.COUNTER_REASONS
        self.counters: Counter[tuple[str, str, str]] = Counter()
        # (monotonic seconds, "load" | "ready" | "evict" | "stopped", model): when a runner began to hold
        # memory, served, was told to go and stopped; replayed, it says which models were ever resident
        # together, and where each swap's time went.
        self.events: deque[tuple[float, str, str]] = deque(maxlen=_EVENT_LOG)
        self.on_loaded: Callable[[str, float], None] | None = None  # (model, seconds), e.g. a histogram
        self._entries = {name: Entry(r, capacity.models[name]) for name, r in runners.items()}
        self._by_name = {alias: r for r in runners.values() for alias in (r.name, *r.spec.aliases)}
        # Glob aliases (claude-*), tried in fleet-file order after exact names: agents' built-in model names.
        self._globs = [(alias, r) for alias, r in self._by_name.items() if _GLOB.search(alias)]
        self._settings = Settings.of(fleet.scheduling)
        self._queued = 0  # tickets in all queues: release() only feeds an event when someone waits
        self._yielding: frozenset[str] = frozenset()  # models that take no new requests while they drain
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._sampled_at = 0.0
        self.gpus = gpus  # the GPU provider (NVML unless a test gives a fake)
        self._probe: HealthProbe | None = None
        self._on_stop: dict[str, Callable[[], None]] = {}  # a reload's new settings, taken once the runner stopped
        self._appliers: dict[type, Callable[..., None]] = {
            StartLoad: self._start_load, Evict: self._evict, Grant: self._grant, Enqueue: self._enqueue,
            Reject: self._reject, RefuseUnload: self._refuse_unload, FailWaiters: self._fail_waiters,
            CancelLoad: self._cancel_load, SetYielding: self._set_yielding, RetryAt: self._retry_at,
            Count: self._count, Note: self._note, Reschedule: self._reschedule,
        }

    @classmethod
    def build(cls, fleet: FleetConfig, source: str, gpus: GpuProvider | None = None) -> "Scheduler":
        """Plan every runner and its memory now, so problems surface at start-up, all at once."""
        capacity, plans = plan_with_devices(fleet, source, gpus)
        runners = {name: Runner(name, spec, fleet, plans[name]) for name, spec in fleet.models.items()}
        return cls(runners, capacity, fleet, gpus)

    @property
    def queue_depth(self) -> int:
        return self._settings.queue_depth

    def resolve(self, name: str) -> Runner:
        runner = self._by_name.get(name)
        if runner is None:
            runner = next((r for pattern, r in self._globs if fnmatchcase(name, pattern)), None)
        if runner is None:
            known = ", ".join(self.runners) or "(none)"
            raise ModelNotFound(f"model {name!r} does not exist; available models: {known}", param="model")
        return runner

    # -- events from requests -----------------------------------------------------------------

    def acquire(self, runner: Runner) -> Ticket | None:
        """Take a slot on ``runner`` for one request: None when taken at once, else a ticket to await.

        The request must call ``release`` once the slot is granted, or ``cancel`` if it gives up first.
        """
        entry = self._entries.get(runner.name)
        if entry is None or entry.runner is not runner:  # a reload removed it while the request waited
            raise RunnerError(f"model {runner.name!r} was removed from the fleet")
        if (
            not entry.queue and runner.state is State.READY and entry.has_room()
            and runner.name not in self._yielding
        ):
            runner.inflight += 1
            return None
        self._feed(Queued(runner.name))  # raises TooManyRequests when the queue is full
        return entry.queue[-1]  # the ticket Enqueue just made

    def cancel(self, ticket: Ticket) -> None:
        """The request gave up waiting (its client went away)."""
        if ticket.future.done():
            if not ticket.future.cancelled() and ticket.future.exception() is None:
                self.release(ticket.entry.runner)  # granted just as it gave up
            return
        ticket.future.cancel()
        ticket.entry.queue.remove(ticket)
        self._queued -= 1
        self._feed(Cancelled(ticket.entry.name))

    def release(self, runner: Runner) -> None:
        runner.inflight -= 1
        runner.last_used = time.monotonic()
        if runner.name not in self.runners:  # removed by a reload: decisions no longer include it
            return
        if self._queued or self._yielding:  # else nobody could use the freed slot
            self._feed(Released(runner.name))

    # -- admin events -------------------------------------------------------------------------

    async def load(self, name: str) -> Runner:
        runner = self.resolve(name)
        if runner.state is not State.READY:
            waiter = asyncio.get_running_loop().create_future()
            self._entries[runner.name].load_waiters.append(waiter)
            self._feed(AdminLoad(runner.name))
            await waiter
        return runner

    async def unload(self, name: str) -> Runner:
        runner = self.resolve(name)
        self._feed(AdminUnload(runner.name))  # raises Conflict for a pinned model
        await runner.stop(drain=UNLOAD_DRAIN)
        return runner

    # -- reports --------------------------------------------------------------------------------

    def describe(self, runner: Runner) -> dict[str, object]:
        return self._describe(self._entries[runner.name])

    def plan_report(self) -> dict[str, object]:
        """The capacity plan, with each device's free memory now and what the runners hold on it."""
        return {**self.capacity.to_dict(), "devices": self.device_report()}

    def device_report(self) -> list[dict[str, object]]:
        """Each device: total, budget, free now, and what the resident runners hold (estimated, measured)."""
        free = {d.id: d.free for d in probe_devices(self.gpus)}
        resident = [e for e in self._entries.values() if e.view().resident]
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
        return [self._describe(e) for e in self._entries.values() if everything or e.view().resident or e.queue]

    def _describe(self, entry: Entry) -> dict[str, object]:
        """The entry's view plus its load and eviction counts (the counters are the one record of them)."""
        info = entry.describe()
        counts = [(event, reason, n) for (event, model, reason), n in self.counters.items() if model == entry.name]
        info["loads"] = sum(n for event, _, n in counts if event == "loaded")
        info["evictions"] = sum(n for event, reason, n in counts if event == "evicted" and reason != "admin")
        return info

    # -- the loop -------------------------------------------------------------------------------

    async def start(self, probe: HealthProbe) -> None:
        self._probe = probe
        for runner in self.runners.values():
            self._bind(runner)
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
        timeout = _TICK
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
            self._wakeup.clear()
            timeout = _TICK
            try:
                now = time.monotonic()
                if now - self._sampled_at >= _SAMPLE_EVERY:
                    self._sample_memory(now)
                self._feed(Tick())
                # A swap waiting for an anti-thrash clock starts when it runs out, not at the next tick.
                now = time.monotonic()
                due = next_pass(self._state(), now)
                if due is not None:
                    timeout = min(_TICK, due - now + _TIMER_SLACK)
            except Exception:  # a bug must not stop the fleet's only owner
                traceback.print_exc(file=sys.stderr)

    def _bind(self, runner: Runner) -> None:
        assert self._probe is not None
        runner.bind(self._probe)
        runner.on_stopped = self._runner_stopped

    def _state(self) -> FleetState:
        views = {name: entry.view() for name, entry in self._entries.items()}
        return FleetState(views, self.capacity, self._settings, self._yielding)

    def _feed(self, event: Event) -> None:
        """Decide about ``event`` and apply the actions, in one go."""
        for action in decide(self._state(), event, time.monotonic()):
            self._appliers[type(action)](action)

    # -- applying actions -------------------------------------------------------------------------

    def _start_load(self, action: StartLoad) -> None:
        entry = self._entries[action.model]
        entry.runner.cancel_requested = False
        self.events.append((time.monotonic(), "load", action.model))
        entry.load_task = self._spawn(self._load(entry, action.cause))

    async def _load(self, entry: Entry, cause: str) -> None:
        runner = entry.runner
        if runner.cancel_requested:  # every request left before the load began
            self.events.append((time.monotonic(), "stopped", entry.name))
            entry.load_task = None
            self._wakeup.set()
            return
        started = time.monotonic()
        evicted, entry.made_room = tuple(entry.made_room), []
        event: Event | None = None
        try:
            await runner.ensure_ready()
        except ClientClosed:
            event = LoadCancelled(entry.name)
        except HomestackError as exc:
            event = LoadFailed(entry.name, exc)
        else:
            entry.loaded_at = time.monotonic()
            entry.load_seconds = entry.loaded_at - started
            self.events.append((entry.loaded_at, "ready", entry.name))
            entry.failures = 0
            event = LoadFinished(entry.name, cause, evicted)
            if self.on_loaded is not None:
                self.on_loaded(entry.name, entry.load_seconds)
        finally:
            entry.load_task = None
            if self._entries.get(entry.name) is not entry:  # removed by a reload meanwhile
                return
            if event is None:  # cancelled (the gateway is closing) or a bug: a pass looks again
                self._wakeup.set()
            else:
                self._feed(event)

    def _evict(self, action: Evict) -> None:
        entry = self._entries[action.model]
        entry.last_reason = action.reason
        self.events.append((time.monotonic(), "evict", action.model))
        self.counters["evicted", action.model, action.kind] += 1
        entry.runner.log.write(f"[homestack] {action.model}: {action.reason}")
        entry.runner.begin_stop(action.drain)
        if action.for_model is not None:
            self._entries[action.for_model].made_room.append(action.model)

    def _grant(self, action: Grant) -> None:
        entry = self._entries[action.model]
        if action.waiters:
            for waiter in entry.load_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            entry.load_waiters.clear()
        for _ in range(action.tickets):
            ticket = entry.queue.popleft()
            self._queued -= 1
            entry.runner.inflight += 1
            ticket.future.set_result(None)

    def _enqueue(self, action: Enqueue) -> None:
        entry = self._entries[action.model]
        entry.queue.append(Ticket(entry, asyncio.get_running_loop().create_future()))
        entry.runner.cancel_requested = False  # someone wants this load after all
        self._queued += 1

    def _reject(self, action: Reject) -> None:
        raise TooManyRequests(
            f"model {action.model!r} has {action.queued} requests waiting, the limit "
            "(scheduling.queue_depth); retry later",
            retry_after=action.retry_after,
        )

    def _refuse_unload(self, action: RefuseUnload) -> None:
        raise Conflict(f"model {action.model!r} is pinned (always on); remove 'pinned: true' to unload it")

    def _fail_waiters(self, action: FailWaiters, entry: Entry | None = None) -> None:
        entry = entry or self._entries[action.model]
        while entry.queue:
            ticket = entry.queue.popleft()
            self._queued -= 1
            ticket.future.set_exception(action.error)
        for waiter in entry.load_waiters:
            if not waiter.done():
                waiter.set_exception(action.error)
        entry.load_waiters.clear()

    def _cancel_load(self, action: CancelLoad) -> None:
        self._entries[action.model].runner.cancel_requested = True

    def _set_yielding(self, action: SetYielding) -> None:
        self._yielding = action.models

    def _retry_at(self, action: RetryAt) -> None:
        entry = self._entries[action.model]
        entry.retry_at, entry.failures = action.at, action.failures

    def _reschedule(self, _action: Reschedule) -> None:
        self._wakeup.set()

    def _count(self, action: Count) -> None:
        self.counters[action.event, action.model, action.reason] += 1

    def _note(self, action: Note) -> None:
        self._entries[action.model].last_reason = action.text

    # -- effects outside decisions ----------------------------------------------------------------

    def _sample_memory(self, now: float) -> None:
        self._sampled_at = now
        for entry in self._entries.values():
            pid = entry.runner.pid
            entry.measured = process_memory(pid) if pid else None

    def _runner_stopped(self, runner: Runner, reason: str | None) -> None:
        take_settings = self._on_stop.pop(runner.name, None)
        if take_settings is not None:
            take_settings()
        self._entries[runner.name].measured = None
        self.events.append((time.monotonic(), "stopped", runner.name))
        exited = reason if reason and reason.startswith("exited") else None
        self._feed(RunnerStopped(runner.name, exited))

    def _spawn(self, coro) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

