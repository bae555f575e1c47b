"""`homestack promote`, `homestack rollback`, `homestack history`: thin clients of the admin API."""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import quote

from ..errors import HomestackError

_FOLLOW_EVERY = 0.5  # seconds between looks at the history while a promotion runs
_ENDINGS = {"promoted": None, "gate_failed": "did not pass its gates", "rolled_back": "was rolled back",
            "aborted": "was aborted"}


def describe(event: dict[str, Any]) -> str:
    """One line for a history event."""
    what = event["event"]
    head = f"{event.get('at', '')}  {event.get('route')}  {what}"
    details = {
        "started": lambda e: f"{e['from']} -> {e['to']} by {e.get('who') or '-'}; stages "
                             + ", ".join(f"{s['share']:g}% {s['seconds']:g}s" for s in e.get("stages", [])),
        "ready": lambda e: f"{e['to']} ready in {e['seconds']:.1f}s",
        "gate": lambda e: f"{e['gate']} {'passed' if e['passed'] else 'FAILED'}" + (
            f", scores {_scores(e['scores'])}" if e.get("scores") else f", {e.get('requests')} requests")
            + f" ({e['seconds']:.1f}s)",
        "step": lambda e: f"{e['kind']} {e['share']:g}% to {e['to']} for {e['seconds']:g}s",
        "stage_ok": lambda e: f"{e['kind']} {e['share']:g}% held for {e['seconds']:.1f}s: {_figures(e['figures'])}",
        "promoted": lambda e: f"{e['to']} is the route's target (fleet file written; backup {e.get('backup')})",
    }
    detail = details.get(what)
    text = detail(event) if detail else f"{event.get('from')} -> {event.get('to')}: " + \
        f"{event.get('reason', '')} {event.get('detail', '')}".strip()
    return f"{head}  {text}"


def _scores(scores: dict[str, float]) -> str:
    return ", ".join(f"{model} {score:.2f}" for model, score in scores.items())


def _figures(figures: dict[str, dict[str, Any]]) -> str:
    if not figures:
        return "no requests"
    return "; ".join(f"{t} {f['requests']} req, {f['errors']} err, p95 ttft "
                     f"{'-' if f['p95_ttft'] is None else format(f['p95_ttft'], '.3f') + 's'}"
                     for t, f in figures.items())


def _client(args: argparse.Namespace):
    from ..client import GatewayClient

    return GatewayClient(args.url, args.api_key)


def _promote(args: argparse.Namespace) -> None:
    client = _client(args)
    body: dict[str, Any] = {"to": args.to, "swap": args.swap}
    if args.canary is not None:
        try:
            body["canary"] = [float(share) for share in args.canary.split(",") if share.strip()]
        except ValueError:
            raise HomestackError(f"--canary takes percentages separated by commas, e.g. 10,50; got {args.canary!r}")
    for name in ("step", "watch"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    started = client.json("POST", f"/admin/routes/{quote(args.route, safe='')}/promote", body)
    print(describe(started), flush=True)
    if args.detach:
        return
    seen = 0
    while True:
        events = [e for e in client.json("GET", f"/admin/history?route={quote(args.route)}&limit=0")["events"]
                  if e.get("promotion") == started["promotion"]]
        for event in events[seen:]:
            if event["event"] != "started":
                print(describe(event), flush=True)
        seen = len(events)
        last = events[-1]["event"] if events else None
        if last in _ENDINGS:
            if _ENDINGS[last] is not None:
                raise HomestackError(f"promotion of {args.route} to {args.to} {_ENDINGS[last]}: "
                                     f"{events[-1].get('detail', '')}")
            return
        time.sleep(_FOLLOW_EVERY)


def _rollback(args: argparse.Namespace) -> None:
    print(describe(_client(args).json("POST", f"/admin/routes/{quote(args.route, safe='')}/rollback")))


def _history(args: argparse.Namespace) -> None:
    import json

    query = f"?limit={args.limit}" + (f"&route={quote(args.route)}" if args.route else "")
    report = _client(args).json("GET", "/admin/history" + query)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for event in report["events"]:
        print(describe(event))
    for route, info in report["active"].items():
        print(f"running now: {route} {info['from']} -> {info['to']}, {info['phase']} {info['share']:g}%")
    if not report["events"]:
        print("no promotions yet")


def register(command) -> None:
    """Add `promote`, `rollback` and `history` to the `homestack` parser."""
    p = _gateway_options(command("promote", _promote, "Move a route to a new target: smoke test, eval gate, canary steps, watch; "
                "rolled back by itself when the candidate misbehaves."))
    p.add_argument("route", metavar="ROUTE")
    p.add_argument("--to", required=True, metavar="MODEL", help="the fleet model to promote")
    p.add_argument("--canary", metavar="SHARES", help="percent of traffic per step, e.g. 10,50 (default: the "
                   "route's promotion.canary)")
    p.add_argument("--step", metavar="DURATION", help="how long each canary step lasts, e.g. 30s, 2m")
    p.add_argument("--watch", metavar="DURATION", help="how long the candidate is watched at 100%%, e.g. 5m")
    p.add_argument("--swap", action="store_true", help="promote even when the candidate cannot be resident beside "
                   "the current target (they swap)")
    p.add_argument("--detach", action="store_true", help="start it and return; follow with `homestack history`")
    p = _gateway_options(command("rollback", _rollback, "Put a route back on its previous target at once (a "
                                 "running promotion stops; a finished one is undone in the fleet file)."))
    p.add_argument("route", metavar="ROUTE")
    p = _gateway_options(command("history", _history, "Promotions, gates, steps and rollbacks, oldest first."))
    p.add_argument("--route", help="only this route")
    p.add_argument("-n", "--limit", type=int, default=50, help="the last N events (0: all)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _gateway_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--url", help="gateway URL (default $HOMESTACK_URL or http://127.0.0.1:8080)")
    p.add_argument("--api-key", help="admin key (default $HOMESTACK_API_KEY)")
    return p
