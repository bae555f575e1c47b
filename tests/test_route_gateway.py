"""Routes through a real gateway over fake runners: fallbacks on each way a target can fail, the
header naming the model that served, the request log, metrics, /v1/models and key scopes."""

from __future__ import annotations

import sys

import httpx
import pytest

from helpers import TESTS, GatewayProcess, free_port

ADMIN, LIMITED = "admin-secret-1", "limited-secret-1"


def _fake(name: str, *extra: str) -> str:
    command = [sys.executable, str(TESTS / "fake_openai.py"), "--port", "{port}", "--tag", name, *extra]
    return f"  {name}: {{runner: command, command: {command}, ttl: 0}}"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    fleet = "\n".join([
        "keys:",
        "  ops: {secret_env: ROUTE_ADMIN, roles: [admin, inference]}",
        "  tenant: {secret_env: ROUTE_LIMITED, roles: [inference], models: [], routes: [split]}",
        "models:",
        _fake("ok"), _fake("ok2"),
        _fake("broken", "--fail-status", "500"), _fake("busy", "--fail-status", "429"),
        f"  refused: {{runner: remote, url: 'http://127.0.0.1:{free_port()}/v1'}}",
        f"  nostart: {{runner: command, command: ['{sys.executable}', '-c', 'raise SystemExit(3)'], ttl: 0}}",
        "routes:",
        "  r500: {targets: {broken: 1}, fallbacks: [ok]}",
        "  r429: {targets: {busy: 1}, fallbacks: [ok]}",
        "  rrefused: {targets: {refused: 1}, fallbacks: [ok]}",
        "  rnostart: {targets: {nostart: 1}, fallbacks: [busy, ok2]}",
        "  nofallback: {targets: {broken: 1}}",
        "  split: {targets: {ok: 1, ok2: 1}, sticky: header:X-Tenant}",
    ]) + "\n"
    g = GatewayProcess(tmp_path_factory.mktemp("routes"), fleet,
                       env={"ROUTE_ADMIN": ADMIN, "ROUTE_LIMITED": LIMITED})
    yield g
    g.stop()


def _chat(gw, model: str, secret: str = ADMIN, headers=None, **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {secret}", **(headers or {})})


@pytest.mark.parametrize("route, failed, served", [
    ("r500", ["broken"], "ok"),  # 5xx from the runner
    ("r429", ["busy"], "ok"),  # 429 from the runner
    ("rrefused", ["refused"], "ok"),  # connection refused
    ("rnostart", ["nostart", "busy"], "ok2"),  # the runner failed to start; the next answers 429
])
def test_a_target_that_cannot_serve_falls_back_before_anything_is_sent(gw, route, failed, served):
    for stream in (False, True):
        resp = _chat(gw, route, stream=stream)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-homestack-model"] == served
        entry = gw.log_entry(resp.headers["x-request-id"])
        assert (entry["route"], entry["runner"], entry["fell_back_from"], entry["status"]) == \
            (route, served, failed, 200)


def test_the_last_target_failing_relays_its_error(gw):
    resp = _chat(gw, "nofallback")
    assert resp.status_code == 500
    assert resp.json()["error"]["message"] == "failing with 500"
    entry = gw.log_entry(resp.headers["x-request-id"])
    assert (entry["route"], entry["runner"], entry["fell_back_from"]) == ("nofallback", "broken", None)


def test_a_header_keeps_a_caller_on_one_target_and_models_name_themselves(gw):
    for tenant in ("acme", "globex", "initech", "umbrella"):
        served = {_chat(gw, "split", headers={"x-tenant": tenant}).headers["x-homestack-model"] for _ in range(4)}
        assert len(served) == 1 and served <= {"ok", "ok2"}
    assert _chat(gw, "ok").headers["x-homestack-model"] == "ok"  # a plain model names itself too


def test_routes_are_listed_marked_and_scoped_by_the_keys_route_globs(gw):
    listed = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
    split = next(m for m in listed if m["id"] == "split")
    assert split["runner"] == "route"
    assert split["route"] == {"targets": {"ok": 1, "ok2": 1}, "fallbacks": [], "sticky": "header:X-Tenant"}
    limited = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {LIMITED}"}).json()["data"]
    assert [m["id"] for m in limited] == ["split"]
    assert _chat(gw, "split", LIMITED).status_code == 200  # its targets through the route, not by name
    assert _chat(gw, "ok", LIMITED).status_code == 403
    refused = _chat(gw, "r500", LIMITED)
    assert refused.status_code == 403 and refused.json()["error"]["message"] == "key 'tenant' may not use route 'r500'"
    one = httpx.get(gw.url + "/v1/models/split", headers={"authorization": f"Bearer {LIMITED}"})
    assert one.json()["runner"] == "route"


def test_metrics_count_requests_by_route_and_target_and_fallbacks(gw):
    assert _chat(gw, "r500").status_code == 200
    text = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    assert 'homestack_route_requests_total{route="r500",status="200",target="ok"}' in text
    assert 'homestack_route_fallbacks_total{route="r500",target="broken"}' in text
