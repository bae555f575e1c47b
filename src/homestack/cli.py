"""The `homestack` command. Thin: parse arguments, call one function, print.

Errors become one line on stderr and exit code 1. Heavy imports happen inside
the commands that need them, so `homestack ps` answers quickly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

from .errors import HomestackError


def _serve(args: argparse.Namespace) -> None:
    from .config import load_fleet
    from .gateway.server import serve

    if args.locked:
        from .artifacts.cli import check_locked

        check_locked(args.config)
    fleet = load_fleet(args.config, host=args.host, port=args.port)
    knowledge = {"enabled": False} if args.no_knowledge else {}
    if args.knowledge_port is not None:
        knowledge["port"] = args.knowledge_port
    if knowledge:
        fleet = fleet.model_copy(update={"knowledge": fleet.knowledge.model_copy(update=knowledge)})
    serve(fleet, args.config, no_auth=args.no_auth, watch=args.watch)


def _capacity(config: str | None):
    """The fleet file and its capacity plan (every problem at once, naming the file)."""
    from .config import DEFAULT_FLEET, load_fleet
    from .planner import build_plan, probe_devices
    from .runners.launch import plan_fleet

    fleet = load_fleet(config)
    source = config or DEFAULT_FLEET
    launch = plan_fleet(fleet, source)
    return fleet, build_plan(fleet, launch, probe_devices(), source), launch


def _check(args: argparse.Namespace) -> None:
    from .runners.binaries import llama_server_gpus

    fleet, capacity, launch = _capacity(args.file)
    for name, plan in capacity.models.items():
        binary = launch[name].binary
        if plan.device in (None, "cpu") or binary is None or llama_server_gpus(binary, fleet.data_dir / "cache"):
            continue
        print(f"homestack: warning: models.{name}: planned on {plan.device}, but {binary} is a CPU-only build "
              "(--list-devices lists no GPU); install the CUDA toolkit and run make again (it then builds with "
              "-DGGML_CUDA=ON), or set llama_server to a CUDA build", file=sys.stderr)
    for name, spec in fleet.models.items():
        for warning in launch[name].kind.warnings(name, spec):
            print(f"homestack: warning: {warning}", file=sys.stderr)
    routes = f"; {len(fleet.routes)} routes: {', '.join(fleet.routes)}" if fleet.routes else ""
    print(f"{args.file}: ok ({len(fleet.models)} models: {', '.join(fleet.models) or 'none'}{routes})")


def _plan(args: argparse.Namespace) -> None:
    from .sizes import format_size

    fleet, capacity, _ = _capacity(args.config)
    if args.json:
        print(json.dumps(capacity.to_dict(), indent=2))
        return
    rows = [("DEVICE", "NAME", "TOTAL", "FREE", "BUDGET")]
    for d in capacity.devices.values():
        rows.append((d.id, d.name, format_size(d.total), format_size(d.free), format_size(capacity.budgets[d.id])))
    _print_table(rows)
    print()
    rows = [("MODEL", "DEVICE", "WEIGHTS", "KV CACHE", "COMPUTE", "OVERHEAD", "TOTAL", "GPU LAYERS", "BASIS")]
    for m in capacity.models.values():
        for device, c in (m.estimate.devices.items() if m.estimate else [(None, None)]):
            sizes = [c.weights, c.kv_cache, c.compute, c.overhead, c.total] if c else [None] * 5
            rows.append((m.name, device or "-", *(format_size(v) if v is not None else "-" for v in sizes),
                         m.offload or "-", m.basis))
    _print_table(rows)
    print(f"\nResident together within the budget (headroom {fleet.memory.headroom:g}):")
    for names in capacity.resident_sets:
        print("  " + " + ".join(names))
    for name, members in capacity.groups.items():
        print(f"Group {name}: one of {', '.join(sorted(members))} at a time")


def _schema(args: argparse.Namespace) -> None:
    from .config import FleetConfig

    print(json.dumps(FleetConfig.model_json_schema(), indent=2))


def _prepare(args: argparse.Namespace) -> None:
    """Resolve every model file (assembling shipped ones) and record runner versions."""
    from .config import DEFAULT_FLEET, load_fleet
    from .runners.launch import plan_fleet

    fleet = load_fleet(args.config)
    for name, plan in plan_fleet(fleet, args.config or DEFAULT_FLEET).items():
        path = plan.model_path(fleet.data_dir)
        print(f"{name}: {plan.kind.name} {plan.version}" + (f", model {path}" if path else ""))


def _render(args: argparse.Namespace) -> None:
    from .deploy.monitoring import grafana_files, render_prometheus, shipped_alerts

    if args.what in _DEPLOY_TARGETS:
        _render_deploy(args)
        return
    if args.what == "grafana":  # several files: a directory
        if not args.output:
            raise HomestackError("render grafana writes several files: give a directory with -o DIR")
        for path in grafana_files(Path(args.output)):
            print(f"wrote {path}")
        return
    if args.what == "alerts":
        text = shipped_alerts()
    else:
        target = args.target or (args.url or os.environ.get("HOMESTACK_URL") or "http://127.0.0.1:8080").split("://")[-1]
        text = render_prometheus(target.rstrip("/"), args.interval, args.rules, args.api_key_file)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)


_DEPLOY_TARGETS = ("systemd", "nginx", "compose", "kubernetes")  # homestack.deploy.targets.TARGETS


def _render_deploy(args: argparse.Namespace) -> None:
    from .config import DEFAULT_FLEET
    from .deploy.context import DeployContext
    from .deploy.targets import render

    if not args.output:
        raise HomestackError(f"render {args.what} writes several files: give a directory with -o DIR")
    fleet, capacity, _ = _capacity(args.config)
    for path in render(args.what, DeployContext.build(fleet, capacity, args.config or DEFAULT_FLEET), Path(args.output)):
        print(f"wrote {path}")


def _client(args: argparse.Namespace):
    from .client import GatewayClient

    return GatewayClient(args.url, args.api_key)


def _ps(args: argparse.Namespace) -> None:
    running = _client(args).json("GET", "/admin/running" + ("?all=1" if args.all else ""))["running"]
    if args.json:
        print(json.dumps(running, indent=2))
        return
    if not running:
        print("no models running")
        return
    from .observe.speculative import format_acceptance
    from .sizes import format_size

    def size(n):
        return format_size(n) if n else "-"

    rows = [("NAME", "STATE", "RUNNER", "PID", "DEVICE", "GPU LAYERS", "MEM EST", "MEM RSS", "QUEUE", "INFLIGHT",
             "TTL LEFT", "LAST SWAP", "SPEC ACCEPT", "VERSION")]
    for r in running:
        ttl = "pinned" if r["pinned"] else f"{r['ttl_remaining']:g}s" if r["ttl_remaining"] is not None else "-"
        rows.append((
            r["name"], r["state"], r["runner"], str(r["pid"] or "-"), r["device"] or "-", r["gpu_layers"] or "-",
            size(r["memory_estimated"]), size(r["memory_measured"]), str(r["queue"]), str(r["inflight"]), ttl,
            r["last_swap_reason"] or "-", format_acceptance(r.get("speculative")), r["version"] or "-",
        ))
    _print_table(rows)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _top(args: argparse.Namespace) -> None:
    from rich.console import Console

    from .observe import top

    client = _client(args)
    if args.once:
        console = Console()
        if not console.is_terminal:  # piped: wide enough that columns are not cut
            console = Console(width=140)
        console.print(top.render(top.snapshot(client)))
        return
    try:
        top.run(client, args.interval)
    except KeyboardInterrupt:
        pass


def _load(args: argparse.Namespace) -> None:
    info = _client(args).json("POST", f"/admin/models/{args.name}/load")
    print(f"{info['name']}: {info['state']} ({info['runner']} {info['version']}, pid {info['pid'] or '-'})")


def _unload(args: argparse.Namespace) -> None:
    info = _client(args).json("POST", f"/admin/models/{args.name}/unload")
    print(f"{info['name']}: {info['state']}")


def _reload(args: argparse.Namespace) -> None:
    from .gateway.reload import summary

    print(f"reloaded {summary(_client(args).json('POST', '/admin/reload'))}")


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
    p.add_argument("--knowledge-port", type=int, metavar="PORT", help="knowledge service port (default 8081; 0: any)")
    p.add_argument("--no-knowledge", action="store_true", help="do not start the knowledge service")
    p.add_argument("--locked", action="store_true", help="refuse to start when the fleet drifted from homestack.lock")
    p.add_argument("--watch", action="store_true", help="reload the fleet file whenever it changes (as SIGHUP does)")

    p = command("check", _check, "Validate a fleet file.")
    p.add_argument("file", metavar="FILE")
    command("schema", _schema, "Print the fleet file's JSON Schema.")
    p = command("plan", _plan, "Print each model's memory estimate and which models fit together.")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file (YAML)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command("render", _render, "Write deploy files (systemd units, an nginx site, compose, Kubernetes) "
                "or monitoring files (a Prometheus scrape config, alert rules, Grafana).")
    p.add_argument("what", choices=["prometheus", "alerts", "grafana", *_DEPLOY_TARGETS], help="what to render")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file for the deploy targets (YAML)")
    p.add_argument("--target", metavar="HOST:PORT", help="gateway to scrape (default: from --url or $HOMESTACK_URL)")
    p.add_argument("--url", help="gateway URL (default $HOMESTACK_URL or http://127.0.0.1:8080)")
    p.add_argument("--interval", default="15s", help="scrape interval (default 15s)")
    p.add_argument("--rules", type=Path, action="append", metavar="FILE", help="alert rule file to load (repeatable)")
    p.add_argument("--api-key-file", type=Path, metavar="FILE", help="file holding a gateway key, when api_keys are set")
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout (a directory for grafana)")
    p = command("prepare", _prepare, "Resolve and verify model files; record runner versions.")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file (YAML)")

    for name, func, help in (
        ("ps", _ps, "List running models."),
        ("top", _top, "A live view of models, memory and requests."),
        ("load", _load, "Load a model and wait until it is ready."),
        ("unload", _unload, "Unload a model."),
        ("logs", _logs, "Show a model's runner log."),
        ("reload", _reload, "Re-read the gateway's fleet file and apply what changed (as SIGHUP does)."),
    ):
        p = command(name, func, help)
        p.add_argument("--url", help="gateway URL (default $HOMESTACK_URL or http://127.0.0.1:8080)")
        p.add_argument("--api-key", help="admin key (default $HOMESTACK_API_KEY)")
        if name == "ps":
            p.add_argument("--json", action="store_true", help="print JSON")
            p.add_argument("-a", "--all", action="store_true", help="every model, stopped ones too")
        elif name == "top":
            p.add_argument("--once", action="store_true", help="print one view and exit")
            p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
        elif name in ("load", "unload", "logs"):
            p.add_argument("name", metavar="NAME")
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
            p.add_argument("-n", "--lines", type=int, default=100, help="lines of tail to show first")
    from . import backup
    from .keys import cli as keys_cli
    from .knowledge.client import cli as knowledge_cli
    from .mcp import cli as mcp_cli

    knowledge_cli.register_service(command, endpoint=mcp_cli.knowledge_endpoint)
    mcp_cli.register(command)
    knowledge_cli.register_kb(command)
    keys_cli.register(command)
    backup.register(command)
    for module in ("bench", "evals", "artifacts", "cost", "promotion"):
        importlib.import_module(f".{module}.cli", __package__).register(command)
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
