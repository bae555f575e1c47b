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
from . import Operation, Surface, context_overflow, runner_error_fields

if TYPE_CHECKING:
    from ...observe import RequestRecord

_DONE = b"data: [DONE]\n\n"
_DONE_EVENT = _DONE.rstrip()
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
# llama-server's last stream chunk carries "timings" even when usage was not asked for.
_TIMINGS = re.compile(rb'"cache_n"\s*:\s*(\d+).*?"prompt_n"\s*:\s*(\d+).*?"predicted_n"\s*:\s*(\d+)')


def error_body(message: str, type_: str, param: str | None, code: str | None, source: str) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code, "source": source}}
    )


def render_error(exc: HomestackError) -> bytes:
    return error_body(exc.message, exc.type, exc.param, exc.code, exc.source)


class OpenAISurface(Surface):
    name = "openai"
    stream_end = _DONE

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

    def stream_finished(self, tail: bytes) -> bool:
        return tail.rstrip().endswith(_DONE_EVENT)

    def error_body(self, exc: HomestackError) -> bytes:
        return render_error(exc)

    def error_event(self, exc: HomestackError) -> bytes:
        return b"data: " + render_error(exc) + b"\n\n"

    def runner_error(self, status: int, data: bytes) -> tuple[bytes, str]:
        error = runner_error_fields(status, data)
        message = error.get("message") or str(error)
        type_ = error.get("type") or "runner_error"
        code, param = error.get("code"), error.get("param")
        if context_overflow(error) is not None:  # the code OpenAI's clients look for
            type_, code, param = "invalid_request_error", "context_length_exceeded", "messages"
        return error_body(message, type_, param, None if code is None else str(code), "runner"), type_


OPENAI = OpenAISurface()
CHAT = Operation(OPENAI, "chat", "/chat/completions", ("messages",), max_tokens_field="max_tokens")
COMPLETIONS = Operation(OPENAI, "text_completion", "/completions", ("prompt",), max_tokens_field="max_tokens")
EMBEDDINGS = Operation(OPENAI, "embeddings", "/embeddings", ("input",))
