"""A client for the knowledge service's HTTP API, used by `homestack kb` and the stdio MCP server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson

from ...errors import HomestackError

DEFAULT_URL = "http://127.0.0.1:8081"
PREFIX = "/v1/knowledge"


class KnowledgeClient:
    def __init__(self, url: str | None = None, timeout: float = 600, api_key: str | None = None):
        self.url = (url or os.environ.get("HOMESTACK_KNOWLEDGE_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get("HOMESTACK_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=5), headers=headers)

    def _unreachable(self, exc: Exception) -> HomestackError:
        return HomestackError(f"cannot reach the knowledge service at {self.url} ({exc}); is `homestack serve` or "
                              "`homestack knowledge serve` running? (set HOMESTACK_KNOWLEDGE_URL or --url)")

    def json(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        try:
            resp = self.http.request(method, PREFIX + path, content=None if body is None else orjson.dumps(body),
                                     params={k: v for k, v in params.items() if v is not None},
                                     headers={"Content-Type": "application/json"})
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _check(resp)
        return resp.json()

    def events(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """The NDJSON events of a streamed request; an error event raises."""
        try:
            with self.http.stream("POST", PREFIX + path, content=orjson.dumps({**body, "stream": True}),
                                  headers={"Content-Type": "application/json"}) as resp:
                if resp.status_code != 200:
                    resp.read()
                    _check(resp)
                for line in resp.iter_lines():
                    if line:
                        event = orjson.loads(line)
                        if event.get("event") == "error":
                            raise HomestackError(event["error"]["message"])
                        yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def download(self, path: str, dest: Path) -> int:
        try:
            with self.http.stream("GET", PREFIX + path) as resp:
                if resp.status_code != 200:
                    resp.read()
                    _check(resp)
                with dest.open("wb") as out:
                    for part in resp.iter_bytes():
                        out.write(part)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        return dest.stat().st_size

    def upload(self, path: str, source: Path, **params: Any) -> Any:
        try:
            with source.open("rb") as data:
                resp = self.http.post(PREFIX + path, content=data, params=params,
                                      headers={"Content-Type": "application/gzip"})
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _check(resp)
        return resp.json()


def _check(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"the knowledge service answered HTTP {resp.status_code}"
    raise HomestackError(message)
