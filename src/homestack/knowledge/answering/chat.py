"""`POST /v1/knowledge/chat/completions`: the `kb:<collection>` model, OpenAI-compatible.

The gateway forwards chat requests for `kb:<collection>` here unchanged. The
answer is the chat model's, grounded in numbered sources; the sources also come
back as a text footer (for clients that show only the message) and as a
`sources` field (for those that read it). Streaming follows OpenAI's chunks, and
a failure mid-stream is an error event followed by `data: [DONE]`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator

import orjson
from starlette.responses import Response, StreamingResponse

from ...errors import BadRequest, HomestackError
from ...gateway.surfaces.openai import error_body
from .answer import Answer, generate, public_sources, question_of, retrieve, sources_footer
from ..core import KnowledgeBase

_PASSED_ON = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed")


async def chat_completion(k: KnowledgeBase, body: dict[str, Any]) -> Response:
    model = body.get("model")
    if not isinstance(model, str) or not model.startswith("kb:") or len(model) <= 3:
        raise BadRequest("'model' must be kb:<collection>", param="model")
    messages = body.get("messages")
    answer = await retrieve(k, model[3:], question_of(messages), history=messages)
    options = {key: body[key] for key in _PASSED_ON if body.get(key) is not None}
    completion_id = f"chatcmpl-kb-{uuid.uuid4().hex[:24]}"
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_stream(k, answer, model, completion_id, options, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    async for _ in generate(k, answer, **options):
        pass
    content = answer.text.strip() + sources_footer(answer)
    return Response(orjson.dumps({
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": _usage(answer), "sources": public_sources(answer), "timings": answer.timings,
    }), media_type="application/json")


def _usage(answer: Answer) -> dict[str, int]:
    usage = answer.usage or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _stream(k: KnowledgeBase, answer: Answer, model: str, completion_id: str, options: dict[str, Any],
                  include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for delta in generate(k, answer, **options):
            yield chunk({"content": delta})
        yield chunk({"content": sources_footer(answer)}, "stop", sources=public_sources(answer))
        if include_usage:
            yield b"data: " + orjson.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                            "model": model, "choices": [], "usage": _usage(answer)}) + b"\n\n"
    except HomestackError as exc:
        source = "knowledge" if exc.source == "gateway" else exc.source
        yield b"data: " + error_body(exc.message, exc.type, exc.param, exc.code, source) + b"\n\n"
    yield b"data: [DONE]\n\n"
