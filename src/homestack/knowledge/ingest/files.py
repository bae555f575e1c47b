"""Client side of `kb ingest` and `kb sync`: find files, skip unchanged ones, send the rest in batches.

A file's source name is its absolute path. Its sha256 is compared with what the
service has committed for that source, so unchanged files are not even sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ...errors import HomestackError
from ..client.http import KnowledgeClient
from .parse import FORMATS

_BATCH_BYTES = 24 * 1024 * 1024  # raw bytes per request (base64 adds a third)
_BATCH_FILES = 256


@dataclass
class Report:
    added: int = 0
    replaced: int = 0
    skipped: int = 0
    empty: int = 0
    removed: int = 0
    chunks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "failed"},
                "failed": [{"source": s, "error": e} for s, e in self.failed]}


def find_files(paths: list[str]) -> list[Path]:
    """Files named, and supported files under folders named (hidden ones left out), sorted."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(Path(root, f) for f in files
                             if not f.startswith(".") and Path(f).suffix.lower() in FORMATS)
        else:
            raise HomestackError(f"{raw}: no such file or folder")
    return sorted(found)


def ingest_files(client: KnowledgeClient, collection: str, files: list[Path], tags: list[str],
                 on_file: Callable[[dict], None] = lambda event: None, sync_root: Path | None = None) -> Report:
    client.json("POST", "/collections", {"name": collection, "exist_ok": True})
    stored = {s["source"]: s for s in client.json("GET", f"/collections/{collection}/sources")["sources"]}
    report = Report()
    changed: list[tuple[Path, int]] = []
    for path in files:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            report.failed.append((str(path), f"{path}: {exc.strerror or exc}"))
            on_file({"source": str(path), "status": "failed", "error": report.failed[-1][1]})
            continue
        known = stored.get(str(path))
        if known and known["complete"] and known["hash"] == digest:
            report.skipped += 1
            on_file({"source": str(path), "status": "skipped"})
        else:
            changed.append((path, path.stat().st_size))
    for batch in _batches(changed):
        documents = [{"source": str(p), "content_base64": base64.b64encode(p.read_bytes()).decode(), "tags": tags}
                     for p in batch]
        for event in client.events(f"/collections/{collection}/documents", {"documents": documents}):
            if event["event"] != "file":
                continue
            status = event["status"]
            if status == "failed":
                report.failed.append((event["source"], event["error"]))
            else:
                setattr(report, status, getattr(report, status) + 1)
                report.chunks += event["chunks"]
            on_file(event)
    if sync_root is not None:  # sources under the synced folder whose file is gone
        present = {str(p) for p in files}
        prefix = str(sync_root) + os.sep
        for source in stored:
            if source.startswith(prefix) and source not in present:
                client.json("DELETE", f"/collections/{collection}/sources", source=source)
                report.removed += 1
                on_file({"source": source, "status": "removed"})
    return report


def _batches(files: list[tuple[Path, int]]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path, n in files:
        if batch and (size + n > _BATCH_BYTES or len(batch) >= _BATCH_FILES):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += n
    if batch:
        yield batch
