"""The OpenAI surface: chat completions, completions, embeddings.

Errors are ``{"error": {"message", "type", "param", "code", "source"}}``; a
stream is server-sent events ending with ``data: [DONE]``; usage is read from
``usage`` (or llama-server's ``timings``) by pattern, never by parsing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import orjson

from ...errors import HomestackError
from . import Operation, Surface, Translation, context_overflow, runner_error_fields
from .fim import SuffixTranslation

if TYPE_CHECKING:
    from ...observe import RequestRecord

_MESSAGE_LIMIT = 2000  # characters of an error message sent back; a client's huge value is never echoed whole
_DONE = b"data: [DONE]\n\n"
_DONE_EVENT = _DONE.rstrip()
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
# llama-server's last stream chunk carries "timings" even when usage was not asked for.
_TIMINGS = re.compile(rb'"cache_n"\s*:\s*(\d+).*?"prompt_n"\s*:\s*(\d+).*?"predicted_n"\s*:\s*(\d+)')


def error_body(message: str, type_: str, param: str | None, code: str | None, source: str) -> bytes:
    if len(message) > _MESSAGE_LIMIT:
        message = f"{message[:_MESSAGE_LIMIT]}... ({len(message) - _MESSAGE_LIMIT} more characters)"
    if param is not None and len(param) > 200:
        param = param[:200] + "..."
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code, "source": source}}
    )


def render_error(exc: HomestackError) -> bytes:
    return error_body(exc.message, exc.type, exc.param, exc.code, exc.source)


_NULLABLE_STRING = {"type": ["string", "null"]}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code", "source"],
        "properties": {
            "message": {"type": "string"}, "type": {"type": "string"}, "param": _NULLABLE_STRING,
            "code": _NULLABLE_STRING, "source": {"enum": ["gateway", "runner", "knowledge"]},
        },
    }},
}


class OpenAISurface(Surface):
    name = "openai"
    error_schema = ERROR_SCHEMA
    stream_end = _DONE
    image_types = frozenset({"image_url"})

    def count_tokens(self, rec: "RequestRecord", data: bytes) -> None:
        at = data.rfind(b'"usage"')
        if at >= 0:
            if m := _PROMPT_TOKENS.search(data, at):
                rec.tokens_in = int(m.group(1))
            if m := _COMPLETION_TOKENS.search(data, at):
                rec.tokens_out = int(m.group(1))
        elif (at := data.rfind(b'"timings"')) >= 0 and (m := _TIMINGS.search(data, at)):
            rec.tokens_in = int(m.group(1)) + int(m.group(2))
            rec.tokens_out = int(m.group(3))

    def translation(self, operation: Operation, payload: dict, native: bool) -> Translation | None:
        # A completion with a suffix is fill-in-the-middle, which llama-server serves at /infill only.
        if operation.capability == "text_completion" and payload.get("suffix") is not None:
            return SuffixTranslation(payload)
        return None

    def stream_finished(self, tail: bytes) -> bool:
        return tail.rstrip().endswith(_DONE_EVENT)

    def error_body(self, exc: HomestackError) -> bytes:
        return render_error(exc)

    def body_event(self, body: bytes) -> bytes:
        return b"data: " + body + b"\n\n"

    def runner_error(self, status: int, data: bytes) -> tuple[bytes, str]:
        error = runner_error_fields(status, data)
        message = error.get("message") or str(error)
        type_ = error.get("type") or "runner_error"
        code, param = error.get("code"), error.get("param")
        if context_overflow(error) is not None:  # the code OpenAI's clients look for
            type_, code, param = "invalid_request_error", "context_length_exceeded", "messages"
        return error_body(message, type_, param, None if code is None else str(code), "runner"), type_


# Request schemas: the fields the gateway reads (model, stream) or checks because a runner mishandles
# them (llama-server wraps a max_tokens past 2^31); everything else is forwarded as sent.
MODEL_NAME_LIMIT = 256
_INT32 = 2**31 - 1
_TOKENS = {"type": "integer", "minimum": -1, "maximum": _INT32}  # -1: llama.cpp's "until the context is full"
_COMMON = {
    "model": {"type": "string", "minLength": 1, "maxLength": MODEL_NAME_LIMIT},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "max_tokens": _TOKENS,
    "temperature": {"type": "number"},
    "top_p": {"type": "number"},
    "stop": {"type": ["string", "array"], "items": {"type": "string"}},
}
_PART = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}
_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "examples": ["system", "user", "assistant", "tool"]},
        "content": {"type": ["string", "array", "null"], "items": _PART},
    },
}


def _request(required: tuple[str, ...], **fields: dict) -> dict:
    return {"type": "object", "required": ["model", *required], "properties": {**_COMMON, **fields}}


CHAT_SCHEMA = _request(("messages",), messages={"type": "array", "items": _MESSAGE},
                       max_completion_tokens=_TOKENS)
COMPLETIONS_SCHEMA = _request(("prompt",), prompt={"type": ["string", "array"], "items": {"type": "string"}},
                              suffix={"type": "string"})
EMBEDDINGS_SCHEMA = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _COMMON["model"],
        "input": {"type": ["string", "array"], "items": {"type": "string"}},
        "encoding_format": {"enum": ["float", "base64"]},
    },
}

OPENAI = OpenAISurface()
CHAT = Operation(OPENAI, "chat", "/chat/completions", "Chat completion (OpenAI)", CHAT_SCHEMA,
                 max_tokens_field="max_tokens")
COMPLETIONS = Operation(OPENAI, "text_completion", "/completions", "Text completion (OpenAI)", COMPLETIONS_SCHEMA,
                        max_tokens_field="max_tokens", capability="text_completion")
EMBEDDINGS = Operation(OPENAI, "embeddings", "/embeddings", "Embeddings (OpenAI)", EMBEDDINGS_SCHEMA,
                       capability="embeddings", uses_slot=False)
