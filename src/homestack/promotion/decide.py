"""A promotion's decisions, as pure functions: the driver (driver.py) measures and applies them.

A promotion moves a route from its current target (the target with the most
weight) to a candidate: gates first (smoke test, eval score), then stages, each
giving the candidate a share of the route's traffic for a while (the canary
steps, then 100 % for the watch window). In every stage the candidate's error
rate and p95 time to first token are compared with the current target's;
beyond the thresholds the route goes back at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..config.promotion import PromotionSpec

# Why a promotion ended without the candidate: the reasons rollbacks are counted by.
ROLLBACK_REASONS = ("error_rate", "ttft", "candidate_failed", "manual", "restart")
TERMINAL = ("promoted", "rolled_back", "gate_failed", "aborted")  # events that end a promotion


@dataclass(frozen=True)
class Stage:
    share: float  # the candidate's percentage of the route's traffic
    seconds: float
    kind: str  # "canary" or "watch"


@dataclass
class Window:
    """Requests one target served (or could not) in a stage: what a verdict compares."""

    requests: int = 0
    errors: int = 0
    ttfts: list[float] = field(default_factory=list)

    def add(self, ok: bool, ttft: float | None) -> None:
        self.requests += 1
        self.errors += not ok
        if ttft is not None:
            self.ttfts.append(ttft)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_ttft(self) -> float | None:
        if not self.ttfts:
            return None
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def to_dict(self) -> dict[str, object]:
        p95 = self.p95_ttft
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 4),
                "p95_ttft": None if p95 is None else round(p95, 4)}


def current_target(targets: Mapping[str, float]) -> str:
    """The target a promotion replaces: the one with the most weight (the first of equals)."""
    return max(targets, key=lambda t: targets[t])


def stages(spec: PromotionSpec, canary: Sequence[float] | None = None, step_seconds: float | None = None,
           watch_seconds: float | None = None) -> list[Stage]:
    """The canary steps, then the watch window at 100 % (options given override the route's settings)."""
    step = spec.step_seconds if step_seconds is None else step_seconds
    watch = spec.watch_seconds if watch_seconds is None else watch_seconds
    found = [Stage(share, step, "canary") for share in (spec.canary if canary is None else canary)]
    return found + [Stage(100.0, watch, "watch")]


def weights(targets: Mapping[str, float], current: str, candidate: str, share: float) -> dict[str, float]:
    """The route's weights with ``share`` percent going to ``candidate``: the current target and any other
    targets split the rest as they split the route before."""
    others = {t: w for t, w in targets.items() if t != candidate}
    total = sum(others.values())
    moved = {t: round((100 - share) * w / total, 6) for t, w in others.items()} if total > 0 else {}
    if share >= 100:
        moved[current] = 0.0
    return {**moved, candidate: float(share)}


def promoted_targets(targets: Mapping[str, float], current: str, candidate: str) -> dict[str, float]:
    """The route's targets once promoted: the candidate in the current target's place, with its weight
    (and any weight it had already)."""
    weight = targets[current] + targets.get(candidate, 0)
    return {(candidate if t == current else t): (weight if t == current else w)
            for t, w in targets.items() if t != candidate}


def gate(candidate: float, current: float, threshold: float, tolerance: float) -> str | None:
    """Why the candidate's eval score fails the gate, or None when it passes."""
    if candidate < threshold:
        return f"eval score {candidate:.2f} is below the threshold {threshold:.2f}"
    if candidate < current - tolerance:
        return (f"eval score {candidate:.2f} is more than {tolerance:.2f} below the current target's "
                f"{current:.2f}")
    return None


def verdict(spec: PromotionSpec, candidate: Window, current: Window) -> tuple[str, str] | None:
    """(reason, detail) to roll back for, comparing the candidate with the current target; None: carry on."""
    excess = candidate.error_rate - current.error_rate
    if candidate.errors and excess > spec.max_error_rate:
        return "error_rate", (f"candidate error rate {candidate.error_rate:.0%} ({candidate.errors}/"
                              f"{candidate.requests}) vs {current.error_rate:.0%} for the current target "
                              f"(allowed {spec.max_error_rate:.0%} more)")
    mine, theirs = candidate.p95_ttft, current.p95_ttft
    if (mine is not None and theirs is not None and len(candidate.ttfts) >= spec.min_requests
            and mine > theirs * spec.max_ttft_ratio + spec.ttft_slack):
        return "ttft", (f"candidate p95 time to first token {mine:.3f} s vs {theirs:.3f} s for the current "
                        f"target (allowed {spec.max_ttft_ratio:g}x + {spec.ttft_slack:g} s)")
    return None


def next_step(stage: Stage, elapsed: float, rollback: tuple[str, str] | None) -> str:
    """What the driver does now in ``stage``: "rollback", "advance" (the stage is over) or "hold"."""
    if rollback is not None:
        return "rollback"
    return "advance" if elapsed >= stage.seconds else "hold"


def unfinished(events: Sequence[Mapping[str, object]]) -> list[Mapping[str, object]]:
    """The "started" events of promotions the history never ended (the gateway stopped during them)."""
    ended = {e.get("promotion") for e in events if e.get("event") in TERMINAL}
    return [e for e in events if e.get("event") == "started" and e.get("promotion") not in ended]


def resumed(started: Mapping[str, object], targets: Mapping[str, float]) -> tuple[str, str]:
    """How a promotion the gateway restarted during ends: ("promoted", why) when the fleet file already
    names the candidate (it was written just before the stop), else ("aborted", why): the file still
    names the old target, which is what the restarted gateway serves."""
    if started.get("to") in targets and started.get("from") not in targets:
        return "promoted", "the fleet file was written before the gateway stopped"
    return "aborted", "the gateway restarted during the promotion; the route serves its previous target"


def last_promotion(events: Sequence[Mapping[str, object]], route: str) -> Mapping[str, object] | None:
    """The route's most recent "promoted" event that no later rollback undid, if any."""
    for event in reversed(events):
        if event.get("route") != route:
            continue
        if event.get("event") == "promoted":
            return event
        if event.get("event") == "rolled_back" and event.get("undone"):
            return None
    return None
