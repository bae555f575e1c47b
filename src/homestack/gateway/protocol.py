"""The gateway's HTTP protocol: uvicorn's httptools one, with a deadline for a request's headers.

uvicorn times out an idle keep-alive connection but not a client that sends its
headers one byte at a time (slowloris): such a client holds a connection, and
its memory, for as long as it likes. Here every request's headers must be
complete within ``timeouts.headers`` seconds of its first byte (or of the
connection opening); otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeaderDeadline(HttpToolsProtocol):
    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_deadline(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, closing connections whose headers take over ``seconds``."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadline,), {"header_timeout": seconds})
