"""Request lines reach journald as structured entries when the gateway runs under systemd.

The test talks to a real systemd-journald: the machine's own, or one started for the test
when none runs (as in a container without systemd), and reads entries back with journalctl.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid

import pytest

from harness import wait_until
from helpers import TESTS
from homestack.observe import journal

JOURNALD = "/lib/systemd/systemd-journald"


def _journal_listens() -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.sendto(b"MESSAGE=homestack test probe\nPRIORITY=7\n", journal.SOCKET)
        return True
    except OSError:
        return False
    finally:
        probe.close()


@pytest.fixture(scope="module")
def journald():
    """A journald on the standard socket: the machine's, or one of our own for the module."""
    if not shutil.which("journalctl"):
        pytest.skip("journalctl is not installed (Debian package systemd)")
    if _journal_listens():
        yield None
        return
    if os.geteuid() != 0 or not os.path.exists(JOURNALD):
        pytest.skip("no journald listens and this user cannot start one (needs root and the systemd package)")
    os.makedirs(os.path.dirname(journal.SOCKET), exist_ok=True)
    proc = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(_journal_listens, timeout=20, message="systemd-journald's socket")
    yield proc
    proc.terminate()
    proc.wait(10)


def _entries(**match: str) -> list[dict]:
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", *(f"{k}={v}" for k, v in match.items())],
                         capture_output=True, text=True, timeout=30).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_request_lines_are_structured_journal_entries(journald, gateway_factory, tmp_path):
    home = tmp_path / "gw0"
    home.mkdir()
    stdout = home / "gateway.stdout"
    stdout.touch()  # the harness reopens it (same inode): systemd's JOURNAL_STREAM names this stream
    st = os.stat(stdout)
    fleet = f"""
models:
  fake:
    runner: command
    command: ["{sys.executable}", "{TESTS / 'fake_openai.py'}", "--port", "{{port}}"]
"""
    gw = gateway_factory(fleet, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    request_id = f"journal-{uuid.uuid4().hex[:8]}"
    reply = gw.http().post("/v1/chat/completions", headers={"x-request-id": request_id},
                           json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200
    entry = wait_until(lambda: _entries(REQUEST_ID=request_id), timeout=15, message="the journal entry")[0]
    assert entry["SYSLOG_IDENTIFIER"] == "homestack" and entry["_PID"] == str(gw.proc.pid)
    assert entry["HOST"] == socket.gethostname() and entry["MODEL"] == "fake" and entry["STATUS"] == "200"
    assert float(entry["DURATION_MS"]) > 0 and entry["RUNNER_KIND"] == "command"
    assert json.loads(entry["MESSAGE"])["request_id"] == request_id  # the same JSON line a terminal shows
    assert request_id not in stdout.read_text()  # sent once, to the journal, not also down the stream


def test_stdout_that_is_not_the_journal_stream_keeps_plain_lines(tmp_path, monkeypatch):
    out = (tmp_path / "out").open("wb")
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not journal.stdout_is_journal(out)
    st = os.fstat(out.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert journal.stdout_is_journal(out)


@pytest.mark.parametrize("value", [b"plain", b"two\nlines"])
def test_field_encoding_follows_the_native_protocol(value):
    encoded = journal._field(b"F", value)
    if b"\n" in value:
        assert encoded == b"F\n" + struct.pack("<Q", len(value)) + value + b"\n"
    else:
        assert encoded == b"F=" + value + b"\n"
