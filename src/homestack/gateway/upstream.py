"""A lean HTTP/1.1 client for the hot path: pooled keep-alive connections to runners.

General-purpose clients spend most of the gateway's CPU per request; this one
does only what forwarding needs: write one POST, parse the answer with
httptools, hand the body over as it arrives, and keep the connection for the
next request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import AsyncIterator
from urllib.parse import urlsplit

import httptools


_MAX_ORIGINS = 256


class UpstreamError(ConnectionError):
    """The runner closed the connection or sent something that is not HTTP."""


class UpstreamTimeout(TimeoutError):
    """The runner did not connect, or stayed silent, for longer than allowed."""


class _Origin:
    __slots__ = ("host", "port", "ssl", "prefix", "host_header")

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = parts.scheme == "https"
        self.port = parts.port or (443 if self.ssl else 80)
        self.prefix = parts.path.rstrip("/").encode()
        self.host_header = parts.netloc.encode()


class Response:
    """One upstream answer: status and content type at once, the body as it arrives.

    Read it to the end (the connection then goes back to the pool) or close it.
    """

    __slots__ = ("status", "content_type", "_conn", "_done")

    def __init__(self, conn: "_Connection"):
        self._conn = conn
        self._done = False
        self.status = conn.parser.get_status_code()
        self.content_type = conn.content_type

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            while conn.body:
                yield conn.body.popleft()
            if conn.complete:
                self._done = True
                conn.finish()
                return
            await conn.wait()

    def close(self) -> None:
        """Give up on the rest of the answer: the connection is dropped, not reused."""
        if not self._done:
            self._done = True
            self._conn.drop()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: "UpstreamPool", key: tuple[str, int, bool], read_timeout: float):
        self.pool, self.key, self.read_timeout = pool, key, read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)  # parses one answer after another
        self.body: deque[bytes] = deque()
        self.content_type = b"application/json"
        self.headers_complete = False
        self.framed = False  # the body has a length or chunks, rather than ending at close
        self.complete = False
        self.keep_alive = False
        self.closed = False
        self.received = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        self._arm_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"invalid HTTP from the runner: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self.pool._forget(self)
        if self.complete:
            return
        if self.headers_complete and not self.framed and exc is None:
            # No Content-Length and not chunked: the body ends where the connection does.
            self.complete = True
            self._wake()
        else:
            self._fail(UpstreamError("the runner closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value
        elif name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._cancel_timer()
        self._wake()

    # the client side
    def send(self, head: bytes, body: bytes) -> None:
        self.body.clear()
        self.headers_complete = self.framed = self.complete = self.received = False
        self.error = None
        self.content_type = b"application/json"
        assert self.transport is not None
        self.transport.writelines((head, body))
        self._arm_timer()

    async def wait(self) -> None:
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.error is not None and not self.body and not self.complete:
            raise self.error

    def finish(self) -> None:
        """The answer was read to the end: keep the connection if the runner allows."""
        if self.keep_alive and not self.closed:
            self.pool._release(self)
        else:
            self.drop()

    def drop(self) -> None:
        self._cancel_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:  # the first cause wins: a timeout closes the connection too
            self.error = error
        self.drop()
        self._wake()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(self.read_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._fail(UpstreamTimeout(f"the runner sent nothing for {self.read_timeout:g} s"))


class UpstreamPool:
    def __init__(self, connect_timeout: float, read_timeout: float):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._origins: dict[str, _Origin] = {}
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self, method: bytes, base_url: str, path: str, body: bytes = b"", headers: bytes = b""
    ) -> Response:
        """Send ``body`` to ``base_url + path``; return once the status line and headers are in."""
        origin = self._origins.get(base_url)
        if origin is None:
            if len(self._origins) >= _MAX_ORIGINS:  # each runner load is a new port: parsed URLs must not pile up
                self._origins.clear()
            origin = self._origins[base_url] = _Origin(base_url)
        head = b"".join((
            method, b" ", origin.prefix, path.encode(), b" HTTP/1.1\r\nHost: ", origin.host_header,
            b"\r\nContent-Type: application/json\r\nContent-Length: ", str(len(body)).encode(), b"\r\n",
            headers, b"\r\n",
        ))
        conn, reused = await self._connection(origin)
        try:
            return await self._exchange(conn, head, body)
        except UpstreamError:
            if not reused or conn.received:
                raise
        # The runner closed an idle kept-alive connection as we reused it: nothing
        # was processed, so the request goes once more on a new connection.
        conn, _ = await self._connection(origin, fresh=True)
        return await self._exchange(conn, head, body)

    async def get(self, base_url: str, path: str) -> tuple[int, bytes]:
        """GET ``base_url + path``: status and whole body."""
        resp = await self.request(b"GET", base_url, path)
        try:
            return resp.status, await resp.read()
        finally:
            resp.close()

    async def status(self, base_url: str, path: str) -> int:
        """The status alone, as a health check wants it."""
        return (await self.get(base_url, path))[0]

    async def _exchange(self, conn: _Connection, head: bytes, body: bytes) -> Response:
        conn.send(head, body)
        try:
            while not conn.headers_complete:
                await conn.wait()
        except BaseException:
            conn.drop()
            raise
        return Response(conn)

    async def _connection(self, origin: _Origin, fresh: bool = False) -> tuple[_Connection, bool]:
        key = (origin.host, origin.port, origin.ssl)
        idle = self._idle.get(key)
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, key, self.read_timeout), origin.host, origin.port,
                    ssl=self._ssl_context() if origin.ssl else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"could not connect to {origin.host}:{origin.port} in {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}") from None
        return conn, False

    def _release(self, conn: _Connection) -> None:
        self._idle.setdefault(conn.key, []).append(conn)

    def _forget(self, conn: _Connection) -> None:
        """A closed connection leaves the pool: runners come and go on new ports, nothing must pile up."""
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.drop()
        self._idle.clear()
