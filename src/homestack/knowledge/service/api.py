"""The knowledge API as data: each operation's method, path, summary and request schema.

The service's ``/openapi.json`` is built from these rows, and so is the
gateway's, which relays the same operations under its own ``/v1/knowledge``.
"""

from __future__ import annotations

from ...gateway.surfaces.openai import CHAT_SCHEMA, ERROR_SCHEMA, MODEL_NAME_LIMIT
from ...openapi import ApiOperation, document
from ..stores.base import MODES

PREFIX = "/v1/knowledge"

_NAME = {"type": "string", "minLength": 1}
_STRINGS = {"type": ["string", "array"], "items": {"type": "string"}}
_FILTERS = {"type": "object", "properties": {"source": _STRINGS, "tags": _STRINGS}}
_MODE = {"enum": list(MODES)}
_DOCUMENT = {
    "type": "object",
    "required": ["source"],
    "properties": {
        "source": _NAME, "text": {"type": "string"}, "content_base64": {"type": "string", "contentEncoding": "base64"},
        "format": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object"},
    },
}
_KB_CHAT = {**CHAT_SCHEMA, "properties": {
    **CHAT_SCHEMA["properties"], "model": {"type": "string", "pattern": "^kb:.", "maxLength": MODEL_NAME_LIMIT},
}}


def _body(required: tuple[str, ...], **properties: dict) -> dict:
    return {"type": "object", "required": list(required), "properties": properties}


OPERATIONS = [ApiOperation(method, path, summary, body=body, query=query, body_type=body_type)
              for method, path, summary, body, query, body_type in (
    ("GET", "/collections", "List collections", None, (), ""),
    ("POST", "/collections", "Create a collection",
     _body(("name",), name=_NAME, exist_ok={"type": "boolean"}), (), "application/json"),
    ("GET", "/collections/{name}", "Describe a collection", None, (), ""),
    ("DELETE", "/collections/{name}", "Delete a collection", None, (), ""),
    ("POST", "/collections/{name}/documents", "Ingest documents",
     _body(("documents",), documents={"type": "array", "items": _DOCUMENT}, stream={"type": "boolean"}), (),
     "application/json"),
    ("GET", "/collections/{name}/sources", "List a collection's sources", None, (), ""),
    ("DELETE", "/collections/{name}/sources", "Delete a source's chunks", None,
     (("source", {"type": "string", "minLength": 1}),), ""),
    ("POST", "/search", "Search a collection",
     _body(("collection", "query"), collection=_NAME, query={"type": "string"}, mode=_MODE,
           k={"type": "integer", "minimum": 1}, score_threshold={"type": "number"}, filters=_FILTERS), (),
     "application/json"),
    ("POST", "/ask", "A cited answer from a collection",
     _body(("collection", "question"), collection=_NAME, question={"type": "string"}, mode=_MODE,
           k={"type": "integer", "minimum": 1}, max_tokens={"type": "integer", "minimum": 1}, filters=_FILTERS), (),
     "application/json"),
    ("POST", "/chat/completions", "Chat with a kb:<collection> model (OpenAI)", _KB_CHAT, (), "application/json"),
    ("GET", "/stats", "The service's settings and collections", None, (), ""),
    ("GET", "/models", "The gateway's models", None, (), ""),
    ("GET", "/fleet", "The gateway's runners", None, (), ""),
    ("GET", "/backup", "A backup of every collection (tar.gz)", None, (), ""),
    ("POST", "/restore", "Restore a backup", {"type": "string", "contentEncoding": "binary"},
     (("replace", {"enum": ["0", "1"]}),), "application/octet-stream"),
)]
BY_ROUTE = {(op.method, op.path): op for op in OPERATIONS}


def service_document() -> dict:
    """The knowledge service's own OpenAPI document (its API under /v1/knowledge, and /health)."""
    health = ApiOperation("GET", "/health", "Liveness", public=True)
    rows = [health] + [ApiOperation(op.method, PREFIX + op.path, op.summary, op.public, op.body, op.query, op.body_type)
                       for op in OPERATIONS]
    return document("homestack knowledge service", "1", rows, {"Error": ERROR_SCHEMA})
