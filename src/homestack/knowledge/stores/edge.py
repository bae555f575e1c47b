"""The default store: Qdrant Edge, the Qdrant engine in this process, one shard per collection.

Layout: ``ROOT/NAME/collection.json`` (what the collection was built with) and
``ROOT/NAME/shard/`` (Qdrant's segments and write-ahead log, which replays what a
killed process had acknowledged).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import qdrant_edge as q

from ...errors import Conflict, NotFound
from .base import (
    HYBRID_FUSION, INDEXED_KEYWORDS, MARKER_PAYLOAD, Hit, SearchSpec, StorePoint, check_name, documents_from_markers,
)

_FACET_LIMIT = 1_000_000  # every source of a collection
_FUSIONS = {"rrf": lambda f: q.Fusion.Rrf(k=f.k, weights=f.weights), "dbsf": lambda f: q.Fusion.Dbsf()}


class EdgeStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, q.EdgeShard] = {}
        self._open_lock = threading.Lock()

    def list(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/collection.json"))

    def create(self, name: str, meta: dict[str, Any]) -> None:
        directory = self.root / check_name(name)
        if (directory / "collection.json").exists():
            raise Conflict(f"collection {name!r} already exists", param="name")
        shutil.rmtree(directory, ignore_errors=True)  # a create that died half-way
        config = q.EdgeConfig(
            vectors={"dense": q.EdgeVectorParams(size=meta["dimensions"], distance=q.Distance.Cosine)},
            sparse_vectors={"sparse": q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        )
        shard = q.EdgeShard.create(str(directory / "shard"), config)
        for key in INDEXED_KEYWORDS:
            shard.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Keyword))
        shard.update(q.UpdateOperation.create_field_index("position", q.PayloadSchemaType.Integer))
        shard.flush()
        # written last: a directory without it is not a collection
        (directory / "collection.json").write_text(json.dumps(meta, indent=2))
        self._shards[name] = shard

    def meta(self, name: str) -> dict[str, Any]:
        path = self.root / check_name(name) / "collection.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(f"collection {name!r} does not exist; collections: {', '.join(self.list()) or 'none'}",
                           param="collection") from None

    def update_meta(self, name: str, meta: dict[str, Any]) -> None:
        path = self.root / check_name(name) / "collection.json"
        self.meta(name)
        staged = path.with_suffix(".json.tmp")
        staged.write_text(json.dumps(meta, indent=2))
        staged.replace(path)  # atomic: a reader sees the old file or the new one

    def _shard(self, name: str) -> q.EdgeShard:
        shard = self._shards.get(name)
        if shard is None:
            self.meta(name)  # NotFound for an unknown name
            with self._open_lock:
                shard = self._shards.get(name)
                if shard is None:
                    shard = self._shards[name] = q.EdgeShard.load(str(self.root / name / "shard"))
        return shard

    def drop(self, name: str) -> None:
        self.meta(name)
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        (self.root / name / "collection.json").unlink()
        shutil.rmtree(self.root / name)

    def upsert(self, name: str, points: list[StorePoint]) -> None:
        self._shard(name).update(q.UpdateOperation.upsert_points([
            q.Point(p.id, {"dense": p.dense, "sparse": q.SparseVector(*p.sparse)}, p.payload) for p in points
        ]))

    def delete_source(self, name: str, source: str, except_hash: str | None = None) -> None:
        self._shard(name).update(q.UpdateOperation.delete_points_by_filter(_source_filter(source, except_hash)))

    def count(self, name: str, source: str | None = None, except_hash: str | None = None) -> int:
        condition = _source_filter(source, except_hash) if source is not None else None
        return self._shard(name).count(q.CountRequest(exact=True, filter=condition))

    def existing(self, name: str, ids: list[str]) -> set[str]:
        return {str(r.id) for r in self._shard(name).retrieve(ids, False, False)}

    def source_counts(self, name: str) -> dict[str, int]:
        facets = self._shard(name).facet(q.FacetRequest(key="source", limit=_FACET_LIMIT, exact=True))
        return {hit.value: hit.count for hit in facets if hit.count}  # deleted values linger with count 0

    def complete_documents(self, name: str) -> dict[str, dict[str, int]]:
        markers = q.Filter(must=[q.FieldCondition(key="position", match=q.MatchValue(0))])
        return documents_from_markers(self._scroll(name, markers, MARKER_PAYLOAD, False))

    def _scroll(self, name: str, condition, payload, vectors: bool, batch: int = 1000):
        shard, offset = self._shard(name), None
        while True:
            records, offset = shard.scroll(q.ScrollRequest(
                offset=offset, limit=batch, filter=condition, with_payload=payload, with_vector=vectors,
            ))
            if records:
                yield records
            if offset is None:
                return

    def query(self, name: str, spec: SearchSpec) -> list[Hit]:
        condition = _search_filter(spec)
        dense = q.Query.Nearest(spec.dense, using="dense") if spec.dense is not None else None
        sparse = q.Query.Nearest(q.SparseVector(*spec.sparse), using="sparse") if spec.sparse is not None else None
        if spec.mode == "hybrid":
            request = q.QueryRequest(
                limit=spec.limit, filter=condition, score_threshold=spec.score_threshold,
                prefetches=[q.Prefetch(limit=spec.candidates, query=dense, filter=condition),
                            q.Prefetch(limit=spec.candidates, query=sparse, filter=condition)],
                query=_FUSIONS[HYBRID_FUSION.method](HYBRID_FUSION), with_payload=True,
                with_vector=["dense"],
            )
        else:
            request = q.QueryRequest(
                limit=spec.limit, filter=condition, score_threshold=spec.score_threshold,
                query=dense if spec.mode == "dense" else sparse, with_payload=True, with_vector=["dense"],
            )
        return [Hit(str(p.id), p.score, p.payload, (p.vector or {}).get("dense")) for p in self._shard(name).query(request)]

    def export(self, name: str, batch: int = 1000):
        for records in self._scroll(name, None, True, True, batch):
            yield [StorePoint(str(r.id), r.vector["dense"], (r.vector["sparse"].indices, r.vector["sparse"].values),
                              r.payload) for r in records]

    def stats(self, name: str) -> dict[str, Any]:
        info = self._shard(name).info()
        return {"points": info.points_count, "segments": info.segments_count, "indexed_vectors": info.indexed_vectors_count}

    def optimize(self, name: str) -> None:
        self._shard(name).optimize()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()


def _source_filter(source: str, except_hash: str | None) -> q.Filter:
    must_not = [q.FieldCondition(key="hash", match=q.MatchValue(except_hash))] if except_hash else None
    return q.Filter(must=[q.FieldCondition(key="source", match=q.MatchValue(source))], must_not=must_not)


def _search_filter(spec: SearchSpec) -> q.Filter | None:
    must = []
    if spec.sources:
        must.append(q.FieldCondition(key="source", match=q.MatchAny(spec.sources)))
    if spec.tags:
        must.append(q.FieldCondition(key="tags", match=q.MatchAny(spec.tags)))
    return q.Filter(must=must) if must else None
