"""Figures from per-request samples: percentiles, throughput, errors by kind, goodput.

Pure functions over plain dicts (the samples as they are stored in the results JSON).
"""

from __future__ import annotations

import re
from collections import Counter

from ..errors import HomestackError

# The latency figures: name -> how one sample gives its value(s) (None when it has none).
LATENCIES = {
    "ttft": lambda s: [s["ttft"]] if s.get("ttft") is not None else [],
    "tpot": lambda s: [s["tpot"]] if s.get("tpot") is not None else [],
    "itl": lambda s: s.get("itl") or [],
    "e2e": lambda s: [s["e2e"]] if s.get("e2e") is not None else [],
}
_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0}
_SLO = re.compile(r"^(ttft|tpot|itl|e2e)=([0-9.]+)(ms|s|)$")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linearly interpolated; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def distribution(values: list[float]) -> dict[str, float | None]:
    return {
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
        "n": len(values),
    }


def parse_slo(text: str | None) -> dict[str, float]:
    """``ttft=2s,tpot=100ms`` -> {"ttft": 2.0, "tpot": 0.1} (seconds)."""
    slo: dict[str, float] = {}
    for part in filter(None, (text or "").replace(" ", "").split(",")):
        match = _SLO.match(part)
        if not match:
            raise HomestackError(f"--slo: cannot read {part!r}; use NAME=VALUE[ms|s] with NAME one of "
                                 f"{', '.join(LATENCIES)}, e.g. --slo ttft=2s,tpot=100ms")
        slo[match.group(1)] = float(match.group(2)) * _UNITS[match.group(3)]
    return slo


def meets_slo(sample: dict, slo: dict[str, float]) -> bool:
    """An ok request whose every SLO figure is within bounds (ITL: each gap)."""
    if sample.get("error"):
        return False
    return all(value <= bound for name, bound in slo.items() for value in LATENCIES[name](sample))


def summarize(samples: list[dict], duration: float, slo: dict[str, float]) -> dict:
    """The run's figures: latency distributions, throughput, errors by kind, goodput."""
    ok = [s for s in samples if not s.get("error")]
    tokens = sum(s.get("output_tokens") or 0 for s in ok)
    figures = {name: distribution([v for s in ok for v in get(s)]) for name, get in LATENCIES.items()}
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": dict(Counter(s["error"] for s in samples if s.get("error"))),
        "duration_s": duration,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / duration if duration > 0 else None,
        "requests_per_s": len(ok) / duration if duration > 0 else None,
        "goodput": sum(meets_slo(s, slo) for s in samples) / len(samples) if slo and samples else None,
        **figures,
    }
