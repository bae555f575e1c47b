"""Forwarding one model request to a runner and relaying the answer.

What is protocol-specific (usage, how a stream ends, error shapes) comes from
the route's API surface. Streams are relayed chunk by chunk as they arrive and
always end the surface's way; a runner that dies mid-stream yields an error
event first.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Protocol

from ..errors import HomestackError, RunnerError, RunnerTimeout, ServiceUnavailable
from ..observe import RequestRecord
from ..runners.logs import REDACTED
from .asgi import SSE_HEADERS, Headers, Receive, Send, send_response, wait_disconnect
from .keepalive import EVERY as KEEPALIVE_EVERY
from .slots import pinned
from .surfaces import Operation, StreamTranslator, Surface, Translation
from .upstream import Response, UpstreamError, UpstreamPool, UpstreamTimeout

# The end of a stream kept while relaying it: enough for the last events (usage,
# llama-server's timings, the end marker) however the runner's writes were split.
_WINDOW = 4096
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
    translation: Translation | None = None,
    fallback: bool = False,
    pin: tuple[str, int] | None = None,
) -> None:
    """Send ``body`` to the operation's runner path, or, with a ``translation``, as chat completions, and
    relay the answer. With ``fallback`` (another target would be tried), an answer worth trying elsewhere
    raises RunnerError instead of going to the client. ``pin``: (body field, slot) naming the runner slot."""
    if translation is not None:
        body = translation.request()
    if pin is not None:
        body = pinned(body, *pin)
    resp = await open_upstream(pool, runner, operation, body, translation)
    await deliver(resp, runner, operation, rec, send, receive, extra_headers, translation, fallback)


async def open_upstream(pool: UpstreamPool, runner: Target, operation: Operation, body: bytes,
                        translation: Translation | None = None) -> Response:
    """Send the request; the response once its headers are in (RunnerError/RunnerTimeout if none came)."""
    path, at_origin = ((operation.upstream_path, operation.at_origin) if translation is None
                       else (translation.upstream_path, translation.at_origin))
    base_url = runner.base_url.rsplit("/v1", 1)[0] if at_origin else runner.base_url
    try:
        return await pool.request(b"POST", base_url, path, body, runner.upstream_headers)
    except _TRANSPORT_ERRORS as exc:
        raise _transport_error(runner, exc) from None


async def deliver(
    resp: Response, runner: Target, operation: Operation, rec: RequestRecord, send: Send, receive: Receive,
    extra_headers: Headers, translation: Translation | None = None, fallback: bool = False,
) -> None:
    """Relay an upstream's answer to the client (the stream as it arrives), then close it."""
    surface = operation.surface
    rec.first_byte = time.perf_counter()
    try:
        if rec.stream and resp.status == 200:
            await _relay_stream(resp, runner, surface, rec, send, receive, extra_headers,
                                translation.stream() if translation is not None else None)
            return
        try:
            data = await resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(runner, exc) from None
        rec.status = resp.status
        if fallback and _worth_another(resp.status, data):
            raise RunnerError(f"model {runner.name!r} answered {resp.status}")
        if resp.status >= 400:
            data, error_type = surface.runner_error(resp.status, _redacted(data, runner.secrets))
            rec.outcome = f"runner:{error_type}"
            await send_response(send, resp.status, data, headers=extra_headers)
            return
        if translation is not None:
            data = translation.answer(data)
        surface.count_tokens(rec, data)
        await send_response(send, resp.status, data, resp.content_type, extra_headers)
    finally:
        resp.close()


def _worth_another(status: int, data: bytes) -> bool:
    """The runner failed or is overloaded, or the prompt does not fit its context (llama-server's 400)."""
    return status >= 500 or status == 429 or (status == 400 and b"exceed_context_size_error" in data)


async def _relay_stream(
    resp: Response, runner: Target, surface: Surface, rec: RequestRecord, send: Send, receive: Receive,
    extra_headers: Headers, translator: StreamTranslator | None,
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + extra_headers})
    disconnected = asyncio.ensure_future(wait_disconnect(receive))
    # A client that goes away closes the upstream connection at once, so the
    # runner stops generating for nobody (even in the middle of a long prompt).
    disconnected.add_done_callback(lambda task: task.cancelled() or resp.close())
    window = b""
    head = 0  # bytes relayed, while they still fit the window
    try:
        # Pacing (a timer per chunk) only where a silent runner can be covered with a ping.
        pings = surface.ping is not None or translator is not None
        async for chunk in (_paced(resp, KEEPALIVE_EVERY) if pings else resp.chunks()):
            if chunk is None:  # the runner is silent (reading a long prompt): tell the client it is coming
                ping = translator.keepalive() if translator is not None else _between_events(surface, window)
                if ping:
                    await send({"type": "http.response.body", "body": ping, "more_body": True})
                continue
            if translator is not None:
                chunk = translator.feed(chunk)
            if not window:  # time to first token: the first chunk of the body, not the headers
                rec.first_byte = time.perf_counter()
            window = (window + chunk)[-_WINDOW:]
            if head < _WINDOW:  # the stream's head, whole so far: its first event may come split over chunks
                head += len(chunk)
                surface.stream_started(rec, window)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except _TRANSPORT_ERRORS as exc:
        if not disconnected.done():
            await _send_error_event(send, rec, surface, _transport_error(runner, exc))
            window = b""
    finally:
        client_gone = disconnected.done()
        disconnected.cancel()
    ending = b""
    if translator is not None and not client_gone and rec.outcome == "ok":
        ending = translator.finish()  # the closing events, if the runner finished its stream
        window = (window + ending)[-_WINDOW:]
        await send({"type": "http.response.body", "body": ending, "more_body": True})
    # A translated ending is judged whole: a Responses one repeats the request's tools, often past the window.
    finished = surface.stream_finished(ending if translator is not None else window)
    if client_gone and not finished:  # a client that leaves after [DONE] has had it all
        rec.outcome = "client_disconnected"
        return
    surface.count_tokens(rec, window)
    if not finished and rec.outcome == "ok":  # the runner closed the stream without finishing it
        await _send_error_event(send, rec, surface, RunnerError(f"model {runner.name!r} ended the stream early"))
    await send({"type": "http.response.body", "body": b"" if finished else surface.stream_end, "more_body": False})


async def _paced(resp: Response, every: float) -> AsyncIterator[bytes | None]:
    """The answer's chunks as they come, and None each time ``every`` seconds pass without one."""
    chunks = resp.chunks()
    following = asyncio.ensure_future(anext(chunks))
    try:
        while True:
            done, _ = await asyncio.wait((following,), timeout=every)
            if not done:
                yield None
                continue
            try:
                chunk = following.result()
            except StopAsyncIteration:
                return
            yield chunk
            following = asyncio.ensure_future(anext(chunks))
    finally:
        following.cancel()


def _between_events(surface: Surface, relayed: bytes) -> bytes | None:
    """The surface's ping, if the relayed stream is between two events (a ping must not split one)."""
    return surface.ping if not relayed or relayed.endswith((b"\n\n", b"\r\n\r\n")) else None


async def _send_error_event(send: Send, rec: RequestRecord, surface: Surface, error: HomestackError) -> None:
    """A stream that already started can only end with an error event (then the surface's end)."""
    rec.outcome, rec.status = error.code, error.status
    await send({"type": "http.response.body", "body": surface.error_event(error), "more_body": True})


async def relay(
    pool: UpstreamPool, base_url: str, method: bytes, path: str, body: bytes, send: Send, extra_headers: Headers,
    upstream_headers: bytes = b"",
) -> int:
    """Pass a request through to a service (with ``upstream_headers``, raw header lines: its credentials)
    and relay its answer as it arrives; the status."""
    try:
        resp = await pool.request(method, base_url, path, body, upstream_headers)
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
