"""The Qdrant snapshot script the compose and Kubernetes targets run, run by real bash against a
stand-in for Qdrant's snapshot API (no Qdrant server can be installed here): it takes a snapshot,
then deletes all but the newest ones kept."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from homestack.config.deploy import Deploy
from homestack.deploy.qdrant_snapshots import cron_schedule, snapshot_script

_NAMES = [f"full-snapshot-2026-12-0{day}-03-17-00.snapshot" for day in range(1, 6)]


@pytest.fixture
def qdrant():
    calls: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: dict) -> None:
            calls.append((self.command, self.path))
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self._answer({"result": {"name": _NAMES[-1]}, "status": "ok"})

        def do_GET(self):
            self._answer({"result": [{"name": n, "size": 1} for n in _NAMES], "status": "ok"})

        def do_DELETE(self):
            self._answer({"result": True, "status": "ok"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], calls
    server.shutdown()


def test_the_script_snapshots_then_keeps_only_the_newest(qdrant):
    port, calls = qdrant
    script = snapshot_script(Deploy(qdrant_snapshots_kept=2), "127.0.0.1", port)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert calls[:2] == [("POST", "/snapshots"), ("GET", "/snapshots")]
    assert sorted(calls[2:]) == [("DELETE", f"/snapshots/{name}") for name in _NAMES[:3]]  # the 3 oldest of 5


@pytest.mark.parametrize(("hours", "cron"), [(24, "17 3 * * *"), (6, "17 */6 * * *"), (168, "17 3 */7 * *")])
def test_cron_schedule(hours, cron):
    assert cron_schedule(hours) == cron


def test_hours_cron_cannot_say_are_refused():
    with pytest.raises(ValueError, match="divide 24 or be a multiple of 24"):
        Deploy(qdrant_snapshot_hours=5)
