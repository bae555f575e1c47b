"""Where the MCP tools get their answers: the knowledge service itself, or its HTTP API.

Inside the knowledge service (streamable HTTP at /mcp) the tools call it
directly; `homestack mcp` (stdio) runs in the agent's process and talks to the
running service over HTTP, so there is still one writer per store. Either way,
add_document(path=...) reads only inside `knowledge.allowed_paths`.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Protocol, Sequence

from anyio import to_thread

from ..errors import BadRequest, Forbidden
from ..keys import Role
from ..knowledge.ingest.allowed import read_allowed


class Backend(Protocol):
    async def search(self, collection: str, query: str, k: int | None, filters: dict[str, Any]) -> list[dict]: ...

    async def add(self, collection: str, text: str | None, path: str | None, metadata: dict[str, Any] | None,
                  request: Any) -> dict[str, Any]: ...

    async def collections(self) -> list[dict[str, Any]]: ...

    async def models(self) -> Any: ...

    async def fleet(self) -> Any: ...


def document_for(text: str | None, path: str | None, metadata: dict[str, Any] | None,
                 roots: Sequence[Path]) -> dict[str, Any]:
    """The API's document for add_document: inline text, or a file read here from inside ``roots``."""
    if (text is None) == (path is None):
        raise BadRequest("give exactly one of 'text' or 'path'")
    metadata = dict(metadata or {})
    tags = metadata.pop("tags", [])
    tags = [tags] if isinstance(tags, str) else list(tags)
    if text is not None:
        return {"source": str(metadata.pop("source", "mcp:text")), "text": text, "tags": tags, "metadata": metadata}
    file, data = read_allowed(path, roots)
    return {"source": str(file), "content_base64": base64.b64encode(data).decode(), "tags": tags, "metadata": metadata}


class LocalBackend:
    def __init__(self, knowledge):
        self.k = knowledge

    async def search(self, collection, query, k, filters):
        from ..knowledge.service.app import filters_of

        return await self.k.search(collection, query, k=k, **filters_of({"filters": filters}))

    async def add(self, collection, text, path, metadata, request):
        from ..knowledge.ingest.pipeline import ingest
        from ..knowledge.service.app import CALLER, documents_of

        key = request.scope[CALLER]  # the /mcp guard put it there (None: the service checks nothing)
        if key is not None and Role.KNOWLEDGE_WRITE not in key.roles:
            raise Forbidden(f"add_document needs the 'knowledge-write' role; key {key.name!r} lacks it",
                            code="role_required")
        document = await to_thread.run_sync(document_for, text, path, metadata, self.k.settings.allowed_paths)
        await self.k.create_collection(collection, exist_ok=True)
        events = [e async for e in ingest(self.k, collection, documents_of({"documents": [document]}))]
        return {**events[-1], "files": [e for e in events if e["event"] == "file"]}

    async def collections(self):
        return [await self.k.describe(n) for n in await self.k.run(self.k.store.list)]

    async def models(self):
        return await self.k.gateway.get("/v1/models")

    async def fleet(self):
        return await self.k.gateway.get("/admin/running?all=1")


class HttpBackend:
    """For `homestack mcp` (stdio): the service checks the key; files are read here, inside ``roots``."""

    def __init__(self, client, roots: Sequence[Path] = ()):
        self.client = client
        self.roots = list(roots)

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        return await to_thread.run_sync(lambda: self.client.json(method, path, body))

    async def search(self, collection, query, k, filters):
        body = {"collection": collection, "query": query, "k": k, "filters": filters}
        return (await self._json("POST", "/search", body))["results"]

    async def add(self, collection, text, path, metadata, request):
        document = await to_thread.run_sync(document_for, text, path, metadata, self.roots)
        await self._json("POST", "/collections", {"name": collection, "exist_ok": True})
        return await self._json("POST", f"/collections/{collection}/documents", {"documents": [document]})

    async def collections(self):
        return (await self._json("GET", "/collections"))["collections"]

    async def models(self):
        return await self._json("GET", "/models")

    async def fleet(self):
        return await self._json("GET", "/fleet")
