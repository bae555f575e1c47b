"""The store on a Qdrant server (``knowledge.qdrant_url``), through qdrant-client.

Collections are named ``homestack-NAME`` so ours are told apart from others on
the same server; what a collection was built with lives in its metadata.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient, models as m

from ...errors import Conflict, NotFound
from .base import (
    HYBRID_FUSION, INDEXED_KEYWORDS, MARKER_PAYLOAD, Hit, SearchSpec, StorePoint, check_name, documents_from_markers,
)

_PREFIX = "homestack-"
_FACET_LIMIT = 1_000_000
_FUSIONS = {"rrf": lambda f: m.RrfQuery(rrf=m.Rrf(k=f.k, weights=f.weights)),
            "dbsf": lambda f: m.FusionQuery(fusion=m.Fusion.DBSF)}


class QdrantServerStore:
    def __init__(self, client: QdrantClient):
        self.client = client

    @classmethod
    def connect(cls, url: str) -> "QdrantServerStore":
        return cls(QdrantClient(url=url))

    def list(self) -> list[str]:
        names = (c.name for c in self.client.get_collections().collections)
        return sorted(n.removeprefix(_PREFIX) for n in names if n.startswith(_PREFIX))

    def create(self, name: str, meta: dict[str, Any]) -> None:
        full = _PREFIX + check_name(name)
        if self.client.collection_exists(full):
            raise Conflict(f"collection {name!r} already exists", param="name")
        self.client.create_collection(
            full,
            vectors_config={"dense": m.VectorParams(size=meta["dimensions"], distance=m.Distance.COSINE)},
            sparse_vectors_config={"sparse": m.SparseVectorParams(modifier=m.Modifier.IDF)},
            metadata=meta,
        )
        for key in INDEXED_KEYWORDS:
            self.client.create_payload_index(full, key, m.PayloadSchemaType.KEYWORD)
        self.client.create_payload_index(full, "position", m.PayloadSchemaType.INTEGER)

    def meta(self, name: str) -> dict[str, Any]:
        full = _PREFIX + check_name(name)
        if not self.client.collection_exists(full):
            raise NotFound(f"collection {name!r} does not exist; collections: {', '.join(self.list()) or 'none'}",
                           param="collection")
        return dict(self.client.get_collection(full).config.metadata or {})

    def update_meta(self, name: str, meta: dict[str, Any]) -> None:
        self.client.update_collection(self._name(name), metadata=meta)

    def _name(self, name: str) -> str:
        self.meta(name)
        return _PREFIX + name

    def drop(self, name: str) -> None:
        self.client.delete_collection(self._name(name))

    def upsert(self, name: str, points: list[StorePoint]) -> None:
        self.client.upsert(self._name(name), [
            m.PointStruct(id=p.id, payload=p.payload, vector={
                "dense": p.dense, "sparse": m.SparseVector(indices=p.sparse[0], values=p.sparse[1])})
            for p in points
        ], wait=True)

    def delete_source(self, name: str, source: str, except_hash: str | None = None) -> None:
        self.client.delete(self._name(name), m.FilterSelector(filter=_source_filter(source, except_hash)), wait=True)

    def count(self, name: str, source: str | None = None, except_hash: str | None = None) -> int:
        condition = _source_filter(source, except_hash) if source is not None else None
        return self.client.count(self._name(name), count_filter=condition, exact=True).count

    def existing(self, name: str, ids: list[str]) -> set[str]:
        return {str(r.id) for r in self.client.retrieve(self._name(name), ids, with_payload=False)}

    def source_counts(self, name: str) -> dict[str, int]:
        facets = self.client.facet(self._name(name), "source", limit=_FACET_LIMIT, exact=True)
        return {hit.value: hit.count for hit in facets.hits if hit.count}

    def complete_documents(self, name: str) -> dict[str, dict[str, int]]:
        markers = m.Filter(must=[m.FieldCondition(key="position", match=m.MatchValue(value=0))])
        return documents_from_markers(self._scroll(name, markers, MARKER_PAYLOAD, False))

    def _scroll(self, name: str, condition, payload, vectors: bool, batch: int = 1000):
        full, offset = self._name(name), None
        while True:
            records, offset = self.client.scroll(
                full, scroll_filter=condition, limit=batch, offset=offset, with_payload=payload, with_vectors=vectors,
            )
            if records:
                yield records
            if offset is None:
                return

    def query(self, name: str, spec: SearchSpec) -> list[Hit]:
        condition = _search_filter(spec)
        sparse = m.SparseVector(indices=spec.sparse[0], values=spec.sparse[1]) if spec.sparse is not None else None
        common = dict(query_filter=condition, limit=spec.limit, score_threshold=spec.score_threshold,
                      with_payload=True, with_vectors=["dense"])
        if spec.mode == "hybrid":
            response = self.client.query_points(
                self._name(name), **common,
                query=_FUSIONS[HYBRID_FUSION.method](HYBRID_FUSION),
                prefetch=[m.Prefetch(query=spec.dense, using="dense", limit=spec.candidates, filter=condition),
                          m.Prefetch(query=sparse, using="sparse", limit=spec.candidates, filter=condition)],
            )
        elif spec.mode == "dense":
            response = self.client.query_points(self._name(name), query=spec.dense, using="dense", **common)
        else:
            response = self.client.query_points(self._name(name), query=sparse, using="sparse", **common)
        return [Hit(str(p.id), p.score, p.payload or {}, (p.vector or {}).get("dense")) for p in response.points]

    def export(self, name: str, batch: int = 1000):
        for records in self._scroll(name, None, True, True, batch):
            yield [StorePoint(str(r.id), r.vector["dense"], (r.vector["sparse"].indices, r.vector["sparse"].values),
                              r.payload) for r in records]

    def stats(self, name: str) -> dict[str, Any]:
        info = self.client.get_collection(self._name(name))
        return {"points": info.points_count, "segments": info.segments_count,
                "indexed_vectors": info.indexed_vectors_count}

    def optimize(self, name: str) -> None:
        """The server runs its own optimizers."""

    def close(self) -> None:
        self.client.close()


def _source_filter(source: str, except_hash: str | None) -> m.Filter:
    must_not = [m.FieldCondition(key="hash", match=m.MatchValue(value=except_hash))] if except_hash else None
    return m.Filter(must=[m.FieldCondition(key="source", match=m.MatchValue(value=source))], must_not=must_not)


def _search_filter(spec: SearchSpec) -> m.Filter | None:
    must = []
    if spec.sources:
        must.append(m.FieldCondition(key="source", match=m.MatchAny(any=spec.sources)))
    if spec.tags:
        must.append(m.FieldCondition(key="tags", match=m.MatchAny(any=spec.tags)))
    return m.Filter(must=must) if must else None
