"""Small ASGI helpers: read a bounded body, send a whole response."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..errors import HomestackError, PayloadTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
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


async def send_response(
    send: Send, status: int, body: bytes, content_type: bytes = JSON, headers: Headers | None = None
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        head += headers
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: HomestackError, headers: Headers | None = None) -> None:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = [*(headers or ()), (b"retry-after", str(retry_after).encode())]
    await send_response(send, exc.status, exc.body(), headers=headers)


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client goes away (used while streaming a response)."""
    while (await receive())["type"] != "http.disconnect":
        pass
