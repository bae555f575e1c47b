"""The scheduler's decisions from plain data: (fleet state, event, now) -> actions, no process started.

Every model plans 400 MiB (unless a row says otherwise) against a 1000 MiB budget: two fit, three do
not. Rows with budget 600 have room for one. Settings default to the fleet file's: max_wait 5 s,
min_residency 5 s, residency_per_reload 2, max_residency 60 s.
"""

from __future__ import annotations

import pytest

from homestack.errors import RunnerError, RunnerTimeout
from homestack.planner import CapacityPlan, Components, Device, MemoryEstimate, ModelPlan
from homestack.runners import State
from homestack.scheduler.decide import UNLOAD_DRAIN, decide, next_pass
from homestack.scheduler.messages import (
    AdminLoad, AdminUnload, CancelLoad, Cancelled, Count, Enqueue, Evict, FailWaiters, Grant, LoadCancelled,
    LoadFailed, LoadFinished, Note, Queued, RefuseUnload, Reject, Released, Reschedule, RetryAt, RunnerStopped,
    SetYielding, StartLoad, Tick,
)
from homestack.scheduler.state import COUNTER_REASONS, FleetState, ModelView, Settings

MIB = 2**20
READY, STOPPED, STARTING, STOPPING = State.READY, State.STOPPED, State.STARTING, State.STOPPING
ERROR = RunnerError("model 'c' failed to start: runner exited with code 1")
TIMEOUT = RunnerTimeout("model 'c' failed to start: not healthy after 1 s")


def m(name: str, mib: int = 400, **fields) -> ModelView:
    return ModelView(name, size=mib * MIB, **fields)


def fleet(*models: ModelView, budget: int = 1000, groups: dict[str, set[str]] | None = None,
          yielding: frozenset[str] = frozenset(), max_wait: float = 5.0, min_residency: float = 5.0,
          queue_depth: int = 64, residency_per_reload: float = 2.0, max_residency: float = 60.0) -> FleetState:
    plans = {
        v.name: ModelPlan(v.name, "configured", MemoryEstimate({"cpu": Components(weights=v.size)}))
        if v.planned else ModelPlan(v.name, "remote", None)
        for v in models
    }
    groups_ = {name: frozenset(members) for name, members in (groups or {}).items()}
    capacity = CapacityPlan({"cpu": Device("cpu", "CPU RAM", 64 * 2**30, 64 * 2**30)}, {"cpu": budget * MIB},
                            plans, groups_)
    settings = Settings(queue_depth, max_wait, min_residency, residency_per_reload, max_residency)
    return FleetState({v.name: v for v in models}, capacity, settings, yielding)


def room_for(victim: str, newcomer: str = "c") -> Evict:
    return Evict(victim, f"evicted for {newcomer}", "room", for_model=newcomer)


# (id, state, event, now, the actions)
CASES = [
    # -- admission and eviction order -----------------------------------------------------------
    ("fits: load for a request",
     fleet(m("a", state=READY), m("c", queue=(9.0,))), Tick(), 10.0, [StartLoad("c", "request")]),
    ("fits: load for an admin",
     fleet(m("c", admin_waiting=True)), Tick(), 10.0, [StartLoad("c", "admin")]),
    ("least recently used idle model makes room",
     fleet(m("a", state=READY, last_used=2.0), m("b", state=READY, last_used=1.0), m("c", queue=(9.0,))),
     Tick(), 10.0, [room_for("b")]),
    ("tie on last use: the one cheaper to reload goes",
     fleet(m("a", state=READY, load_seconds=1.0), m("b", state=READY, load_seconds=3.0), m("c", queue=(9.0,))),
     Tick(), 10.0, [room_for("a")]),
    ("tie on load time too: the smaller one goes",
     fleet(m("a", state=READY), m("b", 300, state=READY), m("c", queue=(9.0,))),
     Tick(), 10.0, [room_for("b")]),
    ("a model with requests in flight is never evicted",
     fleet(m("a", state=READY, inflight=1, last_used=0.0), m("b", state=READY, last_used=5.0), m("c", queue=(9.0,))),
     Tick(), 10.0, [room_for("b")]),
    ("everything busy: the newcomer waits",
     fleet(m("a", state=READY, inflight=1), m("b", state=READY, inflight=2), m("c", queue=(9.0,))),
     Tick(), 10.0, []),
    ("a pinned model is never evicted",
     fleet(m("a", state=READY, pinned=True, last_used=0.0), m("b", state=READY, last_used=5.0), m("c", queue=(9.0,))),
     Tick(), 10.0, [room_for("b")]),
    ("only a pinned model in the way: wait",
     fleet(m("a", state=READY, pinned=True), m("c", queue=(9.0,)), budget=600), Tick(), 10.0, []),
    ("a remote model holds no memory and is never in the way",
     fleet(m("r", state=READY, planned=False), m("a", state=READY), m("c", queue=(9.0,))),
     Tick(), 10.0, [StartLoad("c", "request")]),
    ("the longest wait goes first; the next one sees it resident",
     fleet(m("a", queue=(5.0,)), m("b", queue=(1.0,)), m("z", state=READY)),
     Tick(), 10.0, [StartLoad("b", "request"), room_for("z", "a")]),
    ("exclusive group: the partner goes though memory would fit",
     fleet(m("a", state=READY, last_used=5.0), m("b", state=READY, last_used=0.0), m("c", queue=(9.0,)),
           budget=10_000, groups={"g": {"a", "c"}}),
     Tick(), 10.0, [room_for("a")]),
    ("exclusive group: a busy partner is waited for",
     fleet(m("a", state=READY, inflight=1), m("c", queue=(9.0,)), budget=10_000, groups={"g": {"a", "c"}}),
     Tick(), 10.0, []),
    ("no second eviction while the first victim is still stopping",
     fleet(m("a", state=STOPPING), m("b", state=READY), m("c", queue=(9.0,), made_room=("a",))),
     Tick(), 10.0, []),
    ("the victim has stopped: the model room was made for loads, not the victim with an older queue",
     fleet(m("a", queue=(1.0,)), m("c", queue=(9.0,), made_room=("a",)), budget=600),
     Tick(), 10.0, [StartLoad("c", "request")]),
    ("the victim has stopped: the load starts",
     fleet(m("a"), m("b", state=READY), m("c", queue=(9.0,), made_room=("a",))),
     Tick(), 10.0, [StartLoad("c", "request")]),
    ("a pinned model that failed waits for its retry time",
     fleet(m("p", pinned=True, retry_at=12.0)), Tick(), 10.0, []),
    ("a pinned model is loaded again once its retry time comes",
     fleet(m("p", pinned=True, retry_at=12.0)), Tick(), 12.0, [StartLoad("p", "pinned")]),
    ("a load in progress is not started again",
     fleet(m("c", state=STARTING, loading=True, queue=(9.0,))), Tick(), 10.0, []),
    # -- grants ----------------------------------------------------------------------------------
    ("a ready model lets its queue in, up to its free slots",
     fleet(m("a", state=READY, limit=2, inflight=1, queue=(1.0, 2.0, 3.0))), Tick(), 10.0, [Grant("a", 1)]),
    ("admin loads are answered once the model is ready",
     fleet(m("a", state=READY, admin_waiting=True)), Tick(), 10.0, [Grant("a", 0, waiters=True)]),
    ("a yielding model lets nobody in who came after its turn ended",
     fleet(m("a", state=READY, limit=2, inflight=1, queue=(16.0,), loaded_at=8.0), m("c", queue=(9.0,)),
           budget=600, yielding=frozenset({"a"})),
     Tick(), 17.0, []),
    ("nobody waits for its room any more: a yielding model serves its queue again",
     fleet(m("a", state=READY, queue=(1.0,)), yielding=frozenset({"a"})),
     Tick(), 10.0, [Grant("a", 1), SetYielding(frozenset())]),
    # -- anti-thrash: room for one -----------------------------------------------------------------
    ("grant before admit: a model just loaded serves what waits before it can be evicted",
     fleet(m("a", state=READY, loaded_at=10.0, queue=(1.0, 2.0)), m("c", queue=(0.5,)), budget=600,
           max_wait=0, min_residency=0),
     Tick(), 10.0, [Grant("a", 2), SetYielding(frozenset({"a"}))]),
    ("the resident model serves its own queue first",
     fleet(m("a", state=READY, limit=1, inflight=1, queue=(9.5,), loaded_at=0.0), m("c", queue=(9.0,)),
           budget=600),
     Tick(), 10.0, []),
    ("bounded wait: after max_wait the resident model yields and drains",
     fleet(m("a", state=READY, limit=1, inflight=1, queue=(19.0,), loaded_at=8.0), m("c", queue=(9.0,)),
           budget=600),
     Tick(), 20.0, [SetYielding(frozenset({"a"}))]),
    ("a yielding model that has drained makes room, its queue left for later",
     fleet(m("a", state=READY, limit=1, queue=(19.0,), loaded_at=8.0), m("c", queue=(9.0,)), budget=600,
           yielding=frozenset({"a"})),
     Tick(), 20.0, [room_for("a"), SetYielding(frozenset())]),
    ("minimum residency: a model loaded 2 s ago keeps serving",
     fleet(m("a", state=READY, limit=1, inflight=1, queue=(19.0,), loaded_at=18.0), m("c", queue=(0.0,)),
           budget=600),
     Tick(), 20.0, []),
    ("max_wait counts from the resident model's load, not from when the newcomer came",
     fleet(m("a", state=READY, limit=1, inflight=1, queue=(19.0,), loaded_at=17.0), m("c", queue=(0.0,)),
           budget=600, min_residency=0),
     Tick(), 20.0, []),
    ("drain, then swap: a yielding model serves what arrived before its turn ended (at 14)",
     fleet(m("a", state=READY, limit=2, queue=(12.0, 15.0), loaded_at=8.0), m("c", queue=(9.0,)), budget=600,
           yielding=frozenset({"a"})),
     Tick(), 16.0, [Grant("a", 1)]),
    ("the drain lasts max_wait at most: then the yielding model goes, its queue left for later",
     fleet(m("a", state=READY, limit=2, queue=(12.0, 15.0), loaded_at=8.0), m("c", queue=(9.0,)), budget=600,
           yielding=frozenset({"a"})),
     Tick(), 19.0, [room_for("a"), SetYielding(frozenset())]),
    ("slow reloads: the turn lasts residency_per_reload x both loads (2 x 7 s), past min_residency",
     fleet(m("a", state=READY, limit=1, inflight=1, queue=(19.0,), loaded_at=8.0, load_seconds=4.0),
           m("c", queue=(9.0,), load_seconds=3.0), budget=600),
     Tick(), 21.0, []),
    ("slow reloads: the longer turn over, the resident yields",
     fleet(m("a", state=READY, limit=1, inflight=1, queue=(19.0,), loaded_at=8.0, load_seconds=4.0),
           m("c", queue=(9.0,), load_seconds=3.0), budget=600),
     Tick(), 22.0, [SetYielding(frozenset({"a"}))]),
    ("the grown residency stops at max_residency",
     fleet(m("a", state=READY, limit=1, inflight=1, loaded_at=8.0, load_seconds=40.0),
           m("c", queue=(9.0,), load_seconds=30.0), budget=600, max_residency=20.0),
     Tick(), 28.0, [SetYielding(frozenset({"a"}))]),
    ("residency_per_reload 0: min_residency alone, however slow the reloads",
     fleet(m("a", state=READY, limit=1, inflight=1, loaded_at=8.0, load_seconds=40.0),
           m("c", queue=(9.0,), load_seconds=30.0), budget=600, residency_per_reload=0),
     Tick(), 14.0, [SetYielding(frozenset({"a"}))]),
    ("idle with nothing queued: makes room at once, residency or not",
     fleet(m("a", state=READY, loaded_at=19.9), m("c", queue=(19.8,)), budget=600), Tick(), 20.0, [room_for("a")]),
    # -- TTL ---------------------------------------------------------------------------------------
    ("idle past its TTL: unloaded",
     fleet(m("a", state=READY, ttl=10.0, last_used=0.0)), Tick(), 10.0, [Evict("a", "idle for 10 s (ttl)", "ttl")]),
    ("idle, not yet past its TTL",
     fleet(m("a", state=READY, ttl=10.0, last_used=0.5)), Tick(), 10.0, []),
    ("TTL: never a pinned model",
     fleet(m("a", state=READY, ttl=10.0, pinned=True)), Tick(), 99.0, []),
    ("TTL: never with requests in flight",
     fleet(m("a", state=READY, ttl=10.0, inflight=1)), Tick(), 99.0, []),
    ("TTL: a remote URL has nothing to unload",
     fleet(m("a", state=READY, ttl=10.0, has_process=False, planned=False)), Tick(), 99.0, []),
    ("TTL 0: never",
     fleet(m("a", state=READY, ttl=0.0)), Tick(), 99.0, []),
    # -- requests ----------------------------------------------------------------------------------
    ("a request joins the queue",
     fleet(m("a", queue=(1.0,)), queue_depth=2), Queued("a"), 10.0, [Enqueue("a"), Reschedule()]),
    ("queue full: 429, retry after about one load",
     fleet(m("a", queue=(1.0, 2.0), load_seconds=12.4), queue_depth=2), Queued("a"), 10.0, [Reject("a", 2, 12)]),
    ("queue full on a ready model: retry after a second",
     fleet(m("a", state=READY, queue=(1.0,)), queue_depth=1), Queued("a"), 10.0, [Reject("a", 1, 1)]),
    ("queue full, never loaded: retry after 5 s",
     fleet(m("a", queue=(1.0,)), queue_depth=1), Queued("a"), 10.0, [Reject("a", 1, 5)]),
    ("a freed slot asks for a pass", fleet(m("a", state=READY)), Released("a"), 10.0, [Reschedule()]),
    ("the last waiter left: the load is cancelled",
     fleet(m("a", state=STARTING, loading=True)), Cancelled("a"), 10.0, [CancelLoad("a"), Reschedule()]),
    ("the last waiter left before the load began: it does not begin",
     fleet(m("a", loading=True)), Cancelled("a"), 10.0, [CancelLoad("a"), Reschedule()]),
    ("others still wait: the load goes on",
     fleet(m("a", state=STARTING, loading=True, queue=(1.0,))), Cancelled("a"), 10.0, [Reschedule()]),
    ("an admin load still waits: the load goes on",
     fleet(m("a", state=STARTING, loading=True, admin_waiting=True)), Cancelled("a"), 10.0, [Reschedule()]),
    ("a pinned model's load is never cancelled",
     fleet(m("a", state=STARTING, loading=True, pinned=True)), Cancelled("a"), 10.0, [Reschedule()]),
    # -- loads and runners -------------------------------------------------------------------------
    ("a load that made room counts a swap",
     fleet(m("c", state=READY)), LoadFinished("c", "request", ("a", "b")), 10.0,
     [Count("loaded", "c", "request"), Count("swap", "c"), Note("c", "loaded for a request; evicted a, b"),
      Reschedule()]),
    ("a pinned load",
     fleet(m("p", state=READY, pinned=True)), LoadFinished("p", "pinned", ()), 10.0,
     [Count("loaded", "p", "pinned"), Note("p", "loaded (pinned)"), Reschedule()]),
    ("a failed load fails its waiters",
     fleet(m("c", queue=(1.0,))), LoadFailed("c", ERROR), 10.0,
     [Note("c", f"load failed: {ERROR.message}"), FailWaiters("c", ERROR), Count("load_failed", "c", "error"),
      Reschedule()]),
    ("a load that timed out; a pinned model retries with a growing backoff",
     fleet(m("c", pinned=True, failures=1)), LoadFailed("c", TIMEOUT), 10.0,
     [Note("c", f"load failed: {TIMEOUT.message}"), FailWaiters("c", TIMEOUT), Count("load_failed", "c", "timeout"),
      RetryAt("c", 12.0, 2), Reschedule()]),
    ("a cancelled load fails nobody who came later",
     fleet(m("c", queue=(9.0,))), LoadCancelled("c"), 10.0,
     [Note("c", "load cancelled"), Count("load_failed", "c", "cancelled"), Reschedule()]),
    ("a runner that exited on its own is counted and restarts after a breath",
     fleet(m("p", pinned=True)), RunnerStopped("p", "exited unexpectedly with code 9"), 10.0,
     [Note("p", "exited unexpectedly with code 9"), RetryAt("p", 11.0, 0), Count("restart", "p"), Reschedule()]),
    ("a runner stopped as asked", fleet(m("a")), RunnerStopped("a"), 10.0, [Reschedule()]),
    # -- admin -------------------------------------------------------------------------------------
    ("admin load asks for a pass", fleet(m("a", admin_waiting=True)), AdminLoad("a"), 10.0, [Reschedule()]),
    ("admin unload drains and stops",
     fleet(m("a", state=READY)), AdminUnload("a"), 10.0, [Evict("a", "unloaded by admin", "admin", drain=UNLOAD_DRAIN)]),
    ("admin unload of a pinned model is refused",
     fleet(m("a", state=READY, pinned=True)), AdminUnload("a"), 10.0, [RefuseUnload("a")]),
    ("admin unload of a stopped model does nothing", fleet(m("a")), AdminUnload("a"), 10.0, []),
]


@pytest.mark.parametrize("state, event, now, expected", [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_decide(state, event, now, expected):
    assert decide(state, event, now) == expected


def test_counted_reasons_are_the_one_list():
    for _, state, event, now, _ in CASES:
        for action in decide(state, event, now):
            if isinstance(action, Count):
                assert (COUNTER_REASONS[action.event] or ("",)).count(action.reason) == 1, action
            elif isinstance(action, Evict):
                assert action.kind in COUNTER_REASONS["evicted"], action
            elif isinstance(action, StartLoad):
                assert action.cause in COUNTER_REASONS["loaded"], action


# (id, state, now, when the next timed pass is due)
NEXT_PASS = [
    ("nothing timed: only events matter", fleet(m("a", state=READY, last_used=1.0)), 10.0, None),
    ("an idle model's ttl runs out", fleet(m("a", state=READY, ttl=30.0, last_used=1.0)), 10.0, 31.0),
    ("a pinned model never times out, its retry is due",
     fleet(m("p", pinned=True, ttl=30.0, retry_at=12.0)), 10.0, 12.0),
    ("a newcomer waits: the resident's turn ends (residency 8+5, and the newcomer's max_wait 9+5)",
     fleet(m("a", state=READY, loaded_at=8.0, inflight=1), m("c", queue=(9.0,)), budget=600), 10.0, 14.0),
    ("then its drain ends, max_wait later",
     fleet(m("a", state=READY, loaded_at=8.0, inflight=1), m("c", queue=(9.0,)), budget=600), 14.0, 19.0),
    ("slow reloads: the longer turn's end (8 + 2 x (4 + 3))",
     fleet(m("a", state=READY, loaded_at=8.0, inflight=1, load_seconds=4.0), m("c", queue=(9.0,), load_seconds=3.0),
           budget=600), 10.0, 22.0),
    ("clocks already run out are not waited for",
     fleet(m("a", state=READY, loaded_at=1.0, inflight=1), m("c", queue=(2.0,)), budget=600), 13.0, None),
    ("a load under way: no anti-thrash clock",
     fleet(m("a", state=READY, loaded_at=8.0), m("c", queue=(9.0,), loading=True)), 10.0, None),
]


@pytest.mark.parametrize("state, now, expected", [pytest.param(*row[1:], id=row[0]) for row in NEXT_PASS])
def test_next_pass(state, now, expected):
    assert next_pass(state, now) == expected


def test_unload_gives_in_flight_requests_the_readmes_30_seconds():
    (evict,) = decide(fleet(m("a", state=READY)), AdminUnload("a"), 10.0)
    assert evict.drain == UNLOAD_DRAIN == 30
