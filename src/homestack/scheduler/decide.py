"""The scheduler's decisions: a pure function from (fleet state, event, now) to actions.

A pass (``Tick``) decides everything that changes the fleet, in this order:
models idle past their TTL unload; ready models grant what waits for them;
models that want to load are admitted (those room was made for first, then the
longest wait first), if they fit beside what is resident (the capacity plan's
``fits``: memory and groups).
Else room is made by evicting idle, unpinned models, least recently used first
(ties: the one cheaper to reload); never a pinned model, never one with requests
in flight, and no further eviction while the last victims are still stopping.

Anti-thrash: while a model that does not fit waits, the resident model keeps
serving its own queue. It makes room as soon as it is idle with nothing queued;
while it has work, its turn lasts at least its residency after loading and until
the newcomer has waited ``max_wait`` since then. Its residency is
``min_residency``, or longer when reloads are slow: ``residency_per_reload`` (2)
times what the swap there and back cost the last time (both models' load times),
at most ``max_residency``: loading then takes at most about a fifth of the time
while both sides have work, and a newcomer's wait stays bounded.
When its turn is over it yields: it takes no new requests, serves those that
had arrived by then (for ``max_wait`` at most: drain, then swap), and goes.

Other events get their own answer: a full queue rejects (429), a load nobody
waits for any more is cancelled, a failed load fails its waiters (a cancelled
one fails nobody: who came later gets a load of their own), a pinned model is
retried with a growing backoff. Any event that may change a pass asks for one; a finished load
runs one at once, so what waited for it goes through without waiting for the scheduler's task.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
from math import inf
from typing import Callable

from ..errors import RunnerTimeout
from ..runners import State
from ..runners.process import retry_delay
from .messages import (
    Action, AdminLoad, AdminUnload, CancelLoad, Cancelled, Count, Enqueue, Event, Evict, FailWaiters, Grant,
    LoadCancelled, LoadFailed, LoadFinished, Note, Queued, RefuseUnload, Reject, Released, Reschedule, RetryAt,
    RunnerStopped, SetYielding, StartLoad, Tick,
)
from .policy import eviction_order, pick_victims
from .state import FleetState, ModelView, Settings

UNLOAD_DRAIN = 30.0  # seconds in-flight requests get when a model is unloaded by hand
_LOADED_NOTES = {"pinned": "loaded (pinned)", "request": "loaded for a request", "admin": "loaded by admin"}


def decide(state: FleetState, event: Event, now: float) -> list[Action]:
    """The actions for ``event``, to be applied in order.

    ``state`` already holds the event's own fact (a cancelled request has left its
    queue, a finished load is no longer loading), except that a ``Queued`` request
    is not in its queue yet: ``Enqueue`` puts it there, ``Reject`` turns it away.
    """
    return _HANDLERS[type(event)](state, event, now)


def _pass(state: FleetState, _event: Tick, now: float) -> list[Action]:
    models = dict(state.models)  # kept as the actions will leave it, for the decisions after them
    actions: list[Action] = []
    for m in state.models.values():
        if _ttl_expired(m, now):
            actions.append(Evict(m.name, f"idle for {m.ttl:g} s (ttl)", "ttl"))
            models[m.name] = replace(m, state=State.STOPPING)
    # Grant first: a model that just became ready serves what waits for it before
    # anyone may count it idle and evict it (else two models could evict each other forever).
    waiting = [m for m in models.values() if m.wants_load(now)]
    for m in list(models.values()):
        if m.state is State.READY:
            actions += _grant(models, m, _drain_cutoff(state, m, waiting, now))
    yielding: set[str] = set()
    for m in sorted(waiting, key=lambda m: _admission_order(m, now)):
        actions += _admit(state, models, m.name, now, yielding)
    if yielding != state.yielding:
        actions.append(SetYielding(frozenset(yielding)))
    return actions


def next_pass(state: FleetState, now: float) -> float | None:
    """When, after ``now``, a pass could decide something new with no event in between: a TTL runs
    out, a pinned model's retry is due, or a resident's turn (or its drain) ends while a model waits
    for room. None: only an event can change anything."""
    settings, times = state.settings, []
    for m in state.models.values():
        if m.state is State.READY and m.has_process and not m.pinned and m.ttl > 0:
            times.append(m.last_used + m.ttl)
        if m.pinned and m.state is State.STOPPED:
            times.append(m.retry_at)
    waiting = [m for m in state.models.values() if m.queue and m.state is State.STOPPED and not m.loading]
    for m in state.models.values():
        if m.state is State.READY:
            for newcomer in waiting:
                end = _turn_end(m, newcomer, settings)
                times += [end, end + settings.max_wait]
    return min((t for t in times if t > now), default=None)


def _residency(m: ModelView, newcomer: ModelView, settings: Settings) -> float:
    """How long resident ``m``, with work, serves before it yields to ``newcomer``: ``min_residency``, or
    ``residency_per_reload`` x what swapping to the newcomer and back last cost, up to ``max_residency``."""
    reload = (m.load_seconds or 0.0) + (newcomer.load_seconds or 0.0)
    grown = min(settings.residency_per_reload * reload, settings.max_residency)
    return max(settings.min_residency, grown)


def _turn_end(m: ModelView, newcomer: ModelView, settings: Settings) -> float:
    """When resident ``m``'s turn ends for ``newcomer``: it has served its residency, and the newcomer
    has waited ``max_wait`` counted from its load at the earliest (a queue that built up during the last
    swap does not cut the new turn short). A pinned or admin newcomer has waited forever."""
    first = newcomer.queue[0] if newcomer.queue and not (newcomer.pinned or newcomer.admin_waiting) else -inf
    return max(m.loaded_at + _residency(m, newcomer, settings), m.loaded_at + settings.max_wait,
               first + settings.max_wait)


def _drain_cutoff(state: FleetState, m: ModelView, waiting: list[ModelView], now: float) -> float:
    """Requests for ``m`` that arrived by this time may be granted: all of them while its turn goes on;
    once it yields, those that arrived before its turn ended, for ``max_wait`` at most."""
    if m.name not in state.yielding or not waiting:
        return inf
    end = min(_turn_end(m, newcomer, state.settings) for newcomer in waiting)
    return end if now < end + state.settings.max_wait else -inf


def _admission_order(m: ModelView, now: float) -> tuple[bool, float]:
    """A model that room was made for first: else the model just evicted for it, whose leftover queue
    may be older, would load again in its place (a swap for nothing, and the newcomer waits a whole
    turn more). Then the longest wait first."""
    return not m.made_room, -m.waited(now)


def _ttl_expired(m: ModelView, now: float) -> bool:
    return (
        m.state is State.READY and m.has_process and not m.pinned and m.ttl > 0
        and m.inflight == 0 and not m.queue and now - m.last_used >= m.ttl
    )


def _grant(models: dict[str, ModelView], m: ModelView, cutoff: float = inf) -> list[Action]:
    """Let through what waits for ready ``m`` and fits its free slots: requests that arrived by ``cutoff``."""
    room = m.room
    arrived = bisect_right(m.queue, cutoff)
    tickets = arrived if room is None else min(arrived, room)
    if not (tickets or m.admin_waiting):
        return []
    models[m.name] = replace(m, queue=m.queue[tickets:], inflight=m.inflight + tickets, admin_waiting=False)
    return [Grant(m.name, tickets, m.admin_waiting)]


def _admit(state: FleetState, models: dict[str, ModelView], name: str, now: float, yielding: set[str]) -> list[Action]:
    """Load ``name`` if it fits; else make room, or wait (anti-thrash) until its wait is long enough."""
    entry = models[name]
    capacity, settings = state.capacity, state.settings
    resident = [m for m in models.values() if m.resident and m.planned]
    names = [m.name for m in resident]
    if capacity.fits([*names, name]):
        models[name] = replace(entry, loading=True)
        return [StartLoad(name, "pinned" if entry.pinned else "request" if entry.queue else "admin")]
    if any(models[victim].state is State.STOPPING for victim in entry.made_room):
        return []  # the models already evicted for it are still stopping: wait, evict no more

    def must_yield(m: ModelView) -> bool:
        return now >= _turn_end(m, entry, settings)

    evictable = [m for m in resident if m.state is State.READY and not m.pinned]
    # Idle with nothing queued: holding it only keeps the newcomer waiting.
    idle = [m for m in evictable if m.inflight == 0 and (not m.queue or must_yield(m))]
    victims = pick_victims(capacity, name, names, [m.name for m in eviction_order(idle)])
    if victims:
        for victim in victims:
            models[victim] = replace(models[victim], state=State.STOPPING)
        models[name] = replace(entry, made_room=entry.made_room + tuple(victims))
        return [Evict(victim, f"evicted for {name}", "room", for_model=name) for victim in victims]
    # Stop feeding the models in the way whose turn is over, so they drain; they go once idle.
    overdue = [m for m in evictable if must_yield(m)]
    yielding.update(pick_victims(capacity, name, names, [m.name for m in eviction_order(overdue)]) or ())
    return []


def _queued(state: FleetState, event: Queued, _now: float) -> list[Action]:
    m = state.models[event.model]
    if len(m.queue) >= state.settings.queue_depth:
        return [Reject(m.name, len(m.queue), m.retry_after)]
    return [Enqueue(m.name), Reschedule()]


def _cancelled(state: FleetState, event: Cancelled, _now: float) -> list[Action]:
    m = state.models[event.model]
    loading = m.state is State.STARTING or (m.state is State.STOPPED and m.loading)
    if loading and not m.queue and not m.admin_waiting and not m.pinned:
        return [CancelLoad(m.name), Reschedule()]
    return [Reschedule()]


def _reschedule(_state: FleetState, _event: Event, _now: float) -> list[Action]:
    return [Reschedule()]


def _load_finished(state: FleetState, event: LoadFinished, now: float) -> list[Action]:
    actions: list[Action] = [Count("loaded", event.model, event.cause)]
    note = _LOADED_NOTES[event.cause]
    if event.evicted:
        actions.append(Count("swap", event.model))
        note += "; evicted " + ", ".join(event.evicted)
    # The pass runs now, not when the scheduler's task next wakes: the requests that waited for the
    # load reach the runner at once (a cold start's last step). The Reschedule still times the next one.
    return [*actions, Note(event.model, note), *_pass(state, Tick(), now), Reschedule()]


def _load_failed(state: FleetState, event: LoadFailed, now: float) -> list[Action]:
    m = state.models[event.model]
    kind = "timeout" if isinstance(event.error, RunnerTimeout) else "error"
    return [Note(m.name, f"load failed: {event.error.message}"), FailWaiters(m.name, event.error),
            Count("load_failed", m.name, kind), *_retry(m, now), Reschedule()]


def _load_cancelled(state: FleetState, event: LoadCancelled, now: float) -> list[Action]:
    # Its waiters left; requests that came since then get a load of their own.
    m = state.models[event.model]
    return [Note(m.name, "load cancelled"), Count("load_failed", m.name, "cancelled"), *_retry(m, now), Reschedule()]


def _retry(m: ModelView, now: float) -> list[Action]:
    """A pinned model is loaded again after a backoff that grows with each failure in a row."""
    if not m.pinned:
        return []
    return [RetryAt(m.name, now + retry_delay(m.failures + 1), m.failures + 1)]


def _runner_stopped(state: FleetState, event: RunnerStopped, now: float) -> list[Action]:
    if event.exited is None:
        return [Reschedule()]
    m = state.models[event.model]
    # A pinned model restarts after a breath.
    return [Note(m.name, event.exited), RetryAt(m.name, now + retry_delay(1), m.failures),
            Count("restart", m.name), Reschedule()]


def _admin_unload(state: FleetState, event: AdminUnload, _now: float) -> list[Action]:
    m = state.models[event.model]
    if m.pinned:
        return [RefuseUnload(m.name)]
    if m.state is State.STOPPED:
        return []
    return [Evict(m.name, "unloaded by admin", "admin", drain=UNLOAD_DRAIN)]


_HANDLERS: dict[type, Callable[[FleetState, Event, float], list[Action]]] = {
    Tick: _pass,
    Queued: _queued,
    Released: _reschedule,
    Cancelled: _cancelled,
    LoadFinished: _load_finished,
    LoadFailed: _load_failed,
    LoadCancelled: _load_cancelled,
    RunnerStopped: _runner_stopped,
    AdminLoad: _reschedule,
    AdminUnload: _admin_unload,
}
