"""Running suites against models: concurrent requests, temperature 0 and a fixed seed by default.

With ``repeats`` > 1 every item is asked that many times; an item is deterministic when every
answer (text and tool calls) is identical, and the suite's determinism is the share of such items.
The score counts each item's first answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx

from ..bench.stats import distribution
from .checks import passes
from .suite import Item


@dataclass(frozen=True)
class Options:
    url: str
    api_key: str | None = None
    concurrency: int = 4
    temperature: float = 0.0
    seed: int = 1234
    repeats: int = 1
    timeout: float = 300.0


def _request(item: Item, model: str, options: Options) -> tuple[str, dict]:
    body: dict = {"model": model, "max_tokens": item.max_tokens, "temperature": options.temperature,
                  "seed": options.seed}
    if item.messages is None:
        return "/completions", {**body, "prompt": item.prompt}
    body["messages"] = item.messages
    if item.tools:
        body["tools"] = item.tools
    if item.tool_choice is not None:
        body["tool_choice"] = item.tool_choice
    return "/chat/completions", body


def _answer(data: dict) -> tuple[str, list]:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return (message.get("content") if "message" in choice else choice.get("text")) or "", message.get("tool_calls") or []


async def _ask(client: httpx.AsyncClient, item: Item, model: str, options: Options) -> dict:
    path, body = _request(item, model, options)
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    start = time.perf_counter()
    try:
        resp = await client.post(options.url.rstrip("/") + path, json=body, headers=headers)
        latency = time.perf_counter() - start
        if resp.status_code != 200:
            return {"error": f"HTTP {resp.status_code}: {resp.text[:200]}", "latency": latency}
        text, calls = _answer(resp.json())
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "latency": time.perf_counter() - start}
    return {"text": text, "tool_calls": calls, "latency": latency}


def _fingerprint(answer: dict) -> str:
    return json.dumps([answer.get("text"), answer.get("tool_calls"), answer.get("error")], sort_keys=True)


async def _item_result(client, item: Item, model: str, options: Options, limit: asyncio.Semaphore) -> dict:
    async def one() -> dict:
        async with limit:
            return await _ask(client, item, model, options)

    answers = await asyncio.gather(*(one() for _ in range(options.repeats)))
    first = answers[0]
    ok, note = (False, first["error"]) if "error" in first else passes(item.check, first["text"], first["tool_calls"])
    result = {"id": item.id, "passed": ok, "note": note, "answer": first.get("text"),
              "tool_calls": first.get("tool_calls") or None, "latency": first["latency"]}
    if options.repeats > 1:
        result["identical"] = len({_fingerprint(a) for a in answers}) == 1
        result["distinct_answers"] = len({_fingerprint(a) for a in answers})
    return result


async def _suite(client, items: list[Item], model: str, options: Options, limit, advance) -> dict:
    async def tracked(item: Item) -> dict:
        result = await _item_result(client, item, model, options, limit)
        advance()
        return result

    results = await asyncio.gather(*(tracked(item) for item in items))
    passed = sum(r["passed"] for r in results)
    return {
        "score": passed / len(results), "passed": passed, "items": len(results),
        "latency": distribution([r["latency"] for r in results]),
        "determinism": (sum(r["identical"] for r in results) / len(results)) if options.repeats > 1 else None,
        "results": results,
    }


async def run(suites: dict[str, list[Item]], models: list[str], options: Options, advance,
              transport: httpx.AsyncBaseTransport | None = None) -> dict:
    """model -> suite -> score, passed, items, latency, determinism and per-item results (``transport``: e.g.
    an app in process, as a promotion's gate asks its own gateway)."""
    limit = asyncio.Semaphore(options.concurrency)
    async with httpx.AsyncClient(timeout=options.timeout, transport=transport) as client:
        report = {}
        for model in models:  # one model at a time: on a swapping gateway, models do not fight for memory
            names = list(suites)
            done = await asyncio.gather(*(_suite(client, suites[n], model, options, limit, advance) for n in names))
            report[model] = dict(zip(names, done))
    return report
