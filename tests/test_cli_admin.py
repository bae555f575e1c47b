"""Admin API and the CLI that mirrors it, against the default-fleet gateway."""

from __future__ import annotations

import json

import subprocess
import sys
import threading
import time

import httpx

from helpers import wait_until


def test_health(default_gateway):
    assert httpx.get(default_gateway.url + "/health").json() == {"status": "ok"}


def test_load_ps_logs_unload(default_gateway):
    gw = default_gateway
    loaded = gw.cli("load", "gemma-3-270m").stdout
    assert "gemma-3-270m: ready" in loaded
    ps = gw.cli("ps").stdout
    assert "gemma-3-270m" in ps and "ready" in ps and "llama.cpp" in ps
    assert "GPU LAYERS" in ps.splitlines()[0]
    everything = json.loads(gw.cli("ps", "-a", "--json").stdout)  # -a: every model, stopped ones too
    assert {r["name"] for r in everything} == {"smollm2-135m-instruct", "gemma-3-270m", "minilm-l6-v2"}
    gemma = next(r for r in everything if r["name"] == "gemma-3-270m")
    assert gemma["state"] == "ready" and gemma["gpu_layers"] == ("0/19" if gemma["device"] == "cpu" else "19/19")
    assert {r["name"] for r in json.loads(gw.cli("ps", "--json").stdout)} <= {r["name"] for r in everything}
    running = gw.running()["gemma-3-270m"]
    assert running["version"] and running["pid"]
    logs = gw.cli("logs", "gemma-3-270m", "-n", "500").stdout
    assert "[homestack] starting gemma-3-270m" in logs
    assert "[homestack] gemma-3-270m is ready" in logs
    assert "stopped" in gw.cli("unload", "gemma-3-270m").stdout
    assert "gemma-3-270m" not in gw.running()


def test_logs_follow_streams_new_lines(default_gateway):
    gw = default_gateway
    follower = subprocess.Popen(
        [sys.executable, "-m", "homestack", "logs", "smollm2-135m-instruct", "-f", "-n", "0"],
        stdout=subprocess.PIPE, text=True, env={**gw.env, "HOMESTACK_URL": gw.url},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
    reader.start()
    try:
        time.sleep(0.5)
        gw.cli("unload", "smollm2-135m-instruct")
        gw.cli("load", "smollm2-135m-instruct")
        wait_until(lambda: any("[homestack] starting smollm2-135m-instruct" in line for line in lines), 30,
                   message="a followed log line")
    finally:
        follower.terminate()
        follower.wait(10)


def test_logs_tail_over_http(default_gateway):
    default_gateway.cli("load", "smollm2-135m-instruct")
    resp = httpx.get(default_gateway.url + "/admin/logs/smollm2-135m-instruct", params={"lines": 3})
    assert resp.status_code == 200 and len(resp.text.splitlines()) == 3


def test_admin_errors_are_openai_shaped(default_gateway):
    resp = httpx.post(default_gateway.url + "/admin/models/nope/load")
    assert resp.status_code == 404 and "smollm2-135m-instruct" in resp.json()["error"]["message"]
    resp = httpx.get(default_gateway.url + "/admin/models/smollm2-135m-instruct/load")
    assert resp.status_code == 405
    resp = httpx.get(default_gateway.url + "/admin/logs/smollm2-135m-instruct", params={"lines": "many"})
    assert resp.status_code == 400


def test_cli_errors_are_one_line_with_exit_code_1(default_gateway):
    result = default_gateway.cli("load", "no-such-model", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("homestack: model 'no-such-model' does not exist")
    down = default_gateway.cli("ps", check=False, HOMESTACK_URL="http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach the gateway" in down.stderr
    assert "Traceback" not in down.stderr + result.stderr


def test_top_once_shows_models_memory_and_requests(default_gateway):
    gw = default_gateway
    gw.openai().chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    out = gw.cli("top", "--once").stdout
    for text in ("smollm2-135m-instruct", "gemma-3-270m", "ready", "cpu CPU RAM", "of budget", "/v1/chat/completions"):
        assert text in out, text
