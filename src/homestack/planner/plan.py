"""The capacity plan: what each model needs on which device, and what fits together.

Built once at start-up (and by `homestack plan` / `check`); the scheduler admits
loads against it, so the gateway and the CLI never disagree about what fits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations
from pathlib import Path
from typing import Iterable

from ..config import FleetConfig
from ..errors import ConfigError
from ..runners.kinds import KindConfig, LaunchPlan
from ..sizes import format_size
from .devices import Device
from .estimate import Components, MemoryEstimate

_MAX_EXACT = 14  # models beyond this: co-resident sets are not enumerated (2^n subsets)


@dataclass(frozen=True)
class ModelPlan:
    name: str
    basis: str  # "estimated", "configured" (the model's memory: key), "unknown", "remote"
    estimate: MemoryEstimate | None
    pinned: bool = False
    env: dict[str, str] = field(default_factory=dict)  # CUDA_VISIBLE_DEVICES for the runner

    @cached_property
    def need(self) -> dict[str, int]:
        """Bytes per device id."""
        return {d: c.total for d, c in self.estimate.devices.items()} if self.estimate else {}

    @cached_property
    def device(self) -> str | None:
        need = self.need
        return max(need, key=need.get) if need else None

    @cached_property
    def total(self) -> int:
        return sum(self.need.values())

    @property
    def offload(self) -> str | None:
        """Layers offloaded to a GPU, as "N/M" (llama-server's -ngl N of M layers); None without layers."""
        e = self.estimate
        return f"{e.gpu_layers}/{e.layers}" if e is not None and e.layers is not None else None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "basis": self.basis, "device": self.device, "pinned": self.pinned,
            "total": self.total, "devices": self.estimate.to_dict()["devices"] if self.estimate else {},
            "gpu_layers": self.estimate.gpu_layers if self.estimate else None,
            "layers": self.estimate.layers if self.estimate else None,
        }


@dataclass(frozen=True)
class CapacityPlan:
    devices: dict[str, Device]
    budgets: dict[str, int]
    models: dict[str, ModelPlan]
    groups: dict[str, frozenset[str]]  # models that must never be loaded together

    def fits(self, names: Iterable[str]) -> bool:
        names = set(names)
        if any(len(names & members) > 1 for members in self.groups.values()):
            return False
        held: dict[str, int] = {}
        for name in names:
            for device, size in self.models[name].need.items():
                held[device] = held.get(device, 0) + size
        return all(size <= self.budgets.get(device, 0) for device, size in held.items())

    @cached_property
    def resident_sets(self) -> list[list[str]]:
        """The largest sets of local models that can be loaded together (each maximal); computed once."""
        local = [m for m, p in self.models.items() if p.need]
        if len(local) > _MAX_EXACT:
            return [[m] for m in local if self.fits([m])]
        found: list[set[str]] = []
        for size in range(len(local), 0, -1):
            for combo in combinations(local, size):
                if not any(set(combo) <= kept for kept in found) and self.fits(combo):
                    found.append(set(combo))
        return [[m for m in local if m in kept] for kept in found]

    def problems(self) -> list[str]:
        """Models that cannot fit even alone, and pinned models that cannot fit together."""
        found = []
        for plan in self.models.values():
            for device, size in plan.need.items():
                if size > self.budgets.get(device, 0):
                    found.append(
                        f"models.{plan.name}: needs {format_size(size)} on {device} "
                        f"({_components(plan.estimate.devices[device])}) but the budget there is "
                        f"{format_size(self.budgets.get(device, 0))}; lower ctx_size or parallel, use a "
                        "smaller quantisation, or raise memory.cpu_budget / memory.headroom"
                    )
        if found:
            return found
        pinned = [p.name for p in self.models.values() if p.pinned]
        if len(pinned) > 1 and not self.fits(pinned):
            return [f"models: the pinned models {', '.join(pinned)} do not fit in memory together"]
        for plan in self.models.values():
            if pinned and not plan.pinned and plan.need and not self.fits([*pinned, plan.name]):
                found.append(
                    f"models.{plan.name}: could never load, the pinned models {', '.join(pinned)} leave no room "
                    "for it (memory or a group); unpin one or raise the budget"
                )
        return found

    def to_dict(self) -> dict[str, object]:
        return {
            "devices": [{**d.to_dict(), "budget": self.budgets[d.id]} for d in self.devices.values()],
            "models": [p.to_dict() for p in self.models.values()],
            "resident_sets": self.resident_sets,
            "groups": {name: sorted(members) for name, members in self.groups.items()},
        }


def build_plan(
    fleet: FleetConfig, launch_plans: dict[str, LaunchPlan], devices: list[Device], source: str
) -> CapacityPlan:
    """Estimate every model; raise ConfigError naming ``source`` if any cannot fit."""
    hide_gpus = not fleet.memory.gpus and len(devices) > 1
    if hide_gpus:
        devices = [d for d in devices if d.id == "cpu"]
    budgets = {d.id: d.budget(fleet.memory) for d in devices}
    gpus = [d for d in devices if d.id != "cpu"]
    models = {}
    problems = []
    for name, spec in fleet.models.items():
        if launch_plans[name].kind.attach_url(spec) is not None:
            models[name] = ModelPlan(name, "remote", None)
            continue
        try:
            models[name] = _plan_model(name, spec, fleet, launch_plans[name], gpus, budgets, hide_gpus)
        except ConfigError as exc:  # an unreadable model file: name the key that points at it
            problems.append(f"{source}: models.{name}.model: {exc.message}")
    if problems:
        raise ConfigError("\n".join(problems))
    groups = {name: frozenset(g.models) for name, g in fleet.groups.items()}
    capacity = CapacityPlan({d.id: d for d in devices}, budgets, models, groups)
    problems = capacity.problems()
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return capacity


def _plan_model(name: str, spec: KindConfig, fleet: FleetConfig, launch: LaunchPlan, gpus: list[Device],
                budgets: dict[str, int], hide_gpus: bool) -> ModelPlan:
    if spec.memory is not None:
        plan = ModelPlan(name, "configured", MemoryEstimate({"cpu": Components(overhead=spec.memory)}))
    else:
        plan = _place(name, spec, launch, fleet.data_dir, gpus, budgets)
    if (gpus or hide_gpus) and "CUDA_VISIBLE_DEVICES" not in plan.env:
        plan = dataclasses.replace(plan, env={"CUDA_VISIBLE_DEVICES": ""})  # planned for the CPU: keep it there
    return dataclasses.replace(plan, pinned=spec.pinned)


def _place(name: str, spec: KindConfig, launch: LaunchPlan, data_dir: Path, gpus: list[Device],
           budgets: dict[str, int]) -> ModelPlan:
    """The GPU with the most room that holds the whole model, if its kind may use one; else the CPU."""
    kind = launch.kind
    for gpu in sorted(gpus, key=lambda d: budgets[d.id], reverse=True) if kind.gpu else ():
        estimate = kind.estimate(spec, launch, data_dir, gpu)
        if estimate.devices.get(gpu.id, Components()).total <= budgets[gpu.id]:
            index = gpu.id.removeprefix("gpu")
            return ModelPlan(name, "estimated", estimate, env={"CUDA_VISIBLE_DEVICES": index})
    estimate = kind.estimate(spec, launch, data_dir, None)  # None: only a memory: key could say (command)
    return ModelPlan(name, "unknown" if estimate is None else "estimated", estimate)


def _components(c: Components) -> str:
    parts = [("weights", c.weights), ("KV cache", c.kv_cache), ("compute", c.compute), ("overhead", c.overhead)]
    return ", ".join(f"{label} {format_size(size)}" for label, size in parts if size)
