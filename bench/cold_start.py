"""Cold start: time to first token of a request for a model that is not loaded.

homestack (both models in its fleet, unloaded through the admin API before each sample) against
llama-server's router mode (bench/llama_router.py; unloaded through the router's own
/models/unload), with the same per-model settings. Samples alternate targets in ABBA order and
models pair by pair (each pair times the same model on both); prints medians, spread and the ratio.

Run: make bench  (or .venv/bin/python bench/cold_start.py [--samples N]).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import urllib.request
from pathlib import Path

import httpx
from llama_router import Router
from swap_storm import MODELS, PROMPT, SETTINGS, fleet_yaml, serve

from homestack.bench.client import Target, send

_REQUEST = {"api": "completions", "body": PROMPT}


def _homestack_unload(origin: str, model: str) -> None:
    request = urllib.request.Request(f"{origin}/admin/models/{model}/unload", b"", method="POST")
    urllib.request.urlopen(request, timeout=120).close()


def _first_token(origin: str, model: str) -> float:
    async def one() -> float:
        async with httpx.AsyncClient(timeout=300) as client:
            sample = await send(client, Target(origin + "/v1", model), _REQUEST, 0.0)
        if sample["error"] or sample["ttft"] is None:
            raise SystemExit(f"bench: cold request to {origin} for {model} failed: {sample['error']}")
        return sample["ttft"]

    return asyncio.run(one())


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="cold requests per target (default 8)")
    args = parser.parse_args()
    names = list(MODELS)
    ttft: dict[str, list[float]] = {"homestack": [], "router": []}
    with tempfile.TemporaryDirectory(prefix="homestack-cold-") as tmp:
        workdir = Path(tmp)
        proc, origin = serve(workdir, fleet_yaml(None))
        router = Router(workdir, MODELS, SETTINGS, models_max=1)
        unload = {"homestack": lambda model: _homestack_unload(origin, model), "router": router.unload}
        urls = {"homestack": origin, "router": router.url}
        print(f"cold start: {args.samples} samples per target, models {' / '.join(names)}, ABBA; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        try:
            for n in range(args.samples):
                model = names[n // 2 % len(names)]
                for target in ("homestack", "router") if n % 4 in (0, 3) else ("router", "homestack"):
                    for name in names:  # nothing resident: no swap, the same start for both
                        unload[target](name)
                    ttft[target].append(_first_token(urls[target], model))
                    print(f"  {n + 1}: {target:<9} {model} first token {ttft[target][-1]:.3f} s", flush=True)
        finally:
            router.stop()
            proc.terminate()
            proc.wait(30)
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    for target, values in ttft.items():
        print(f"{target:<10} cold first token: median {_spread(values)}")
    ratio = statistics.median(ttft["homestack"]) / statistics.median(ttft["router"])
    print(f"homestack / router: x{ratio:.2f} (below 1: homestack is faster)")


if __name__ == "__main__":
    main()
