"""The Anthropic Messages surface: /v1/messages and /v1/messages/count_tokens.

Errors are ``{"type": "error", "error": {"type", "message"}}`` with the error
type Anthropic gives each status; keys come from ``x-api-key`` too. A stream is
named server-sent events ending with ``message_stop``. Runners that do not
serve the Messages API themselves (and forced tool calls, which llama-server
answers with text) go through chat completions (:mod:`.anthropic_chat`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import BadRequest, HomestackError
from . import Operation, Surface, Translation, context_overflow, runner_error_fields
from .openai import MODEL_NAME_LIMIT
from .anthropic_chat import CountTokensTranslation, MessagesTranslation, forced_tool

if TYPE_CHECKING:
    from ...observe import RequestRecord

# Anthropic's error type for each status; others are api_error.
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 409: "invalid_request_error", 413: "request_too_large",
    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error",
}
_INPUT = re.compile(rb'"input_tokens"\s*:\s*(\d+)')
_CACHED = re.compile(rb'"cache_read_input_tokens"\s*:\s*(\d+)')
_OUTPUT = re.compile(rb'"output_tokens"\s*:\s*(\d+)')
_MESSAGE_STOP = b'"type":"message_stop"'
# Claude Code sends "system" turns mid-conversation (per-turn instructions); llama-server takes them.
_ROLES = ("user", "assistant", "system")
# Claude Code's first system block: telemetry whose hash changes on every request.
_BILLING = "x-anthropic-billing-header:"


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error")


def error_body(type_: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(f"messages.{i}.role: must be 'user', 'assistant' or 'system'", param="messages")
        content = message.get("content")
        if not isinstance(content, (str, list)) or (
            isinstance(content, list) and not all(isinstance(b, dict) and "type" in b for b in content)
        ):
            raise BadRequest(f"messages.{i}.content: must be a string or a list of content blocks",
                             param="messages")


ERROR_SCHEMA = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"},
    "error": {"type": "object", "required": ["type", "message"],
              "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}


class AnthropicSurface(Surface):
    name = "anthropic"
    error_schema = ERROR_SCHEMA
    api_key_header = b"x-api-key"
    image_types = frozenset({"image"})
    ping = b'event: ping\ndata: {"type":"ping"}\n\n'  # as Anthropic's API keeps its streams alive

    def parse(self, body: bytes, operation: Operation) -> dict[str, Any]:
        payload = super().parse(body, operation)
        _check_messages(payload["messages"])
        if operation is MESSAGES:
            max_tokens = payload["max_tokens"]
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise BadRequest("max_tokens: must be a positive integer", param="max_tokens")
        tools = payload.get("tools")
        if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
            raise BadRequest("tools: must be a list of tool definitions", param="tools")
        forced_tool(payload)  # a tool_choice naming no tool is the client's error
        if operation.name == "count_tokens":
            payload.pop("stream", None)
        return payload

    def drop_volatile(self, payload: dict[str, Any]) -> bool:
        system = payload.get("system")
        if isinstance(system, str) and system.startswith(_BILLING):
            payload["system"] = system.partition("\n")[2]
            return True
        if isinstance(system, list):
            kept = [b for b in system if not (isinstance(b, dict) and str(b.get("text", "")).startswith(_BILLING))]
            if len(kept) < len(system):
                payload["system"] = kept
                return True
        return False

    def translation(self, operation: Operation, payload: dict[str, Any], native: bool) -> Translation | None:
        if operation.name == "count_tokens":
            return None if native else CountTokensTranslation(payload)
        # llama-server answers a forced tool_choice with text: the translation forces it with a schema.
        if native and forced_tool(payload) is None:
            return None
        return MessagesTranslation(payload)

    def count_tokens(self, rec: "RequestRecord", data: bytes) -> None:
        at = data.rfind(b'"usage"')
        if at < 0:
            return
        if m := _INPUT.search(data, at):
            cached = _CACHED.search(data, at)
            rec.tokens_in = int(m.group(1)) + (int(cached.group(1)) if cached else 0)
        if m := _OUTPUT.search(data, at):
            rec.tokens_out = int(m.group(1))

    def stream_started(self, rec: "RequestRecord", head: bytes) -> None:
        # message_start carries the input tokens; message_delta at the end may not.
        if (m := _INPUT.search(head)) is not None:
            cached = _CACHED.search(head)
            rec.tokens_in = int(m.group(1)) + (int(cached.group(1)) if cached else 0)

    def stream_finished(self, tail: bytes) -> bool:
        return _MESSAGE_STOP in tail[-200:].replace(b" ", b"")

    def error_body(self, exc: HomestackError) -> bytes:
        return error_body(error_type(exc.status), exc.message)

    def body_event(self, body: bytes) -> bytes:
        return b"event: error\ndata: " + body + b"\n\n"

    def runner_error(self, status: int, data: bytes) -> tuple[bytes, str]:
        error = runner_error_fields(status, data)
        overflow = context_overflow(error)
        if overflow is not None:  # the message Anthropic's clients recognise
            message, type_ = f"prompt is too long: {overflow[0]} tokens > {overflow[1]} maximum", error_type(400)
        else:
            message, type_ = str(error.get("message") or error), error_type(status)
        return error_body(type_, message), type_


ANTHROPIC = AnthropicSurface()
# The fields the gateway reads or checks; the rest (thinking, metadata, betas' fields) pass through.
_MESSAGE = {"type": "object", "required": ["role", "content"], "properties": {
    "role": {"type": "string", "examples": ["user", "assistant", "system"]},
    "content": {"type": ["string", "array"], "items": {"type": "object", "required": ["type"]}}}}
_FIELDS = {
    "model": {"type": "string", "minLength": 1, "maxLength": MODEL_NAME_LIMIT},
    "messages": {"type": "array", "items": _MESSAGE},
    "system": {"type": ["string", "array"]},
    "tools": {"type": "array", "items": {"type": "object"}},
    "stream": {"type": "boolean"},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    "temperature": {"type": "number"},
    "stop_sequences": {"type": "array", "items": {"type": "string"}},
}
MESSAGES_SCHEMA = {"type": "object", "required": ["model", "messages", "max_tokens"], "properties": _FIELDS}
COUNT_TOKENS_SCHEMA = {"type": "object", "required": ["model", "messages"], "properties": _FIELDS}
MESSAGES = Operation(ANTHROPIC, "messages", "/messages", "Messages (Anthropic)", MESSAGES_SCHEMA,
                     max_tokens_field="max_tokens")
COUNT_TOKENS = Operation(ANTHROPIC, "count_tokens", "/messages/count_tokens", "Count tokens (Anthropic)",
                         COUNT_TOKENS_SCHEMA, uses_slot=False)
