"""Remote and command runners (against a small fake upstream), auth, limits, exposure."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import sys

import httpx
import openai
import pytest

from helpers import TESTS, FakeUpstream, GatewayProcess, free_port, processes_with
from test_config import ISSUE_EXAMPLE


@pytest.fixture
def upstream():
    fake = FakeUpstream()
    yield fake
    fake.stop()


def test_the_issue_example_works_as_written(gateway_factory, upstream):
    # As written but for the port: the fake upstream takes one the OS picks, never a skip for a busy 9000.
    gw = gateway_factory(ISSUE_EXAMPLE.replace("127.0.0.1:9000", f"127.0.0.1:{upstream.port}"))
    client = gw.openai(max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hello from fake"
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None


def test_remote_runner_streams_and_sends_its_key_upstream(gateway_factory, upstream):
    gw = gateway_factory(
        f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n    api_key: up-key\n"
    )
    client = gw.openai(max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert raw.http_response.json()["seen_authorization"] == "Bearer up-key"
    chunks = list(client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True},
        extra_headers={"X-Request-ID": "fake-stream"},
    ))
    assert "".join(c.choices[0].delta.content for c in chunks if c.choices).strip() == "hello from fake"
    assert chunks[-1].usage.total_tokens == 5
    # The fake ends its stream by closing the connection (no length, not chunked): that is a clean end.
    line = gw.log_entry("fake-stream")
    assert line["outcome"] == "ok" and line["tokens_in"] == 3 and line["tokens_out"] == 2


def test_events_split_across_writes_are_relayed_and_counted(gateway_factory, upstream):
    gw = gateway_factory(f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n")
    chunks = list(gw.openai(max_retries=0).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True},
        extra_headers={"X-Request-ID": "split"}, extra_body={"fake_split": True},
    ))
    assert "".join(c.choices[0].delta.content for c in chunks if c.choices).strip() == "hello from fake"
    line = gw.log_entry("split")
    assert line["outcome"] == "ok" and (line["tokens_in"], line["tokens_out"]) == (3, 2)


def test_remote_runner_that_is_down_is_502(gateway_factory):
    port = free_port()
    gw = gateway_factory(f"models:\n  gone:\n    runner: remote\n    url: http://127.0.0.1:{port}/v1\n")
    with pytest.raises(openai.InternalServerError) as info:
        gw.openai(max_retries=0).chat.completions.create(model="gone", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and info.value.body["source"] == "runner"


def test_command_runner_starts_any_openai_server_without_a_shell(gateway_factory, tmp_path):
    fleet = f"""
models:
  fake:
    runner: command
    command: ["{sys.executable}", "{TESTS / 'fake_openai.py'}", "--port", "{{port}}"]
    ttl: 60
"""
    gw = gateway_factory(fleet)
    reply = gw.openai(max_retries=0).chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "hello from fake"
    running = gw.running()["fake"]
    assert running["runner"] == "command" and running["pid"]


def test_body_over_the_limit_is_413(gateway_factory, upstream):
    gw = gateway_factory(
        f"max_body_bytes: 2048\nmodels:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n"
    )
    body = {"model": "echo", "messages": [{"role": "user", "content": "x" * 4096}]}
    resp = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    # Without Content-Length (chunked), the limit holds as the body arrives.
    chunked = httpx.post(gw.url + "/v1/chat/completions", content=iter([b"{" + b" " * 1500, b" " * 1500 + b"}"]))
    assert chunked.status_code == 413


AUTH_FLEET = """
api_keys: [user-key]
admin_keys: [admin-key]
models:
  echo:
    runner: remote
    url: http://127.0.0.1:{port}/v1
"""


def test_keys_are_required_when_configured(gateway_factory, upstream):
    gw = gateway_factory(AUTH_FLEET.format(port=upstream.port))
    ask = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(openai.AuthenticationError) as info:
        gw.openai(api_key="wrong", max_retries=0).chat.completions.create(**ask)
    assert info.value.body["source"] == "gateway"
    assert httpx.post(gw.url + "/v1/chat/completions", json=ask).status_code == 401
    assert gw.openai(api_key="user-key").chat.completions.create(**ask).choices[0].message.content
    assert gw.openai(api_key="admin-key").models.list().data[0].id == "echo"
    # Admin routes need an admin key.
    assert httpx.get(gw.url + "/admin/running").status_code == 401
    assert httpx.get(gw.url + "/admin/running", headers={"Authorization": "Bearer user-key"}).status_code == 403
    assert gw.running(Authorization="Bearer admin-key") is not None
    assert httpx.get(gw.url + "/health").status_code == 200
    # The CLI takes the key from HOMESTACK_API_KEY.
    assert gw.cli("ps", check=False).returncode == 1
    assert "echo" in gw.cli("ps", HOMESTACK_API_KEY="admin-key").stdout


def test_non_loopback_without_keys_refuses_to_start(tmp_path, upstream):
    fleet = f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n"
    gw = GatewayProcess(tmp_path / "exposed", fleet, args=("--host", "0.0.0.0"), wait=False)
    assert gw.proc.wait(60) == 1
    stderr = gw.stderr().strip()
    assert len(stderr.splitlines()) == 1 and "--no-auth" in stderr and "Traceback" not in stderr


def test_no_auth_flag_allows_non_loopback(gateway_factory, upstream):
    fleet = f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n"
    gw = gateway_factory(fleet, "--host", "0.0.0.0", "--no-auth")
    port = gw.url.rsplit(":", 1)[1]
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200


def test_a_port_in_use_is_a_one_line_error(gateway_factory, upstream, tmp_path):
    fleet = f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n"
    gw = GatewayProcess(tmp_path / "busy", fleet, args=("--port", str(upstream.port)), wait=False)
    assert gw.proc.wait(60) == 1
    assert "cannot listen" in gw.stderr() and "Traceback" not in gw.stderr()


def test_a_silent_runner_is_504(gateway_factory, upstream):
    gw = gateway_factory(
        f"timeouts:\n  read: 0.5\nmodels:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n"
    )
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "fake_sleep": 2}
    resp = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 504
    assert resp.json()["error"]["source"] == "runner" and resp.json()["error"]["code"] == "runner_timeout"


def test_max_concurrency_queues_the_rest(gateway_factory, upstream):
    gw = gateway_factory(
        f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n    max_concurrency: 2\n"
    )
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "fake_sleep": 0.3}
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30).status_code, range(6)))
    assert statuses == [200] * 6
    assert httpx.get(f"http://127.0.0.1:{upstream.port}/stats").json()["max_inflight"] == 2


def test_a_request_log_nobody_reads_never_stalls_the_gateway(tmp_path, upstream):
    fleet = f"models:\n  echo:\n    runner: remote\n    url: http://127.0.0.1:{upstream.port}/v1\n"
    gw = GatewayProcess(tmp_path / "unread", fleet, unread_stdout=True)
    try:
        body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            for _ in range(600):  # far more log than a pipe buffer holds
                assert client.post("/v1/chat/completions", json=body).status_code == 200
            assert client.get("/health").status_code == 200
    finally:
        gw.stop()


def test_a_runner_that_never_gets_healthy_times_out_and_is_stopped(gateway_factory):
    fleet = f"""
models:
  sleepy:
    runner: command
    command: ["{sys.executable}", "-c", "import time; print('never listening', flush=True); time.sleep(120)"]
    startup_timeout: 1
"""
    gw = gateway_factory(fleet)
    resp = httpx.post(gw.url + "/v1/chat/completions", json={"model": "sleepy", "messages": []}, timeout=60)
    assert resp.status_code == 504
    assert resp.json()["error"]["source"] == "runner"
    message = resp.json()["error"]["message"]
    assert "not healthy" in message and "after 1 s" in message and "never listening" in message
    assert not gw.running()
    assert not processes_with("print('never listening', flush=True); time.sleep(120)")
