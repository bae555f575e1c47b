"""Anthropic Messages served through chat completions, answers and streams included.

A forced tool (``tool_choice`` ``tool``, or ``any`` with one tool) is asked as
a JSON-schema response (a grammar on llama-server, structured output on
OpenAI's API), so the model can only answer with the tool's input; ``any``
over several tools asks for ``{"name", "input"}`` with one schema per tool.
Prompts are rendered deterministically (same request, same bytes), so a
runner's prompt cache sees the repeated prefix of an agent's conversation.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from ...errors import BadRequest
from . import StreamTranslator, Translation
from .sse import chat_chunks, sse_event, streamed_like

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
_SAMPLING = ("temperature", "top_p", "top_k")


def forced_tool(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools one of which the model must call (tool_choice any/tool); None when it may answer freely."""
    choice = payload.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") not in ("any", "tool"):
        return None
    tools = [t for t in payload.get("tools") or () if "input_schema" in t]
    if choice["type"] == "tool":
        tools = [t for t in tools if t.get("name") == choice.get("name")]
    if not tools:
        raise BadRequest(f"tool_choice: no tool named {choice.get('name')!r} in tools"
                         if choice["type"] == "tool" else "tool_choice: 'any' needs at least one tool",
                         param="tool_choice")
    return tools


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or () if b.get("type") == "text")


def _user_messages(content: Any) -> list[dict[str, Any]]:
    """A user turn: its tool results as tool messages (they answer the turn before), then its text."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "tool_result":
            text = _text(block.get("content"))
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                        "content": f"Error: {text}" if block.get("is_error") else text})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            source = block.get("source") or {}
            url = source.get("url") or f"data:{source.get('media_type')};base64,{source.get('data')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    if parts:
        text_only = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if text_only else parts})
    return out


def _assistant_message(content: Any) -> dict[str, Any]:
    """An assistant turn: text and tool calls; thinking blocks are dropped (the runner cannot use them)."""
    message: dict[str, Any] = {"role": "assistant", "content": _text(content)}
    calls = [
        {"id": b.get("id"), "type": "function",
         "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input") or {}).decode()}}
        for b in (content if isinstance(content, list) else ()) if b.get("type") == "tool_use"
    ]
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    system = _text(payload.get("system"))
    messages = [{"role": "system", "content": system}] if system else []
    for message in payload["messages"]:
        if message["role"] == "user":
            messages += _user_messages(message["content"])
        elif message["role"] == "system":
            messages.append({"role": "system", "content": _text(message["content"])})
        else:
            messages.append(_assistant_message(message["content"]))
    return messages


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": tool["name"], "description": tool.get("description", ""), "parameters": tool["input_schema"]}}


def _forced_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    if len(tools) == 1:
        return tools[0]["input_schema"]
    return {"anyOf": [{"type": "object", "required": ["name", "input"], "properties": {
        "name": {"const": t["name"]}, "input": t["input_schema"]}} for t in tools]}


def chat_request(payload: dict[str, Any], forced: list[dict[str, Any]] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"model": payload["model"], "messages": chat_messages(payload)}
    for field in _SAMPLING:
        if payload.get(field) is not None:
            request[field] = payload[field]
    if payload.get("max_tokens") is not None:
        request["max_tokens"] = payload["max_tokens"]
    if payload.get("stop_sequences"):
        request["stop"] = payload["stop_sequences"]
    choice = payload.get("tool_choice") or {}
    tools = [t for t in payload.get("tools") or () if "input_schema" in t]  # server tools have no schema
    if forced is not None:
        request["response_format"] = {"type": "json_schema", "json_schema": {
            "name": forced[0]["name"] if len(forced) == 1 else "tool_call", "schema": _forced_schema(forced)}}
    elif tools and choice.get("type") != "none":
        request["tools"] = [_function(t) for t in tools]
        request["tool_choice"] = "auto"
        if choice.get("disable_parallel_tool_use"):
            request["parallel_tool_calls"] = False
    return streamed_like(request, payload)


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": (usage.get("prompt_tokens") or 0) - cached, "output_tokens": usage.get("completion_tokens") or 0,
            "cache_read_input_tokens": cached}


def _tool_use(call_id: str | None, name: str, arguments: str) -> dict[str, Any]:
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        args = {"arguments": arguments}
    return {"type": "tool_use", "id": call_id or _tool_id(), "name": name,
            "input": args if isinstance(args, dict) else {"value": args}}


def _tool_id() -> str:
    return "toolu_" + os.urandom(12).hex()


def _forced_call(forced: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The forced tool's call from the schema-constrained answer."""
    if len(forced) == 1:
        return _tool_use(None, forced[0]["name"], text)
    call = _tool_use(None, "", text)
    inner = call["input"]
    return {**call, "name": str(inner.get("name", forced[0]["name"])), "input": inner.get("input") or {}}


class MessagesTranslation(Translation):
    def __init__(self, payload: dict[str, Any]):
        self.payload = payload
        self.forced = forced_tool(payload)
        self.model = payload["model"]

    def request(self) -> bytes:
        return orjson.dumps(chat_request(self.payload, self.forced))

    def answer(self, data: bytes) -> bytes:
        reply = orjson.loads(data)
        choice = (reply.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        stop = _STOP_REASONS.get(choice.get("finish_reason"), "end_turn")
        content: list[dict[str, Any]] = []
        if self.forced is not None and stop != "max_tokens":
            content.append(_forced_call(self.forced, message.get("content") or ""))
            stop = "tool_use"
        else:
            if message.get("content"):
                content.append({"type": "text", "text": message["content"]})
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {}
                content.append(_tool_use(call.get("id"), fn.get("name", ""), fn.get("arguments", "")))
        return orjson.dumps({
            "id": "msg_" + os.urandom(12).hex(), "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": stop, "stop_sequence": None, "usage": _usage(reply.get("usage")),
        })

    def stream(self) -> StreamTranslator:
        return _MessagesStream(self.model, self.forced)


class _MessagesStream(StreamTranslator):
    """Chat-completion chunks to Anthropic's events: one content block per text run or tool call."""

    def __init__(self, model: str, forced: list[dict[str, Any]] | None):
        self.model, self.forced = model, forced
        self.pending = b""
        self.block: str | None = None  # "text" or a tool call's index, while a block is open
        self.index = -1
        self.forced_text = ""
        self.stop = "end_turn"
        self.usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0}
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        out = []
        if self.index == -1:
            self.index = 0
            out.append(sse_event("message_start", {"type": "message_start", "message": {
                "id": "msg_" + os.urandom(12).hex(), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": self.usage}}))
            out.append(sse_event("ping", {"type": "ping"}))
        self.pending, chunks, done = chat_chunks(self.pending + chunk)
        self.done = self.done or done
        for data in chunks:
            out.append(self._chunk(data))
        return b"".join(out)

    def keepalive(self) -> bytes:
        return self.feed(b"") if self.index == -1 else sse_event("ping", {"type": "ping"})

    def _open(self, key: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.block = key
        return out + sse_event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                       "content_block": block})

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        self.index += 1
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self.index - 1})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def _chunk(self, data: dict[str, Any]) -> bytes:
        if data.get("usage"):
            self.usage = _usage(data["usage"])
        out = b""
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text and self.forced is not None:
                self.forced_text += text  # sent whole at the end: the tool's name may be inside it
            elif text:
                if self.block != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": text})
            for call in delta.get("tool_calls") or ():
                key = f"tool{call.get('index', 0)}"
                fn = call.get("function") or {}
                if self.block != key:
                    out += self._open(key, {"type": "tool_use", "id": call.get("id") or _tool_id(),
                                            "name": fn.get("name", ""), "input": {}})
                if fn.get("arguments"):
                    out += self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]})
            if choice.get("finish_reason"):
                self.stop = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def finish(self) -> bytes:
        if not self.done:
            return self._close()
        out = self._close()
        if self.forced is not None and self.stop != "max_tokens":
            call = _forced_call(self.forced, self.forced_text)
            out += self._open("forced", {**call, "input": {}})
            out += self._delta({"type": "input_json_delta", "partial_json": orjson.dumps(call["input"]).decode()})
            out += self._close()
            self.stop = "tool_use"
        out += sse_event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": self.stop, "stop_sequence": None},
                                           "usage": self.usage})
        return out + sse_event("message_stop", {"type": "message_stop"})


class CountTokensTranslation(Translation):
    """The model's own count of the rendered prompt: the prompt tokens of a one-token chat completion."""

    def __init__(self, payload: dict[str, Any]):
        self.payload = {**payload, "max_tokens": 1, "stream": False}

    def request(self) -> bytes:
        return orjson.dumps(chat_request(self.payload, None))

    def answer(self, data: bytes) -> bytes:
        usage = orjson.loads(data).get("usage") or {}
        return orjson.dumps({"input_tokens": usage.get("prompt_tokens") or 0})
