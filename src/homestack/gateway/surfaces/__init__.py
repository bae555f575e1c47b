"""API surfaces: one module per wire protocol a client speaks to the gateway.

A surface owns what is specific to its protocol: which fields a request must
carry and which one names the model, how usage is found in an answer or a
stream, how a stream ends, and how an error looks. The route table gives each
model-serving route an :class:`Operation`, which names its surface.
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

    def count_tokens(self, rec: "RequestRecord", data: bytes) -> None:
        """Set ``rec.tokens_in`` / ``tokens_out`` from an answer or a stream's tail, without parsing it."""

    def stream_finished(self, tail: bytes) -> bool:
        """Whether the end of a relayed stream shows the runner finished it."""
        raise NotImplementedError

    def error_body(self, exc: HomestackError) -> bytes:
        raise NotImplementedError

    def error_event(self, exc: HomestackError) -> bytes:
        """An error inside a stream that already started."""
        raise NotImplementedError

    def runner_error(self, status: int, data: bytes) -> tuple[bytes, str]:
        """A runner's error answer in this surface's shape, marked as the runner's; and its type."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Operation:
    """One model-serving route: its surface, the runner path it maps to, the JSON schema of its body."""

    surface: Surface
    name: str  # the GenAI operation name in metrics, e.g. "chat"
    upstream_path: str  # appended to the runner's base URL (which ends in /v1)
    summary: str  # one line for /openapi.json
    schema: dict[str, Any]  # the fields the gateway reads or checks; others pass through to the runner
