"""One streamed request against an OpenAI-compatible endpoint, timed token by token."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx

# The API of each workload: path, and where a streamed chunk carries its text.
APIS = {
    "chat": ("/chat/completions", lambda choice: (choice.get("delta") or {}).get("content")),
    "completions": ("/completions", lambda choice: choice.get("text")),
}
# Exceptions -> the error kind a sample records.
_ERROR_KINDS = (
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect"),
    (httpx.RemoteProtocolError, "disconnected"),
    (httpx.HTTPError, "transport"),
)


@dataclass
class Target:
    """Where requests go: the API base (ending in /v1), the model and the key."""

    url: str
    model: str
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def error_kind(exc: Exception) -> str:
    return next(kind for cls, kind in _ERROR_KINDS if isinstance(exc, cls))


async def send(client: httpx.AsyncClient, target: Target, request: dict, t0: float) -> dict:
    """Send ``request`` (``{"api", "body", "input_tokens"}``) streamed; return its sample.

    A sample: start (seconds after ``t0``), ttft, tpot, itl (gaps between text chunks), e2e,
    input/output tokens (from the usage chunk when sent, else counted chunks) and error kind.
    """
    path, text_of = APIS[request["api"]]
    body = {**request["body"], "model": target.model, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    sample = {"start": start - t0, "input_tokens": request.get("input_tokens"), "error": None,
              "ttft": None, "tpot": None, "itl": [], "e2e": None, "output_tokens": 0}
    arrivals: list[float] = []
    usage = None
    try:
        async with client.stream("POST", target.url + path, json=body, headers=target.headers()) as resp:
            if resp.status_code != 200:
                await resp.aread()
                sample["error"] = f"http_{resp.status_code}"
                return sample
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    sample["error"] = "stream_error"
                    break
                usage = chunk.get("usage") or usage
                if any(text_of(c) for c in chunk.get("choices") or []):
                    arrivals.append(time.perf_counter())
    except (httpx.HTTPError, ValueError) as exc:
        sample["error"] = "bad_stream" if isinstance(exc, ValueError) else error_kind(exc)
    end = time.perf_counter()
    if not sample["error"] and not arrivals:
        sample["error"] = "no_tokens"
    if arrivals:
        sample["ttft"] = arrivals[0] - start
        sample["itl"] = [b - a for a, b in zip(arrivals, arrivals[1:])]
    sample["e2e"] = end - start
    sample["output_tokens"] = (usage or {}).get("completion_tokens") or len(arrivals)
    if usage and usage.get("prompt_tokens"):
        sample["input_tokens"] = usage["prompt_tokens"]
    if arrivals and sample["output_tokens"] > 1:
        sample["tpot"] = (arrivals[-1] - arrivals[0]) / (sample["output_tokens"] - 1)
    return sample
