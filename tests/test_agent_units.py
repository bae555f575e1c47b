"""Units of what coding agents need from the gateway: their requests' shapes, images, keepalive pings."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from homestack.config.schema import FleetConfig
from homestack.gateway.keepalive import Keepalive
from homestack.gateway.surfaces.anthropic import ANTHROPIC, MESSAGES
from homestack.gateway.surfaces.anthropic_chat import chat_messages
from homestack.gateway.surfaces.openai import OPENAI
from homestack.gateway.surfaces.responses import RESPONSES_SURFACE
from homestack.runners.kinds import kind_for

PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def test_a_system_turn_mid_conversation_is_taken_as_claude_code_sends_it():
    body = {"model": "claude-sonnet-5-5", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}], "output_config": {"effort": "low"}},
    ]}
    payload = ANTHROPIC.parse(orjson.dumps(body), MESSAGES)
    assert chat_messages(payload)[1:] == [{"role": "system", "content": "Be brief."}]


@pytest.mark.parametrize("surface, payload, images", [
    (ANTHROPIC, {"messages": [{"role": "user", "content": [{"type": "image", "source": PNG}]}]}, True),
    (ANTHROPIC, {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": PNG}]}]}]}, True),  # a screenshot a tool returned
    (ANTHROPIC, {"messages": [{"role": "user", "content": "an image, please"}]}, False),
    (ANTHROPIC, {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "draw",
                                                                 "input": {"type": "image"}}]}]}, False),
    (OPENAI, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, True),
    (OPENAI, {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, False),
    (OPENAI, {"prompt": "Hi"}, False),
    (RESPONSES_SURFACE, {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, True),
    (RESPONSES_SURFACE, {"input": [{"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_image", "image_url": "x"}]}]}, True),
    (RESPONSES_SURFACE, {"input": "Hi"}, False),
])
def test_images_are_found_where_each_protocol_puts_them(surface, payload, images):
    assert surface.has_images(payload) is images


@pytest.mark.parametrize("args, env, vision", [
    ([], {}, False),
    (["--mmproj", "p.gguf"], {}, True),
    (["-hf", "ggml-org/gemma-3-4b-it-GGUF"], {}, True),
    (["-hf", "ggml-org/gemma-3-4b-it-GGUF", "--no-mmproj"], {}, False),
    ([], {"LLAMA_ARG_MMPROJ": "p.gguf"}, True),
    (["--embedding", "--mmproj", "p.gguf"], {}, False),
])
def test_a_llama_cpp_model_sees_images_only_with_a_projector(args, env, vision):
    spec = FleetConfig.model_validate({"models": {"m": {"runner": "llama.cpp", "model": "m.gguf", "args": args,
                                                         "env": env}}}).models["m"]
    assert ("vision" in kind_for(spec).operations(spec)) is vision


class _Client:
    """An ASGI send that records what the client got, and when."""

    def __init__(self):
        self.messages: list[dict] = []

    async def __call__(self, message):
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


def _answer(status: int, body: bytes, delay: float, stream: bool = False):
    async def run():
        client = _Client()
        keepalive = Keepalive(client, ANTHROPIC, [(b"x-request-id", b"r")], after=0.05, every=0.05)
        await asyncio.sleep(delay)
        await keepalive.send({"type": "http.response.start", "status": status, "headers": []})
        await keepalive.send({"type": "http.response.body", "body": body, "more_body": stream})
        if stream:
            await keepalive.send({"type": "http.response.body", "body": b"", "more_body": False})
        keepalive.close()
        return client
    return asyncio.run(run())


def test_a_fast_answer_goes_out_untouched():
    client = _answer(400, b'{"type":"error"}', delay=0)
    assert client.messages == [{"type": "http.response.start", "status": 400, "headers": []},
                               {"type": "http.response.body", "body": b'{"type":"error"}', "more_body": False}]


def test_a_slow_answer_is_preceded_by_pings_on_a_stream_opened_early():
    client = _answer(200, b"event: message_start\n\n", delay=0.18, stream=True)
    (start,) = [m for m in client.messages if m["type"] == "http.response.start"]  # the answer's own was dropped
    assert start["status"] == 200 and (b"x-request-id", b"r") in start["headers"]
    pings, _, rest = client.body.rpartition(ANTHROPIC.ping)
    assert pings.count(ANTHROPIC.ping) >= 1 and pings.replace(ANTHROPIC.ping, b"") == b""
    assert rest == b"event: message_start\n\n"


def test_an_error_after_the_stream_opened_is_an_error_event():
    error = b'{"type":"error","error":{"type":"api_error","message":"model failed"}}'
    client = _answer(502, error, delay=0.12)
    assert client.messages[0]["status"] == 200
    assert client.body.endswith(b"event: error\ndata: " + error + b"\n\n")
    assert client.messages[-1]["more_body"] is False


class _SilentRunner:
    """A runner's streamed answer that goes quiet mid-way (reading a long prompt)."""

    def __init__(self, *parts: bytes | float):
        self.parts = parts

    async def chunks(self):
        for part in self.parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                yield part

    def close(self):
        pass


def _relay(parts, surface, translator=None, rec=None) -> bytes:
    from homestack.gateway import proxy
    from homestack.observe import RequestRecord

    rec = rec or RequestRecord("r", "POST", "/v1/x")

    async def never_disconnects():
        await asyncio.sleep(3600)

    async def run():
        client = _Client()
        runner = type("Runner", (), {"name": "m", "secrets": ()})()
        await proxy._relay_stream(_SilentRunner(*parts), runner, surface, rec, client,
                                  never_disconnects, [], translator)
        return client.body

    old, proxy.KEEPALIVE_EVERY = proxy.KEEPALIVE_EVERY, 0.05
    try:
        return asyncio.run(run())
    finally:
        proxy.KEEPALIVE_EVERY = old


def test_a_silent_runner_mid_stream_gets_the_client_pings_between_events_only():
    start = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    body = _relay([start[:10], 0.12, start[10:], 0.12, stop], ANTHROPIC)
    assert body.startswith(start) and body.endswith(stop)  # no ping split the first event
    assert body[len(start):-len(stop)].replace(ANTHROPIC.ping, b"") == b"" and ANTHROPIC.ping in body


def test_a_first_event_split_over_chunks_still_counts_its_input_tokens():
    from homestack.observe import RequestRecord

    start = b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":123}}}\n\n'
    stop = (b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":2}}\n\n'
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    rec = RequestRecord("r", "POST", "/v1/messages")
    _relay([start[:40], start[40:-20], start[-20:], stop], ANTHROPIC, rec=rec)  # as a busy runner's writes may come
    assert (rec.tokens_in, rec.tokens_out) == (123, 2)


def test_a_translated_responses_stream_re_announces_itself_while_the_runner_is_silent():
    from homestack.gateway.surfaces.responses import ResponsesTranslation

    tools = [{"type": "function", "name": f"tool{i}", "description": "x" * 500, "parameters": {}} for i in range(20)]
    translation = ResponsesTranslation({"model": "gpt-5", "input": "Hi", "stream": True, "tools": tools})
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    body = _relay([0.12, chunk], RESPONSES_SURFACE, translation.stream())
    events = [line.removeprefix(b"event: ").decode() for line in body.split(b"\n") if line.startswith(b"event: ")]
    assert events[:2] == ["response.created", "response.in_progress"]  # the stream starts before the runner speaks
    assert events.count("response.created") == 1 and events.count("response.in_progress") >= 2
    sequence = [orjson.loads(line[6:])["sequence_number"] for line in body.split(b"\n") if line.startswith(b"data: ")]
    assert sequence == list(range(len(sequence))) and events[-1] == "response.completed"  # no error after it,
    # though the tools Codex sends make the closing event longer than the tail the gateway keeps
