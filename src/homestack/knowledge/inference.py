"""The gateway as the knowledge service sees it: embeddings and chat over HTTP.

Models never load in this process. Embeddings come back base64-encoded (a fifth
of the JSON); gateway errors become our own, naming the model and the gateway.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, AsyncIterator

import httpx
import numpy as np
import orjson

from ..errors import BadRequest, HomestackError, ModelNotFound, RunnerError, RunnerTimeout, ServiceUnavailable

_QUEUE_FULL_RETRIES = 10  # 429s from the gateway waited out (each up to its Retry-After) before giving up


class InferenceClient:
    """The knowledge service's client to the gateway: embeddings, answers, models and fleet status."""

    def __init__(self, url: str, embedding_model: str, chat_model: str, api_key: str | None = None,
                 timeout: float = 600):
        self.url = url.rstrip("/")
        self.embedding_model = embedding_model
        self.chat_model = chat_model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=5),
                                      limits=httpx.Limits(max_keepalive_connections=8))

    async def close(self) -> None:
        await self.http.aclose()

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        body = await self._post("/v1/embeddings", {"model": self.embedding_model, "input": texts,
                                                   "encoding_format": "base64"}, self.embedding_model)
        rows = sorted(body["data"], key=lambda d: d["index"])
        vectors = np.stack([np.frombuffer(base64.b64decode(r["embedding"]), dtype="<f4") for r in rows])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)

    async def chat(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        return await self._post("/v1/chat/completions", {"model": self.chat_model, "messages": messages, **options},
                                self.chat_model)

    async def chat_stream(self, messages: list[dict[str, Any]], **options: Any) -> AsyncIterator[dict[str, Any]]:
        """The chat model's stream, one parsed chunk at a time."""
        body = {"model": self.chat_model, "messages": messages, "stream": True, **options}
        try:
            async with self.http.stream("POST", "/v1/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise _gateway_error(resp, self.chat_model, self.url)
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = orjson.loads(line[6:])
                    if "error" in chunk:
                        raise RunnerError(f"{self.chat_model}: {chunk['error'].get('message', 'stream failed')}")
                    yield chunk
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None

    async def get(self, path: str) -> Any:
        try:
            resp = await self.http.get(path)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        if resp.status_code != 200:
            raise _gateway_error(resp, None, self.url)
        return resp.json()

    async def _post(self, path: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        content = orjson.dumps(body)
        for attempt in range(_QUEUE_FULL_RETRIES + 1):
            try:
                resp = await self.http.post(path, content=content, headers={"Content-Type": "application/json"})
            except httpx.TransportError as exc:
                raise _unreachable(self.url, exc) from None
            if resp.status_code != 429 or attempt == _QUEUE_FULL_RETRIES:
                break
            # The model's queue is full: a long ingest waits its turn instead of failing.
            await asyncio.sleep(min(float(resp.headers.get("retry-after") or 1), 30.0))
        if resp.status_code != 200:
            raise _gateway_error(resp, model, self.url)
        return orjson.loads(resp.content)


def _unreachable(url: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"cannot reach the gateway at {url} ({type(exc).__name__}: {exc}); "
                              "is `homestack serve` running? (knowledge.gateway_url or --gateway for another address)")


def _gateway_error(resp: httpx.Response, model: str | None, url: str) -> HomestackError:
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {resp.status_code}"
    if resp.status_code == 404 and model:
        return ModelNotFound(f"the gateway at {url} does not serve model {model!r}: {message}", param="model")
    if resp.status_code == 504:
        return RunnerTimeout(f"{model or 'the gateway'} timed out: {message}")
    if resp.status_code >= 500:
        return RunnerError(f"{model or 'the gateway'} failed: {message}")
    if resp.status_code in (401, 403):
        return ServiceUnavailable(f"the gateway at {url} refused the knowledge service's key: {message}")
    return BadRequest(f"the gateway rejected the request for {model or 'it'}: {message}")
