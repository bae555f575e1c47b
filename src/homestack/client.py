"""A small client for the gateway's admin API, used by the CLI.

stdlib only, so `homestack ps` answers in milliseconds.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any, Iterator

from .errors import HomestackError

DEFAULT_URL = "http://127.0.0.1:8080"


class GatewayClient:
    def __init__(self, url: str | None = None, api_key: str | None = None):
        self.url = (url or os.environ.get("HOMESTACK_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("HOMESTACK_API_KEY")

    def _open(self, method: str, path: str, timeout: float | None = 600, body: Any = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, method=method, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise HomestackError(_error_message(exc)) from None
        except urllib.error.URLError as exc:
            raise HomestackError(
                f"cannot reach the gateway at {self.url} ({exc.reason}); is `homestack serve` running? "
                "(set HOMESTACK_URL or --url for another address)"
            ) from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        with self._open(method, path, body=body) as resp:
            return json.loads(resp.read())

    def text(self, path: str) -> str:
        with self._open("GET", path) as resp:
            return resp.read().decode("utf-8", "replace")

    def events(self, path: str) -> Iterator[str]:
        """The ``data:`` payloads of a server-sent event stream, as they arrive."""
        with self._open("GET", path, timeout=None) as resp:
            try:
                for raw in resp:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    if line.startswith("data: "):
                        yield line[6:]
            except (OSError, http.client.HTTPException):
                raise HomestackError(f"the gateway at {self.url} closed the stream") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"gateway answered HTTP {exc.code}"
