"""API surfaces: one module per wire protocol a client speaks to the gateway.

A surface owns what is specific to its protocol: which fields a request must
carry and which one names the model, how usage is found in an answer or a
stream, how a stream ends, and how an error looks. The route table gives each
model-serving route an :class:`Operation`, which names its surface.

A runner that does not speak an operation itself (its kind does not list the
operation as native) gets the request as chat completions: the surface's
:meth:`Surface.translation` turns the request into one and the answer, or the
stream, back into the surface's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import BadRequest, HomestackError
from .fields import check_fields

if TYPE_CHECKING:
    from ...observe import RequestRecord


class Surface:
    """The base every surface extends; subclasses set the class attributes and override as needed."""

    name = ""
    error_schema: dict[str, Any] = {}  # the JSON schema of its error bodies, for /openapi.json
    stream_end = b""  # what ends a stream the runner left unfinished (after the error event)
    api_key_header: bytes | None = None  # a header carrying the bare key, besides Authorization: Bearer
    conversation_field = "messages"  # the request field holding the turns (and their images)
    image_types: frozenset[str] = frozenset()  # the content part types that carry an image
    ping: bytes | None = None  # the event that keeps a slow stream's client waiting; None: no keepalive

    def parse(self, body: bytes, operation: "Operation") -> dict[str, Any]:
        """The request as a JSON object with a model, whose fields fit ``operation.schema``; else 400."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise BadRequest("request body must be a JSON object")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("missing required field 'model'", param="model")
        check_fields(payload, operation.schema)
        return payload

    def has_images(self, payload: dict[str, Any]) -> bool:
        """Whether the request shows the model an image (which a model without vision cannot take)."""
        return bool(self.image_types) and _carries(payload.get(self.conversation_field), self.image_types, 0)

    def drop_volatile(self, payload: dict[str, Any]) -> bool:
        """Remove from ``payload`` what a client changes on every request though it means nothing to a
        runner (it would spoil the prompt cache from there on); whether anything was removed."""
        return False

    def count_tokens(self, rec: "RequestRecord", data: bytes) -> None:
        """Set ``rec.tokens_in`` / ``tokens_out`` from an answer or a stream's tail, without parsing it."""

    def stream_started(self, rec: "RequestRecord", head: bytes) -> None:
        """Read what a stream's first chunk tells (usage some protocols send only at the start)."""

    def translation(self, operation: "Operation", payload: dict[str, Any], native: bool) -> "Translation | None":
        """How to serve ``payload`` as chat completions; None: forward the original bytes.

        ``native``: the runner serves ``operation`` itself (its kind lists it).
        """
        return None

    def stream_finished(self, tail: bytes) -> bool:
        """Whether the end of a relayed stream shows the runner finished it."""
        raise NotImplementedError

    def error_body(self, exc: HomestackError) -> bytes:
        raise NotImplementedError

    def error_event(self, exc: HomestackError) -> bytes:
        """An error inside a stream that already started."""
        return self.body_event(self.error_body(exc))

    def body_event(self, body: bytes) -> bytes:
        """An error answer's body (in :meth:`error_body`'s shape) as an event of a stream that already started."""
        raise NotImplementedError

    def runner_error(self, status: int, data: bytes) -> tuple[bytes, str]:
        """A runner's error answer in this surface's shape, marked as the runner's; and its type."""
        raise NotImplementedError


class StreamTranslator:
    """One translated stream: chat-completion chunks in, the surface's events out."""

    def feed(self, chunk: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        """What ends the stream, once the runner's stream ended (nothing if it never finished)."""
        raise NotImplementedError

    def keepalive(self) -> bytes:
        """An event that tells a waiting client the answer is still coming (the runner is reading the prompt)."""
        return b""


class Translation:
    """One request served through the runner's chat completions (or another of its paths)."""

    upstream_path = "/chat/completions"
    at_origin = False  # upstream_path is at the runner's origin, not under /v1 (llama-server's /infill)
    capability: str | None = None  # what it asks of the runner, when more than its operation's

    def request(self) -> bytes:
        """The chat-completions request to send."""
        raise NotImplementedError

    def answer(self, data: bytes) -> bytes:
        """The runner's chat-completions answer in the surface's shape."""
        raise NotImplementedError

    def stream(self) -> StreamTranslator:
        raise NotImplementedError


_NESTED = ("content", "output")  # where a turn's parts are: a message's content, a tool result's output


def _carries(value: Any, types: frozenset[str], depth: int) -> bool:
    """Whether a part of one of ``types`` is in the turns (or the parts nested in them, such as tool results)."""
    if depth > 6:
        return False
    if isinstance(value, list):
        return any(_carries(item, types, depth + 1) for item in value)
    if isinstance(value, dict):
        return value.get("type") in types or any(_carries(value.get(key), types, depth + 1) for key in _NESTED)
    return False


def runner_error_fields(status: int, data: bytes) -> dict[str, Any]:
    """The ``error`` object of a runner's error answer (OpenAI's or Anthropic's shape), or one made of its text."""
    try:
        parsed = orjson.loads(data)
        error = parsed.get("error") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        error = None
    if isinstance(error, dict):
        return error
    return {"message": data.decode("utf-8", "replace").strip()[:500] or f"runner answered HTTP {status}"}


def context_overflow(error: dict[str, Any]) -> tuple[int, int] | None:
    """(prompt tokens, context size) when a runner's error says the prompt does not fit (llama-server's)."""
    prompt, ctx = error.get("n_prompt_tokens"), error.get("n_ctx")
    if error.get("type") == "exceed_context_size_error" and isinstance(prompt, int) and isinstance(ctx, int):
        return prompt, ctx
    return None


@dataclass(frozen=True, slots=True)
class Operation:
    """One model-serving route: its surface, the runner path it maps to, the JSON schema of its body."""

    surface: Surface
    name: str  # the GenAI operation name in metrics, e.g. "chat"
    upstream_path: str  # appended to the runner's base URL (which ends in /v1)
    summary: str  # one line for /openapi.json
    schema: dict[str, Any]  # the fields the gateway reads or checks; others pass through to the runner
    max_tokens_field: str | None = None  # the field capped at what the model can give
    capability: str = "chat"  # what it asks of a runner (a kind's operations): chat, text_completion, embeddings...
    at_origin: bool = False  # upstream_path is at the runner's origin, not under /v1 (llama-server's /infill)
    uses_slot: bool = True  # it runs the prompt on a runner slot (so prompt-cache affinity applies)
