"""Downloading a model file into the model store: resumable, with progress and a sha256 check.

The bytes go to ``NAME.partial`` beside the target; a rerun asks the server for the rest
(HTTP Range). The file gets its final name only after its sha256 matched (when given); a
mismatch deletes the download, so a corrupted file is never served.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

import httpx

from ..errors import HomestackError
from .manifest import sha256_file

_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# (bytes done, total or None) after each chunk.
Progress = Callable[[int, int | None], None]


def file_name(url: str, name: str | None) -> str:
    """The stored file's name: --name, else the URL's last path segment; never a path."""
    chosen = name or unquote(Path(urlparse(url).path).name)
    if not _SAFE_NAME.match(chosen or ""):
        raise HomestackError(f"cannot store a model as {chosen!r}: give --name with letters, digits, '.', '_' or '-'")
    return chosen


def download(url: str, target: Path, sha256: str | None, progress: Progress) -> str:
    """Fetch ``url`` into ``target`` (resuming a partial download); return the file's sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    done = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as resp:
            if resp.status_code == 416:  # nothing left to send: the partial file is whole
                total = done
            elif resp.status_code in (200, 206):
                if resp.status_code == 200:  # the server ignored the Range: start over
                    done = 0
                length = resp.headers.get("content-length")
                total = done + int(length) if length else None
                with partial.open("ab" if done else "wb") as out:
                    for block in resp.iter_bytes(_CHUNK):
                        out.write(block)
                        done += len(block)
                        progress(done, total)
            else:
                raise HomestackError(f"{url}: HTTP {resp.status_code}")
    except httpx.HTTPError as exc:
        raise HomestackError(f"{url}: download interrupted ({exc}); run the same pull again to resume") from None
    if total is not None and done != total:
        raise HomestackError(f"{url}: got {done} of {total} bytes; run the same pull again to resume")
    actual = sha256_file(partial)
    if sha256 and actual != sha256.lower():
        partial.unlink()
        raise HomestackError(f"{url}: sha256 is {actual}, expected {sha256}; the corrupted download was deleted")
    os.replace(partial, target)
    return actual
