"""Eviction choice: pure functions over model views and the capacity plan."""

from __future__ import annotations

from typing import Iterable

from .state import Fits, ModelView


def eviction_order(candidates: Iterable[ModelView]) -> list[ModelView]:
    """Least recently used first; on a tie, the one cheaper to load again."""
    return sorted(candidates, key=lambda m: (m.last_used, m.load_seconds or 0.0, m.size))


def pick_victims(plan: Fits, incoming: str, resident: Iterable[str], order: list[str]) -> list[str] | None:
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
