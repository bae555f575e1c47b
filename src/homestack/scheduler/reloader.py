"""Applying a reload to the running scheduler: plan the new fleet, then take only what changed.

``reconfig.diff`` (pure) says which models are unchanged, changed, removed or
added; ``Reloading`` (a part of ``Scheduler``) applies that: unchanged models
keep their runners, queues and requests; changed ones drain and start again
with the new settings; removed ones drain and stop; new ones are added.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from ..config import FleetConfig
from ..errors import ModelNotFound
from ..planner import CapacityPlan, GpuProvider, build_plan, probe_devices
from ..runners import Runner, State
from ..runners.kinds import LaunchPlan
from ..runners.launch import plan_fleet
from .entry import Entry
from .messages import FailWaiters
from .reconfig import RELOAD_DRAIN, diff
from .state import Settings

if TYPE_CHECKING:
    import asyncio

    from ..runners import HealthProbe


class Reloading:
    """The reload half of ``Scheduler``: it shares the scheduler's state (declared here for readers) and
    uses its ``_bind``, ``_fail_waiters`` and ``_spawn``."""

    runners: dict[str, Runner]
    capacity: CapacityPlan
    fleet: FleetConfig
    gpus: GpuProvider | None
    _entries: dict[str, Entry]
    _by_name: dict[str, Runner]
    _settings: Settings
    _yielding: frozenset[str]
    _queued: int
    _probe: "HealthProbe | None"
    _on_stop: dict[str, Callable[[], None]]
    _wakeup: "asyncio.Event"

    def plan(self, fleet: FleetConfig, source: str) -> tuple[CapacityPlan, dict[str, LaunchPlan]]:
        """The new fleet's plans; a ConfigError if they do not work. Blocking work: run it in a thread."""
        return plan_with_devices(fleet, source, self.gpus)

    def reconfigure(self, fleet: FleetConfig,
                    planned: tuple[CapacityPlan, dict[str, LaunchPlan]]) -> dict[str, list[str]]:
        """Take a new fleet (planned by ``plan``): unchanged models keep their runners, queues and requests;
        changed ones drain and start again with the new settings; removed ones drain and stop; new ones
        are added."""
        capacity, plans = planned
        old = {name: _launch_settings(self.fleet, name, r.plan) for name, r in self.runners.items()}
        changes = diff(old, {name: _launch_settings(fleet, name, plans[name]) for name in fleet.models})
        self.capacity, self.fleet = capacity, fleet
        self._settings = Settings.of(fleet.scheduling)
        for name in changes.removed:
            self._remove(name)
        for name in changes.added:
            self.runners[name] = runner = Runner(name, fleet.models[name], fleet, plans[name])
            self._entries[name] = Entry(runner, capacity.models[name])
            if self._probe is not None:
                self._bind(runner)
        for name in changes.changed:
            self._restart(self._entries[name], fleet, plans[name])
        for name, entry in self._entries.items():
            entry.plan = capacity.models[name]
        self._by_name = {alias: r for r in self.runners.values() for alias in (r.name, *r.spec.aliases)}
        self._wakeup.set()
        return changes.to_dict()

    def _remove(self, name: str) -> None:
        entry = self._entries.pop(name)
        runner = self.runners.pop(name)
        self._on_stop.pop(name, None)
        self._yielding -= {name}
        self._queued -= len(entry.queue)
        self._fail_waiters(FailWaiters(name, ModelNotFound(f"model {name!r} was removed from the fleet",
                                                           param="model")), entry)
        runner.cancel_requested = True  # a load in progress ends at its next health check
        runner.on_stopped = None
        self._spawn(self._retire(runner))

    async def _retire(self, runner: Runner) -> None:
        await runner.stop(drain=RELOAD_DRAIN)
        runner.log.close()

    def _restart(self, entry: Entry, fleet: FleetConfig, plan: LaunchPlan) -> None:
        runner = entry.runner
        spec = fleet.models[runner.name]

        def take_settings() -> None:
            runner.reconfigure(spec, fleet, plan)
            entry.limit = spec.max_concurrency or runner.slots

        if runner.state is State.STOPPED:
            take_settings()
        else:  # new requests queue meanwhile; the next start uses the new settings
            self._on_stop[runner.name] = take_settings
            self._spawn(runner.stop(drain=RELOAD_DRAIN))


def plan_with_devices(fleet: FleetConfig, source: str,
                      gpus: GpuProvider | None) -> tuple[CapacityPlan, dict[str, LaunchPlan]]:
    """The capacity plan and each model's launch plan (with the device the capacity plan chose)."""
    launch = plan_fleet(fleet, source)
    capacity = build_plan(fleet, launch, probe_devices(gpus), source)
    plans = {}
    for name, plan in launch.items():
        env = capacity.models[name].env
        # the device the plan chose; the model's own env: wins
        plans[name] = dataclasses.replace(plan, env={**env, **plan.env}) if env else plan
    return capacity, plans


def _launch_settings(fleet: FleetConfig, name: str, plan: LaunchPlan) -> tuple:
    """Everything a model's runner is started with: equal means a reload leaves the runner alone."""
    spec = fleet.models[name]
    return spec, plan, fleet.ttl_for(spec), fleet.startup_timeout_for(spec), fleet.data_dir
