"""The OpenAI Responses surface: POST /v1/responses, served through chat completions.

Each request carries its whole conversation here (earlier turns named by
``previous_response_id`` are put in by gateway/stored_responses.py). Errors have the OpenAI shape (this surface extends it); a stream is named
events, each with a ``sequence_number``, ending with ``response.completed``
(or ``response.failed``). Reasoning items in the input are dropped: the
runner cannot use another model's reasoning.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import BadRequest
from . import Operation, StreamTranslator, Translation
from .openai import MODEL_NAME_LIMIT, OpenAISurface
from .sse import chat_chunks, sse_event, streamed_like

if TYPE_CHECKING:
    from ...observe import RequestRecord

_INPUT = re.compile(rb'"input_tokens"\s*:\s*(\d+)')
_OUTPUT = re.compile(rb'"output_tokens"\s*:\s*(\d+)')


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or () if isinstance(p, dict) and "text" in p)


def chat_messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if payload.get("instructions"):
        messages.append({"role": "system", "content": payload["instructions"]})
    items = payload["input"]
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = "system" if item.get("role") == "developer" else item.get("role", "user")
            messages.append({"role": role, "content": _text(item.get("content"))})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "")}}
            if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": _text(item.get("output"))})
    return messages


def forced_function(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The one function tool_choice forces (by name, or "required" with one tool); None otherwise."""
    tools = [t for t in payload.get("tools") or () if t.get("type") == "function"]
    choice = payload.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        tools = [t for t in tools if t.get("name") == choice.get("name")]
        if not tools:
            raise BadRequest(f"tool_choice: no function named {choice.get('name')!r} in tools", param="tool_choice")
        return tools[0]
    return tools[0] if choice == "required" and len(tools) == 1 else None


def chat_request(payload: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": payload["model"], "messages": chat_messages(payload)}
    for field in ("temperature", "top_p", "parallel_tool_calls"):
        if payload.get(field) is not None:
            request[field] = payload[field]
    if payload.get("max_output_tokens") is not None:
        request["max_tokens"] = payload["max_output_tokens"]
    tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
             for t in payload.get("tools") or () if t.get("type") == "function"]
    forced = forced_function(payload)
    if forced is not None:  # a grammar makes the answer the function's arguments (llama-server ignores tool_choice)
        request["response_format"] = {"type": "json_schema", "json_schema": {
            "name": forced["name"], "schema": forced.get("parameters") or {"type": "object"}}}
    elif tools:
        request["tools"] = tools
        choice = payload.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            request["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif choice in ("auto", "none", "required"):
            request["tool_choice"] = choice
    return streamed_like(request, payload)


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


class ResponsesTranslation(Translation):
    def __init__(self, payload: dict[str, Any]):
        self.payload = payload
        self.forced = forced_function(payload)
        self.id = _new_id("resp")
        self.created = int(time.time())

    def response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        p = self.payload
        # usage last: the gateway counts tokens from a stream's tail, and the tools can be long
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status,
                "model": p["model"], "output": output, "error": None, "incomplete_details": None,
                "instructions": p.get("instructions"), "max_output_tokens": p.get("max_output_tokens"),
                "parallel_tool_calls": p.get("parallel_tool_calls", True), "tool_choice": p.get("tool_choice", "auto"),
                "tools": p.get("tools") or [], "temperature": p.get("temperature"), "top_p": p.get("top_p"),
                "store": p.get("store") is not False, "metadata": p.get("metadata") or {}, "text": {"format": {"type": "text"}},
                "usage": usage}

    def request(self) -> bytes:
        return orjson.dumps(chat_request(self.payload))

    def answer(self, data: bytes) -> bytes:
        reply = orjson.loads(data)
        message = ((reply.get("choices") or [{}])[0]).get("message") or {}
        if self.forced is not None:
            message = {"tool_calls": [{"function": {"name": self.forced["name"], "arguments": message.get("content")}}]}
        output = [_message_item(_new_id("msg"), message["content"])] if message.get("content") else []
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            output.append(_call_item(_new_id("fc"), call.get("id") or _new_id("call"), fn.get("name", ""),
                                     fn.get("arguments", "")))
        return orjson.dumps(self.response("completed", output, _usage(reply.get("usage"))))

    def stream(self) -> StreamTranslator:
        return _ResponsesStream(self)


class _ResponsesStream(StreamTranslator):
    """Chat-completion chunks to Responses events: one output item per text run or tool call."""

    def __init__(self, translation: ResponsesTranslation):
        self.t = translation
        self.seq = 0
        self.pending = b""
        self.started = self.done = False
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.key: str | None = None
        self.usage: dict[str, Any] | None = None

    def _event(self, name: str, **data: Any) -> bytes:
        self.seq += 1
        return sse_event(name, {"type": name, "sequence_number": self.seq - 1, **data})

    def feed(self, chunk: bytes) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            created = self.t.response("in_progress", [], None)
            out += self._event("response.created", response=created)
            out += self._event("response.in_progress", response=created)
        self.pending, chunks, done = chat_chunks(self.pending + chunk)
        self.done = self.done or done
        for data in chunks:
            if data.get("usage"):
                self.usage = _usage(data["usage"])
            for choice in data.get("choices") or ():
                delta = choice.get("delta") or {}
                if self.t.forced is not None and delta.get("content"):  # the forced function's arguments
                    delta = {"tool_calls": [{"index": 0, "function": {
                        "name": self.t.forced["name"], "arguments": delta["content"]}}]}
                out += self._delta(delta)
        return out

    def keepalive(self) -> bytes:
        # Codex gives up on a stream silent for 5 minutes; the Responses API has no ping, but it does re-announce.
        if not self.started:
            return self.feed(b"")
        return self._event("response.in_progress", response=self.t.response("in_progress", [], None))

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = b""
        if delta.get("content"):
            if self.key != "text":
                out += self._open("text", _message_item(_new_id("msg"), "", "in_progress"))
                out += self._event("response.content_part.added", item_id=self.open["id"], output_index=len(self.output),
                                   content_index=0, part={"type": "output_text", "text": "", "annotations": []})
            self.open["text"] += delta["content"]
            out += self._event("response.output_text.delta", item_id=self.open["id"], output_index=len(self.output),
                               content_index=0, delta=delta["content"], logprobs=[])
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") or {}
            key = f"call{call.get('index', 0)}"
            if self.key != key:
                item = _call_item(_new_id("fc"), call.get("id") or _new_id("call"), fn.get("name", ""), "", "in_progress")
                out += self._open(key, item)
            if fn.get("arguments"):
                self.open["arguments"] += fn["arguments"]
                out += self._event("response.function_call_arguments.delta", item_id=self.open["id"],
                                   output_index=len(self.output), delta=fn["arguments"])
        return out

    def _open(self, key: str, item: dict[str, Any]) -> bytes:
        out = self._close()
        self.key, self.open = key, {**item, "text": ""} if key == "text" else dict(item)
        return out + self._event("response.output_item.added", output_index=len(self.output), item=item)

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        item, index, out = self.open, len(self.output), b""
        if self.key == "text":
            text = item.pop("text")
            out += self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                               text=text, logprobs=[])
            part = {"type": "output_text", "text": text, "annotations": []}
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index,
                               content_index=0, part=part)
            item = _message_item(item["id"], text)
        else:
            out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                               name=item["name"], arguments=item["arguments"])
            item = {**item, "status": "completed"}
        self.output.append(item)
        self.open = self.key = None
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def finish(self) -> bytes:
        out = self._close()
        if self.done:
            out += self._event("response.completed", response=self.t.response("completed", self.output, self.usage))
        return out


class ResponsesSurface(OpenAISurface):
    name = "responses"
    stream_end = b""
    conversation_field = "input"
    image_types = frozenset({"input_image"})

    def count_tokens(self, rec: "RequestRecord", data: bytes) -> None:
        at = data.rfind(b'"usage"')
        if at >= 0 and (m := _INPUT.search(data, at)) and (n := _OUTPUT.search(data, at)):
            rec.tokens_in, rec.tokens_out = int(m.group(1)), int(n.group(1))

    def parse(self, body: bytes, operation: Operation) -> dict[str, Any]:
        payload = super().parse(body, operation)
        items = payload["input"]
        if not isinstance(items, (str, list)) or (isinstance(items, list) and not all(isinstance(i, dict) for i in items)):
            raise BadRequest("input: must be a string or a list of items", param="input")
        return payload

    def translation(self, operation: Operation, payload: dict[str, Any], native: bool) -> Translation | None:
        return ResponsesTranslation(payload)

    def stream_finished(self, tail: bytes) -> bool:
        return b"event: response.completed" in tail or b"event: response.failed" in tail

    def body_event(self, body: bytes) -> bytes:
        error = orjson.loads(body)["error"]
        return sse_event("response.failed", {"type": "response.failed", "sequence_number": 0, "response": {
            "id": _new_id("resp"), "object": "response", "status": "failed", "output": [],
            "error": {"code": error.get("code") or error["type"], "message": error["message"]}}})


RESPONSES_SURFACE = ResponsesSurface()
RESPONSES_SCHEMA = {"type": "object", "required": ["model", "input"], "properties": {
    "model": {"type": "string", "minLength": 1, "maxLength": MODEL_NAME_LIMIT},
    "input": {"type": ["string", "array"]},
    "instructions": {"type": "string"},
    "tools": {"type": "array", "items": {"type": "object"}},
    "stream": {"type": "boolean"},
    "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}}
RESPONSES = Operation(RESPONSES_SURFACE, "responses", "/responses", "Responses (OpenAI)", RESPONSES_SCHEMA,
                      max_tokens_field="max_output_tokens")
