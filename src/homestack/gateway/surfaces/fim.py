"""``suffix`` on /v1/completions: the request served by the runner's fill-in-the-middle (/infill).

llama-server ignores ``suffix`` on its completions; its /infill takes the
prompt as ``input_prefix`` and the suffix as ``input_suffix``, and answers in
its own shape, which is turned back into a text completion (and its stream into
completion chunks ending with ``[DONE]``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from ...errors import BadRequest
from . import StreamTranslator, Translation
from .sse import chat_chunks

# Sampling fields llama-server's /infill reads under the same names as a completion.
_PASSED = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
_FINISH = {"limit": "length"}  # llama-server's stop_type; eos and word are "stop"


def _usage(answer: dict[str, Any]) -> dict[str, int]:
    prompt, completion = answer.get("tokens_evaluated") or 0, answer.get("tokens_predicted") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class SuffixTranslation(Translation):
    upstream_path = "/infill"
    at_origin = True
    capability = "infill"

    def __init__(self, payload: dict[str, Any]):
        if not isinstance(payload["prompt"], str):
            raise BadRequest("prompt: must be one string when suffix is given", param="prompt")
        if not isinstance(payload["suffix"], str):
            raise BadRequest("suffix: must be a string", param="suffix")
        self.payload = payload
        self.id = f"cmpl-{os.urandom(12).hex()}"
        self.created = int(time.time())

    def request(self) -> bytes:
        p = self.payload
        request = {"model": p["model"], "input_prefix": p["prompt"], "input_suffix": p["suffix"]}
        request.update({field: p[field] for field in _PASSED if p.get(field) is not None})
        if p.get("max_tokens") is not None:
            request["n_predict"] = p["max_tokens"]
        if p.get("stream") is True:
            request["stream"] = True
        return orjson.dumps(request)

    def completion(self, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.payload["model"],
                "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return body

    def answer(self, data: bytes) -> bytes:
        answer = orjson.loads(data)
        choice = {"text": answer.get("content", ""), "index": 0, "logprobs": None,
                  "finish_reason": _FINISH.get(answer.get("stop_type"), "stop")}
        return orjson.dumps(self.completion([choice], _usage(answer)))

    def stream(self) -> StreamTranslator:
        return _SuffixStream(self)


class _SuffixStream(StreamTranslator):
    """/infill events (``content`` pieces, the last with ``stop: true``) to completion chunks."""

    def __init__(self, translation: SuffixTranslation):
        self.t = translation
        self.pending = b""
        self.last: dict[str, Any] | None = None  # the event that ended the stream

    def feed(self, chunk: bytes) -> bytes:
        self.pending, events, _ = chat_chunks(self.pending + chunk)
        out = b""
        for event in events:
            if event.get("stop") is True:
                self.last = event
            choice = {"text": event.get("content", ""), "index": 0, "logprobs": None,
                      "finish_reason": _FINISH.get(event.get("stop_type"), "stop") if event.get("stop") else None}
            if choice["text"] or choice["finish_reason"]:
                out += b"data: " + orjson.dumps(self.t.completion([choice], None)) + b"\n\n"
        return out

    def finish(self) -> bytes:
        if self.last is None:
            return b""
        out = b""
        if (self.t.payload.get("stream_options") or {}).get("include_usage"):
            out += b"data: " + orjson.dumps(self.t.completion([], _usage(self.last))) + b"\n\n"
        return out + b"data: [DONE]\n\n"
