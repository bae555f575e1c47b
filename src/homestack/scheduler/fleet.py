"""The scheduler: one asyncio task that owns fleet-level decisions.

Runners own their own state machines; the scheduler decides when they change:
it starts pinned models, restarts them if they die, unloads idle models after
their TTL, and holds a ready runner for each request (acquire/release).
"""

from __future__ import annotations

import asyncio
import time

from ..config import FleetConfig
from ..errors import Conflict, HomestackError, ModelNotFound
from ..runners import HealthProbe, Runner, State
from ..runners.launch import plan_fleet

_TICK = 0.5  # seconds between TTL checks
_UNLOAD_DRAIN = 30.0  # seconds in-flight requests get when a model is unloaded by hand
_RESTART_DELAY = 1.0


class Scheduler:
    def __init__(self, runners: dict[str, Runner]):
        self.runners = runners
        self._by_name = {alias: r for r in runners.values() for alias in (r.name, *r.spec.aliases)}
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()

    @classmethod
    def build(cls, fleet: FleetConfig, source: str) -> "Scheduler":
        """Plan every runner now, so config problems surface at start-up (all at once)."""
        plans = plan_fleet(fleet, source)
        return cls({name: Runner(name, spec, fleet, plans[name]) for name, spec in fleet.models.items()})

    def resolve(self, name: str) -> Runner:
        runner = self._by_name.get(name)
        if runner is None:
            known = ", ".join(self.runners) or "(none)"
            raise ModelNotFound(f"model {name!r} does not exist; available models: {known}", param="model")
        return runner

    async def acquire(self, runner: Runner) -> None:
        """Hold ``runner`` ready for one request; it is not unloaded until ``release``.

        A plain pair rather than a context manager: this runs on every request.
        """
        runner.inflight += 1
        if runner.slots is None and runner.state is State.READY:
            return
        try:
            if runner.slots is not None:
                await runner.slots.acquire()
            try:
                await runner.ensure_ready()
            except BaseException:
                if runner.slots is not None:
                    runner.slots.release()
                raise
        except BaseException:
            runner.inflight -= 1
            raise

    def release(self, runner: Runner) -> None:
        if runner.slots is not None:
            runner.slots.release()
        runner.inflight -= 1
        runner.last_used = time.monotonic()

    async def load(self, name: str) -> Runner:
        runner = self.resolve(name)
        await runner.ensure_ready()
        return runner

    async def unload(self, name: str) -> Runner:
        runner = self.resolve(name)
        if runner.pinned:
            raise Conflict(f"model {runner.name!r} is pinned (always on); remove 'pinned: true' to unload it")
        await runner.stop(drain=_UNLOAD_DRAIN)
        return runner

    async def start(self, probe: HealthProbe) -> None:
        for runner in self.runners.values():
            runner.bind(probe)
            runner.on_exit = self._runner_exited
            if runner.pinned:
                self._spawn(self._keep_loaded(runner))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(r.stop() for r in self.runners.values()), return_exceptions=True)
        for runner in self.runners.values():
            runner.log.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            now = time.monotonic()
            for runner in self.runners.values():
                if (
                    runner.state is State.READY
                    and runner.pid is not None  # a remote URL has nothing to unload
                    and not runner.pinned
                    and runner.ttl > 0
                    and runner.inflight == 0
                    and now - runner.last_used >= runner.ttl
                ):
                    runner.log.write(f"[homestack] {runner.name} idle for {runner.ttl:g} s: unloading")
                    self._spawn(runner.stop())

    def _runner_exited(self, runner: Runner) -> None:
        if runner.pinned:
            self._spawn(self._keep_loaded(runner, delay=_RESTART_DELAY))

    async def _keep_loaded(self, runner: Runner, delay: float = 0.0) -> None:
        while runner.state is not State.READY:
            await asyncio.sleep(delay)
            try:
                await runner.ensure_ready()
            except HomestackError as exc:
                runner.log.write(f"[homestack] pinned model {runner.name} will be retried: {exc.message}")
                delay = min(max(delay * 2, _RESTART_DELAY), 30.0)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
