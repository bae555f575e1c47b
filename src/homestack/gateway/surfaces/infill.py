"""The infill surface: POST /infill, llama.cpp's fill-in-the-middle, as editors (llama.vscode) send it.

The request (``input_prefix``, ``input_suffix``, ``input_extra``, ``prompt``,
``n_predict``...) is forwarded as sent to the runner's own /infill, at its
origin rather than under /v1; the gateway adds only a ``model`` to route by.
Errors have the OpenAI shape (llama-server's). A stream is llama-server's:
``data:`` events whose last one says ``"stop": true`` (and its ``stop_type``), with no ``[DONE]``.
A model whose vocabulary has no fill-in-the-middle tokens is a 400 before any
runner starts (its GGUF header is read).
"""

from __future__ import annotations

from . import Operation
from .openai import MODEL_NAME_LIMIT, OpenAISurface

# Only the last event has stop_type, near its end; "stop": true comes before the echoed prompt,
# which may be longer than the tail the proxy keeps.
_STOPPED = b'"stop_type"'


class InfillSurface(OpenAISurface):
    name = "infill"
    stream_end = b""  # llama-server's infill stream has no end marker besides its last event

    def stream_finished(self, tail: bytes) -> bool:
        return _STOPPED in tail


INFILL_SURFACE = InfillSurface()
_CHUNK = {"type": "object", "properties": {"filename": {"type": "string"}, "text": {"type": "string"}}}
INFILL_SCHEMA = {"type": "object", "required": ["model", "input_prefix", "input_suffix"], "properties": {
    "model": {"type": "string", "minLength": 1, "maxLength": MODEL_NAME_LIMIT},
    "input_prefix": {"type": "string"},
    "input_suffix": {"type": "string"},
    "input_extra": {"type": "array", "items": _CHUNK},
    "prompt": {"type": "string"},
    "n_predict": {"type": "integer", "minimum": -1, "maximum": 2**31 - 1},
    "stream": {"type": "boolean"},
    "temperature": {"type": "number"},
}}
INFILL = Operation(INFILL_SURFACE, "infill", "/infill", "Fill in the middle (llama.cpp)", INFILL_SCHEMA,
                   max_tokens_field="n_predict", capability="infill", at_origin=True)
