"""Eviction choice: pure functions over the capacity plan, so they are tested without runners."""

from __future__ import annotations

from typing import Iterable

from ..planner import CapacityPlan
from .entry import Entry


def eviction_order(candidates: Iterable[Entry]) -> list[Entry]:
    """Least recently used first; on a tie, the one cheaper to load again."""
    return sorted(candidates, key=lambda e: (e.runner.last_used, e.load_seconds or 0.0, e.plan.total))


def pick_victims(plan: CapacityPlan, incoming: str, resident: Iterable[str], order: list[str]) -> list[str] | None:
    """Models from ``order`` to unload so ``incoming`` fits beside the rest; None if they are not enough.

    Goes down ``order`` until it fits, then keeps back any victim whose unloading
    turned out not to be needed (a group conflict may have been the real obstacle).
    """
    remaining = set(resident)
    chosen: list[str] = []
    for name in order:
        if plan.fits(remaining | {incoming}):
            break
        remaining.discard(name)
        chosen.append(name)
    if not plan.fits(remaining | {incoming}):
        return None
    for name in reversed(chosen[:]):
        if plan.fits(remaining | {name, incoming}):
            remaining.add(name)
            chosen.remove(name)
    return chosen
