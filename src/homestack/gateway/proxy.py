"""Forwarding one OpenAI request to a runner and relaying the answer.

Streams are relayed chunk by chunk as they arrive and always end with
``data: [DONE]``; a runner that dies mid-stream yields an error event first.
"""

from __future__ import annotations

import asyncio
import re
import time

import orjson

from ..errors import HomestackError, RunnerError, RunnerTimeout, ServiceUnavailable, error_body
from ..observe import RequestRecord
from ..runners import Runner
from .asgi import Headers, Receive, Send, send_response, wait_disconnect
from .upstream import Response, UpstreamError, UpstreamPool, UpstreamTimeout

_DONE = b"data: [DONE]\n\n"
_DONE_EVENT = _DONE.rstrip()
# The end of a stream kept while relaying it: enough for the last events (usage,
# llama-server's timings, [DONE]) however the runner's writes were split.
_WINDOW = 4096
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
# llama-server's last stream chunk carries "timings" even when usage was not asked for.
_TIMINGS = re.compile(rb'"cache_n"\s*:\s*(\d+).*?"prompt_n"\s*:\s*(\d+).*?"predicted_n"\s*:\s*(\d+)')
_TRANSPORT_ERRORS = (UpstreamError, UpstreamTimeout)


def _count_tokens(rec: RequestRecord, data: bytes) -> None:
    """Read token counts from ``usage`` (or llama-server's ``timings``) without parsing the body."""
    at = data.rfind(b'"usage"')
    if at >= 0:
        if m := _PROMPT_TOKENS.search(data, at):
            rec.tokens_in = int(m.group(1))
        if m := _COMPLETION_TOKENS.search(data, at):
            rec.tokens_out = int(m.group(1))
    elif (at := data.rfind(b'"timings"')) >= 0 and (m := _TIMINGS.search(data, at)):
        rec.tokens_in = int(m.group(1)) + int(m.group(2))
        rec.tokens_out = int(m.group(3))


def _runner_error(status: int, data: bytes) -> tuple[bytes, str]:
    """An upstream error body in OpenAI shape, marked as the runner's; and its type."""
    try:
        parsed = orjson.loads(data)
        error = parsed.get("error") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        error = None
    if isinstance(error, dict):
        message = error.get("message") or str(error)
        type_ = error.get("type") or "runner_error"
        code = error.get("code")
        param = error.get("param")
    else:
        message = data.decode("utf-8", "replace").strip()[:500] or f"runner answered HTTP {status}"
        type_, code, param = "runner_error", None, None
    return error_body(message, type_, param, None if code is None else str(code), "runner"), type_


def _transport_error(runner: Runner, exc: BaseException) -> HomestackError:
    if isinstance(exc, TimeoutError):
        return RunnerTimeout(f"model {runner.name!r} did not answer in time: {exc}")
    return RunnerError(f"model {runner.name!r} failed: {exc}")


async def forward(
    pool: UpstreamPool,
    runner: Runner,
    path: str,
    body: bytes,
    rec: RequestRecord,
    send: Send,
    receive: Receive,
    extra_headers: Headers,
) -> None:
    try:
        # path starts with /v1 and base_url ends with /v1: the runner gets its own prefix.
        resp = await pool.request(b"POST", runner.base_url, path[3:], body, runner.upstream_headers)
    except _TRANSPORT_ERRORS as exc:
        raise _transport_error(runner, exc) from None
    rec.first_byte = time.perf_counter()
    try:
        if rec.stream and resp.status == 200:
            await _relay_stream(resp, runner, rec, send, receive, extra_headers)
            return
        try:
            data = await resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(runner, exc) from None
        rec.status = resp.status
        if resp.status >= 400:
            data, error_type = _runner_error(resp.status, data)
            rec.outcome = f"runner:{error_type}"
            await send_response(send, resp.status, data, headers=extra_headers)
            return
        _count_tokens(rec, data)
        await send_response(send, resp.status, data, resp.content_type, extra_headers)
    finally:
        resp.close()


async def _relay_stream(
    resp: Response, runner: Runner, rec: RequestRecord, send: Send, receive: Receive,
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
            await _send_error_event(send, rec, _transport_error(runner, exc))
            window = b""
    finally:
        client_gone = disconnected.done()
        disconnected.cancel()
    finished = window.rstrip().endswith(_DONE_EVENT)
    if client_gone and not finished:  # a client that leaves after [DONE] has had it all
        rec.outcome = "client_disconnected"
        return
    _count_tokens(rec, window)
    if not finished and rec.outcome == "ok":  # the runner closed the stream without finishing it
        await _send_error_event(send, rec, RunnerError(f"model {runner.name!r} ended the stream early"))
    await send({"type": "http.response.body", "body": b"" if finished else _DONE, "more_body": False})


async def _send_error_event(send: Send, rec: RequestRecord, error: HomestackError) -> None:
    """A stream that already started can only end with an error event (then [DONE])."""
    rec.outcome, rec.status = error.code, error.status
    await send({"type": "http.response.body", "body": b"data: " + error.body() + b"\n\n", "more_body": True})


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
