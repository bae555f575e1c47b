"""`homestack keys add|list|revoke|rotate`: the key store under the data dir.

A running gateway picks changes up by itself (it watches the store's mtime).
A secret is printed once, by `add` and `rotate`, and stored only as its sha256.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timezone

from ..errors import BadRequest


def _store_and_fleet(args: argparse.Namespace):
    from ..config import load_fleet
    from .store import KeyStore

    fleet = load_fleet(args.config)
    return KeyStore(fleet.data_dir), fleet


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _expiry(text: str) -> str:
    from .store import parse_time

    try:
        return parse_time(text).astimezone(timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        raise BadRequest(f"--expires: {text!r} is not an ISO 8601 time (e.g. 2026-01-31 or 2026-01-31T18:00Z)")


def _add(args: argparse.Namespace) -> None:
    store, fleet = _store_and_fleet(args)
    secret = store.add(args.name, sorted(set(args.role)), models=args.model, rpm=args.rpm, tpm=args.tpm,
                       concurrency=args.concurrency, expires=_expiry(args.expires) if args.expires else None,
                       taken=set(fleet.keys))
    print(secret)
    print(f"key {args.name!r} added to {store.path}; the secret above is shown only now", file=sys.stderr)


def _rotate(args: argparse.Namespace) -> None:
    store, _ = _store_and_fleet(args)
    print(store.rotate(args.name))


def _revoke(args: argparse.Namespace) -> None:
    store, _ = _store_and_fleet(args)
    store.revoke(args.name)
    print(f"revoked {args.name}")


def _list(args: argparse.Namespace) -> None:
    store, fleet = _store_and_fleet(args)
    rows = [{"name": name, "source": "key store", "roles": k.roles, "models": k.models, "rpm": k.rpm, "tpm": k.tpm,
             "concurrency": k.concurrency, "created": k.created, "expires": k.expires}
            for name, k in store.read().items()]
    rows += [{"name": name, "source": "fleet file", "roles": s.roles, "models": s.models, "rpm": s.rpm,
              "tpm": s.tpm, "concurrency": s.concurrency, "created": None,
              "expires": s.expires.isoformat() if s.expires else None} for name, s in fleet.keys.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"no keys (store: {store.path})")
        return
    table = [("NAME", "SOURCE", "ROLES", "MODELS", "RPM", "TPM", "CONCURRENCY", "CREATED", "EXPIRES")]
    for r in rows:
        table.append((r["name"], r["source"], ",".join(r["roles"]), ",".join(r["models"]),
                      *(str(r[f]) if r[f] is not None else "-" for f in ("rpm", "tpm", "concurrency", "created",
                                                                          "expires"))))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def register(command) -> None:
    """Add `keys ...` to the `homestack` parser."""
    from .store import ROLE_NAMES

    keys = command("keys", lambda args: None, "API keys: add, list, revoke, rotate (the running gateway follows).")
    keys.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    def keys_command(name: str, func, help: str) -> argparse.ArgumentParser:
        c = commands.add_parser(name, help=help, description=help)
        c.set_defaults(func=func)
        c.add_argument("--config", "-c", metavar="FILE", help="fleet file: its data_dir, and its keys' names")
        return c

    c = keys_command("add", _add, "Make a key; print its secret once (only its sha256 is stored).")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--role", action="append", required=True, choices=ROLE_NAMES,
                   help="what the key may do (repeatable)")
    c.add_argument("--model", action="append", metavar="GLOB", help="models it may use (repeatable; default all)")
    c.add_argument("--rpm", type=_positive, metavar="N", help="requests per minute")
    c.add_argument("--tpm", type=_positive, metavar="N", help="tokens per minute (input and output)")
    c.add_argument("--concurrency", type=_positive, metavar="N", help="requests in flight at once")
    c.add_argument("--expires", metavar="ISO", help="when it stops working (ISO 8601; UTC unless a zone is given)")
    keys_command("list", _list, "List keys: names, roles, limits, created, expiry (never secrets).").add_argument(
        "--json", action="store_true", help="print JSON")
    keys_command("revoke", _revoke, "Delete a stored key; it stops working at once.").add_argument("name", metavar="NAME")
    keys_command("rotate", _rotate, "Give a stored key a new secret (printed once); the old one stops working.") \
        .add_argument("name", metavar="NAME")
    keys.epilog = "commands:\n" + "\n".join(f"  {c.format_usage().removeprefix('usage: ').strip()}"
                                             for c in commands.choices.values())
