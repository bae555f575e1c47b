"""The knowledge service's state: settings, the store, the gateway, one writer per collection.

Store calls are synchronous (Qdrant Edge works in native threads), so they run in
worker threads; searches go straight through while a collection's writer holds
its lock, and Qdrant serves them from the data already committed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio import to_thread

from ..config.schema import FleetConfig
from ..errors import BadRequest, Conflict
from .inference import InferenceClient
from .ingest import sparse
from .ingest.tokens import TokenCounter, load_counter
from .stores.base import MODES, SearchSpec, Store, check_name

_SNIPPET_CHARS = 300


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    gateway_url: str
    api_key: str | None
    embedding_model: str
    chat_model: str
    qdrant_url: str | None
    chunk_tokens: int
    chunk_overlap: int
    embed_batch: int
    top_k: int
    min_score: float | None
    read_only: bool
    allowed_paths: tuple[Path, ...] = ()  # folders add_document(path=...) may read
    mcp_allowed_hosts: tuple[str, ...] = ()  # Host and Origin headers /mcp accepts
    mcp_allowed_origins: tuple[str, ...] = ()

    @classmethod
    def from_fleet(cls, fleet: FleetConfig, gateway_url: str | None = None) -> "Settings":
        k = fleet.knowledge
        host = "127.0.0.1" if fleet.host in ("0.0.0.0", "::", "") else fleet.host
        keys = fleet.admin_keys or fleet.api_keys
        return cls(
            data_dir=fleet.data_dir / "knowledge", gateway_url=(gateway_url or k.gateway_url or f"http://{host}:{fleet.port}"),
            api_key=keys[0] if keys else None, embedding_model=k.embedding_model, chat_model=k.chat_model,
            qdrant_url=k.qdrant_url, chunk_tokens=k.chunk_tokens, chunk_overlap=k.chunk_overlap,
            embed_batch=k.embed_batch, top_k=k.top_k, min_score=k.min_score, read_only=k.read_only,
            allowed_paths=tuple(k.allowed_paths), mcp_allowed_hosts=tuple(k.mcp_allowed_hosts),
            mcp_allowed_origins=tuple(k.mcp_allowed_origins),
        )


def open_store(settings: Settings) -> Store:
    if settings.qdrant_url:
        from .stores.qdrant_server import QdrantServerStore

        return QdrantServerStore.connect(settings.qdrant_url)
    from .stores.edge import EdgeStore

    return EdgeStore(settings.data_dir / "collections")


class KnowledgeBase:
    """The service's collections: created, searched and described over the store and the gateway's models."""

    def __init__(self, settings: Settings, store: Store, gateway: InferenceClient, counter: TokenCounter | None = None):
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.counter = counter or load_counter(settings.embedding_model)
        self._writers: dict[str, asyncio.Lock] = {}

    def writer(self, collection: str) -> asyncio.Lock:
        """The lock a collection's one writer holds (ingest, deletes, restore)."""
        return self._writers.setdefault(collection, asyncio.Lock())

    async def close(self) -> None:
        await self.gateway.close()
        await to_thread.run_sync(self.store.close)

    async def run(self, func, *args):
        return await to_thread.run_sync(func, *args)

    async def create_collection(self, name: str, exist_ok: bool = False) -> dict[str, Any]:
        check_name(name)
        async with self.writer(name):
            if name in await self.run(self.store.list):
                if exist_ok:
                    return await self.describe(name)
                raise Conflict(f"collection {name!r} already exists", param="name")
            probe = await self.gateway.embed(["dimension probe"])
            meta = {"embedding_model": self.settings.embedding_model, "dimensions": int(probe.shape[1]),
                    "chunk_tokens": self.settings.chunk_tokens, "chunk_overlap": self.settings.chunk_overlap,
                    "sparse_encoding": sparse.ENCODING, "created": int(time.time())}
            await self.run(self.store.create, name, meta)
        return await self.describe(name)

    async def describe(self, name: str) -> dict[str, Any]:
        meta = await self.run(self.store.meta, name)
        stats = await self.run(self.store.stats, name)
        sources = await self.run(self.store.source_counts, name)
        described = {"name": name, "sparse_encoding": 1, **meta, "points": stats["points"], "sources": len(sources),
                     "store": stats}
        if described["sparse_encoding"] < sparse.ENCODING:  # still searchable: a query only adds terms it lacks
            described["notice"] = (f"keyword vectors of encoding {described['sparse_encoding']} (now {sparse.ENCODING}): "
                                   "re-ingest into a new collection for BM25 scoring")
        return described

    async def delete_collection(self, name: str) -> None:
        async with self.writer(name):
            await self.run(self.store.drop, name)

    async def delete_source(self, name: str, source: str) -> int:
        async with self.writer(name):
            removed = await self.run(self.store.count, name, source)
            await self.run(self.store.delete_source, name, source)
        return removed

    async def sources(self, name: str) -> list[dict[str, Any]]:
        counts = await self.run(self.store.source_counts, name)
        complete = await self.run(self.store.complete_documents, name)
        out = []
        for source, points in sorted(counts.items()):
            versions = complete.get(source, {})
            # complete: one committed version and nothing else (no leftovers of a killed run)
            whole = len(versions) == 1 and next(iter(versions.values())) == points
            out.append({"source": source, "chunks": points, "hash": next(iter(versions)) if whole else None,
                        "complete": whole})
        return out

    async def search(self, name: str, query: str, mode: str = "hybrid", k: int | None = None,
                     sources: list[str] | None = None, tags: list[str] | None = None,
                     score_threshold: float | None = None) -> list[dict[str, Any]]:
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("'query' must be a non-empty string", param="query")
        if mode not in MODES:
            raise BadRequest(f"unknown mode {mode!r}; one of: {', '.join(MODES)}", param="mode")
        k = k or self.settings.top_k
        if not isinstance(k, int) or not 1 <= k <= 1000:
            raise BadRequest("'k' must be an integer from 1 to 1000", param="k")
        meta = await self.run(self.store.meta, name)
        self.check_model(name, meta)
        dense = (await self.gateway.embed([query]))[0].tolist()
        spec = SearchSpec(mode, k, dense=dense, sparse=sparse.query_vector(query), sources=list(sources or []),
                          tags=list(tags or []), score_threshold=score_threshold)
        hits = await self.run(self.store.query, name, spec)
        return [_result(h, dense) for h in hits]

    def check_model(self, name: str, meta: dict[str, Any]) -> None:
        if meta.get("embedding_model") != self.settings.embedding_model:
            raise Conflict(f"collection {name!r} was built with embedding model {meta.get('embedding_model')!r}, "
                           f"but the service uses {self.settings.embedding_model!r}; re-ingest it into a new collection")


def _result(hit, query_vector: list[float]) -> dict[str, Any]:
    p = hit.payload
    relevance = sum(a * b for a, b in zip(hit.dense, query_vector)) if hit.dense else None
    text = p.get("text", "")
    return {
        "id": hit.id, "score": hit.score, "relevance": relevance, "source": p.get("source"), "page": p.get("page"),
        "heading": " > ".join(p.get("heading") or []), "position": p.get("position"), "start": p.get("start"),
        "end": p.get("end"), "tags": p.get("tags", []), "metadata": p.get("metadata", {}), "text": text,
        "snippet": text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS].rsplit(" ", 1)[0] + " …",
    }
