"""Launch plans for a fleet: each model's kind checks what it needs and records its version.

Plans are built once when the fleet is built, so a bad binary or model
reference is reported at start-up, not on the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError, HomestackError
from .kinds import KindConfig, LaunchPlan, kind_for

if TYPE_CHECKING:  # the fleet schema imports the kinds this module imports
    from ..config import FleetConfig


def plan_launch(name: str, spec: KindConfig, fleet: FleetConfig) -> LaunchPlan:
    """Check what ``spec`` needs exists and record the runner's version."""
    return kind_for(spec).plan(name, spec, fleet)


def plan_fleet(fleet: FleetConfig, source: str) -> dict[str, LaunchPlan]:
    """Every model's launch plan; every problem at once, one line each naming ``source``."""
    plans, problems = {}, []
    for name, spec in fleet.models.items():
        try:
            plans[name] = plan_launch(name, spec, fleet)
        except HomestackError as exc:
            problems.append(f"{source}: {exc.message}")
    if problems:
        raise ConfigError("\n".join(problems))
    return plans
