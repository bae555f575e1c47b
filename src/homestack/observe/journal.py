"""Request lines as structured journald entries, when the gateway runs under systemd.

systemd connects a unit's stdout to the journal and says so in ``$JOURNAL_STREAM``
("device:inode" of that stream). Lines written there arrive as plain text; sent
over journald's native protocol instead (one datagram per entry, ``FIELD=value``
lines), each entry keeps its fields, so ``journalctl -u homestack -o json`` shows
HOST, MODEL, RUNNER_VERSION and DURATION_MS, and ``journalctl MODEL=x`` filters
on them. MESSAGE stays the JSON line a terminal would show.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, BinaryIO

import orjson

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "homestack"

# Entry key -> journal field. Journal field names are upper case; values are sent as text.
_FIELDS = {
    "host": "HOST", "request_id": "REQUEST_ID", "method": "METHOD", "path": "URL_PATH",
    "model": "MODEL", "runner": "RUNNER", "runner_kind": "RUNNER_KIND", "runner_version": "RUNNER_VERSION",
    "status": "STATUS", "outcome": "OUTCOME", "duration_ms": "DURATION_MS", "ttft_ms": "TTFT_MS",
    "tokens_in": "TOKENS_IN", "tokens_out": "TOKENS_OUT", "key": "KEY_NAME", "route": "ROUTE",
}
_INFO, _WARNING, _ERROR = b"6", b"4", b"3"


def stdout_is_journal(out: BinaryIO) -> bool:
    """True when systemd says ``out`` is its journal stream (the documented $JOURNAL_STREAM check)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(out.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class JournalWriter:
    """Sends each entry as one native journal datagram; falls back to ``fallback`` if the socket fails."""

    def __init__(self, fallback: BinaryIO, path: str = SOCKET):
        self._fallback = fallback
        self._path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def write(self, entries: list[dict[str, Any]], lines: list[bytes]) -> None:
        for entry, line in zip(entries, lines):
            try:
                self._sock.sendto(datagram(entry, line), self._path)
            except OSError:  # journald restarting or gone: the line still goes to stdout (the journal's stream)
                self._fallback.write(line + b"\n")
        self._fallback.flush()


def datagram(entry: dict[str, Any], line: bytes) -> bytes:
    status = entry.get("status") or 0
    priority = _ERROR if status >= 500 else _WARNING if status >= 400 else _INFO
    parts = [_field(b"MESSAGE", line), b"PRIORITY=" + priority + b"\n",
             b"SYSLOG_IDENTIFIER=" + IDENTIFIER.encode() + b"\n"]
    for key, name in _FIELDS.items():
        value = entry.get(key)
        if value is not None:
            parts.append(_field(name.encode(), str(value).encode()))
    if entry.get("fell_back_from"):
        parts.append(_field(b"FELL_BACK_FROM", orjson.dumps(entry["fell_back_from"])))
    return b"".join(parts)


def _field(name: bytes, value: bytes) -> bytes:
    if b"\n" not in value:
        return name + b"=" + value + b"\n"
    # The protocol's binary form: a value with a newline goes as name, newline, 64-bit LE length, bytes.
    return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
