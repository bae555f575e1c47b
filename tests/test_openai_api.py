"""The OpenAI API over the embedded default fleet, driven by the official openai SDK.

Real llama-server runners for both GGUF models and the real embeddings runner.
"""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest


def test_models_lists_the_default_fleet(openai_client):
    ids = {m.id for m in openai_client.models.list()}
    assert ids == {"smollm2-135m-instruct", "gemma-3-270m", "minilm-l6-v2"}


def test_retrieve_a_model_by_name_or_alias(openai_client):
    assert openai_client.models.retrieve("gemma3").id == "gemma-3-270m"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-9")


def test_chat_completion(openai_client):
    reply = openai_client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_streamed_chat_with_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stream_is_relayed_as_server_sent_events_ending_with_done(default_gateway):
    body = {
        "model": "smollm2",  # an alias
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8,
        "stream": True,
    }
    with default_gateway.http() as client:
        with client.stream("POST", "/v1/chat/completions", json=body, headers={"X-Request-ID": "sse-1"}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert len(events) > 2
    assert events[-1] == "data: [DONE]"
    # Token counts are logged even when the client did not ask for usage.
    line = default_gateway.log_entry("sse-1")
    assert line["stream"] and line["tokens_in"] > 0 and 0 < line["tokens_out"] <= 8
    assert line["ttft_ms"] <= line["duration_ms"]


def test_completion_on_the_base_model(openai_client):
    reply = openai_client.completions.create(
        model="gemma-3-270m", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.choices[0].text.strip()


def test_streamed_completion(openai_client):
    stream = openai_client.completions.create(
        model="gemma-3-270m", prompt="One, two, three,", max_tokens=8, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices).strip()


def test_embeddings(openai_client):
    result = openai_client.embeddings.create(
        model="minilm-l6-v2", input=["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell"]
    )
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert result.usage.prompt_tokens > 0

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_embeddings_base64(default_gateway):
    # Raw HTTP: the SDK would decode base64 itself. The base64 is the float vector's little-endian float32s.
    url = default_gateway.url + "/v1/embeddings"
    floats = httpx.post(url, json={"model": "minilm-l6-v2", "input": "hello"}, timeout=120).json()
    encoded = httpx.post(url, json={"model": "minilm-l6-v2", "input": "hello", "encoding_format": "base64"},
                         timeout=120).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    expected = floats["data"][0]["embedding"]
    assert len(decoded) == len(expected) == 384
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(decoded, expected))


def test_unknown_model_is_404_naming_the_models(openai_client):
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    error = info.value.body
    assert "smollm2-135m-instruct" in error["message"] and "gemma-3-270m" in error["message"]
    assert error["code"] == "model_not_found"
    assert error["source"] == "gateway"


def test_missing_field_is_400(openai_client):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="smollm2-135m-instruct", messages=None)  # type: ignore[arg-type]
    assert info.value.body["param"] == "messages"
    assert info.value.body["source"] == "gateway"


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"messages": []}', "'model'"),
    ],
)
def test_malformed_body_is_400_in_openai_shape(default_gateway, body, fragment):
    resp = httpx.post(default_gateway.url + "/v1/chat/completions", content=body, timeout=30)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "param", "code", "source"}
    assert fragment in error["message"]


def test_runner_errors_are_marked_as_the_runners(default_gateway):
    # Fits the gateway's schema (nested part types are the runner's to judge); llama-server refuses it.
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": [{"type": "no-such-part"}]}]}
    resp = httpx.post(default_gateway.url + "/v1/chat/completions", json=body, timeout=60)
    assert 400 <= resp.status_code < 500
    assert resp.json()["error"]["source"] == "runner"


def test_unknown_route_is_404_in_openai_shape(default_gateway):
    resp = httpx.get(default_gateway.url + "/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.json()["error"]["source"] == "gateway"


def test_request_id_is_returned_and_logged(default_gateway):
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    resp = httpx.post(default_gateway.url + "/v1/chat/completions", json=body, headers={"X-Request-ID": "req-42"}, timeout=60)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "req-42"
    made = httpx.post(default_gateway.url + "/v1/chat/completions", json=body, timeout=60).headers["x-request-id"]
    assert made and made != "req-42"
    line = default_gateway.log_entry("req-42")
    assert line["model"] == "smollm2-135m-instruct" and line["runner_kind"] == "llama.cpp"
    assert line["runner_version"] and line["host"]
    assert line["outcome"] == "ok" and line["status"] == 200
    assert line["duration_ms"] > 0 and line["ttft_ms"] is not None
    assert line["tokens_in"] > 0 and line["tokens_out"] > 0


def test_error_requests_are_logged_with_their_class(default_gateway):
    httpx.post(default_gateway.url + "/v1/chat/completions", json={"model": "nope", "messages": []},
               headers={"X-Request-ID": "req-missing"})
    line = default_gateway.log_entry("req-missing")
    assert line["status"] == 404 and line["outcome"] == "model_not_found"


def test_a_client_that_goes_away_mid_stream_is_logged_and_the_runner_carries_on(default_gateway):
    body = {
        "model": "smollm2-135m-instruct", "stream": True, "max_tokens": 2000, "ignore_eos": True,
        "messages": [{"role": "user", "content": "Write a long story."}],
    }
    default_gateway.openai(max_retries=0).chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )  # loaded before the client leaves, so the pid below is the one that served
    pid = default_gateway.running()["smollm2-135m-instruct"]["pid"]
    with default_gateway.http() as client:
        with client.stream("POST", "/v1/chat/completions", json=body, headers={"X-Request-ID": "gone-1"}) as resp:
            for n, _ in enumerate(resp.iter_lines()):
                if n == 6:
                    break
    line = default_gateway.log_entry("gone-1")
    assert line["outcome"] == "client_disconnected"
    reply = default_gateway.openai(max_retries=0).chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None
    assert default_gateway.running()["smollm2-135m-instruct"]["pid"] == pid  # the same runner carried on
