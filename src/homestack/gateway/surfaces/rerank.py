"""The rerank surface: POST /v1/rerank (and /rerank), in the shape Cohere and Jina use.

A request names a ``query`` and ``documents`` (strings, or objects with a
``text``); the answer lists ``results`` with each document's ``index`` and
``relevance_score``, best first, cut to ``top_n``, with the ``document`` when
``return_documents`` asks. Errors have the OpenAI shape (llama-server's).

A runner that reranks itself (llama-server started with ``--reranking``) gets
the documents as plain strings and its scores are put in order here, whatever
order it sends them in. Any other runner that can embed is asked for
embeddings of the query and the documents, and documents are scored by cosine
similarity to the query.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from ...errors import BadRequest, RunnerError
from . import Operation, Translation
from .openai import MODEL_NAME_LIMIT, OpenAISurface

def _texts(documents: list[Any]) -> list[str]:
    return [d if isinstance(d, str) else d["text"] for d in documents]


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norms if norms else 0.0


class RerankTranslation(Translation):
    """One rerank request: sent to the runner's own /rerank, or to its /embeddings and scored here."""

    def __init__(self, payload: dict[str, Any], native: bool):
        self.payload = payload
        self.native = native
        self.upstream_path = "/rerank" if native else "/embeddings"

    def request(self) -> bytes:
        p = self.payload
        texts = _texts(p["documents"])
        if self.native:
            return orjson.dumps({"model": p["model"], "query": p["query"], "documents": texts})
        return orjson.dumps({"model": p["model"], "input": [p["query"], *texts]})

    def answer(self, data: bytes) -> bytes:
        try:
            reply = orjson.loads(data)
            scores, usage = self._native_scores(reply) if self.native else self._cosine_scores(reply)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError, ValueError):
            raise RunnerError(f"model {self.payload['model']!r} sent a {'rerank' if self.native else 'embeddings'} "
                              "answer that cannot be read") from None
        return orjson.dumps(self._ranked(scores, usage))

    def _native_scores(self, reply: dict[str, Any]) -> tuple[dict[int, float], dict[str, Any]]:
        scores = {int(r["index"]): float(r["relevance_score"]) for r in reply["results"]}
        return scores, reply.get("usage") or {}

    def _cosine_scores(self, reply: dict[str, Any]) -> tuple[dict[int, float], dict[str, Any]]:
        vectors = [row["embedding"] for row in sorted(reply["data"], key=lambda row: row["index"])]
        if len(vectors) != len(self.payload["documents"]) + 1:
            raise ValueError("one embedding per input")
        return {i: _cosine(vectors[0], v) for i, v in enumerate(vectors[1:])}, reply.get("usage") or {}

    def _ranked(self, scores: dict[int, float], usage: dict[str, Any]) -> dict[str, Any]:
        """The answer: documents by falling score (ties by index), cut to top_n, documents when asked."""
        p = self.payload
        documents = p["documents"]
        order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: p.get("top_n") or len(documents)]
        results = []
        for index, score in order:
            result: dict[str, Any] = {"index": index, "relevance_score": score}
            if p.get("return_documents"):
                doc = documents[index]
                result["document"] = {"text": doc} if isinstance(doc, str) else doc
            results.append(result)
        tokens = usage.get("prompt_tokens") or usage.get("total_tokens") or 0
        return {"object": "list", "model": p["model"], "results": results,
                "usage": {"prompt_tokens": tokens, "total_tokens": usage.get("total_tokens") or tokens}}


class RerankSurface(OpenAISurface):
    name = "rerank"

    def parse(self, body: bytes, operation: Operation) -> dict[str, Any]:
        payload = super().parse(body, operation)
        payload.pop("stream", None)  # an answer is one list: there is nothing to stream
        for i, doc in enumerate(payload["documents"]):
            if not isinstance(doc, str) and not isinstance(doc.get("text"), str):
                raise BadRequest(f"documents[{i}]: must be a string or an object with a string 'text'",
                                 param=f"documents[{i}]")
        return payload

    def translation(self, operation: Operation, payload: dict[str, Any], native: bool) -> Translation:
        return RerankTranslation(payload, native)


RERANK_SURFACE = RerankSurface()
RERANK_SCHEMA = {"type": "object", "required": ["model", "query", "documents"], "properties": {
    "model": {"type": "string", "minLength": 1, "maxLength": MODEL_NAME_LIMIT},
    "query": {"type": "string", "minLength": 1},
    "documents": {"type": "array", "minItems": 1, "items": {"type": ["string", "object"]}, "examples": [
        ["Paris is the capital of France.", {"text": "Cats sleep a lot."}]]},
    "top_n": {"type": "integer", "minimum": 1},
    "return_documents": {"type": "boolean"},
}}
RERANK = Operation(RERANK_SURFACE, "rerank", "/rerank", "Rerank documents by relevance to a query (Cohere/Jina)",
                   RERANK_SCHEMA, capability="rerank")
