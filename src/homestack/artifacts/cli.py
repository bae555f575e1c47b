"""`homestack lock`, `homestack verify` and `homestack pull`."""

from __future__ import annotations

import argparse
from ..errors import ConfigError, HomestackError


def _lock(args: argparse.Namespace) -> None:
    from . import lock

    path = lock.lock_file(args.config)
    try:  # pulled files stay locked; an unreadable old lock is simply replaced
        pulled = lock.read(path).get("pulled", {})
    except ConfigError:
        pulled = {}
    doc = lock.build(args.config, pulled)
    lock.write(path, doc)
    files = sum(len(m.get("files", [])) for m in doc["models"].values()) + len(doc["pulled"])
    print(f"wrote {path} ({len(doc['models'])} models, {files} files)")


def _verify(args: argparse.Namespace) -> None:
    from .lock import verify

    path, drifts = verify(args.config)
    if drifts:
        raise HomestackError(f"{path}: {len(drifts)} drift(s):\n  " + "\n  ".join(drifts))
    print(f"{path}: the fleet matches the lock")


def check_locked(config: str | None) -> None:
    """For `serve --locked`: refuse to start when the fleet drifted from its lock."""
    from .lock import verify

    path, drifts = verify(config)
    if drifts:
        raise ConfigError(f"--locked: the fleet drifted from {path}:\n  " + "\n  ".join(drifts)
                          + "\n(run `homestack lock` to accept the changes)")


def _pull(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from ..config import load_fleet
    from . import lock
    from .pull import download, file_name

    fleet = load_fleet(args.config)
    name = file_name(args.url, args.name)
    target = fleet.data_dir / "models" / name
    if args.sha256 and len(args.sha256) != 64:
        raise HomestackError("--sha256 takes the file's 64 hex digits")
    console = Console(stderr=True)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(name, total=None)
        digest = download(args.url, target, args.sha256,
                          lambda done, total: bar.update(task, completed=done, total=total))
    path = lock.lock_file(args.config)
    doc = lock.read(path) if path.exists() else lock.build(args.config)
    doc["pulled"][name] = {"url": args.url, "path": str(target), "size": target.stat().st_size, "sha256": digest}
    lock.write(path, doc)
    print(f"{target}: sha256 {digest}" + (" (checked)" if args.sha256 else "") + f"; added to {path}")


def register(command) -> None:
    """Add `lock`, `verify` and `pull` to the `homestack` parser."""
    for name, func, help in (
        ("lock", _lock, "Write homestack.lock: each model's files, sizes, sha256, GGUF facts; runner versions."),
        ("verify", _verify, "Check the fleet against homestack.lock; exit 1 naming each drift."),
    ):
        p = command(name, func, help)
        p.add_argument("--config", "-c", metavar="FILE", help="fleet file (default: the embedded default fleet)")
    p = command("pull", _pull, "Download a model file into the model store (resumable, sha256-checked) and lock it.")
    p.add_argument("url", metavar="URL")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256; a mismatch deletes the download")
    p.add_argument("--name", metavar="NAME", help="file name in the store (default: from the URL)")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file whose data dir and lock to use")
