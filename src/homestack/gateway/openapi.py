"""``GET /openapi.json``: the gateway's API, described from its route table.

Model routes take their request schema from their surface's operation (with the
fleet's model names as examples); relayed knowledge routes from the knowledge
API's own rows; the rest have no body. A route open to all needs no key.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from ..keys import Role
from ..knowledge.service.api import BY_ROUTE as KNOWLEDGE, PREFIX as KNOWLEDGE_PREFIX
from ..openapi import ApiOperation, document
from .surfaces.openai import ERROR_SCHEMA

_FLAG = {"enum": ["0", "1"]}
_COUNT = {"type": "integer", "minimum": 0}
# Query parameters of the routes that read any (log following is left out: it streams until the client leaves).
_QUERY: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "/admin/running": (("all", _FLAG),),
    "/admin/requests": (("limit", _COUNT),),
    "/admin/logs/{name}": (("lines", _COUNT),),
}
_SUMMARIES = {
    "/v1/models": "List the models", "/v1/models/{name}": "One model, by name or alias",
    "/health": "Liveness", "/openapi.json": "This document", "/metrics": "Prometheus metrics",
    "/ui": "The status page", "/ui/": "The status page", "/ui/{file}": "The status page's files",
    "/admin/running": "Runners and their state", "/admin/requests": "Recent requests",
    "/admin/plan": "The memory plan", "/admin/models/{name}/load": "Load a model",
    "/admin/models/{name}/unload": "Unload a model", "/admin/logs/{name}": "A runner's log",
}


def describe(routes: Iterable[Any], surfaces: Iterable[Any], models: list[str]) -> bytes:
    """The OpenAPI 3.1 document of ``routes`` (gateway Route rows, over ``surfaces``) as JSON."""
    errors = {_error_name(s): s.error_schema for s in surfaces}
    rows = []
    for route in routes:
        public = route.role is Role.PUBLIC
        if route.operation is not None:
            schema = _with_model_examples(route.operation.schema, models)
            rows.append(ApiOperation(route.method, route.path, route.operation.summary, public, schema,
                                     errors=_error_name(route.surface)))
        elif route.path.startswith(KNOWLEDGE_PREFIX + "/"):
            op = KNOWLEDGE[route.method, route.path.removeprefix(KNOWLEDGE_PREFIX)]
            rows.append(ApiOperation(route.method, route.path, op.summary, public, op.body, op.query, op.body_type))
        else:
            rows.append(ApiOperation(route.method, route.path, _SUMMARIES.get(route.path, ""), public,
                                     query=_QUERY.get(route.path, ())))
    return orjson.dumps(document(
        "homestack gateway", "1", rows, errors,
        "An OpenAI-compatible gateway over local model runners; the knowledge service under /v1/knowledge.",
    ))


def _error_name(surface: Any) -> str:
    """The error shape's name in the document: surfaces that share a shape share its name."""
    return "Error" if surface.error_schema is ERROR_SCHEMA else surface.name.capitalize() + "Error"


def _with_model_examples(schema: dict[str, Any], models: list[str]) -> dict[str, Any]:
    model = {**schema["properties"]["model"], "examples": models}
    return {**schema, "properties": {**schema["properties"], "model": model}}
