"""What the knowledge service needs from a vector store, and the two stores that do it.

A collection holds one point per chunk: a dense vector (the embedding model's),
a sparse keyword vector (IDF-modified, so sparse search scores like BM25) and the
chunk's payload. Point ids are derived from (source, content hash, position), so
writing the same file twice writes the same points. Qdrant Edge in process is the
default (`edge.py`); a Qdrant server through qdrant-client when configured
(`qdrant_server.py`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ...errors import BadRequest

Mode = Literal["dense", "sparse", "hybrid"]
MODES: tuple[str, ...] = ("dense", "sparse", "hybrid")
INDEXED_KEYWORDS = ("source", "hash", "tags")  # payload indexes: filters, per-source deletes, facets
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ID_NAMESPACE = uuid.UUID("6f1d4a8e-1d55-4d6b-9f55-6b6e6f776c65")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            param="collection",
        )
    return name


def point_id(source: str, content_hash: str, position: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source}\0{content_hash}\0{position}"))


@dataclass
class StorePoint:
    id: str
    dense: list[float]
    sparse: tuple[list[int], list[float]]
    payload: dict[str, Any]


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    dense: list[float] | None = None


@dataclass(frozen=True)
class Fusion:
    """Hybrid search's merge of its dense and sparse candidates, as Qdrant's query API offers it:
    ``rrf``, weighted reciprocal rank fusion (each point scores the sum of weight / (k + rank)
    over the lists it is in), or ``dbsf``, distribution-based score fusion (each list's scores
    scaled by its mean ± 3 standard deviations, then summed; no weights). The choice and its
    constants were made on the benchmark's public sets (README, Benchmark)."""

    method: Literal["rrf", "dbsf"]
    k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0

    @property
    def weights(self) -> list[float]:
        return [self.dense_weight, self.sparse_weight]


# DBSF, measured in the engine (Qdrant Edge runs it; keyword encoding 2): on man-c-api (750 queries) nDCG@10
# 0.795 against RRF k = 60 0.776 and k = 10 0.784, dense 0.733, sparse 0.741 and the references' RRF 0.774;
# on man-commands (613) 0.874 against 0.865, 0.873, 0.833, 0.798 and 0.856 (README, Benchmark).
HYBRID_FUSION = Fusion("dbsf")


@dataclass
class SearchSpec:
    mode: Mode
    limit: int
    dense: list[float] | None = None
    sparse: tuple[list[int], list[float]] | None = None
    sources: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    score_threshold: float | None = None

    @property
    def candidates(self) -> int:
        """How many each side of a hybrid search brings to the fusion."""
        return max(self.limit * 4, 40)


class Store(Protocol):
    """Synchronous calls, run in worker threads; a collection has one writer at a time."""

    def list(self) -> list[str]: ...

    def create(self, name: str, meta: dict[str, Any]) -> None: ...

    def meta(self, name: str) -> dict[str, Any]: ...

    def update_meta(self, name: str, meta: dict[str, Any]) -> None:
        """Replace what the collection records about how it was built."""

    def drop(self, name: str) -> None: ...

    def upsert(self, name: str, points: list[StorePoint]) -> None: ...

    def delete_source(self, name: str, source: str, except_hash: str | None = None) -> None:
        """Delete the source's points, or only those whose content hash is not ``except_hash``."""

    def count(self, name: str, source: str | None = None, except_hash: str | None = None) -> int: ...

    def existing(self, name: str, ids: list[str]) -> set[str]: ...

    def source_counts(self, name: str) -> dict[str, int]:
        """Points per source, whatever their state."""

    def complete_documents(self, name: str) -> dict[str, dict[str, int]]:
        """Source -> {content hash: its chunk count} for the versions whose commit marker (position 0) is stored."""

    def query(self, name: str, spec: SearchSpec) -> list[Hit]: ...

    def export(self, name: str, batch: int = 1000):
        """Every point, as lists of StorePoint, ``batch`` at a time."""

    def stats(self, name: str) -> dict[str, Any]: ...

    def optimize(self, name: str) -> None: ...

    def close(self) -> None: ...


MARKER_PAYLOAD = ["source", "hash", "chunks"]


def documents_from_markers(batches) -> dict[str, dict[str, int]]:
    """source -> {hash: chunks} from scrolled batches of commit markers (position 0 points)."""
    found: dict[str, dict[str, int]] = {}
    for records in batches:
        for r in records:
            found.setdefault(r.payload["source"], {})[r.payload["hash"]] = r.payload["chunks"]
    return found
