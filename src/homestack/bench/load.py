"""Running a benchmark: a concurrency sweep, Poisson arrivals at given rates, or cold starts.

One process, one event loop, one pooled HTTP client. Each level of the sweep gets its own
fresh prompts (same seed per level), so no level benefits from another's prefix cache.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from ..errors import HomestackError
from ..cost.power import average_watts, energy_joules
from . import cold
from .client import Target, send
from .stats import distribution, summarize
from .workload import PromptMaker, calibrate, find_tokenizer, from_jsonl, synthetic


@dataclass
class Settings:
    url: str
    model: str
    api: str = "chat"
    concurrency: list[int] = field(default_factory=lambda: [1])
    rates: list[float] = field(default_factory=list)  # requests/s, Poisson arrivals; replaces concurrency
    requests: int = 16
    input_tokens: int = 128
    output_tokens: int = 64
    dataset: str | None = None
    slo: dict[str, float] = field(default_factory=dict)
    cold: bool = False
    warmup: int = 1
    seed: int = 0
    ignore_eos: bool = True
    timeout: float = 600.0

    def to_dict(self) -> dict:
        return asdict(self)


Advance = Callable[[], None]


async def _sweep_level(client, target, requests, concurrency: int, advance: Advance, t0: float) -> list[dict]:
    pending = iter(requests)
    samples: list[dict] = []

    async def worker() -> None:
        for request in pending:
            samples.append(await send(client, target, request, t0))
            advance()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def _rate_level(client, target, requests, rate: float, advance: Advance, t0: float, seed: int) -> list[dict]:
    rng = random.Random(seed)

    async def one(request: dict) -> dict:
        sample = await send(client, target, request, t0)
        advance()
        return sample

    tasks = []
    for request in requests:
        tasks.append(asyncio.ensure_future(one(request)))
        await asyncio.sleep(rng.expovariate(rate))
    return list(await asyncio.gather(*tasks))


async def _cold_level(client, target, requests, warm_requests, advance: Advance, t0: float) -> list[dict]:
    """Each request after an unload, then a warm one (other prompt, same size) as its reference."""
    samples = []
    for request, warm_request in zip(requests, warm_requests):
        await cold.unload(client, target)
        async with cold.LogWatch(client, target) as watch:
            sample = await send(client, target, request, t0)
        warm = await send(client, target, warm_request, t0)
        sent = t0 + sample["start"]
        first = sent + sample["ttft"] if sample["ttft"] is not None else None
        sample["cold"] = {**cold.cold_figures(sent, first, warm["ttft"], watch.times), "warm_ttft": warm["ttft"]}
        samples.append(sample)
        advance()
    return samples


async def _workload(client, target: Target, settings: Settings, count: int, seed: int) -> tuple[list[dict], dict]:
    if settings.dataset:
        requests = from_jsonl(Path(settings.dataset), settings.output_tokens)
        return [requests[i % len(requests)] for i in range(count)], {"source": settings.dataset}
    tokenizer = await find_tokenizer(client, target)
    maker = PromptMaker(client, tokenizer)
    if tokenizer is None:
        maker.words_per_token = await calibrate(client, target, settings.api)
    requests = await synthetic(maker, settings.api, count, settings.input_tokens, settings.output_tokens,
                               settings.ignore_eos, seed)
    return requests, {"source": "synthetic", "tokens_exact": tokenizer is not None}


async def run(settings: Settings, api_key: str | None, advance: Advance) -> dict:
    """Every level's samples and summary, plus what the workload was."""
    target = Target(settings.url.rstrip("/"), settings.model, api_key)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    levels = ([("cold", 1)] if settings.cold else [("rate", r) for r in settings.rates]
              or [("concurrency", c) for c in settings.concurrency])
    runs, workload = [], {}
    async with httpx.AsyncClient(timeout=settings.timeout, limits=limits) as client:
        for index, (mode, value) in enumerate(levels):
            count = settings.requests * (2 if settings.cold else 1)
            requests, workload = await _workload(client, target, settings, count, settings.seed + index)
            if not settings.cold:
                warm = await _workload(client, target, settings, settings.warmup, settings.seed - 1 - index)
                for request in warm[0]:  # loads the model and fills caches; not measured
                    await send(client, target, request, time.perf_counter())
            energy = energy_joules()
            t0 = time.perf_counter()
            if settings.cold:
                samples = await _cold_level(client, target, requests[::2], requests[1::2], advance, t0)
            elif mode == "rate":
                samples = await _rate_level(client, target, requests, value, advance, t0, settings.seed)
            else:
                samples = await _sweep_level(client, target, requests, int(value), advance, t0)
            duration = time.perf_counter() - t0
            samples.sort(key=lambda s: s["start"])
            summary = summarize(samples, duration, settings.slo)
            summary["power_w"] = average_watts(energy, energy_joules(), duration)
            if settings.cold:
                summary["cold"] = {name: distribution([s["cold"][name] for s in samples
                                                       if s.get("cold", {}).get(name) is not None])
                                   for name in cold.FIGURES}
            runs.append({"mode": mode, "value": value, "summary": summary, "samples": samples})
    if all(s["error"] for r in runs for s in r["samples"]):
        first = runs[0]["samples"][0]["error"] if runs and runs[0]["samples"] else "no requests"
        raise HomestackError(f"every request failed ({first}); is {settings.url} serving {settings.model}?")
    return {"workload": workload, "runs": runs}


def total_requests(settings: Settings) -> int:
    return settings.requests * (1 if settings.cold else len(settings.rates or settings.concurrency))
