"""Coding agents against the default fleet: the real Claude Code and Codex CLIs, set up as the README says.

Each CLI answers a one-shot prompt through the gateway (SmolLM2 behind the `claude-*` and
`gpt-5*` aliases) with exit code 0 (Claude Code may instead report that the model's reply ran past
its output cap: below). They are slow (their prompts are 4-9k tokens, read on the
CPU): marked ``slow``. The other tests here check what agents meet on the way: images sent to a
model without vision, and the pings that keep a stream's client waiting while a model loads.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from agent_clis import CLAUDE_QUIET, agent_clis, clean_env, codex_config
from harness import wait_until
from test_docs import README

FAKE_SERVER = Path(__file__).parent / "fake_openai.py"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
CLI_TIMEOUT = 1500  # seconds; a fresh 2-core machine needs under 3 minutes, a crowded one far more


def _readme_block(lang: str, marker: str) -> str:
    (block,) = [b for b in re.findall(rf"```{lang}\n(.*?)```", README, re.DOTALL) if marker in b]
    return block


def _served(gateway, path: str, since: float) -> list[dict]:
    """The requests to ``path`` the gateway answered 200 since ``since`` (their log lines follow the answer)."""
    def answered() -> list[dict]:
        return [e for e in gateway.request_log() if e["path"] == path and e["ts"] >= since and e["status"] == 200]
    return wait_until(answered, timeout=30, message=f"a logged 200 for {path}")


def _run(argv: list[str], env: dict[str, str], cwd) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


@pytest.mark.slow
def test_claude_code_answers_through_the_gateway(default_gateway, tmp_path):
    clis = agent_clis()
    block = _readme_block("sh", "ANTHROPIC_BASE_URL")
    env = {}
    for assignment in next(line for line in block.splitlines() if line.startswith("export ")).split()[1:]:
        name, value = assignment.split("=", 1)
        env[name] = value.replace("http://127.0.0.1:8080", default_gateway.url)
    command = shlex.split(next(line for line in block.splitlines() if line.startswith("claude ")))
    # A crowded CPU reads the prompt for longer than Claude Code waits by default (600 s, then it retries);
    # 256 tokens are plenty for the answer.
    patience = {"API_TIMEOUT_MS": str(CLI_TIMEOUT * 1000), "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "256"}
    since = time.time()
    argv, cli_env = [str(clis["claude"]), *command[1:]], clean_env(tmp_path / "home", **env, **CLAUDE_QUIET, **patience)
    # Claude Code samples at temperature 1, and under its 4k-token system prompt the 135M model often runs
    # past the cap: Claude Code asks it to resume and, after a few rounds, exits 1 naming the maximum (3 runs
    # in a row did so once). That is the model's limit, met through the whole protocol (streamed Messages,
    # stop_reason max_tokens, resumes), so it passes too; any other failure does not.
    done, seconds = _run(argv, cli_env, tmp_path)
    capped = done.returncode == 1 and "response exceeded the 256 output token maximum" in done.stdout + done.stderr
    assert done.returncode == 0 or capped, done.stdout + done.stderr
    assert done.stdout.strip()
    served = _served(default_gateway, "/v1/messages", since)
    assert served and served[-1]["runner"] == "smollm2-135m-instruct" and served[-1]["model"].startswith("claude-")
    print(f"\nclaude -p: {seconds:.0f} s, prompt {served[-1]['tokens_in']} tokens: {done.stdout.strip()[:200]!r}")


@pytest.mark.slow
def test_codex_answers_through_the_gateway(default_gateway, tmp_path):
    clis = agent_clis()
    provider = _readme_block("toml", "[model_providers.homestack]")
    config = tomllib.loads(provider)
    key_variable = config["model_providers"][config["model_provider"]]["env_key"]
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(codex_config(provider.replace("http://127.0.0.1:8080", default_gateway.url)))
    command = shlex.split(next(line for line in _readme_block("sh", "codex exec").splitlines()
                               if line.startswith("codex exec")))
    env = clean_env(tmp_path / "home", CODEX_HOME=str(codex_home), **{key_variable: "any-key-without-auth"})
    since = time.time()
    done, seconds = _run([str(clis["codex"]), *command[1:], "--ephemeral", "--color", "never"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()
    served = _served(default_gateway, "/v1/responses", since)
    assert served and served[-1]["runner"] == "smollm2-135m-instruct"
    print(f"\ncodex exec: {seconds:.0f} s, prompt {served[-1]['tokens_in']} tokens: {done.stdout.strip()[:200]!r}")


def test_the_stretched_default_model_still_answers_and_stops(default_gateway):
    """SmolLM2 trained at 8k, served at 16k per slot with YaRN: a short question gets a short, right answer.
    Alone it stops after 34 tokens; batched beside other tests' requests on the shared gateway the
    numbers shift a little, so the cap leaves room: a model that never stops still reaches it."""
    answer = default_gateway.openai().chat.completions.create(
        model="smollm2-135m-instruct", max_tokens=256, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    assert answer.choices[0].finish_reason == "stop" and "Paris" in answer.choices[0].message.content


def test_images_to_a_model_without_vision_are_a_clear_400(default_gateway):
    """SmolLM2 has no vision: a 400 in each protocol's shape, before the model is even loaded."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    with pytest.raises(anthropic.BadRequestError) as err:
        anthropic.Anthropic(base_url=default_gateway.url, api_key="none", max_retries=0).messages.create(
            model="claude-sonnet-5-5", max_tokens=4, messages=[
                {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "invalid_request_error"
    assert "cannot see images" in err.value.body["error"]["message"]
    client = default_gateway.openai(max_retries=0)
    url = f"data:image/png;base64,{PNG}"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="smollm2", max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert err.value.code == "image_not_supported" and "cannot see images" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt-5", max_output_tokens=4, input=[
            {"role": "user", "content": [{"type": "input_image", "image_url": url}]}])
    assert err.value.code == "image_not_supported"


SLOW_LOAD = """
models:
  slow:
    runner: command
    command: ["{python}", "{fake}", --port, "{{port}}", --startup-delay, "3"{fail}]
    memory: 100MiB
    aliases: ["claude-*"]
"""


def test_a_stream_is_pinged_while_its_model_loads(gateway_factory):
    gw = gateway_factory(SLOW_LOAD.format(python=sys.executable, fake=FAKE_SERVER, fail=""))
    body = {"model": "claude-haiku-5", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(base_url=gw.url, timeout=60) as http, http.stream("POST", "/v1/messages", json=body) as resp:
        events = [line.removeprefix("event: ") for line in resp.iter_lines() if line.startswith("event: ")]
    assert resp.status_code == 200
    first = events.index("message_start")
    assert first >= 1 and set(events[:first]) == {"ping"}  # pinged during the 3 s load, before the answer
    assert events[-1] == "message_stop"
    # The SDK skips the pings: the same request, through it, is an ordinary stream.
    client = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0)
    with client.messages.stream(model="claude-haiku-5", max_tokens=8, messages=body["messages"]) as stream:
        assert "".join(stream.text_stream).strip() == "hello from fake"


def test_a_failure_after_the_pings_is_an_error_event(gateway_factory):
    gw = gateway_factory(SLOW_LOAD.format(python=sys.executable, fake=FAKE_SERVER,
                                          fail=', --fail-status, "500"'))
    body = {"model": "slow", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(base_url=gw.url, timeout=60) as http, http.stream("POST", "/v1/messages", json=body) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200 and lines[0] == "event: ping"
    assert lines[-2] == "event: error"
    error = json.loads(lines[-1].removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
