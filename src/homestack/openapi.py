"""OpenAPI 3.1 documents, built from a server's own route table and request schemas.

The gateway and the knowledge service each describe their routes as
:class:`ApiOperation` rows; this module turns the rows into the document served
at ``/openapi.json``. Nothing here is written by hand per route: a route without
a request schema has no request body, a ``{name}`` in its path is a path parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

_PARAM = re.compile(r"\{(\w+)(?::path)?\}")  # one group: findall gives the names
_BEARER = {"bearer": {"type": "http", "scheme": "bearer"}}


@dataclass(frozen=True)
class ApiOperation:
    method: str
    path: str  # "{name}" is a path parameter ("{rest:path}" too, spanning slashes)
    summary: str
    public: bool = False  # needs no bearer key
    body: dict[str, Any] | None = None  # the JSON schema of the request body
    query: tuple[tuple[str, dict[str, Any]], ...] = ()  # (name, schema) of optional query parameters
    body_type: str = "application/json"
    errors: str = "Error"  # the name of its error shape among the document's error schemas


def document(title: str, version: str, operations: Iterable[ApiOperation], error_schemas: dict[str, dict[str, Any]],
             description: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``; each one's errors have the shape it names in ``error_schemas``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if op.method == "HEAD":  # the same route as its GET, without a body
            continue
        paths.setdefault(_PARAM.sub(r"{\1}", op.path), {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "securitySchemes": _BEARER,
            "schemas": error_schemas,
            "responses": {name: {
                "description": "An error, in the API's error shape",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            } for name in error_schemas},
        },
        "security": [{"bearer": []}],
    }


def _operation(op: ApiOperation) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PARAM.findall(op.path)
    ]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in op.query]
    spec: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', op.path)}".rstrip("_"),
        "responses": {"2XX": {"description": "Success"}, "default": {"$ref": f"#/components/responses/{op.errors}"}},
    }
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": {op.body_type: {"schema": op.body}}}
    if op.public:
        spec["security"] = []
    return spec
