"""One structured JSON line per request.

It answers: which host, model, runner and runner version; how long (total and
time to first token); how many tokens in and out; how it ended.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, BinaryIO, Protocol

import orjson


class RequestRecord:
    """What the gateway learns about one request while it serves it."""

    __slots__ = (
        "request_id", "method", "path", "model", "runner", "runner_kind", "runner_version",
        "stream", "status", "outcome", "started", "first_byte", "tokens_in", "tokens_out", "key", "host",
        "route", "fell_back_from",
    )

    def __init__(self, request_id: str, method: str, path: str):
        self.request_id = request_id
        self.method = method
        self.path = path
        self.model: str | None = None
        self.runner: str | None = None
        self.runner_kind: str | None = None
        self.runner_version: str | None = None
        self.stream = False
        self.status = 200
        self.outcome = "ok"
        self.started = time.perf_counter()
        self.first_byte: float | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.key: str | None = None  # the API key's name, when keys are configured
        self.route: str | None = None  # the route (virtual model) asked for; ``runner`` is the target that served
        self.fell_back_from: list[str] = []  # a route's targets that could not serve it, in order
        self.host: str | None = None  # the peer that ran it; None: this host


class RecordSink(Protocol):
    """What the writer feeds each finished record to (observe.metrics.Metrics); the log needs no more of it."""

    lock: threading.Lock

    def observe(self, rec: RequestRecord, duration: float) -> None: ...


class RequestLog:
    """Writes request lines from a background thread, in batches.

    The event loop never blocks on the log (a stdout pipe nobody reads would
    otherwise stall every request) and never hands the GIL over per line: it
    appends the finished record to a deque that the writer drains every few
    milliseconds, and the writer formats the line, records the metrics and
    keeps the most recent entries. Past ``max_pending`` unwritten records,
    records are dropped and the count is logged.
    """

    _INTERVAL = 0.02  # seconds between batches

    def __init__(self, out: BinaryIO | None = None, max_pending: int = 100_000, recent: int = 200,
                 host: str | None = None):
        self._out = out or sys.stdout.buffer
        self.host = host or socket.gethostname()  # this machine; a request a peer ran names the peer
        self._pending: deque[tuple[RequestRecord, float, float]] = deque()
        self._max_pending = max_pending
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)  # the latest entries, for /admin/requests
        self.metrics: RecordSink | None = None  # fed from the writer thread
        self.dropped = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="homestack-request-log", daemon=True)
        self._thread.start()

    def write(self, rec: RequestRecord) -> None:
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append((rec, time.perf_counter(), time.time()))

    def latest(self, limit: int) -> list[dict[str, Any]]:
        entries = self.recent.copy()  # one C call: safe against the writer thread appending
        return list(entries)[-limit:] if limit else []

    def _entry(self, rec: RequestRecord, now: float, wall: float) -> dict[str, Any]:
        return {
            "ts": round(wall, 3),
            "event": "request",
            "host": rec.host or self.host,
            "request_id": rec.request_id,
            "method": rec.method,
            "path": rec.path,
            "model": rec.model,
            "runner": rec.runner,
            "runner_kind": rec.runner_kind,
            "runner_version": rec.runner_version,
            "stream": rec.stream,
            "status": rec.status,
            "outcome": rec.outcome,
            "duration_ms": round((now - rec.started) * 1000, 3),
            "ttft_ms": round((rec.first_byte - rec.started) * 1000, 3) if rec.first_byte else None,
            "tokens_in": rec.tokens_in,
            "tokens_out": rec.tokens_out,
            "key": rec.key,
            "route": rec.route,
            "fell_back_from": rec.fell_back_from or None,
        }

    def close(self) -> None:
        """Write what is pending, then stop the writer thread."""
        self._closing.set()
        self._thread.join(timeout=5)

    def _process(self, batch: list[tuple[RequestRecord, float, float]]) -> list[bytes]:
        """Record the batch's metrics (one lock for all) and return its log lines."""
        if batch and self.metrics is not None:
            with self.metrics.lock:
                for rec, done, _ in batch:
                    self.metrics.observe(rec, done - rec.started)
        lines = []
        for rec, done, wall in batch:
            entry = self._entry(rec, done, wall)
            lines.append(orjson.dumps(entry))
            self.recent.append(entry)
        return lines

    def _drain(self) -> None:
        reported = 0
        while True:
            closing = self._closing.wait(self._INTERVAL)
            batch = []
            while self._pending:  # deque.popleft is atomic: no lock with the event loop
                batch.append(self._pending.popleft())
            try:
                lines = self._process(batch)
            except Exception:  # a bug here must not end request logs and metrics for good
                traceback.print_exc(file=sys.stderr)
                lines = []
            if self.dropped != reported:
                lines.append(orjson.dumps({"event": "request_log_dropped", "lines": self.dropped - reported}))
                reported = self.dropped
            if lines:
                try:
                    self._out.write(b"\n".join(lines) + b"\n")
                    self._out.flush()
                except (OSError, ValueError):  # a closed or broken log stream must not fail requests
                    pass
            if closing:
                return
