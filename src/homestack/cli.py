"""The `homestack` command. Thin: parse arguments, call one function, print.

Errors become one line on stderr and exit code 1. Heavy imports happen inside
the commands that need them, so `homestack ps` answers quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .errors import HomestackError


def _serve(args: argparse.Namespace) -> None:
    from .config import DEFAULT_FLEET, load_fleet
    from .gateway.server import serve

    fleet = load_fleet(args.config, host=args.host, port=args.port)
    serve(fleet, args.config or DEFAULT_FLEET, no_auth=args.no_auth)


def _check(args: argparse.Namespace) -> None:
    from .config import load_fleet
    from .runners.launch import plan_fleet

    fleet = load_fleet(args.file)
    plan_fleet(fleet, args.file)
    print(f"{args.file}: ok ({len(fleet.models)} models: {', '.join(fleet.models) or 'none'})")


def _schema(args: argparse.Namespace) -> None:
    from .config import FleetConfig

    print(json.dumps(FleetConfig.model_json_schema(), indent=2))


def _prepare(args: argparse.Namespace) -> None:
    """Resolve every model file (assembling shipped ones) and record runner versions."""
    from .config import DEFAULT_FLEET, load_fleet
    from .runners.launch import model_path, plan_fleet

    fleet = load_fleet(args.config)
    for name, plan in plan_fleet(fleet, args.config or DEFAULT_FLEET).items():
        path = model_path(plan, fleet.data_dir)
        print(f"{name}: {plan.kind} {plan.version}" + (f", model {path}" if path else ""))


def _client(args: argparse.Namespace):
    from .client import GatewayClient

    return GatewayClient(args.url, args.api_key)


def _ps(args: argparse.Namespace) -> None:
    running = _client(args).json("GET", "/admin/running")["running"]
    if args.json:
        print(json.dumps(running, indent=2))
        return
    if not running:
        print("no models running")
        return
    rows = [("NAME", "STATE", "RUNNER", "VERSION", "PID", "INFLIGHT", "IDLE", "TTL")]
    for r in running:
        rows.append((
            r["name"], r["state"], r["runner"], r["version"] or "-", str(r["pid"] or "-"),
            str(r["inflight"]), f"{r['idle_seconds']:g}s", "pinned" if r["pinned"] else f"{r['ttl']:g}s",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _load(args: argparse.Namespace) -> None:
    info = _client(args).json("POST", f"/admin/models/{args.name}/load")
    print(f"{info['name']}: {info['state']} ({info['runner']} {info['version']}, pid {info['pid'] or '-'})")


def _unload(args: argparse.Namespace) -> None:
    info = _client(args).json("POST", f"/admin/models/{args.name}/unload")
    print(f"{info['name']}: {info['state']}")


def _logs(args: argparse.Namespace) -> None:
    client = _client(args)
    path = f"/admin/logs/{args.name}?lines={args.lines}"
    if not args.follow:
        sys.stdout.write(client.text(path))
        return
    try:
        for line in client.events(path + "&follow=1"):
            print(line, flush=True)
    except KeyboardInterrupt:
        pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homestack", description="An OpenAI-compatible gateway over local model runners.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("serve", _serve, "Start the gateway (the embedded default fleet unless --config is given).")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file (YAML)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default 8080; 0 lets the OS pick)")
    p.add_argument("--no-auth", action="store_true", help="allow a non-loopback address without API keys")

    p = command("check", _check, "Validate a fleet file.")
    p.add_argument("file", metavar="FILE")
    command("schema", _schema, "Print the fleet file's JSON Schema.")
    p = command("prepare", _prepare, "Resolve and verify model files; record runner versions.")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file (YAML)")

    for name, func, help in (
        ("ps", _ps, "List running models."),
        ("load", _load, "Load a model and wait until it is ready."),
        ("unload", _unload, "Unload a model."),
        ("logs", _logs, "Show a model's runner log."),
    ):
        p = command(name, func, help)
        p.add_argument("--url", help="gateway URL (default $HOMESTACK_URL or http://127.0.0.1:8080)")
        p.add_argument("--api-key", help="admin key (default $HOMESTACK_API_KEY)")
        if name == "ps":
            p.add_argument("--json", action="store_true", help="print JSON")
        elif name in ("load", "unload", "logs"):
            p.add_argument("name", metavar="NAME")
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
            p.add_argument("-n", "--lines", type=int, default=100, help="lines of tail to show first")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except HomestackError as exc:
        print(f"homestack: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or socket the command needed: say which, without a traceback
        print(f"homestack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
