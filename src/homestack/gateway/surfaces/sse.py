"""Server-sent events both ways for translated streams: chat-completion chunks in, named events out."""

from __future__ import annotations

from typing import Any

import orjson

_DONE = b"[DONE]"


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def chat_chunks(buffer: bytes) -> tuple[bytes, list[dict[str, Any]], bool]:
    """The complete ``data:`` events in ``buffer``: (what is left for later, their JSON objects, [DONE] seen)."""
    buffer = buffer.replace(b"\r\n", b"\n")
    cut = buffer.rfind(b"\n\n")
    if cut < 0:
        return buffer, [], False
    chunks, done = [], False
    for event in buffer[:cut].split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == _DONE:
                done = True
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                chunks.append(parsed)
    return buffer[cut + 2:], chunks, done


def streamed_like(request: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """``request`` (chat completions) streamed when the client's ``payload`` asked for a stream, with the
    usage chunk at its end (the translations read the answer's usage from it)."""
    if payload.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request
