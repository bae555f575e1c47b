"""The fleet file's `routes:` section: virtual models that split traffic over targets, with fallbacks.

A route's targets and fallbacks name fleet models (or their aliases) or other
routes; ``check_routes`` rejects what cannot work, naming the dotted key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import KeyedError
from .promotion import PromotionSpec

# What keeps a caller on one target: the API key's name, the request's `user`
# (or Anthropic `metadata.user_id`), a header, or nothing (each request drawn anew).
_STICKY = re.compile(r"^(key|user|none|header:[A-Za-z0-9-]+)$")


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[str, float] = Field(
        min_length=1, description="Models or routes and their weights: the share of callers each one gets."
    )
    sticky: str = Field(
        "key", description="What keeps a caller on one target: key, user (also Anthropic metadata.user_id), "
        "header:NAME, or none.",
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Tried in order when the chosen target cannot serve and nothing was sent yet.",
    )
    promotion: PromotionSpec = Field(
        default_factory=PromotionSpec, description="How `homestack promote` tests a new target and moves traffic.",
    )

    @field_validator("targets")
    @classmethod
    def _weights(cls, targets: dict[str, float]) -> dict[str, float]:
        for name, weight in targets.items():
            if weight < 0:
                raise KeyedError(name, f"weight {weight:g} is negative; use 0 to send this target no traffic")
        if sum(targets.values()) <= 0:
            raise ValueError("the weights add up to 0; give at least one target a positive weight")
        return targets

    @field_validator("sticky")
    @classmethod
    def _sticky(cls, sticky: str) -> str:
        if not _STICKY.match(sticky):
            raise ValueError(f"unknown sticky {sticky!r}; one of: key, user, none, header:NAME")
        return sticky

    def names(self) -> list[tuple[str, str]]:
        """(dotted key below the route, name) of every target and fallback."""
        fallbacks = [(f"fallbacks.{i}", f) for i, f in enumerate(self.fallbacks)]
        return [(f"targets.{t}", t) for t in self.targets] + fallbacks


def check_routes(routes: Mapping[str, RouteSpec], models: Collection[str]) -> None:
    """Raise KeyedError for a route named like a model, an unknown target, or a cycle."""
    for name, route in routes.items():
        if name in models:
            raise KeyedError(name, f"{name!r} is already a model name or alias; give the route another name")
        for key, target in route.names():
            if target not in models and target not in routes:
                known = ", ".join(sorted({*models, *routes}))
                raise KeyedError(f"{name}.{key}", f"unknown target {target!r}; models and routes: {known}")
    for name in routes:
        cycle = _cycle(routes, name, ())
        if cycle:
            raise KeyedError(name, f"routes refer to each other in a cycle: {' -> '.join(cycle)}; break it")


def _cycle(routes: Mapping[str, RouteSpec], name: str, path: tuple[str, ...]) -> tuple[str, ...]:
    if name in path:
        return (*path, name)
    route = routes.get(name)
    if route is None:
        return ()
    for _, target in route.names():
        found = _cycle(routes, target, (*path, name))
        if found:
            return found
    return ()
