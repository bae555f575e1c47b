"""Forwarding one model request to a runner and relaying the answer.

What is protocol-specific (usage, how a stream ends, error shapes) comes from
the route's API surface. Streams are relayed chunk by chunk as they arrive and
always end the surface's way; a runner that dies mid-stream yields an error
event first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ..errors import HomestackError, RunnerError, RunnerTimeout, ServiceUnavailable
from ..observe import RequestRecord
from ..runners.logs import REDACTED
from .asgi import Headers, Receive, Send, send_response, wait_disconnect
from .surfaces import Operation, Surface
from .upstream import Response, UpstreamError, UpstreamPool, UpstreamTimeout

# The end of a stream kept while relaying it: enough for the last events (usage,
# llama-server's timings, the end marker) however the runner's writes were split.
_WINDOW = 4096
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_TRANSPORT_ERRORS = (UpstreamError, UpstreamTimeout)


class Target(Protocol):
    """What a request is forwarded to: a runner, or the knowledge service's chat endpoint."""

    name: str
    base_url: str
    upstream_headers: bytes
    secrets: tuple[str, ...]  # what the target's errors must never carry back (its own key)


def _redacted(data: bytes, secrets: tuple[str, ...]) -> bytes:
    """A runner's error without its key (an upstream may echo the key it was sent)."""
    for secret in secrets:
        data = data.replace(secret.encode(), REDACTED.encode())
    return data


def _transport_error(target: Target, exc: BaseException) -> HomestackError:
    if isinstance(exc, TimeoutError):
        return RunnerTimeout(f"model {target.name!r} did not answer in time: {exc}")
    return RunnerError(f"model {target.name!r} failed: {exc}")


async def forward(
    pool: UpstreamPool,
    runner: Target,
    operation: Operation,
    body: bytes,
    rec: RequestRecord,
    send: Send,
    receive: Receive,
    extra_headers: Headers,
) -> None:
    resp = await open_upstream(pool, runner, operation, body)
    await deliver(resp, runner, operation, rec, send, receive, extra_headers)


async def open_upstream(pool: UpstreamPool, runner: Target, operation: Operation, body: bytes) -> Response:
    """Send the request; the response once its headers are in (RunnerError/RunnerTimeout if none came)."""
    try:
        return await pool.request(b"POST", runner.base_url, operation.upstream_path, body, runner.upstream_headers)
    except _TRANSPORT_ERRORS as exc:
        raise _transport_error(runner, exc) from None


async def deliver(
    resp: Response, runner: Target, operation: Operation, rec: RequestRecord, send: Send, receive: Receive,
    extra_headers: Headers,
) -> None:
    """Relay an upstream's answer to the client (the stream as it arrives), then close it."""
    surface = operation.surface
    rec.first_byte = time.perf_counter()
    try:
        if rec.stream and resp.status == 200:
            await _relay_stream(resp, runner, surface, rec, send, receive, extra_headers)
            return
        try:
            data = await resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(runner, exc) from None
        rec.status = resp.status
        if resp.status >= 400:
            data, error_type = surface.runner_error(resp.status, _redacted(data, runner.secrets))
            rec.outcome = f"runner:{error_type}"
            await send_response(send, resp.status, data, headers=extra_headers)
            return
        surface.count_tokens(rec, data)
        await send_response(send, resp.status, data, resp.content_type, extra_headers)
    finally:
        resp.close()


async def _relay_stream(
    resp: Response, runner: Target, surface: Surface, rec: RequestRecord, send: Send, receive: Receive,
    extra_headers: Headers,
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + extra_headers})
    disconnected = asyncio.ensure_future(wait_disconnect(receive))
    # A client that goes away closes the upstream connection at once, so the
    # runner stops generating for nobody (even in the middle of a long prompt).
    disconnected.add_done_callback(lambda task: task.cancelled() or resp.close())
    window = b""
    try:
        async for chunk in resp.chunks():
            if not window:  # time to first token: the first chunk of the body, not the headers
                rec.first_byte = time.perf_counter()
            window = (window + chunk)[-_WINDOW:]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except _TRANSPORT_ERRORS as exc:
        if not disconnected.done():
            await _send_error_event(send, rec, surface, _transport_error(runner, exc))
            window = b""
    finally:
        client_gone = disconnected.done()
        disconnected.cancel()
    finished = surface.stream_finished(window)
    if client_gone and not finished:  # a client that leaves after [DONE] has had it all
        rec.outcome = "client_disconnected"
        return
    surface.count_tokens(rec, window)
    if not finished and rec.outcome == "ok":  # the runner closed the stream without finishing it
        await _send_error_event(send, rec, surface, RunnerError(f"model {runner.name!r} ended the stream early"))
    await send({"type": "http.response.body", "body": b"" if finished else surface.stream_end, "more_body": False})


async def _send_error_event(send: Send, rec: RequestRecord, surface: Surface, error: HomestackError) -> None:
    """A stream that already started can only end with an error event (then the surface's end)."""
    rec.outcome, rec.status = error.code, error.status
    await send({"type": "http.response.body", "body": surface.error_event(error), "more_body": True})


async def relay(
    pool: UpstreamPool, base_url: str, method: bytes, path: str, body: bytes, send: Send, extra_headers: Headers
) -> int:
    """Pass a request through to a service unchanged and relay its answer as it arrives; the status."""
    try:
        resp = await pool.request(method, base_url, path, body)
    except _TRANSPORT_ERRORS as exc:
        raise ServiceUnavailable(f"the knowledge service at {base_url} is not answering: {exc}") from None
    try:
        head = [(b"content-type", resp.content_type or b"application/json")] + extra_headers
        await send({"type": "http.response.start", "status": resp.status, "headers": head})
        try:
            async for chunk in resp.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except _TRANSPORT_ERRORS:
            pass  # the answer started: all that is left is to end it
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return resp.status
    finally:
        resp.close()
