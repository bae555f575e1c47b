"""A fleet's plans: each model's launch plan and the capacity plan, as the scheduler starts and reloads them."""

from __future__ import annotations

import dataclasses

from ..config import FleetConfig
from ..planner import CapacityPlan, GpuProvider, build_plan, probe_devices
from ..runners.kinds import LaunchPlan
from ..runners.launch import plan_fleet


def plan_capacity(
    fleet: FleetConfig, source: str, gpus: GpuProvider | None
) -> tuple[CapacityPlan, dict[str, LaunchPlan]]:
    """The capacity plan and each model's launch plan (with the device the capacity plan chose)."""
    launch = plan_fleet(fleet, source)
    capacity = build_plan(fleet, launch, probe_devices(gpus), source)
    plans = {}
    for name, plan in launch.items():
        env = capacity.models[name].env
        # the device the plan chose; the model's own env: wins
        plans[name] = dataclasses.replace(plan, env={**env, **plan.env}) if env else plan
    return capacity, plans


def launch_settings(fleet: FleetConfig, name: str, plan: LaunchPlan) -> tuple:
    """Everything a model's runner is started with: equal means a reload leaves the runner alone."""
    spec = fleet.models[name]
    return spec, plan, fleet.ttl_for(spec), fleet.startup_timeout_for(spec), fleet.data_dir
