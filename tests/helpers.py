"""Test helpers: a real gateway process, runner process checks, a fake upstream."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import ServerProcess, wait_until

TESTS = Path(__file__).parent
FAKE_GPUS = TESTS / "fake_gpus"  # a fake pynvml: a fake NVIDIA host for every process that finds it first


class GatewayProcess(ServerProcess):
    """``homestack serve`` as a child process on a port the OS picks."""

    what = "gateway"

    def __init__(self, home: Path, config: str | None, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 wait: bool = True, unread_stdout: bool = False):
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.stdout_path = home / "gateway.stdout"
        argv = [sys.executable, "-m", "homestack", "serve"]
        if config is not None:
            config_path = home / "fleet.yaml"
            config_path.write_text(config)
            argv += ["--config", str(config_path)]
        if "--port" not in args:
            argv += ["--port", "0"]
        if "--knowledge-port" not in args:  # most tests need no knowledge service beside the gateway
            argv += ["--no-knowledge"]
        argv += list(args)
        self.env = {**os.environ, "HOMESTACK_HOME": str(home / "data"), **(env or {})}
        stdout = subprocess.PIPE if unread_stdout else self.stdout_path.open("wb")
        super().__init__(argv, home / "gateway.stderr", env=self.env, stdout=stdout, wait=wait)

    def request_log(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.stdout_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:  # a line still being written
                pass
        return entries

    def log_entry(self, request_id: str) -> dict[str, Any]:
        """The request log line for ``request_id`` (written just after the response is sent)."""
        return wait_until(
            lambda: next((e for e in self.request_log() if e["request_id"] == request_id), None),
            timeout=10, message=f"log line for {request_id}",
        )

    def openai(self, api_key: str = "none", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, **kwargs)

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)

    def running(self, all: bool = False, **headers: str) -> dict[str, dict[str, Any]]:
        resp = httpx.get(self.url + "/admin/running" + ("?all=1" if all else ""), headers=headers, timeout=30)
        resp.raise_for_status()
        return {r["name"]: r for r in resp.json()["running"]}

    def cli(self, *args: str, check: bool = True, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``homestack ARGS`` against this gateway."""
        result = subprocess.run(
            [sys.executable, "-m", "homestack", *args], capture_output=True, text=True, timeout=timeout,
            env={**self.env, "HOMESTACK_URL": self.url, **env},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"homestack {' '.join(args)} failed: {result.stderr}")
        return result


def metric(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition: ``name`` with exactly ``labels`` (0 if absent)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def processes_with(arg: str) -> list[int]:
    """Live processes whose command line contains ``arg``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if arg.encode() in cmdline and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def ensure_debian(binary: str, package: str) -> str:
    """The path of ``binary``, installing the Debian ``package`` first if it is missing (CI starts clean).

    Not root (a CI runner, say): apt goes through ``sudo -n``, never prompting. A failure is one
    clear pytest failure naming what to install, not a traceback.
    """
    found = shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if found:
        return found
    sudo = ["sudo", "-n"] if os.geteuid() != 0 and shutil.which("sudo") else []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        try:
            done = subprocess.run(sudo + argv, capture_output=True, text=True, env=env, timeout=900)
            problem = done.stderr.strip().splitlines()[-1:] if done.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = [str(exc)]
        if problem is not None:
            pytest.fail(f"this test needs {binary} (Debian package {package!r}) and `{' '.join(argv)}` failed: "
                        f"{' '.join(problem) or 'no output'}", pytrace=False)
    found = shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if not found:
        pytest.fail(f"installed {package!r} but {binary} is still not on PATH", pytrace=False)
    return found


def free_port() -> int:
    """A port nothing listens on now (for a runner that is down, or a server that is not ours)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream(ServerProcess):
    """tests/fake_openai.py on a port (the OS picks one unless given): an OpenAI-compatible upstream."""

    what = "fake upstream"

    def __init__(self, port: int = 0):
        super().__init__([sys.executable, str(TESTS / "fake_openai.py"), "--port", str(port)], stderr_path=None)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
        return super().stop(sig, timeout)


def nginx_test_conf(root: Path, site: Path) -> Path:
    """A main nginx.conf including ``site``, with every path nginx writes under ``root`` (no root needed)."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    for kind in kinds:
        (root / kind).mkdir(parents=True, exist_ok=True)
    temp = "\n".join(f"    {kind}_temp_path {root / kind};" for kind in kinds)
    conf = root / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {root / 'nginx.pid'};
error_log {root / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    include {site};
}}
""")
    return conf


def self_signed(root: Path) -> tuple[Path, Path]:
    """A one-day certificate and key for localhost (and 127.0.0.1), for TLS tests."""
    cert, key = root / "cert.pem", root / "key.pem"
    openssl = ensure_debian("openssl", "openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key
