"""Pure parts of bench, eval, lock and cost, tested by tables."""

from __future__ import annotations

import math
import random
import typing

import pytest

from homestack.artifacts import lock
from homestack.bench import cold, compare, stats
from homestack.cost.model import SelfHosted, Usage, break_even_months, self_hosted_monthly
from homestack.errors import HomestackError
from homestack.evals import checks, suite


@pytest.mark.parametrize("values, q, expected", [
    ([], 50, None), ([3.0], 99, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([1.0, 2.0, 3.0], 100, 3.0),
])
def test_percentile(values, q, expected):
    assert stats.percentile(values, q) == expected


@pytest.mark.parametrize("text, expected", [
    ("ttft=2s,tpot=100ms", {"ttft": 2.0, "tpot": 0.1}), ("e2e=1.5", {"e2e": 1.5}), (None, {}),
    ("itl=50ms", {"itl": 0.05}),
])
def test_parse_slo(text, expected):
    assert stats.parse_slo(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["ttft<2s", "speed=1s", "ttft=fast"])
def test_parse_slo_rejects_with_the_fix(text):
    with pytest.raises(HomestackError, match="ttft=2s,tpot=100ms"):
        stats.parse_slo(text)


def _sample(ttft, tpot=0.01, error=None, itl=(0.01,)):
    return {"ttft": ttft, "tpot": tpot, "itl": list(itl), "e2e": (ttft or 0) + 0.1, "output_tokens": 10, "error": error}


def test_summary_counts_errors_by_kind_and_goodput():
    samples = [_sample(0.5), _sample(3.0), _sample(0.2, itl=(0.01, 0.3)), _sample(None, None, "http_429", ())]
    summary = stats.summarize(samples, 2.0, {"ttft": 2.0, "itl": 0.1})
    assert summary["errors"] == {"http_429": 1}
    assert summary["goodput"] == 0.25  # only the first meets both SLOs; the error never does
    assert summary["ok"] == 3 and summary["output_tokens_per_s"] == 15.0
    assert summary["ttft"]["n"] == 3


@pytest.mark.parametrize("shift, higher, expected", [
    (0.0, False, "within noise"), (0.5, False, "worse"), (-0.5, False, "better"), (0.5, True, "better"),
])
def test_verdict_from_the_spread(shift, higher, expected):
    rng = random.Random(1)
    base = [1 + rng.gauss(0, 0.1) for _ in range(40)]
    new = [v + shift + rng.gauss(0, 0.1) for v in base]
    assert compare.verdict(base, new, higher) == expected


def test_small_noisy_difference_is_within_noise():
    rng = random.Random(2)
    base = [1 + rng.gauss(0, 0.5) for _ in range(8)]
    assert compare.verdict(base, [v * 1.05 for v in base], False) == "within noise"


def test_cold_figures_split_the_load():
    times = {"starting": 10.1, "runner_ready": 10.6, "gateway_ready": 10.65}
    figures = cold.cold_figures(sent=10.0, first_token=10.75, warm_ttft=0.05, times=times)
    assert figures["client_load_s"] == pytest.approx(0.70)
    assert figures["runner_ready_s"] == pytest.approx(0.5)
    assert figures["gateway_overhead_s"] == pytest.approx(0.2)
    assert figures["before_spawn_s"] == pytest.approx(0.1)
    assert figures["ready_to_gateway_s"] == pytest.approx(0.05)
    assert cold.cold_figures(10.0, None, 0.05, {})["client_load_s"] is None


def test_published_cost_example_breaks_even_after_about_3_1_months():
    # Hardware EUR 5,800; self-hosted EUR 256/month against cloud EUR 2,150/month at 2M tokens/day.
    months = break_even_months(5800, 256, 2150)
    assert round(months, 1) == 3.1
    assert break_even_months(5800, 300, 200) == math.inf


def test_running_cost_from_throughput_power_and_upkeep():
    hw = SelfHosted(capex=1000, throughput=100.0, watts=200, price_kwh=0.5, upkeep_hours=2, hourly_rate=10)
    # 2M tokens/day, a quarter output: 500k output tokens at 100/s = 5000 s busy a day
    cost = self_hosted_monthly(hw, Usage(2_000_000, 0.25))
    assert cost.busy_hours_per_day == pytest.approx(5000 / 3600)
    assert cost.parts["upkeep"] == 20
    assert cost.parts["electricity"] == pytest.approx(200 * 5000 / 3600 / 1000 * 0.5 * 365.25 / 12)


def _check(**data):
    return suite.Item.model_validate({"prompt": "x", "check": data}).check


@pytest.mark.parametrize("check, text, calls, expected", [
    ({"type": "contains", "value": "4"}, "2+2 is 4.", [], True),
    ({"type": "contains", "value": "Paris", "ignore_case": True}, "paris", [], True),
    ({"type": "exact", "value": "hello"}, " hello\n", [], True),
    ({"type": "exact", "value": "hello"}, "Hello", [], False),
    ({"type": "regex", "value": r"^\d+$"}, "42", [], True),
    ({"type": "json", "value": {"name": "Ada"}}, '```json\n{"name": "Ada", "age": 3}\n```', [], True),
    ({"type": "json"}, "{not json", [], False),
    ({"type": "json_schema", "schema": {"type": "object", "required": ["a"]}}, '{"a": 1}', [], True),
    ({"type": "json_schema", "schema": {"type": "object", "required": ["a"]}}, '{"b": 1}', [], False),
    ({"type": "numeric", "value": 1200}, "The answer is 1,200.", [], True),
    ({"type": "numeric", "value": 3.14, "tolerance": 0.01}, "about 3.141", [], True),
    ({"type": "numeric", "value": 7}, "seven", [], False),
    ({"type": "tool_call", "name": "weather", "arguments": {"city": "Oslo"}}, "",
     [{"function": {"name": "weather", "arguments": '{"city": "Oslo", "unit": "C"}'}}], True),
    ({"type": "tool_call", "name": "weather"}, "", [{"function": {"name": "search", "arguments": "{}"}}], False),
])
def test_checks(check, text, calls, expected):
    assert checks.passes(_check(**check), text, calls)[0] is expected


def test_every_check_type_has_a_function():
    union = typing.get_args(suite.Check)[0]
    assert set(checks.CHECKS) == set(typing.get_args(union))


def _lock(version="1 (abc)", sha="a" * 64, fleet="f" * 64, models=("m",)):
    files = [{"path": "/models/m.gguf", "size": 10, "sha256": sha}]
    return {"fleet": {"file": "fleet.yaml", "sha256": fleet}, "pulled": {},
            "models": {m: {"runner": "llama.cpp", "runner_version": version, "files": files} for m in models}}


@pytest.mark.parametrize("now, expected", [
    (_lock(), []),
    (_lock(version="2 (def)"), ["model m: runner version changed (1 (abc) -> 2 (def))"]),
    (_lock(sha="b" * 64), ["model m: file /models/m.gguf changed (sha256 aaaaaaaaaaaa… is now bbbbbbbbbbbb…)"]),
    (_lock(fleet="e" * 64), ["fleet file fleet.yaml changed since it was locked"]),
    (_lock(models=("m", "n")), ["model n: unlocked (not in the lock; run `homestack lock`)"]),
    (_lock(models=()), ["model m: locked but no longer in the fleet"]),
])
def test_lock_drifts_name_what_changed(now, expected):
    assert lock.drifts(_lock(), now) == expected


def test_suite_errors_name_file_line_and_key(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "x", "check": {"type": "contains", "value": "4"}}\n'
                    '{"prompt": "x", "check": {"type": "sounds-like"}}\n{oops\n'
                    '{"messages": [], "prompt": "x", "check": {"type": "json"}}\n')
    with pytest.raises(HomestackError) as err:
        suite.load(str(path))
    lines = err.value.message.splitlines()
    assert lines[0].startswith(f"{path}:2: check:") and f"{path}:3: line: not JSON" in lines[1]
    assert "either 'messages'" in lines[2]


def test_shipped_suites_load():
    for name in ("arithmetic", "instructions"):
        stem, items = suite.load(name)
        assert stem == name and len(items) >= 10 and len({i.id for i in items}) == len(items)
