"""The gateway's lean upstream HTTP client, against raw asyncio servers that misbehave on purpose."""

from __future__ import annotations

import asyncio

import pytest

from homestack.gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout


async def _serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_content_length_and_keep_alive_reuse():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        while True:
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    async def main():
        server, url = await _serve(handler)
        pool = UpstreamPool(2, 2)
        for _ in range(3):
            resp = await pool.request(b"POST", url, "/chat/completions", b'{"a":1}')
            assert (resp.status, resp.content_type, await resp.read()) == (200, b"application/json", b"{}")
        pool.close()
        server.close()
        return len(connections)

    assert _run(main()) == 1


def test_chunked_body_arrives_in_pieces():
    async def handler(reader, writer):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: [DONE]\n\n"):
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")

    async def main():
        server, url = await _serve(handler)
        pool = UpstreamPool(2, 2)
        resp = await pool.request(b"POST", url, "/chat/completions", b"{}")
        chunks = [c async for c in resp.chunks()]
        server.close()
        return chunks

    assert _run(main()) == [b"data: 1\n\n", b"data: [DONE]\n\n"]


def test_an_idle_connection_the_server_closed_is_retried_once():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        await _read_request(reader)
        if len(connections) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            # The next request arrives on this kept-alive connection, and the runner closes it
            # unanswered, as a keep-alive timeout racing the request does: truly stale when written.
            await _read_request(reader)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
            await writer.drain()
        writer.close()

    async def main():
        server, url = await _serve(handler)
        pool = UpstreamPool(2, 2)
        assert await (await pool.request(b"POST", url, "/x", b"{}")).read() == b"ok"
        assert await (await pool.request(b"POST", url, "/x", b"{}")).read() == b"fresh"
        server.close()

    _run(main())
    assert len(connections) == 2


def test_a_fresh_connection_that_fails_is_not_retried():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        await _read_request(reader)
        writer.close()  # the request may have been processed: never sent twice

    async def main():
        server, url = await _serve(handler)
        with pytest.raises(UpstreamError, match="closed the connection"):
            await UpstreamPool(2, 2).request(b"POST", url, "/x", b"{}")
        server.close()

    _run(main())
    assert len(connections) == 1


def test_silence_is_a_timeout_and_garbage_is_an_error():
    async def silent(reader, writer):
        await _read_request(reader)
        await asyncio.sleep(5)

    async def garbage(reader, writer):
        await _read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")

    async def main():
        pool = UpstreamPool(2, 0.3)
        server, url = await _serve(silent)
        with pytest.raises(UpstreamTimeout):
            await pool.request(b"POST", url, "/x", b"{}")
        server.close()
        server, url = await _serve(garbage)
        with pytest.raises(UpstreamError):
            await pool.request(b"POST", url, "/x", b"{}")
        server.close()

    _run(main())


def test_nobody_listening_is_an_error():
    async def main():
        pool = UpstreamPool(2, 2)
        with pytest.raises(UpstreamError, match="cannot connect"):
            await pool.request(b"POST", "http://127.0.0.1:9/v1", "/x", b"{}")

    _run(main())


def test_closed_connections_leave_the_pool():
    async def handler(reader, writer):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # as a runner that stops does: its port is never used again

    async def main():
        server, url = await _serve(handler)
        pool = UpstreamPool(2, 2)
        resp = await pool.request(b"POST", url, "/chat/completions", b"{}")
        assert await resp.read() == b"ok"
        for _ in range(100):
            if not pool._idle:
                break
            await asyncio.sleep(0.01)
        assert pool._idle == {}
        server.close()
        pool.close()

    _run(main())
