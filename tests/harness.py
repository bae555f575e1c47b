"""Any of our servers as a child process: started on a port the OS picks, ready when `/health` says so.

The server binds port 0 itself, so no other test can take the port between a pick and a bind; the
harness learns the port from the kernel (the one TCP socket the process listens on) and polls
`/health` there. The gateway, the knowledge service and the fake upstream all start this way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp*


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` itself listens on: its socket inodes, looked up in the kernel's tables."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
        tables = [Path(f"/proc/{pid}/net/{name}").read_text() for name in ("tcp", "tcp6")]
    except OSError:  # the process is gone
        return set()
    ports = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class ServerProcess:
    """``argv`` as a child process, and its URL once ``/health`` answers 200. Its stderr goes to
    ``stderr_path`` (None: the test's own stderr)."""

    what = "server"
    scheme = "http"
    verify: Any = True  # for /health over https: a CA file that trusts the server's certificate
    host = "127.0.0.1"  # the address it binds (always a loopback one in tests)

    def __init__(self, argv: list[str], stderr_path: Path | None, env: dict[str, str] | None = None,
                 stdout: IO[bytes] | int | None = subprocess.DEVNULL, wait: bool = True):
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr_path.open("wb") if stderr_path else None,
                                     stdin=subprocess.DEVNULL, env=env)
        self.url = ""
        if wait:
            self.wait_ready()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else "(on the test's stderr)"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {self.proc.returncode}: {self.stderr()}")
            if not self.url:
                ports = listening_ports(self.proc.pid)
                if len(ports) > 1:
                    raise RuntimeError(f"{self.what} listens on several ports {sorted(ports)}; which one serves?")
                self.url = f"{self.scheme}://{self.host}:{ports.pop()}" if ports else ""
            if self.url and self._healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.what} not ready after {timeout} s: {self.stderr()}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=2, verify=self.verify).status_code == 200
        except httpx.HTTPError:  # bound but not serving yet
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
