"""Answers with citations: retrieve, number the sources, ask the chat model to cite them as [n].

When no retrieved chunk is close enough to the question (cosine similarity of
its embedding below ``min_score``), the answer says so and the chat model is not
asked at all: it cannot invent from nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ...errors import BadRequest
from ..core import KnowledgeBase

DEFAULT_MIN_RELEVANCE = 0.25  # MiniLM: unrelated text scores ~0-0.15, a passage on the topic 0.3 and up
# One or two cited sentences fit in ~60 tokens; at ~25 tokens/s for the default 135M chat model on
# two cores the answer's writing then stays within a few seconds (the benchmark's `ask` part).
DEFAULT_MAX_TOKENS = 96
_SYSTEM = "You are a careful assistant. Answer only from the numbered sources you are given, and cite them as [n]."
# Small models follow instructions best when the sources sit right above the question.
_USER = ("Sources:\n\n{sources}\n\nQuestion: {question}\n"
         "Answer in one or two sentences using only these sources, and cite the source number like [1]. "
         "If the sources do not answer the question, say that you do not know.")


def not_found_message(collection: str) -> str:
    return f"I found nothing relevant to this question in the collection '{collection}', so I cannot answer it."


@dataclass
class Answer:
    """A retrieval's outcome, then the answer as it streams; ``timings`` fill in as it goes."""

    collection: str
    question: str
    sources: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    text: str = ""
    usage: dict[str, Any] | None = None


def question_of(messages: Any) -> str:
    """The last user message's text (OpenAI content may be a list of parts)."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", param="messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str) and content.strip():
                return content.strip()
    raise BadRequest("no user message with text in 'messages'", param="messages")


async def retrieve(k: KnowledgeBase, collection: str, question: str, history: list[dict[str, Any]] | None = None,
                   top_k: int | None = None, sources: list[str] | None = None, tags: list[str] | None = None,
                   mode: str = "hybrid") -> Answer:
    started = time.perf_counter()
    hits = await k.search(collection, question, mode=mode, k=top_k, sources=sources, tags=tags)
    retrieved = time.perf_counter()
    floor = k.settings.min_score if k.settings.min_score is not None else DEFAULT_MIN_RELEVANCE
    relevant = [h for h in hits if h["relevance"] is not None and h["relevance"] >= floor]
    cited = [{"n": i, "path": h["source"], "page": h["page"], "heading": h["heading"], "snippet": h["snippet"],
              "score": h["score"], "relevance": h["relevance"], "position": h["position"], "start": h["start"],
              "end": h["end"], "text": h["text"]} for i, h in enumerate(relevant, 1)]
    blocks = "\n\n".join(f"[{s['n']}] {_where(s)}\n{s['text']}" for s in cited)
    earlier = [m for m in history or [] if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    messages = [{"role": "system", "content": _SYSTEM}, *earlier[:-1],
                {"role": "user", "content": _USER.format(sources=blocks, question=question)}]
    answer = Answer(collection, question, cited, messages)
    answer.timings["retrieval_ms"] = (retrieved - started) * 1000
    answer.timings["prompt_ms"] = (time.perf_counter() - retrieved) * 1000
    return answer


async def generate(k: KnowledgeBase, answer: Answer, **options: Any) -> AsyncIterator[str]:
    """The answer's text as the chat model writes it (or the not-found line, without asking it)."""
    started = time.perf_counter()
    if not answer.sources:
        answer.text = not_found_message(answer.collection)
        answer.timings.update(ttft_ms=0.0, generation_ms=0.0)
        yield answer.text
        return
    # OpenAI's newer name wins over the old one, as the gateway reads them; else the default length
    limit = options.pop("max_completion_tokens", None) or options.get("max_tokens") or DEFAULT_MAX_TOKENS
    options["max_tokens"] = limit
    options.setdefault("temperature", 0.2)
    options["stream_options"] = {"include_usage": True}
    first = None
    async for chunk in k.gateway.chat_stream(answer.messages, **options):
        if chunk.get("usage"):
            answer.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                if first is None:
                    first = time.perf_counter()
                answer.text += delta
                yield delta
    end = time.perf_counter()
    answer.timings["ttft_ms"] = ((first or end) - started) * 1000
    answer.timings["generation_ms"] = (end - (first or end)) * 1000


async def ask(k: KnowledgeBase, collection: str, question: str, max_tokens: int | None = None,
              **search: Any) -> dict[str, Any]:
    if not isinstance(question, str) or not question.strip():
        raise BadRequest("'question' must be a non-empty string", param="question")
    answer = await retrieve(k, collection, question.strip(), **search)
    async for _ in generate(k, answer, **({"max_tokens": max_tokens} if max_tokens else {})):
        pass
    return {"answer": answer.text.strip(), "sources": public_sources(answer), "collection": collection,
            "model": k.settings.chat_model, "timings": answer.timings, "usage": answer.usage}


def public_sources(answer: Answer) -> list[dict[str, Any]]:
    return [{key: v for key, v in s.items() if key != "text"} for s in answer.sources]


def sources_footer(answer: Answer) -> str:
    """The numbered sources under an answer, for clients that show only text."""
    if not answer.sources:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{s['n']}] {_where(s)}" for s in answer.sources)


def _where(source: dict[str, Any]) -> str:
    parts = [source["path"]]
    if source.get("page"):
        parts.append(f"page {source['page']}")
    if source.get("heading"):
        parts.append(source["heading"])
    return ", ".join(parts)
