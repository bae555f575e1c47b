"""The knowledge service's HTTP API (Starlette), under /v1/knowledge, plus MCP at /mcp.

Every error leaves as the OpenAI-shaped JSON body of homestack's error tree, with
``source`` "knowledge" for our own errors and "runner" for a model that failed.
"""

from __future__ import annotations

import base64
import sys
import traceback
from typing import Any, AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...errors import BadRequest, HomestackError, MethodNotAllowed, NotFound, PayloadTooLarge
from ...gateway.surfaces.openai import error_body
from ...keys import Role
from ..answering import answer as answers
from ..answering.chat import chat_completion
from ..core import KnowledgeBase
from ..ingest.parse import format_of
from ..ingest.pipeline import Document, ingest
from .access import Access
from .api import PREFIX, service_document

MAX_BODY = 256 * 1024 * 1024


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def error_response(exc: HomestackError) -> Response:
    source = "knowledge" if exc.source == "gateway" else exc.source
    return Response(error_body(exc.message, exc.type, exc.param, exc.code, source), exc.status,
                    media_type="application/json")


def _authorization(scope) -> bytes | None:
    return next((value for name, value in scope["headers"] if name == b"authorization"), None)


def _endpoint(handler, role: Role):
    async def endpoint(request: Request) -> Response:
        try:
            request.app.state.access.check(_authorization(request.scope), role)
            return await handler(request.app.state.knowledge, request)
        except HomestackError as exc:
            return error_response(exc)
        except Exception as exc:  # a bug: the log gets the traceback, the client one line
            traceback.print_exc(file=sys.stderr)
            return error_response(HomestackError(f"internal error in the knowledge service: {type(exc).__name__}: {exc}"))
    return endpoint


async def body_of(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length and int(length) > MAX_BODY:
        raise PayloadTooLarge(f"request body over {MAX_BODY // 2**20} MiB; send fewer documents per request")
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in body or body[name] is None:
        if default is ...:
            raise BadRequest(f"missing field '{name}'", param=name)
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise BadRequest(f"'{name}' must be {names}", param=name)
    return value


def filters_of(body: dict[str, Any]) -> dict[str, list[str]]:
    filters = _field(body, "filters", dict, {})
    out = {}
    for key, name in (("source", "sources"), ("tags", "tags")):
        value = filters.get(key) or filters.get(name) or []
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"'filters.{key}' must be a string or a list of strings", param=f"filters.{key}")
        out[name] = value
    return out


async def _health(k: KnowledgeBase, request: Request) -> Response:
    return json_response({"status": "ok"})


async def _openapi(k: KnowledgeBase, request: Request) -> Response:
    return json_response(service_document())


async def _list(k: KnowledgeBase, request: Request) -> Response:
    return json_response({"collections": [await k.describe(n) for n in await k.run(k.store.list)]})


async def _create(k: KnowledgeBase, request: Request) -> Response:
    body = await body_of(request)
    info = await k.create_collection(_field(body, "name", str), exist_ok=_field(body, "exist_ok", bool, False))
    return json_response(info, 201)


async def _describe(k: KnowledgeBase, request: Request) -> Response:
    return json_response(await k.describe(request.path_params["name"]))


async def _delete(k: KnowledgeBase, request: Request) -> Response:
    await k.delete_collection(request.path_params["name"])
    return json_response({"deleted": request.path_params["name"]})


async def _sources(k: KnowledgeBase, request: Request) -> Response:
    return json_response({"sources": await k.sources(request.path_params["name"])})


async def _delete_source(k: KnowledgeBase, request: Request) -> Response:
    source = request.query_params.get("source")
    if not source:
        raise BadRequest("missing query parameter 'source'", param="source")
    return json_response({"source": source, "deleted": await k.delete_source(request.path_params["name"], source)})


def documents_of(body: dict[str, Any]) -> list[Document]:
    docs = _field(body, "documents", list)
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise BadRequest(f"documents[{i}] must be an object", param=f"documents[{i}]")
        source = _field(d, "source", str)
        if "text" in d:
            data = _field(d, "text", str).encode()
        else:
            try:
                data = base64.b64decode(_field(d, "content_base64", str), validate=True)
            except ValueError:  # binascii.Error, or characters outside ASCII
                raise BadRequest(f"documents[{i}].content_base64 is not valid base64", param="content_base64") from None
        tags = _field(d, "tags", list, [])
        out.append(Document(source, data, format_of(source, _field(d, "format", str, None)),
                            [str(t) for t in tags], _field(d, "metadata", dict, {})))
    return out


async def _documents(k: KnowledgeBase, request: Request) -> Response:
    body = await body_of(request)
    name = request.path_params["name"]
    docs = documents_of(body)
    events = ingest(k, name, docs)
    if _field(body, "stream", bool, False):
        first = await anext(events)  # errors before any work (unknown collection) are plain HTTP errors
        return StreamingResponse(_ndjson(first, events), media_type="application/x-ndjson")
    files = []
    async for event in events:
        if event["event"] == "file":
            files.append(event)
        elif event["event"] == "done":
            return json_response({**event, "files": files})
    raise AssertionError("ingest ended without its done event")


async def _ndjson(first: dict[str, Any], events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    yield orjson.dumps(first) + b"\n"
    try:
        async for event in events:
            yield orjson.dumps(event) + b"\n"
    except HomestackError as exc:  # mid-stream: the client reads it as the last event
        yield orjson.dumps({"event": "error", "error": orjson.loads(error_response(exc).body)["error"]}) + b"\n"


async def _search(k: KnowledgeBase, request: Request) -> Response:
    body = await body_of(request)
    results = await k.search(
        _field(body, "collection", str), _field(body, "query", str), mode=_field(body, "mode", str, "hybrid"),
        k=_field(body, "k", int, None), score_threshold=_field(body, "score_threshold", (int, float), None),
        **filters_of(body),
    )
    return json_response({"results": results})


async def _ask(k: KnowledgeBase, request: Request) -> Response:
    body = await body_of(request)
    result = await answers.ask(k, _field(body, "collection", str), _field(body, "question", str),
                               _field(body, "max_tokens", int, None), top_k=_field(body, "k", int, None),
                               mode=_field(body, "mode", str, "hybrid"), **filters_of(body))
    return json_response(result)


async def _chat(k: KnowledgeBase, request: Request) -> Response:
    return await chat_completion(k, await body_of(request))


async def _stats(k: KnowledgeBase, request: Request) -> Response:
    names = await k.run(k.store.list)
    return json_response({
        "store": "qdrant" if k.settings.qdrant_url else "qdrant-edge", "gateway": k.settings.gateway_url,
        "embedding_model": k.settings.embedding_model, "chat_model": k.settings.chat_model,
        "tokenizer": k.counter.description, "collections": [await k.describe(n) for n in names],
    })


async def _models(k: KnowledgeBase, request: Request) -> Response:
    return json_response(await k.gateway.get("/v1/models"))


async def _fleet(k: KnowledgeBase, request: Request) -> Response:
    return json_response(await k.gateway.get("/admin/running?all=1"))


def routes() -> list:
    from ..stores.backup import backup_route, restore_route

    def r(method: str, path: str, role: Role, handler) -> Route:
        return Route(PREFIX + path, _endpoint(handler, role), methods=[method])

    read, write = Role.KNOWLEDGE_READ, Role.KNOWLEDGE_WRITE
    return [
        Route("/health", _endpoint(_health, Role.PUBLIC), methods=["GET"]),
        Route("/openapi.json", _endpoint(_openapi, Role.PUBLIC), methods=["GET"]),
        r("GET", "/health", read, _health),
        r("GET", "/collections", read, _list),
        r("POST", "/collections", write, _create),
        r("GET", "/collections/{name}", read, _describe),
        r("DELETE", "/collections/{name}", write, _delete),
        r("POST", "/collections/{name}/documents", write, _documents),
        r("GET", "/collections/{name}/sources", read, _sources),
        r("DELETE", "/collections/{name}/sources", write, _delete_source),
        r("POST", "/search", read, _search),
        r("POST", "/ask", read, _ask),
        r("POST", "/chat/completions", read, _chat),
        r("GET", "/stats", read, _stats),
        r("GET", "/models", read, _models),
        r("GET", "/fleet", read, _fleet),
        r("GET", "/backup", write, backup_route),  # every collection's text: as much as a write
        r("POST", "/restore", write, restore_route),
    ]


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"))
    return error_response(NotFound(f"no route {request.method} {request.url.path} in the knowledge service"))


CALLER = "homestack.key"  # the scope entry _Guarded fills: the caller's Key, None when nothing is checked


class _Guarded:
    """An extra endpoint (MCP's /mcp) behind the service's access rule; the caller's key goes in the scope."""

    def __init__(self, app: Any, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send) -> None:
        try:
            scope[CALLER] = self.access.check(_authorization(scope), Role.KNOWLEDGE_READ)
        except HomestackError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_app(k: KnowledgeBase, access: Access, extra_app: Any = None, lifespan=None) -> Starlette:
    # MCP's /mcp route, behind the same rule; our own 404s elsewhere
    extra = [Route(r.path, _Guarded(r.app, access), methods=r.methods) for r in extra_app.routes] if extra_app else []
    app = Starlette(routes=routes() + extra, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.knowledge = k
    app.state.access = access
    return app
