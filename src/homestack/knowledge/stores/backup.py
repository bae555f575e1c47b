"""Backup and restore: every collection's points, in a store-neutral tar.gz.

The archive holds, per collection, ``NAME/collection.json`` (what it was built
with), ``NAME/points.jsonl`` (ids, payloads, sparse vectors) and ``NAME/dense.npy``
(the dense vectors in the same order). It restores into either store, so it also
moves a knowledge base from Qdrant Edge to a Qdrant server. Writers are held off
while a collection is read, so the copy is consistent.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.background import BackgroundTask

from ...errors import BadRequest, Conflict
from ..core import KnowledgeBase
from .base import Store, StorePoint, check_name

_MANIFEST = "homestack-knowledge-backup.json"
_BATCH = 1000


def write_backup(k: KnowledgeBase, names: list[str], path: Path) -> dict[str, Any]:
    counts = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            lines, vectors = [], []
            for points in k.store.export(name, _BATCH):
                for p in points:
                    lines.append(orjson.dumps({"id": p.id, "payload": p.payload, "sparse": list(p.sparse)}))
                    vectors.append(p.dense)
            dense = io.BytesIO()
            np.save(dense, np.asarray(vectors, dtype=np.float32))
            _add(tar, f"{name}/collection.json", json.dumps(k.store.meta(name)).encode())
            _add(tar, f"{name}/points.jsonl", b"\n".join(lines))
            _add(tar, f"{name}/dense.npy", dense.getvalue())
            counts[name] = len(lines)
        manifest = {"version": 1, "created": int(time.time()), "collections": counts}
        _add(tar, _MANIFEST, json.dumps(manifest).encode())
    return manifest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def read_backup(store: Store, path: Path, replace: bool) -> dict[str, int]:
    """Restore every collection in the archive; existing ones only with ``replace``."""
    try:
        tar = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise BadRequest(f"not a homestack knowledge backup (tar.gz): {exc}") from None
    with tar:
        manifest = json.loads(_member(tar, _MANIFEST))
        names = [check_name(n) for n in manifest.get("collections", {})]
        existing = set(store.list())
        clash = [n for n in names if n in existing]
        if clash and not replace:
            raise Conflict(f"collections already exist: {', '.join(clash)}; delete them first or restore with replace")
        restored = {}
        for name in names:
            meta = json.loads(_member(tar, f"{name}/collection.json"))
            dense = np.load(io.BytesIO(_member(tar, f"{name}/dense.npy")))
            rows = [orjson.loads(line) for line in _member(tar, f"{name}/points.jsonl").splitlines() if line]
            if len(rows) != len(dense):
                raise BadRequest(f"backup of {name!r} is damaged: {len(rows)} payloads but {len(dense)} vectors")
            if name in existing:
                store.drop(name)
            store.create(name, meta)
            for start in range(0, len(rows), _BATCH):
                store.upsert(name, [StorePoint(r["id"], v.tolist(), tuple(r["sparse"]), r["payload"])
                                      for r, v in zip(rows[start:start + _BATCH], dense[start:start + _BATCH])])
            restored[name] = len(rows)
        return restored


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise BadRequest(f"not a homestack knowledge backup: {name} is missing")
    return member.read()


async def backup_route(k: KnowledgeBase, request: Request) -> Response:
    names = await k.run(k.store.list)
    handle = tempfile.NamedTemporaryFile(suffix=".tar.gz", dir=k.settings.data_dir, delete=False)
    handle.close()
    path = Path(handle.name)
    locks = [k.writer(n) for n in names]
    for lock in locks:
        await lock.acquire()
    try:
        await k.run(write_backup, k, names, path)
    finally:
        for lock in locks:
            lock.release()
    return FileResponse(path, media_type="application/gzip", filename="homestack-knowledge.tar.gz",
                        background=BackgroundTask(path.unlink, missing_ok=True))


async def restore_route(k: KnowledgeBase, request: Request) -> Response:
    replace = request.query_params.get("replace") in ("1", "true", "yes")
    with tempfile.NamedTemporaryFile(suffix=".tar.gz", dir=k.settings.data_dir) as handle:
        async for part in request.stream():
            handle.write(part)
        handle.flush()
        names_lock = k.writer("\0restore")  # one restore at a time
        async with names_lock:
            restored = await k.run(read_backup, k.store, Path(handle.name), replace)
    return Response(orjson.dumps({"restored": restored}), media_type="application/json")
