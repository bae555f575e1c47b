"""A promotion's decisions, pure, by tables: stages, weights, the eval gate, the canary verdict, what
happens next, and how a gateway restarted during a promotion ends it."""

from __future__ import annotations

import pytest

from homestack.config.promotion import PromotionSpec
from homestack.promotion import decide
from homestack.promotion.decide import Stage, Window

SPEC = PromotionSpec()  # max_error_rate 0.05, max_ttft_ratio 2, ttft_slack 0.25, min_requests 5


def _window(requests: int, errors: int = 0, ttft: float | None = None) -> Window:
    w = Window()
    for i in range(requests):
        w.add(i >= errors, ttft)
    return w


@pytest.mark.parametrize("targets, expected", [
    ({"a": 1}, "a"),
    ({"a": 90, "b": 10}, "a"),
    ({"a": 10, "b": 90}, "b"),
    ({"a": 50, "b": 50}, "a"),  # the first of equals
])
def test_current_target_is_the_heaviest(targets, expected):
    assert decide.current_target(targets) == expected


@pytest.mark.parametrize("canary, step, watch, expected", [
    (None, None, None, [Stage(10, 60, "canary"), Stage(50, 60, "canary"), Stage(100, 300, "watch")]),
    ([25], 2, 3, [Stage(25, 2, "canary"), Stage(100, 3, "watch")]),
    ([], None, 0, [Stage(100, 0, "watch")]),
])
def test_stages_are_the_canary_steps_then_the_watch_window(canary, step, watch, expected):
    assert decide.stages(SPEC, canary, step, watch) == expected


@pytest.mark.parametrize("targets, share, expected", [
    ({"a": 1}, 10, {"a": 90, "c": 10}),
    ({"a": 1}, 100, {"a": 0, "c": 100}),
    ({"a": 90, "b": 10}, 50, {"a": 45, "b": 5, "c": 50}),
    ({"a": 90, "c": 10}, 50, {"a": 50, "c": 50}),  # the candidate was a minor target already
    ({"a": 90, "b": 10}, 100, {"a": 0, "b": 0, "c": 100}),
])
def test_weights_give_the_candidate_its_share_and_split_the_rest_as_before(targets, share, expected):
    assert decide.weights(targets, "a", "c", share) == pytest.approx(expected)


@pytest.mark.parametrize("targets, expected", [
    ({"a": 1}, {"c": 1}),
    ({"a": 90, "b": 10}, {"c": 90, "b": 10}),
    ({"a": 90, "c": 10}, {"c": 100}),
])
def test_promoted_targets_put_the_candidate_in_the_current_targets_place(targets, expected):
    assert decide.promoted_targets(targets, "a", "c") == expected


@pytest.mark.parametrize("candidate, current, fails", [
    (0.8, 0.8, None),
    (0.75, 0.8, None),  # within the tolerance
    (0.6, 0.8, "more than 0.10 below"),
    (0.4, 0.3, "below the threshold"),
    (0.5, 1.0, "more than 0.10 below"),
])
def test_eval_gate(candidate, current, fails):
    why = decide.gate(candidate, current, threshold=0.5, tolerance=0.1)
    assert (why is None) if fails is None else (fails in why)


@pytest.mark.parametrize("candidate, current, expected", [
    (_window(0), _window(0), None),
    (_window(20, ttft=0.1), _window(20, ttft=0.1), None),
    (_window(20, errors=1, ttft=0.1), _window(20, ttft=0.1), None),  # 5 %: at the limit, not beyond
    (_window(20, errors=2, ttft=0.1), _window(20, ttft=0.1), "error_rate"),
    (_window(20, errors=2), _window(20, errors=2), None),  # both fail alike: not the candidate's fault
    (_window(3, errors=3), _window(0), "error_rate"),  # failing at once: no minimum of requests
    (_window(20, ttft=0.8), _window(20, ttft=0.2), "ttft"),  # 0.8 > 2 x 0.2 + 0.25
    (_window(20, ttft=0.6), _window(20, ttft=0.2), None),
    (_window(4, ttft=5.0), _window(20, ttft=0.2), None),  # too few first tokens to judge
    (_window(20, ttft=5.0), _window(0), None),  # nothing to compare with
])
def test_verdict_compares_the_candidate_with_the_current_target(candidate, current, expected):
    found = decide.verdict(SPEC, candidate, current)
    assert (found[0] if found else None) == expected


def test_p95_ttft():
    w = Window()
    for t in range(1, 101):
        w.add(True, t / 100)
    assert w.p95_ttft == 0.95 and w.to_dict()["requests"] == 100


@pytest.mark.parametrize("elapsed, rollback, expected", [
    (0.5, None, "hold"),
    (2.0, None, "advance"),
    (0.5, ("error_rate", "x"), "rollback"),
    (9.0, ("ttft", "x"), "rollback"),  # a rollback wins over the end of the stage
])
def test_next_step(elapsed, rollback, expected):
    assert decide.next_step(Stage(10, 2, "canary"), elapsed, rollback) == expected


def _started(pid: str, route: str = "chat") -> dict:
    return {"event": "started", "promotion": pid, "route": route, "from": "a", "to": "c"}


@pytest.mark.parametrize("events, unfinished", [
    ([], []),
    ([_started("1")], ["1"]),
    ([_started("1"), {"event": "step", "promotion": "1"}], ["1"]),
    ([_started("1"), {"event": "promoted", "promotion": "1"}], []),
    ([_started("1"), {"event": "rolled_back", "promotion": "1"}, _started("2")], ["2"]),
    ([_started("1"), {"event": "gate_failed", "promotion": "1"}], []),
])
def test_unfinished_promotions(events, unfinished):
    assert [e["promotion"] for e in decide.unfinished(events)] == unfinished


@pytest.mark.parametrize("targets, outcome", [
    ({"a": 1}, "aborted"),  # the file still names the old target: that is what is served
    ({"a": 90, "b": 10}, "aborted"),
    ({"c": 1}, "promoted"),  # written just before the gateway stopped
])
def test_a_restart_during_a_promotion_ends_it_as_the_fleet_file_says(targets, outcome):
    assert decide.resumed(_started("1"), targets)[0] == outcome


@pytest.mark.parametrize("events, expected", [
    ([], None),
    ([{"event": "promoted", "route": "chat", "promotion": "1"}], "1"),
    ([{"event": "promoted", "route": "chat", "promotion": "1"},
      {"event": "rolled_back", "route": "chat", "promotion": "1", "undone": True}], None),
    ([{"event": "promoted", "route": "chat", "promotion": "1"},
      {"event": "rolled_back", "route": "chat", "promotion": "2"}], "1"),  # a later canary's rollback
    ([{"event": "promoted", "route": "other", "promotion": "1"}], None),
])
def test_last_promotion_to_undo(events, expected):
    found = decide.last_promotion(events, "chat")
    assert (found["promotion"] if found else None) == expected


def test_canary_shares_must_rise_within_0_and_100():
    with pytest.raises(ValueError):
        PromotionSpec(canary=[50, 10])
    with pytest.raises(ValueError):
        PromotionSpec(canary=[100])
    assert PromotionSpec(canary=[5, 25, 75]).canary == [5, 25, 75]
