"""Ingest: documents to chunks to vectors to points, with each file replaced atomically.

A file's content hash decides: the same hash already stored and committed is
skipped. Otherwise its chunks are written under ids derived from (source, hash,
position), the commit marker (position 0) last, and only then are the source's
points with another hash deleted. A run killed at any step therefore leaves
either the old version or a marker-less new one, which the next run rewrites
(same ids: no duplicates) before deleting the rest (no orphans).

Parsing runs in a worker thread one file ahead of the embedding requests, and
each batch is written while the next one is being embedded.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ...errors import HomestackError
from . import sparse
from .chunk import Chunk, chunk_blocks
from ..core import KnowledgeBase
from .parse import parse
from ..stores.base import StorePoint, point_id
from .tokens import TokenCounter

_AVG_SAMPLE_DOCS = 500


@dataclass
class Document:
    source: str
    data: bytes
    format: str
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class _Pending:
    """A document whose chunks are on their way into the store."""

    doc: Document
    hash: str
    status: str
    total: int
    remaining: int
    marker: StorePoint | None = None


async def ingest(k: KnowledgeBase, collection: str, docs: list[Document]) -> AsyncIterator[dict[str, Any]]:
    """Events: one ``file`` per document (added, replaced, skipped, empty, failed), ``progress``, ``done``."""
    async with k.writer(collection):
        meta = await k.run(k.store.meta, collection)
        k.check_model(collection, meta)
        if "avg_terms" not in meta:
            meta = await k.run(_learn_avg_terms, k, collection, meta, docs)
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        producer = asyncio.create_task(_prepare(k, collection, meta, docs, queue))
        totals = {"files": len(docs), "added": 0, "replaced": 0, "skipped": 0, "empty": 0, "failed": 0, "chunks": 0}
        try:
            async for event in _write(k, collection, queue):
                if event["event"] == "file":
                    totals[event["status"]] += 1
                    totals["chunks"] += event.get("chunks", 0)
                yield event
        finally:
            producer.cancel()
        await producer
    yield {"event": "done", **totals}


async def _prepare(k: KnowledgeBase, collection: str, meta: dict[str, Any], docs: list[Document], queue: asyncio.Queue):
    """Decide each document's fate and parse what must be written; None ends the queue."""
    try:
        await _decide(k, collection, meta, docs, queue)
    except Exception as exc:  # handed to the writer, which raises it, rather than leaving it waiting
        await queue.put(exc)
        return
    await queue.put(None)


async def _decide(k: KnowledgeBase, collection: str, meta: dict[str, Any], docs: list[Document], queue: asyncio.Queue):
    complete = await k.run(k.store.complete_documents, collection)
    for doc in docs:
        digest = doc.hash
        stored = complete.get(doc.source, {})
        if list(stored) == [digest] and await k.run(k.store.count, collection, doc.source, digest) == 0:
            await queue.put((doc, digest, "skipped", None))
            continue
        try:
            chunks = await k.run(prepare_chunks, k.counter, meta, doc)
        except HomestackError as exc:
            await queue.put((doc, digest, "failed", exc.message))
            continue
        status = "replaced" if stored or await k.run(k.store.count, collection, doc.source) else "added"
        await queue.put((doc, digest, status, chunks))


def prepare_chunks(counter: TokenCounter, meta: dict[str, Any], doc: Document) -> list[tuple[Chunk, str, tuple]]:
    """Each chunk with the text to embed and its sparse vector."""
    chunks = chunk_blocks(parse(doc.data, doc.format, doc.source), counter, meta["chunk_tokens"], meta["chunk_overlap"])
    avg_terms = meta.get("avg_terms", sparse.DEFAULT_AVG_TERMS)
    # Embedded text carries its heading path: a chunk's meaning often depends on its section.
    return [(c, "\n".join([" > ".join(c.heading), c.text]) if c.heading else c.text,
             sparse.document_vector(_chunk_terms(c), avg_terms)) for c in chunks]


def _chunk_terms(chunk: Chunk) -> list[str]:
    # the overlap's words were counted in the previous chunk: BM25 counts each occurrence once
    return sparse.terms(" ".join([*chunk.heading, chunk.text[chunk.lead:]]))


def _learn_avg_terms(k: KnowledgeBase, collection: str, meta: dict[str, Any], docs: list[Document]) -> dict[str, Any]:
    """BM25's average document length, from the first ingest's chunks; fixed afterwards (stored vectors use it)."""
    lengths = []
    for doc in docs[:_AVG_SAMPLE_DOCS]:
        try:
            chunks = chunk_blocks(parse(doc.data, doc.format, doc.source), k.counter, meta["chunk_tokens"],
                                  meta["chunk_overlap"])
        except HomestackError:
            continue  # reported when the document itself is ingested
        lengths.extend(len(_chunk_terms(c)) for c in chunks)
    if not lengths:
        return meta
    meta = {**meta, "avg_terms": round(max(sum(lengths) / len(lengths), 1.0), 2)}
    k.store.update_meta(collection, meta)
    return meta


async def _write(k: KnowledgeBase, collection: str, queue: asyncio.Queue) -> AsyncIterator[dict[str, Any]]:
    batch: list[tuple[_Pending, Chunk, str, tuple]] = []
    previous: tuple[list, Any] | None = None
    done = 0

    async def flush(items, vectors) -> list[dict[str, Any]]:
        nonlocal done
        events = await _store(k, collection, items, vectors)
        done += len(items)
        return [*events, {"event": "progress", "chunks": done}]

    while True:
        item = await queue.get()
        if isinstance(item, Exception):
            raise item
        if item is not None:
            doc, digest, status, chunks = item
            if status in ("skipped", "failed"):
                yield {"event": "file", "source": doc.source, "status": status, "chunks": 0,
                       **({"error": chunks} if status == "failed" else {})}
                continue
            if not chunks:  # nothing to index: the source's old chunks go too
                await k.run(k.store.delete_source, collection, doc.source)
                yield {"event": "file", "source": doc.source, "status": "empty", "chunks": 0}
                continue
            pending = _Pending(doc, digest, status, len(chunks), len(chunks))
            batch.extend((pending, c, text, vec) for c, text, vec in chunks)
        while len(batch) >= k.settings.embed_batch or (item is None and batch):
            items, batch = batch[: k.settings.embed_batch], batch[k.settings.embed_batch:]
            embedding = asyncio.create_task(k.gateway.embed([text for _, _, text, _ in items]))
            try:
                if previous is not None:  # written while the gateway embeds the next batch
                    for event in await flush(*previous):
                        yield event
                previous = (items, await embedding)
            finally:
                embedding.cancel()
        if item is None:
            if previous is not None:
                for event in await flush(*previous):
                    yield event
            return


async def _store(k: KnowledgeBase, collection: str, items, vectors) -> list[dict[str, Any]]:
    points, finished = [], []
    for (pending, chunk, _, vec), dense in zip(items, vectors):
        point = StorePoint(point_id(pending.doc.source, pending.hash, chunk.position), dense.tolist(), vec,
                           _payload(pending, chunk))
        if chunk.position == 0:
            pending.marker = point  # the commit marker goes in after every other chunk of its file
        else:
            points.append(point)
        pending.remaining -= 1
        if pending.remaining == 0:
            finished.append(pending)
    if points:
        await k.run(k.store.upsert, collection, points)
    events = []
    if finished:
        await k.run(k.store.upsert, collection, [p.marker for p in finished])
        for p in finished:
            await k.run(k.store.delete_source, collection, p.doc.source, p.hash)
            events.append({"event": "file", "source": p.doc.source, "status": p.status, "chunks": p.total})
    return events


def _payload(pending: _Pending, chunk: Chunk) -> dict[str, Any]:
    return {
        "source": pending.doc.source, "hash": pending.hash, "position": chunk.position,
        "chunks": pending.total, "page": chunk.page,
        "heading": list(chunk.heading), "start": chunk.start, "end": chunk.end, "tokens": chunk.tokens,
        "text": chunk.text, "tags": pending.doc.tags, "metadata": pending.doc.metadata,
    }
