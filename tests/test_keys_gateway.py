"""Keys against a real gateway: roles on every route, model scopes, limits under concurrency, keys added
and revoked while it runs, and no secret in anything it writes. One gateway for the module."""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import wait_until
from helpers import TESTS, FakeUpstream, GatewayProcess
from homestack.keys import Role
from homestack.gateway.routes import routes

UPSTREAM_KEY = "sk-upstream-never-shown-1234"
COMMAND_KEY = "cmd-key-never-shown-5678"
SECRETS = {  # key name -> secret; the fleet file names them by reference only
    "ci-bot": "ci-bot-secret-0001", "ops": "ops-secret-0002", "reader": "reader-secret-0003",
    "expired": "expired-secret-0004", "single": "single-secret-0005", "tokens": "tokens-secret-0006",
}
LEGACY_USER, LEGACY_ADMIN = "legacy-user-secret-0007", "legacy-admin-secret-0008"
WRONG = "hs-wrong-secret-never-valid-0009"
USED: set[str] = {*SECRETS.values(), LEGACY_USER, LEGACY_ADMIN, WRONG, UPSTREAM_KEY, COMMAND_KEY}

FLEET = """
metrics_access: admin
api_keys: [{legacy_user}]
admin_keys: [{legacy_admin}]
keys:
  ci-bot:
    secret_env: CI_BOT_KEY
    roles: [inference]
    models: ["smollm2*"]
    rpm: 10
  ops:
    secret_file: {ops_file}
    roles: [admin, knowledge-write]
  reader: {{secret_env: READER_KEY, roles: [knowledge-read]}}
  expired: {{secret_env: EXPIRED_KEY, roles: [inference], expires: "2020-01-01T00:00:00Z"}}
  single: {{secret_env: SINGLE_KEY, roles: [inference], concurrency: 1}}
  tokens: {{secret_env: TOKENS_KEY, roles: [inference], tpm: 10}}
models:
  smollm2-echo:
    runner: remote
    url: http://127.0.0.1:{port}/v1
    api_key: {upstream_key}
  other-echo:
    runner: remote
    url: http://127.0.0.1:{port}/v1
  cmd-echo:
    runner: command
    command: ["{python}", "{fake}", "--port", "{{port}}", "--api-key", "{command_key}"]
"""


@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream):
    home = tmp_path_factory.mktemp("keys-gateway")
    ops_file = home / "ops.secret"
    ops_file.write_text(SECRETS["ops"] + "\n")
    fleet = FLEET.format(legacy_user=LEGACY_USER, legacy_admin=LEGACY_ADMIN, ops_file=ops_file, port=upstream.port,
                         upstream_key=UPSTREAM_KEY, python=sys.executable, fake=TESTS / "fake_openai.py",
                         command_key=COMMAND_KEY)
    env = {"CI_BOT_KEY": SECRETS["ci-bot"], "READER_KEY": SECRETS["reader"], "EXPIRED_KEY": SECRETS["expired"],
           "SINGLE_KEY": SECRETS["single"], "TOKENS_KEY": SECRETS["tokens"]}
    gateway = GatewayProcess(home, fleet, env=env)
    yield gateway
    gateway.stop()


def _auth(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def _chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "x"}], **extra}


# For each role, a key that lacks it. Legacy api_keys (inference + knowledge-read) must not write knowledge.
LACKING = {Role.INFERENCE: SECRETS["reader"], Role.KNOWLEDGE_READ: SECRETS["ci-bot"],
           Role.KNOWLEDGE_WRITE: LEGACY_USER, Role.ADMIN: LEGACY_USER}


def _call(gw: GatewayProcess, method: str, path: str, secret: str | None) -> httpx.Response:
    path = re.sub(r"\{(\w+)(:path)?\}", "smollm2-echo", path)
    body = _chat("smollm2-echo") if method == "POST" else None
    return httpx.request(method, gw.url + path, json=body, headers=_auth(secret), timeout=30)


def test_every_route_refuses_a_missing_key_and_a_key_without_its_role(gw):
    table = [r for r in routes(metrics=True, metrics_role=Role.ADMIN) if r.role is not Role.PUBLIC]
    assert len(table) >= 25
    checked = []
    for route in table:
        missing = _call(gw, route.method, route.path, None)
        assert missing.status_code == 401, (route.method, route.path, missing.text)
        if route.role is Role.ANY:
            continue
        refused = _call(gw, route.method, route.path, LACKING[route.role])
        assert refused.status_code == 403, (route.method, route.path, refused.text)
        assert refused.json()["error"]["type"] == "permission_error"
        checked.append(route.path)
    assert "/metrics" in checked and "/v1/knowledge/restore" in checked


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/v1/knowledge/collections/docs"), ("POST", "/v1/knowledge/restore"),
    ("DELETE", "/v1/knowledge/collections/docs/sources"), ("GET", "/v1/knowledge/backup"),
])
def test_attack_an_ordinary_key_cannot_delete_back_up_or_replace_knowledge(gw, method, path):
    resp = httpx.request(method, gw.url + path, headers=_auth(LEGACY_USER), timeout=30)
    assert resp.status_code == 403 and "knowledge-write" in resp.json()["error"]["message"]


def test_attack_a_scoped_key_sees_and_uses_only_its_models(gw):
    bot = _auth(SECRETS["ci-bot"])
    listed = httpx.get(gw.url + "/v1/models", headers=bot).json()["data"]
    assert [m["id"] for m in listed] == ["smollm2-echo"]
    everything = httpx.get(gw.url + "/v1/models", headers=_auth(LEGACY_USER)).json()["data"]
    assert {m["id"] for m in everything} == {"smollm2-echo", "other-echo", "cmd-echo"}
    for resp in (httpx.post(gw.url + "/v1/chat/completions", json=_chat("other-echo"), headers=bot),
                 httpx.get(gw.url + "/v1/models/other-echo", headers=bot)):
        assert resp.status_code == 403
        error = resp.json()["error"]
        assert "'ci-bot'" in error["message"] and "'other-echo'" in error["message"]
        assert error["code"] == "model_not_allowed" and error["source"] == "gateway"


def test_expired_and_wrong_keys_are_401(gw):
    for secret in (SECRETS["expired"], WRONG):
        resp = httpx.post(gw.url + "/v1/chat/completions", json=_chat("smollm2-echo"), headers=_auth(secret))
        assert resp.status_code == 401
    assert "expired" in httpx.get(gw.url + "/v1/models", headers=_auth(SECRETS["expired"])).json()["error"]["message"]


def test_a_key_added_by_the_cli_works_at_once_and_revoke_and_rotate_apply_without_restart(gw):
    secret = gw.cli("keys", "add", "live", "--role", "inference", "--model", "other-*", "--rpm", "100").stdout.strip()
    USED.add(secret)
    assert secret.startswith("hs-")
    ask = lambda s: httpx.post(gw.url + "/v1/chat/completions", json=_chat("other-echo"), headers=_auth(s)).status_code
    assert ask(secret) == 200
    listing = gw.cli("keys", "list").stdout
    assert "live" in listing and "other-*" in listing and secret not in listing
    rotated = gw.cli("keys", "rotate", "live").stdout.strip()
    USED.add(rotated)
    assert ask(rotated) == 200
    wait_until(lambda: ask(secret) == 401, timeout=10, message="the old secret to stop working")
    gw.cli("keys", "revoke", "live")
    wait_until(lambda: ask(rotated) == 401, timeout=10, message="the revoked key to stop working")


def test_concurrency_limit_refuses_a_second_request_in_flight(gw):
    single = _auth(SECRETS["single"])
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, gw.url + "/v1/chat/completions", json=_chat("other-echo", fake_sleep=3),
                           headers=single, timeout=30)
        wait_until(lambda: gw.running(Authorization=f"Bearer {LEGACY_ADMIN}")["other-echo"]["inflight"] >= 1,
                   timeout=10, message="the first request in flight")
        second = httpx.post(gw.url + "/v1/chat/completions", json=_chat("other-echo"), headers=single)
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert "concurrent-requests" in second.json()["error"]["message"]
        assert slow.result().status_code == 200


def test_tokens_per_minute_counted_from_usage(gw):
    tokens = _auth(SECRETS["tokens"])
    statuses = []
    for _ in range(6):  # 5 tokens an answer, 10 a minute: refused once the finished ones reach 10
        resp = httpx.post(gw.url + "/v1/chat/completions", json=_chat("other-echo"), headers=tokens)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            break
    assert statuses[-1] == 429 and 2 <= statuses.count(200) <= 3
    assert resp.headers["x-ratelimit-limit-tokens"] == "10" and resp.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(resp.headers["retry-after"]) >= 1


def test_attack_fifty_parallel_requests_on_a_ten_rpm_key_let_exactly_ten_through(gw):
    async def burst() -> list[httpx.Response]:
        import asyncio

        async with httpx.AsyncClient(base_url=gw.url, timeout=60, limits=httpx.Limits(max_connections=50)) as c:
            return await asyncio.gather(*(c.post("/v1/chat/completions", json=_chat("smollm2-echo"),
                                                 headers={**_auth(SECRETS["ci-bot"]), "X-Request-ID": f"burst-{i}"})
                                          for i in range(50)))

    import asyncio

    answers = asyncio.run(burst())
    assert sorted(r.status_code for r in answers) == [200] * 10 + [429] * 40
    ok = next(r for r in answers if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "10"
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    line = gw.log_entry("burst-0")
    assert line["key"] == "ci-bot"


def test_per_key_metrics(gw):
    admin = _auth(SECRETS["ops"])

    def scrape() -> str:
        return httpx.get(gw.url + "/metrics", headers=admin).text

    def burst_counted() -> str | None:
        text = scrape()
        found = re.search(r'homestack_key_requests_total\{key="ci-bot"\} (\d+)', text)
        return text if found and int(found.group(1)) >= 50 else None  # the burst, and the out-of-scope try

    text = wait_until(burst_counted, timeout=10, message="the burst in the metrics")
    assert 'homestack_key_rejections_total{key="ci-bot",reason="rpm"} 40.0' in text
    assert 'homestack_key_tokens_total{key="ci-bot",type="input"} 30.0' in text
    assert 'homestack_key_rejections_total{key="ci-bot",reason="model"}' in text
    assert 'homestack_key_rejections_total{key="api_keys[0]",reason="role"}' in text


def test_secrets_appear_nowhere_the_gateway_writes(gw, upstream):
    admin = _auth(LEGACY_ADMIN)  # every role; ops holds admin and knowledge-write only
    # A command runner with a key on its command line, and a remote API that echoes its key in an error.
    assert httpx.post(gw.url + "/v1/chat/completions", json=_chat("cmd-echo"), headers=admin, timeout=60).status_code == 200
    echoed = httpx.post(gw.url + "/v1/chat/completions", json=_chat("smollm2-echo", fake_reject=True), headers=admin)
    assert echoed.status_code == 401 and "***" in echoed.text
    written = [echoed.text]
    for path in ("/metrics", "/admin/running?all=1", "/admin/requests", "/admin/plan", "/admin/logs/cmd-echo",
                 "/admin/logs/smollm2-echo", "/ui/", "/v1/models"):
        resp = httpx.get(gw.url + path, headers=admin, timeout=30)
        assert resp.status_code == 200, path
        written.append(resp.text)
    files = [gw.stdout_path, gw.stderr_path, *(p for p in (gw.home / "data").rglob("*") if p.is_file())]
    assert any(p.name == "cmd-echo.log" for p in files) and any(p.name == "keys.json" for p in files)
    written += [Path(p).read_text(errors="replace") for p in files]
    leaks = {secret for secret in USED for text in written if secret in text}
    assert not leaks
    assert COMMAND_KEY not in (gw.home / "data" / "logs" / "cmd-echo.log").read_text()
    assert "--api-key ***" in (gw.home / "data" / "logs" / "cmd-echo.log").read_text()
