"""Comparing results files: per figure, the change and a verdict from the samples' spread.

The verdict is a two-sided Mann-Whitney U test (normal approximation with tie correction) on
the per-request values: "better" or "worse" when p < 0.05, else "within noise". Throughput is
judged on each request's own output rate (tokens over its latency), so it has a spread too.
"""

from __future__ import annotations

import math

from .results import label
from .stats import LATENCIES, distribution

ALPHA = 0.05
# Figure -> (per-request values of a run, the statistic shown, higher is better).
FIGURES = {
    **{f"{name} p50": (lambda run, get=get: [v for s in _ok(run) for v in get(s)], "p50", False)
       for name, get in LATENCIES.items()},
    "output tok/s": (lambda run: [s["output_tokens"] / s["e2e"] for s in _ok(run) if s["e2e"]], None, True),
}


def _ok(run: dict) -> list[dict]:
    return [s for s in run["samples"] if not s.get("error")]


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value that ``a`` and ``b`` come from the same distribution."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks, ties, i = [0.0] * len(pooled), 0.0, 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        ties += (j - i + 1) ** 3 - (j - i + 1)
        i = j + 1
    u1 = sum(r for r, (_, group) in zip(ranks, pooled) if group == 0) - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(variance)  # continuity correction
    return math.erfc(max(z, 0.0) / math.sqrt(2))


def verdict(base: list[float], new: list[float], higher_is_better: bool) -> str:
    if mann_whitney_p(base, new) >= ALPHA:
        return "within noise"
    improved = (_median(new) > _median(base)) == higher_is_better
    return "better" if improved else "worse"


def _median(values: list[float]) -> float:
    return distribution(values)["p50"] or 0.0


def _shown(run: dict, figure: str) -> float | None:
    values, stat, _ = FIGURES[figure]
    if stat is None:  # the run's aggregate throughput
        return run["summary"]["output_tokens_per_s"]
    return distribution(values(run))[stat]


def rows(base: dict, new: dict) -> list[dict]:
    """For each run both files have (same mode and level) and each figure: values, change, verdict."""
    base_runs = {label(r): r for r in base["runs"]}
    out = []
    for run in new["runs"]:
        ref = base_runs.get(label(run))
        if ref is None:
            continue
        for figure, (values, _, higher) in FIGURES.items():
            a, b = _shown(ref, figure), _shown(run, figure)
            change = (b - a) / a if a and b is not None else None
            out.append({"run": label(run), "figure": figure, "base": a, "new": b, "change": change,
                        "verdict": verdict(values(ref), values(run), higher),
                        "p": mann_whitney_p(values(ref), values(run))})
    return out


_STYLE = {"better": "green", "worse": "red", "within noise": "dim"}


def tables(docs: list[tuple[str, dict]]):
    """One rich table per file after the first, against the first."""
    from rich.table import Table

    (base_name, base), out = docs[0], []
    for name, doc in docs[1:]:
        table = Table(title=f"{name} against {base_name}")
        for header in ("run", "figure", base_name, name, "change", "verdict"):
            table.add_column(header, justify="right" if header in (base_name, name, "change") else "left")
        for row in rows(base, doc):
            scale, unit = (1.0, "") if row["figure"] == "output tok/s" else (1000.0, " ms")
            cells = ["-" if v is None else f"{v * scale:.1f}{unit}" for v in (row["base"], row["new"])]
            change = "-" if row["change"] is None else f"{row['change']:+.1%}"
            table.add_row(row["run"], row["figure"], *cells, change,
                          f"[{_STYLE[row['verdict']]}]{row['verdict']}[/]")
        out.append(table)
    return out
