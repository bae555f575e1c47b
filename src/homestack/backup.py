"""`homestack backup` and `homestack restore`: everything a restore needs, in one tar.gz.

The archive holds the fleet file, its lock, the key store and state file of the data dir, and the
knowledge service's own backup (taken from the running service, so the copy is consistent).
Restoring writes them back on an empty machine and loads the collections straight into the
store the fleet file names, before anything serves; it never overwrites what is already there.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .artifacts.lock import lock_file
from .config import load_fleet
from .errors import ConfigError, HomestackError
from .keys.store import STORE_NAME
from .statedir import STATE_FILE, STATE_VERSION, check_state_dir

FORMAT = "homestack-backup/1"
_MANIFEST = "homestack-backup.json"
_FLEET, _LOCK, _KNOWLEDGE = "fleet.yaml", "homestack.lock", "knowledge.tar.gz"
_STATE = (STORE_NAME, STATE_FILE)  # what of the data dir a restore needs (logs and caches are rebuilt)


def backup(config: str, dest: Path, knowledge_url: str | None, api_key: str | None = None) -> list[str]:
    """Write the archive; the names of what it holds."""
    fleet = load_fleet(config)
    members: dict[str, bytes] = {_FLEET: Path(config).read_bytes()}
    if lock_file(config).is_file():
        members[_LOCK] = lock_file(config).read_bytes()
    for name in _STATE:
        if (fleet.data_dir / name).is_file():
            members[f"state/{name}"] = (fleet.data_dir / name).read_bytes()
    if fleet.knowledge.enabled:
        from .knowledge.client.http import KnowledgeClient

        url = knowledge_url or f"http://{fleet.knowledge.host}:{fleet.knowledge.port}"
        with tempfile.TemporaryDirectory() as tmp:
            KnowledgeClient(url, api_key=api_key).download("/backup", Path(tmp) / _KNOWLEDGE)
            members[_KNOWLEDGE] = (Path(tmp) / _KNOWLEDGE).read_bytes()
    manifest = {"format": FORMAT, "state_version": STATE_VERSION, "created": int(time.time()), "members": list(members)}
    partial = dest.with_name(f".{dest.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        for name, data in {_MANIFEST: json.dumps(manifest, indent=2).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), manifest["created"], 0o600
            tar.addfile(info, io.BytesIO(data))
    partial.replace(dest)
    return list(members)


def restore(archive: Path, config: Path) -> list[str]:
    """Write the archive back: the fleet file at ``config``, the rest where that fleet file says."""
    members = _read(archive)
    if config.exists():
        raise ConfigError(f"{config} exists: restore onto an empty machine, or pass another --config")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_bytes(members[_FLEET])
    fleet = load_fleet(str(config))
    written = [str(config)]
    if _LOCK in members:
        lock_file(str(config)).write_bytes(members[_LOCK])
        written.append(str(lock_file(str(config))))
    fleet.data_dir.mkdir(parents=True, exist_ok=True)
    for name in _STATE:
        data = members.get(f"state/{name}")
        if data is not None:
            target = fleet.data_dir / name
            if target.exists():
                raise ConfigError(f"{target} exists: restore onto an empty data dir")
            target.write_bytes(data)
            target.chmod(0o600)
            written.append(str(target))
    check_state_dir(fleet.data_dir)  # stamped with this homestack's state version if the archive had none
    if _KNOWLEDGE in members:
        written += [f"knowledge collection {name}" for name in _restore_knowledge(fleet, members[_KNOWLEDGE])]
    return written


def _read(archive: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        manifest = json.loads(members[_MANIFEST])
    except (tarfile.TarError, OSError, KeyError, ValueError) as exc:
        raise HomestackError(f"{archive}: not a homestack backup ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise HomestackError(f"{archive}: format {manifest.get('format')!r}; this homestack reads {FORMAT}")
    if manifest.get("state_version", 0) > STATE_VERSION:
        raise HomestackError(f"{archive}: written by a newer homestack (state version {manifest['state_version']}); "
                             "upgrade homestack first")
    return members


def _restore_knowledge(fleet: Any, data: bytes) -> list[str]:
    """Load the collections into the fleet's store directly: nothing serves yet on an empty machine."""
    from .knowledge.core import Settings, open_store
    from .knowledge.stores.backup import read_backup

    store = open_store(Settings.from_fleet(fleet))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / _KNOWLEDGE).write_bytes(data)
            return list(read_backup(store, Path(tmp) / _KNOWLEDGE, replace=False))
    finally:
        store.close()


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("backup", _backup, "Write the fleet file, lock, keys, state and knowledge store to one archive.")
    p.add_argument("dest", metavar="ARCHIVE", help="the tar.gz to write")
    p.add_argument("--config", "-c", metavar="FILE", required=True, help="fleet file (YAML)")
    p.add_argument("--knowledge-url", metavar="URL", help="the running knowledge service (default: from the fleet)")
    p.add_argument("--api-key", help="a key with knowledge-write for the knowledge service (default $HOMESTACK_API_KEY)")
    p = command("restore", _restore, "Bring a backup back on an empty machine (never overwrites).")
    p.add_argument("src", metavar="ARCHIVE", help="the tar.gz `homestack backup` wrote")
    p.add_argument("--config", "-c", metavar="FILE", required=True, help="where to write the fleet file")


def _backup(args: argparse.Namespace) -> None:
    held = backup(args.config, Path(args.dest), args.knowledge_url, args.api_key)
    print(f"wrote {args.dest}: {', '.join(held)}")


def _restore(args: argparse.Namespace) -> None:
    print("restored " + ", ".join(restore(Path(args.src), Path(args.config))))
