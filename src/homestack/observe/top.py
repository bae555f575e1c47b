"""`homestack top`: a live terminal view of the fleet, for people on SSH.

It reads the same admin routes as the status page and redraws once a second.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..client import GatewayClient
from ..sizes import format_size

_STATE_STYLE = {"ready": "green", "starting": "yellow", "stopping": "magenta", "stopped": "dim"}
_RATE_WINDOW = 60.0  # seconds of recent requests behind tokens/s


def snapshot(client: GatewayClient) -> dict[str, Any]:
    return {
        "running": client.json("GET", "/admin/running?all=1")["running"],
        "plan": client.json("GET", "/admin/plan"),
        "requests": client.json("GET", "/admin/requests?limit=200")["requests"],
        "url": client.url,
    }


def render(data: dict[str, Any], now: float | None = None) -> Group:
    now = time.time() if now is None else now
    return Group(
        Text(f"homestack {data['url']}   {time.strftime('%H:%M:%S', time.localtime(now))}", style="bold"),
        _devices(data["plan"]["devices"]),
        _models(data["running"], _tokens_per_second(data["requests"], now)),
        _requests(data["requests"][-8:]),
    )


def run(client: GatewayClient, interval: float = 1.0) -> None:
    with Live(render(snapshot(client)), auto_refresh=False, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(render(snapshot(client)), refresh=True)


def _tokens_per_second(requests: list[dict[str, Any]], now: float) -> dict[str, float]:
    totals: dict[str, float] = {}
    for r in requests:
        if now - r["ts"] <= _RATE_WINDOW and r.get("tokens_out") and r.get("runner"):
            totals[r["runner"]] = totals.get(r["runner"], 0.0) + r["tokens_out"]
    return {name: total / _RATE_WINDOW for name, total in totals.items()}


def _devices(devices: list[dict[str, Any]]) -> Table:
    table = Table(title="memory", title_justify="left", expand=True, box=None)
    for column in ("device", "held (estimated)", "of budget", "measured", "budget", "total", "free"):
        table.add_column(column)
    for d in devices:
        held = d.get("held_estimated", 0)
        table.add_row(
            f"{d['id']} {d['name']}", format_size(held),
            _bar(held / max(d["budget"], 1)),
            format_size(d["held_measured"]) if d.get("held_measured") is not None else "-",
            format_size(d["budget"]), format_size(d["total"]), format_size(d["free"]),
        )
    return table


def _bar(fraction: float, width: int = 24) -> Text:
    """A text bar (readable without colour, e.g. when piped) of the budget in use."""
    filled = round(min(fraction, 1.0) * width)
    style = "red" if fraction > 0.95 else "yellow" if fraction > 0.8 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled) + f" {fraction:4.0%}")


def _models(running: list[dict[str, Any]], rates: dict[str, float]) -> Table:
    table = Table(title="models", title_justify="left", expand=True)
    for column in ("name", "state", "mem est", "mem rss", "queue", "in flight", "ttl left", "tok/s", "last swap"):
        table.add_column(column, no_wrap=column != "last swap")
    for m in running:
        ttl = "pinned" if m["pinned"] else f"{m['ttl_remaining']:.0f}s" if m["ttl_remaining"] is not None else "-"
        table.add_row(
            m["name"], Text(m["state"], style=_STATE_STYLE.get(m["state"], "")),
            format_size(m["memory_estimated"]) if m["memory_estimated"] else "-",
            format_size(m["memory_measured"]) if m["memory_measured"] else "-",
            str(m["queue"]), str(m["inflight"]), ttl, f"{rates.get(m['name'], 0.0):.1f}",
            m["last_swap_reason"] or "-",
        )
    return table


def _requests(requests: list[dict[str, Any]]) -> Table:
    table = Table(title="recent requests", title_justify="left", expand=True, box=None)
    for column in ("time", "model", "path", "status", "ms", "ttft ms", "tokens in/out"):
        table.add_column(column)
    for r in reversed(requests):
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(r["ts"])), r.get("runner") or r.get("model") or "-",
            r["path"], str(r["status"]), f"{r['duration_ms']:.0f}",
            f"{r['ttft_ms']:.0f}" if r.get("ttft_ms") is not None else "-",
            f"{r.get('tokens_in') or '-'}/{r.get('tokens_out') or '-'}",
        )
    return table
