"""Blue-green promotion end to end, with command runners (tests/fake_openai.py as real child processes)
while clients keep calling the route: a smoke test that fails (nothing switches), a candidate that
starts failing mid-canary (rolled back by itself, with its reason), a promotion that passes (the
fleet file names the candidate, comments kept, a backup beside it), `homestack rollback`, and a
gateway killed during a promotion (it comes back on the old target)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from helpers import TESTS, GatewayProcess, metric, wait_until


def _model(name: str, *args: str) -> str:
    command = [sys.executable, str(TESTS / "fake_openai.py"), "--port", "{port}", "--tag", name, *args]
    return f"  {name}: {{runner: command, command: {json.dumps(command)}, ttl: 0}}"


def _fleet(suite: Path) -> str:
    return "\n".join([
        "# the fleet of the promotion tests (this comment must survive a promotion)",
        "models:",
        _model("old", "--reply", "hello from old"),
        _model("good", "--reply", "hello from good"),
        _model("wrong", "--reply", "goodbye"),  # fails the smoke test
        _model("breaking", "--reply", "hello from breaking", "--fail-after", "6"),  # 500 once in the canary
        "routes:",
        "  chat:",
        "    targets: {old: 1}  # the stable name clients use",
        "    sticky: none",
        "    fallbacks: [old]",
        "    promotion:",
        "      smoke:",
        "        - {messages: [{role: user, content: hi}], check: {type: regex, value: '^hello'}}",
        f"      eval: {{suite: {suite}, threshold: 0.5, tolerance: 0.1}}",
        "      canary: [25]",
        "      step_seconds: 2",
        "      watch_seconds: 2",
        "",
    ])


class _Clients:
    """Threads calling the route back to back, counting outcomes and who served."""

    def __init__(self, gw: GatewayProcess, n: int = 3):
        self.gw, self.stop = gw, threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self) -> None:
        body = {"model": "chat", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=self.gw.url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    resp = client.post("/v1/chat/completions", json=body)
                    ok, served = resp.status_code == 200, resp.headers.get("x-homestack-model", "")
                except httpx.HTTPError:
                    ok, served = False, ""
                self.outcomes["ok" if ok else "failed"] += 1
                self.served[served] += 1
                time.sleep(0.02)

    def __enter__(self) -> "_Clients":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    home = tmp_path_factory.mktemp("promotion")
    suite = home / "greeting.jsonl"
    suite.write_text("\n".join(json.dumps({"id": f"greet-{i}", "messages": [{"role": "user", "content": "hi"}],
                                           "max_tokens": 4, "check": {"type": "contains", "value": "hello"}})
                               for i in range(2)) + "\n")
    g = GatewayProcess(home / "gw", _fleet(suite))
    yield g
    g.stop()


def _events(gw: GatewayProcess, promotion: str | None = None) -> list[dict]:
    events = httpx.get(gw.url + "/admin/history?limit=0", timeout=30).json()["events"]
    return [e for e in events if promotion is None or e["promotion"] == promotion]


def _last_promotion(gw: GatewayProcess) -> list[dict]:
    started = [e for e in _events(gw) if e["event"] == "started"][-1]
    return _events(gw, started["promotion"])


def _timings(events: list[dict]) -> str:
    return ", ".join(f"{e['event']}{'/' + e.get('gate', e.get('kind', '')) if e['event'] in ('gate', 'stage_ok') else ''}"
                     f" {e['seconds']:.1f}s" for e in events if "seconds" in e and e["event"] != "step")


def test_a_failing_smoke_test_switches_nothing(gw):
    fleet_file = gw.home / "fleet.yaml"
    before = fleet_file.read_text()
    with _Clients(gw) as clients:
        result = gw.cli("promote", "chat", "--to", "wrong", check=False)
    assert result.returncode == 1
    assert "did not pass its gates: smoke test: 1 of 1 checks failed" in result.stderr
    events = _last_promotion(gw)
    assert [e["event"] for e in events] == ["started", "ready", "gate", "gate_failed"]
    assert events[2]["gate"] == "smoke" and events[2]["failed"][0]["answer"].startswith("goodbye")
    assert fleet_file.read_text() == before
    assert clients.outcomes["failed"] == 0 and set(clients.served) == {"old"}  # no traffic ever moved
    print(f"\nsmoke fails: {sum(clients.outcomes.values())} requests meanwhile, 0 failed, all on old; "
          f"{_timings(events)}")


def test_a_candidate_failing_in_the_canary_is_rolled_back_by_itself(gw):
    fleet_file = gw.home / "fleet.yaml"
    before = fleet_file.read_text()
    with _Clients(gw) as clients:
        started = time.monotonic()
        result = gw.cli("promote", "chat", "--to", "breaking", "--step", "30s", check=False)
        elapsed = time.monotonic() - started
    assert result.returncode == 1 and "was rolled back" in result.stderr, result.stderr
    events = _last_promotion(gw)
    kinds = [e["event"] for e in events]
    assert kinds[:5] == ["started", "ready", "gate", "gate", "step"] and kinds[-1] == "rolled_back"
    assert events[3]["scores"] == {"breaking": 1.0, "old": 1.0}  # both measured in this promotion
    rolled = events[-1]
    assert rolled["reason"] == "error_rate" and rolled["phase"] == "canary" and rolled["share"] == 25
    assert rolled["figures"]["breaking"]["errors"] >= 1 and "candidate error rate" in rolled["detail"]
    assert rolled["who"] is None and rolled["from"] == "old" and rolled["to"] == "breaking"
    assert fleet_file.read_text() == before
    # Every failed answer of the candidate went to the fallback: no client saw a failure.
    assert clients.outcomes["failed"] == 0 and clients.served["breaking"] >= 1
    served_after = Counter(clients.served)
    metrics = httpx.get(gw.url + "/metrics").text
    assert metric(metrics, "homestack_promotion_rollbacks_total", route="chat", reason="error_rate") == 1
    assert metric(metrics, "homestack_route_weight", route="chat", target="old") == 1
    assert metric(metrics, "homestack_promotion_state", route="chat", state="idle") == 1
    with _Clients(gw, 1) as after:
        time.sleep(0.5)
    assert set(after.served) == {"old"}, after.served  # weights back at once
    print(f"\ncanary failure: {sum(served_after.values())} requests, 0 failed ({dict(served_after)}); rolled back "
          f"after {elapsed:.1f}s of a 30s step; {_timings(events)}")


def test_a_promotion_that_passes_writes_the_fleet_file_and_rollback_undoes_it(gw):
    fleet_file = gw.home / "fleet.yaml"
    before = fleet_file.read_text()
    with _Clients(gw) as clients:
        started = time.monotonic()
        result = gw.cli("promote", "chat", "--to", "good", "--canary", "20,60", "--step", "1s", "--watch", "1.5s")
        elapsed = time.monotonic() - started
        served_during = Counter(clients.served)
    events = _last_promotion(gw)
    assert [e["event"] for e in events] == ["started", "ready", "gate", "gate", "step", "stage_ok", "step",
                                            "stage_ok", "step", "stage_ok", "promoted"]
    assert [e["share"] for e in events if e["event"] == "step"] == [20, 60, 100]
    assert events[-1]["new_targets"] == {"good": 1}
    assert "homestack promote" not in result.stdout and "promoted" in result.stdout
    text = fleet_file.read_text()
    assert "targets:\n      good: 1" in text or "targets: {good: 1}" in text, text
    assert "# the fleet of the promotion tests" in text and "# the stable name clients use" in text
    assert (gw.home / "fleet.yaml.bak").read_text() == before
    assert clients.outcomes["failed"] == 0 and served_during["good"] >= 1
    wait_until(lambda: gw.running(all=True)["old"]["state"] == "stopped", 30, message="old drained and stopped")
    with _Clients(gw, 1) as after:
        time.sleep(0.5)
    assert set(after.served) == {"good"}
    history = gw.cli("history", "--route", "chat").stdout
    assert "promoted" in history and "good is the route's target" in history

    rollback = gw.cli("rollback", "chat")
    assert "rolled_back" in rollback.stdout and "old is the route's target again" in rollback.stdout
    assert "old: 1" in fleet_file.read_text() or "{old: 1}" in fleet_file.read_text()
    with _Clients(gw, 1) as back:
        time.sleep(0.5)
    assert set(back.served) == {"old"}
    print(f"\npromotion passes: {sum(served_during.values())} requests, 0 failed ({dict(served_during)}); "
          f"{elapsed:.1f}s in all; {_timings(events)}")


def test_promote_refuses_bad_requests_naming_what_is_wrong(gw):
    def promote(route: str, body: dict) -> httpx.Response:
        return httpx.post(f"{gw.url}/admin/routes/{route}/promote", json=body, timeout=30)

    cases = [
        ("chat", {}, 400, "give the model to promote to"),
        ("chat", {"to": "nope"}, 404, "model 'nope' does not exist"),
        ("chat", {"to": "old"}, 400, "other than 'old'"),
        ("chat", {"to": "good", "canary": [50, 10]}, 400, "rising"),
        ("chat", {"to": "good", "step": "soon"}, 400, "duration like 30s"),
        ("nope", {"to": "good"}, 404, "no route 'nope'"),
    ]
    for route, body, status, message in cases:
        resp = promote(route, body)
        assert resp.status_code == status and message in resp.json()["error"]["message"], (body, resp.text)
    assert httpx.post(gw.url + "/admin/routes/nope/rollback", timeout=30).status_code == 404
    assert [e for e in _events(gw) if e["event"] == "started" and e["to"] == "nope"] == []


def test_a_gateway_killed_during_a_promotion_comes_back_on_the_old_target(gw, tmp_path):
    started = httpx.post(gw.url + "/admin/routes/chat/promote", json={"to": "good", "step": "60s"}, timeout=30)
    assert started.status_code == 202
    wait_until(lambda: any(e["event"] == "step" for e in _events(gw, started.json()["promotion"])), 30,
               message="the canary step")
    text = (gw.home / "fleet.yaml").read_text()
    gw.stop(signal.SIGKILL)
    again = GatewayProcess(gw.home, text)  # the same home: its state dir and history
    try:
        events = _events(again, started.json()["promotion"])
        assert events[-1]["event"] == "aborted" and events[-1]["reason"] == "restart"
        with _Clients(again, 1) as clients:
            time.sleep(0.5)
        assert set(clients.served) == {"old"}
        assert "promotion" in again.stderr() and "aborted" in again.stderr()
    finally:
        again.stop()


def test_a_candidate_that_does_not_fit_beside_the_current_target_needs_swap(gateway_factory):
    fleet = "\n".join([
        "memory: {headroom: 1.0, cpu_budget: 600MiB}",  # one 400 MiB model at a time
        "models:",
        _model("old").replace("ttl: 0}", "ttl: 0, memory: 400MiB}"),
        _model("new").replace("ttl: 0}", "ttl: 0, memory: 400MiB}"),
        "routes:",
        "  chat: {targets: {old: 1}, promotion: {canary: [50], step_seconds: 0.5, watch_seconds: 0.5}}",
        "",
    ])
    gw = gateway_factory(fleet)
    refused = httpx.post(gw.url + "/admin/routes/chat/promote", json={"to": "new"}, timeout=30)
    assert refused.status_code == 409
    assert "new cannot be resident beside old within the memory plan; pass --swap" in refused.json()["error"]["message"]
    result = gw.cli("promote", "chat", "--to", "new", "--swap")
    assert "promoted" in result.stdout
    events = _last_promotion(gw)
    assert events[0]["swap"] is True and events[-1]["event"] == "promoted"
