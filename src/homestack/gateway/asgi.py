"""Small ASGI helpers: read a bounded body, send a whole response."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..errors import BadRequest, HomestackError, PayloadTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def read_body(receive: Receive, limit: int, content_length: bytes | None) -> bytes:
    """The whole body, refused (413) past ``limit`` whether declared by Content-Length or not."""
    declared = _length(content_length)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # a body sent without Content-Length, or longer than it said
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        if not message.get("more_body"):
            if not parts:  # the usual case: the whole body in one message, no copy
                return chunk
            parts.append(chunk)
            return b"".join(parts)
        parts.append(chunk)


def _length(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None


async def send_response(
    send: Send, status: int, body: bytes, content_type: bytes = JSON, headers: Headers | None = None
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        head += headers
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: HomestackError, body: bytes, headers: Headers | None = None) -> None:
    """The error's answer: ``body`` is already in the shape of the surface it is sent on."""
    await send_response(send, exc.status, body, headers=[*(headers or ()), *exc.headers()])


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client goes away (used while streaming a response)."""
    while (await receive())["type"] != "http.disconnect":
        pass
