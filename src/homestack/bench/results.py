"""The results file (machine, code, fleet, settings, raw samples) and the table printed at the end."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import httpx

from ..errors import HomestackError

FORMAT = "homestack-bench/1"
# Table columns: header -> how a run's summary gives the cell.
_MS = 1000.0


def _ms(figure: str, stat: str):
    return lambda s: _fmt((s[figure] or {}).get(stat), _MS)


def _fmt(value, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


COLUMNS = {
    "ok": lambda s: f"{s['ok']}/{s['requests']}",
    "TTFT p50 ms": _ms("ttft", "p50"), "TTFT p99 ms": _ms("ttft", "p99"),
    "TPOT p50 ms": _ms("tpot", "p50"), "ITL p90 ms": _ms("itl", "p90"),
    "e2e p50 ms": _ms("e2e", "p50"), "e2e p99 ms": _ms("e2e", "p99"),
    "out tok/s": lambda s: _fmt(s["output_tokens_per_s"]),
    "req/s": lambda s: _fmt(s["requests_per_s"], digits=2),
    "goodput": lambda s: "-" if s["goodput"] is None else f"{s['goodput']:.0%}",
    "errors": lambda s: ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "-",
}


def machine() -> dict:
    info = {"hostname": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "cpu": platform.processor() or None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        pass
    return info


def git_commit() -> str | None:
    """The commit of the homestack source that ran the benchmark (None outside a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def fleet(url: str, api_key: str | None) -> dict | None:
    """The gateway's fleet (model, runner, version) and its hash, when the URL is a homestack gateway."""
    origin = url.rstrip("/").rsplit("/v1", 1)[0]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(origin + "/admin/running?all=1", headers=headers, timeout=10)
        running = resp.json()["running"] if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        running = None
    if running is None:
        return None
    models = sorted(({"name": r["name"], "runner": r["runner"], "version": r["version"]} for r in running),
                    key=lambda m: m["name"])
    digest = hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()
    return {"manifest_sha256": digest, "models": models}


def document(settings: dict, outcome: dict, fleet_info: dict | None, lock_sha256: str | None) -> dict:
    return {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
            "git_commit": git_commit(), "fleet": {**(fleet_info or {}), "lock_sha256": lock_sha256},
            "settings": settings, **outcome}


def load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HomestackError(f"{path}: cannot read benchmark results: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HomestackError(f"{path}: not a `homestack bench` results file (format {FORMAT})")
    return data


def label(run: dict) -> str:
    return {"concurrency": "c={value}", "rate": "{value:g} req/s", "cold": "cold"}[run["mode"]].format(**run)


def table(doc: dict):
    from rich.table import Table

    out = Table(title=f"{doc['settings']['model']} at {doc['settings']['url']}")
    for header in ("run", *COLUMNS):
        out.add_column(header, justify="left" if header in ("run", "errors") else "right")
    for run in doc["runs"]:
        out.add_row(label(run), *(cell(run["summary"]) for cell in COLUMNS.values()))
    return out


def cold_lines(doc: dict) -> list[str]:
    lines = []
    for run in doc["runs"]:
        figures = run["summary"].get("cold")
        if figures:
            p50 = {k: v["p50"] for k, v in figures.items()}
            lines.append(
                f"cold start (p50 of {figures['client_load_s']['n']}): client-seen load {_fmt(p50['client_load_s'], _MS)} ms, "
                f"runner ready {_fmt(p50['runner_ready_s'], _MS)} ms (from its log), gateway overhead "
                f"{_fmt(p50['gateway_overhead_s'], _MS)} ms (before spawn {_fmt(p50['before_spawn_s'], _MS)} ms, "
                f"runner ready to gateway ready {_fmt(p50['ready_to_gateway_s'], _MS)} ms)")
    return lines
