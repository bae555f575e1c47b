"""Workloads: synthetic prompts of an exact token length, or requests read from a JSONL file.

Exact lengths use the target model's own tokenizer through llama-server's ``POST /tokenize``
and ``/detokenize``: at the URL's origin when it is a runner, else at the runner the gateway's
admin API names (loading the model first). Without one, lengths are estimated from one
calibration request's usage and the results say ``tokens_exact: false``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx

from ..errors import HomestackError
from .client import APIS, Target

# Words the synthetic prompts are drawn from: common, so each is a token or two in any vocabulary.
_WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue side "
    "kind head house service friend father power hour game line end member law car city community name"
).split()


def _origin(url: str) -> str:
    return url.rstrip("/").rsplit("/v1", 1)[0]


async def _responds(client: httpx.AsyncClient, origin: str, headers: dict) -> bool:
    try:
        resp = await client.post(origin + "/tokenize", json={"content": "hello"}, headers=headers)
        return resp.status_code == 200 and "tokens" in resp.json()
    except (httpx.HTTPError, ValueError):
        return False


async def find_tokenizer(client: httpx.AsyncClient, target: Target) -> str | None:
    """The origin of a ``/tokenize`` endpoint for the target model, or None."""
    origin = _origin(target.url)
    if await _responds(client, origin, target.headers()):
        return origin
    try:  # a homestack gateway: ask its admin API where the model's runner listens
        loaded = await client.post(f"{origin}/admin/models/{target.model}/load", headers=target.headers())
        runner_url = loaded.json().get("url") if loaded.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        runner_url = None
    if runner_url and await _responds(client, _origin(runner_url), {}):
        return _origin(runner_url)
    return None


class PromptMaker:
    """Prompts of exactly ``n`` tokens (with a tokenizer) or about ``n`` (calibrated words)."""

    def __init__(self, client: httpx.AsyncClient, tokenizer: str | None, words_per_token: float = 1.0):
        self.client = client
        self.tokenizer = tokenizer
        self.words_per_token = words_per_token

    async def _call(self, route: str, body: dict) -> dict:
        resp = await self.client.post(self.tokenizer + route, json=body)
        resp.raise_for_status()
        return resp.json()

    async def tokens(self, text: str) -> list[int]:
        return (await self._call("/tokenize", {"content": text}))["tokens"]

    async def make(self, n: int, rng: random.Random) -> str:
        words = " ".join(rng.choice(_WORDS) for _ in range(int(n * 1.5) + 8))
        if self.tokenizer is None:
            return " ".join(words.split()[: max(1, round(n * self.words_per_token))])
        ids = (await self.tokens(words))[:n]
        text = (await self._call("/detokenize", {"tokens": ids}))["content"]
        for _ in range(8):  # a cut can re-tokenize differently: trim or extend a word until exact
            count = len(await self.tokens(text))
            if count == n:
                return text
            text = text.rsplit(" ", 1)[0] if count > n else text + " " + rng.choice(_WORDS)
        raise HomestackError(f"could not make a prompt of exactly {n} tokens; try another --input-tokens")


async def calibrate(client: httpx.AsyncClient, target: Target, api: str) -> float:
    """Words per token for this model, from the usage of one short request."""
    words = " ".join(_WORDS[:50])
    path = APIS[api][0]
    body = ({"messages": [{"role": "user", "content": words}]} if api == "chat" else {"prompt": words})
    resp = await client.post(target.url + path, json={**body, "model": target.model, "max_tokens": 1},
                             headers=target.headers())
    if resp.status_code != 200:
        raise HomestackError(f"{target.url}{path} answered HTTP {resp.status_code}: {_reason(resp)}")
    return 50 / max(1, resp.json()["usage"]["prompt_tokens"])


def _reason(resp: httpx.Response) -> str:
    """The error message of an OpenAI-shaped error body, else the start of the body, on one line."""
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return " ".join(resp.text[:200].split())


def body_for(api: str, text: str, output_tokens: int, ignore_eos: bool) -> dict:
    body = {"messages": [{"role": "user", "content": text}]} if api == "chat" else {"prompt": text}
    body.update({"max_tokens": output_tokens, "temperature": 0})
    if ignore_eos:  # llama.cpp and vLLM: generate exactly max_tokens
        body["ignore_eos"] = True
    return body


async def synthetic(maker: PromptMaker, api: str, count: int, input_tokens: int, output_tokens: int,
                    ignore_eos: bool, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"api": api, "input_tokens": input_tokens,
             "body": body_for(api, await maker.make(input_tokens, rng), output_tokens, ignore_eos)}
            for _ in range(count)]


def from_jsonl(path: Path, output_tokens: int | None) -> list[dict]:
    """Requests from a JSONL file: each line an OpenAI request body (``messages`` or ``prompt``)."""
    requests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as exc:
            raise HomestackError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(body, dict) or not ({"messages", "prompt"} & body.keys()):
            raise HomestackError(f"{path}:{number}: a request needs 'messages' (chat) or 'prompt' (completions)")
        body.pop("model", None)
        if output_tokens:
            body["max_tokens"] = output_tokens
        requests.append({"api": "chat" if "messages" in body else "completions", "body": body})
    if not requests:
        raise HomestackError(f"{path}: no requests")
    return requests
