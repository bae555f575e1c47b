"""Pings for a streamed answer that is slow to start: a model loading, a long prompt being read.

An agent's client waits for response headers only so long (Claude Code: 10 minutes, then it
retries from scratch), and a 13k-token prompt on a small CPU can take minutes before the first
token. So once a streamed request has waited ``AFTER`` seconds with nothing sent, its stream is
opened (200, event-stream) and the surface's ping sent every ``EVERY`` seconds until the answer
starts, as Anthropic's API does. The answer's own start is then dropped (the stream is open);
an error answer that comes after becomes the surface's error event. Fast answers (most errors
among them) keep their status, untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .asgi import SSE_HEADERS, Headers, Send
from .surfaces import Surface

AFTER = 1.0  # seconds without an answer before the stream opens
EVERY = 5.0  # seconds between pings


class Keepalive:
    """Wraps a request's ``send``: pass :meth:`send` on as the handler's, :meth:`close` when done."""

    def __init__(self, send: Send, surface: Surface, headers: Headers, after: float = AFTER, every: float = EVERY):
        assert surface.ping is not None
        self._send, self._surface, self._headers = send, surface, headers
        self._lock = asyncio.Lock()  # a ping and the answer's first message never interleave
        self.opened = False  # the stream was opened here, before the answer
        self._answered = False  # the answer's start came (no more pings)
        self._error: bytearray | None = None  # an error answer after the stream opened, gathered
        self._pinger = asyncio.ensure_future(self._ping(after, every))
        self._pinger.add_done_callback(lambda task: task.cancelled() or task.exception())  # a gone client

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not self._answered:
            async with self._lock:
                self._answered = True
                self._pinger.cancel()
            if not self.opened:
                await self._send(message)
            elif message["status"] >= 400:
                self._error = bytearray()
            return
        if self._error is None:
            await self._send(message)
            return
        self._error += message.get("body", b"")
        if not message.get("more_body"):
            event = self._surface.body_event(bytes(self._error)) + self._surface.stream_end
            await self._send({"type": "http.response.body", "body": event, "more_body": False})

    def close(self) -> None:
        self._pinger.cancel()

    async def _ping(self, after: float, every: float) -> None:
        await asyncio.sleep(after)
        async with self._lock:
            if self._answered:
                return
            self.opened = True
            await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self._headers})
        while True:
            async with self._lock:
                if self._answered:
                    return
                await self._send({"type": "http.response.body", "body": self._surface.ping, "more_body": True})
            await asyncio.sleep(every)
