"""Admission, eviction and queueing through a real gateway, with fake runners whose memory is configured.

Each fake model is `tests/fake_openai.py` run as a command runner declaring `memory: 400MiB`
against a 1000 MiB budget, so any two fit and three do not.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

import httpx

from helpers import TESTS, metric, pid_alive, processes_with, wait_until

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def _fleet(*models: str, budget: str = "1000MiB", max_wait: float = 0.5, min_residency: float = 0,
           queue_depth: int = 64, extra: str = "") -> str:
    lines = [
        f"memory: {{headroom: 1.0, cpu_budget: {budget}}}",
        f"scheduling: {{max_wait: {max_wait}, min_residency: {min_residency}, queue_depth: {queue_depth}}}",
        "models:",
    ]
    for spec in models:
        name, _, options = spec.partition(" ")
        command = [sys.executable, str(TESTS / "fake_openai.py"), "--port", "{port}", "--tag", name]
        lines.append(f"  {name}: {{runner: command, command: {command}, memory: 400MiB, ttl: 0{options}}}")
    return "\n".join(lines) + "\n" + extra


def _chat(gw, model: str, **extra) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json={"model": model, **CHAT, **extra}, timeout=60)


def test_least_recently_used_idle_model_makes_room(gateway_factory):
    gw = gateway_factory(_fleet("a", "b", "c"))
    assert _chat(gw, "a").status_code == 200
    assert _chat(gw, "b").status_code == 200
    assert _chat(gw, "a").status_code == 200  # b is now the least recently used
    assert _chat(gw, "c").status_code == 200
    running = gw.running(all=True)
    assert running["b"]["state"] == "stopped"
    assert running["b"]["last_swap_reason"] == "evicted for c"
    assert running["c"]["last_swap_reason"] == "loaded for a request; evicted b"
    assert running["a"]["state"] == running["c"]["state"] == "ready"
    assert running["c"]["memory_estimated"] == 400 * 2**20
    # Sampled every 2 s: wait for c's first sample rather than accept none.
    measured = wait_until(lambda: gw.running()["c"]["memory_measured"], timeout=10, message="c's measured memory")
    assert 5 * 2**20 < measured < 400 * 2**20
    with gw.http() as http:
        scrape = http.get("/metrics").text
    assert metric(scrape, "homestack_swaps_total", model="c") == 1  # c's load evicted b first
    assert metric(scrape, "homestack_evictions_total", model="b", reason="room") == 1


def test_pinned_and_busy_models_are_never_evicted(gateway_factory):
    gw = gateway_factory(_fleet("a , pinned: true", "b", "c"))
    wait_until(lambda: gw.running().get("a", {}).get("state") == "ready", message="pinned a")
    pinned_pid = gw.running()["a"]["pid"]
    slow = {}
    thread = threading.Thread(target=lambda: slow.update(r=_chat(gw, "b", fake_sleep=2)))
    thread.start()
    wait_until(lambda: gw.running().get("b", {}).get("inflight") == 1, message="b busy")
    started = time.monotonic()
    assert _chat(gw, "c").status_code == 200  # waits for b to finish, then b makes room
    thread.join()
    assert slow["r"].status_code == 200
    assert time.monotonic() - started > 0.5
    running = gw.running(all=True)
    assert running["a"]["pid"] == pinned_pid and running["a"]["state"] == "ready"
    assert running["b"]["last_swap_reason"] == "evicted for c"
    assert gw.cli("unload", "a", check=False).returncode == 1


def test_exclusive_group_keeps_members_apart(gateway_factory):
    gw = gateway_factory(_fleet("a", "b", extra="groups:\n  one-at-a-time: {models: [a, b]}\n"))
    assert _chat(gw, "a").status_code == 200
    assert _chat(gw, "b").status_code == 200
    running = gw.running(all=True)
    assert running["a"]["state"] == "stopped" and running["b"]["state"] == "ready"
    plan = httpx.get(gw.url + "/admin/plan").json()
    assert plan["groups"] == {"one-at-a-time": ["a", "b"]}
    assert plan["resident_sets"] == [["a"], ["b"]]


def test_full_queue_answers_429_with_retry_after(gateway_factory):
    gw = gateway_factory(_fleet("a , max_concurrency: 1", queue_depth=1))
    assert _chat(gw, "a").status_code == 200
    results = []
    threads = [threading.Thread(target=lambda: results.append(_chat(gw, "a", fake_sleep=1.5))) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: gw.running()["a"]["queue"] == 1, message="one request queued")
    full = _chat(gw, "a")
    for t in threads:
        t.join()
    assert full.status_code == 429
    assert int(full.headers["retry-after"]) >= 1
    assert full.json()["error"]["code"] == "queue_full"
    assert sorted(r.status_code for r in results) == [200, 200]


def test_load_is_cancelled_when_every_waiter_leaves(gateway_factory):
    tag = f"slow-{uuid.uuid4().hex[:8]}"
    fleet = _fleet("a , startup_timeout: 60").replace("'--tag', 'a'", f"'--tag', '{tag}', '--startup-delay', '30'")
    gw = gateway_factory(fleet)
    try:
        httpx.post(gw.url + "/v1/chat/completions", json={"model": "a", **CHAT}, timeout=1.0)
    except httpx.TimeoutException:
        pass
    wait_until(lambda: gw.running(all=True)["a"]["state"] == "stopped", timeout=10, message="load cancelled")
    assert gw.running(all=True)["a"]["last_swap_reason"] == "load cancelled"
    wait_until(lambda: not processes_with(tag), timeout=10, message="no runner left")
    entry = gw.request_log()[-1]
    assert entry["status"] == 499 and entry["outcome"] == "client_closed"


def test_runner_memory_is_measured(gateway_factory):
    gw = gateway_factory(_fleet("a"))
    assert _chat(gw, "a").status_code == 200
    info = wait_until(lambda: gw.running()["a"]["memory_measured"] and gw.running()["a"], timeout=10,
                      message="a memory sample")
    assert 5 * 2**20 < info["memory_measured"] < 400 * 2**20  # a small Python process
    assert pid_alive(info["pid"])
    plan = wait_until(lambda: (p := httpx.get(gw.url + "/admin/plan").json())["devices"][0]["held_measured"] and p,
                      timeout=10, message="plan with measured memory")
    cpu = plan["devices"][0]
    assert cpu["budget"] == 1000 * 2**20
    assert cpu["held_estimated"] == 400 * 2**20
    assert 0 < cpu["held_measured"] < cpu["held_estimated"]
    assert cpu["free"] > 0


def test_alternating_models_that_never_fit_together_all_get_served(gateway_factory):
    # max_wait 0 and min_residency 0: the most eager swapping there is. A model that has just
    # loaded must still serve its waiting requests before it can be evicted again.
    gw = gateway_factory(_fleet("a", "b", budget="600MiB", max_wait=0, min_residency=0))
    statuses = []

    def client(offset: int) -> None:
        for n in range(5):
            statuses.append(_chat(gw, "ab"[(offset + n) % 2], fake_sleep=0.05).status_code)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 20
    assert sum(r["loads"] for r in gw.running(all=True).values()) >= 2


def test_one_eviction_is_enough_while_the_victim_is_still_stopping(gateway_factory):
    slow_stop = _fleet("a", "b", "c").replace("'--tag', 'a'", "'--tag', 'a', '--stop-delay', '1.5'")
    gw = gateway_factory(slow_stop)
    assert _chat(gw, "a").status_code == 200
    assert _chat(gw, "b").status_code == 200
    assert _chat(gw, "c").status_code == 200
    running = gw.running(all=True)
    assert running["a"]["state"] == "stopped"  # the least recently used made room
    assert running["b"]["state"] == "ready"  # and nothing more was evicted while a stopped
    assert running["c"]["last_swap_reason"] == "loaded for a request; evicted a"
