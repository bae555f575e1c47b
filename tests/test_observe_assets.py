"""The shipped Grafana dashboard and Prometheus alert rules: promtool on the rules and their unit
tests, and every metric they use checked against a real scrape of a running gateway."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import TESTS, ensure_debian, wait_until
from prometheus_client import CollectorRegistry, generate_latest

from homestack.observe import metrics
from homestack.observe.assets import ASSETS

DASHBOARD = ASSETS / "grafana" / "homestack-dashboard.json"
RULES = ASSETS / "prometheus" / "alerts.yml"
RULE_TESTS = ASSETS / "prometheus" / "alerts_test.yml"
DATASOURCE = {"type": "prometheus", "uid": "homestack-prometheus"}
KEY = "scrape-key"

# Counters one streamed chat leaves at 0 (exported from the start so that rate() sees the first
# event); that each one counts is checked where its event happens: evictions, loads and restarts in
# test_lifecycle.py, swaps in test_scheduler.py, load failures in test_lifecycle.py.
NO_SAMPLES_YET = {
    "homestack_evictions_total", "homestack_swaps_total", "homestack_model_load_failures_total",
    "homestack_runner_restarts_total",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_debian("promtool", "prometheus")


def _promtool(promtool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], check=False, input=stdin, capture_output=True, text=True, timeout=60)


def _panels(dashboard: dict) -> list[dict]:
    """Every panel that queries, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def _dashboard_exprs() -> dict[str, str]:
    """PromQL by "panel title/refId", with Grafana's variables replaced by what Prometheus would get."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        f"{panel['title']}/{target['refId']}":
            target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
        for panel in _panels(dashboard) for target in panel["targets"]
    }


def _rule_exprs() -> dict[str, str]:
    rules = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def _metric_names(expr: str) -> set[str]:
    """The homestack_* and gen_ai_* metric names in a PromQL expression (label names are left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals, e.g. label_replace's arguments
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)
    return {name for name in names if name.startswith(("homestack_", "gen_ai_"))}


def _gpu_exposition() -> str:
    """The GPU families metrics.py exports on a machine with one NVIDIA GPU (this one may have none)."""

    class OneGpu:
        def stats(self) -> list[dict[str, object]]:
            return [{"id": "gpu0", "name": "Test GPU", "memory_used_bytes": 1e9, "memory_total_bytes": 8e9,
                     "utilization_ratio": 0.5, "temperature_celsius": 60.0, "power_watts": 120.0}]

    class Collector:
        def collect(self):
            return metrics._gpu_metrics(OneGpu())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry).decode()


def _declared_and_sampled(exposition: str) -> tuple[set[str], set[str]]:
    """Names declared by # TYPE lines (with a histogram's series names) and names that have samples."""
    declared, sampled = set(), set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = ("", "_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            declared |= {name + suffix for suffix in suffixes}
        elif line and not line.startswith("#"):
            sampled.add(re.match(r"[^{ ]+", line).group(0))
    return declared, sampled


@pytest.fixture
def scrape(gateway_factory) -> str:
    """/metrics of a gateway after one streamed chat: a command runner (the fake upstream as a child
    process, so its memory is measured) with a declared memory estimate, behind an API key."""
    fleet = f"""
api_keys: [{KEY}]
models:
  echo:
    runner: command
    command: ["{sys.executable}", "{TESTS / 'fake_openai.py'}", "--port", "{{port}}"]
    memory: 64MiB
"""
    gateway = gateway_factory(fleet)
    body = {"model": "echo", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}
    with gateway.http(headers={"Authorization": f"Bearer {KEY}"}) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            assert "[DONE]" in "".join(resp.iter_text())

        def recorded() -> str | None:
            # The request log's writer thread records the request just after the response ends,
            # and the scheduler samples the runner's memory every 2 s.
            text = client.get("/metrics").text
            done = ("gen_ai_server_time_to_first_token_seconds_count{", "homestack_model_memory_measured_bytes{")
            return text if all(series in text for series in done) else None

        return wait_until(recorded, timeout=10, message="the streamed chat and measured memory in /metrics")


def test_alert_rules_pass_promtool_check_and_unit_tests(promtool):
    check = _promtool(promtool, "check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(_rule_exprs())} rules found" in check.stdout
    tests = _promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_every_alert_has_a_test_that_fires_it_and_metadata():
    rules = yaml.safe_load(RULES.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) == 8
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in alerts}
    assert silent, "no case checks that an alert stays silent"


def test_dashboard_is_pinned_to_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "homestack-fleet" and dashboard["schemaVersion"] >= 39
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "model" and variable["datasource"] == DATASOURCE
    assert variable["query"]["query"] == "label_values(homestack_model_state, model)"
    panels = _panels(dashboard)
    ids = [row["id"] for row in dashboard["panels"] if row["type"] == "row"] + [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]

    provisioned = yaml.safe_load((ASSETS / "grafana/provisioning/datasources/homestack.yaml").read_text())
    (source,) = provisioned["datasources"]
    assert (source["type"], source["uid"], source["url"]) == ("prometheus", DATASOURCE["uid"], "http://127.0.0.1:9090")
    provider = yaml.safe_load((ASSETS / "grafana/provisioning/dashboards/homestack.yaml").read_text())
    assert provider["providers"][0]["type"] == "file" and provider["providers"][0]["options"]["path"]


def test_dashboard_queries_are_valid_promql(promtool, tmp_path: Path):
    # promtool parses every expression of a rules file, so each query becomes a recording rule.
    exprs = _dashboard_exprs()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(exprs.values())
    ]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = _promtool(promtool, "check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_metric_used_is_exported_by_the_gateway(scrape):
    declared, sampled = _declared_and_sampled(scrape)
    gpu_declared, _ = _declared_and_sampled(_gpu_exposition())
    used = {
        where: names
        for where, expr in {**_dashboard_exprs(), **_rule_exprs()}.items()
        if (names := _metric_names(expr))
    }
    assert "homestack_model_state" in set().union(*used.values())  # the name extraction works at all
    for where, names in used.items():
        for name in names:
            exported = (
                name in sampled
                or (name in NO_SAMPLES_YET and name in declared)
                or name in gpu_declared
            )
            assert exported, f"{where}: {name} is not in the gateway's /metrics"
    assert NO_SAMPLES_YET <= declared


def test_the_exposition_passes_promtool_check_metrics(promtool, scrape):
    # A machine without a GPU has no GPU families; lint the ones metrics.py would add.
    exposition = scrape if "# TYPE homestack_gpu_" in scrape else scrape + _gpu_exposition()
    result = _promtool(promtool, "check", "metrics", stdin=exposition)
    # Exit 1 is a parse error, 3 a lint finding (e.g. a ':' in a name): both fail, as Prometheus users see them.
    assert result.returncode == 0, result.stdout + result.stderr
