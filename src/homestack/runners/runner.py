"""One runner: a child process serving HTTP on a port, or a remote URL.

An explicit state machine (stopped -> starting -> ready -> stopping -> stopped)
owns the runner's state. Only its own transitions change it; a request that
arrives during a load awaits that same load.
"""

from __future__ import annotations

import asyncio
import enum
import time
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from ..errors import ClientClosed, HomestackError, RunnerError, RunnerTimeout
from .kinds import KindConfig, LaunchPlan
from .logs import LogTail, secrets_of
from .process import RunnerProcess, free_port, kill_group, spawn, terminate

if TYPE_CHECKING:  # the fleet schema imports the kinds this package holds
    from ..config import FleetConfig

_LOG_LINES_IN_ERRORS = 5
_PROBE_TIMEOUT = 2.0  # seconds one health check may take
_POLL_FIRST, _POLL_MAX = 0.05, 0.25  # seconds between health checks during a load (backing off)

# (origin, path) -> HTTP status: the GET a runner's health check uses.
HealthProbe = Callable[[str, str], Awaitable[int]]


class State(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"


class Runner:
    def __init__(self, name: str, spec: KindConfig, fleet: FleetConfig, plan: LaunchPlan):
        self.name = name
        self.log = LogTail(fleet.data_dir / "logs" / f"{name}.log", secrets=secrets_of(spec))
        self.state = State.STOPPED
        self.reconfigure(spec, fleet, plan)
        self.inflight = 0
        self.last_used = time.monotonic()
        self.started_at: float | None = None
        # Called with (runner, reason) each time the runner stops; reason is None for a requested stop.
        self.on_stopped: Callable[[Runner, str | None], None] | None = None
        self.cancel_requested = False  # set by the scheduler when nobody waits for a load any more
        self._proc: RunnerProcess | None = None
        self._transition: asyncio.Future[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._probe: HealthProbe | None = None

    def reconfigure(self, spec: KindConfig, fleet: FleetConfig, plan: LaunchPlan) -> None:
        """Take the model's settings (at creation, and on a reload while stopped: the next start uses them)."""
        assert self.state is State.STOPPED, "a runner takes new settings only while stopped"
        self.spec = spec
        self.kind = spec.runner  # the kind's name, e.g. "llama.cpp"
        self.plan = plan
        self.version = plan.version
        self.ttl = fleet.ttl_for(spec)
        self.pinned = spec.pinned
        self.slots = plan.kind.slots(spec)  # requests it serves at once; None: no limit of its own
        self.metrics_path = plan.kind.metrics_path  # its own Prometheus endpoint, if any
        self.operations = plan.kind.operations(spec)  # what it answers (Operation names); None: anything
        self._lacking: dict[str, str | None] = {}  # lacks(), per capability: read from the model's files once
        self.secrets = self.log.secrets = secrets_of(spec)  # never written to its log, nor relayed in its errors
        self._attach_url = plan.kind.attach_url(spec)  # an API already running: nothing to start
        self._health_path = plan.kind.health_path(spec)
        self._ready_line = plan.kind.ready_line
        self._stop_grace = plan.kind.stop_grace
        self.base_url = self._attach_url or ""
        api_key = plan.kind.api_key(spec)
        # Raw header lines sent with every forwarded request (a remote API's key).
        self.upstream_headers = f"Authorization: Bearer {api_key}\r\n".encode() if api_key else b""
        self._data_dir = fleet.data_dir
        self._model_path: Path | None = None  # resolved (assembled, converted) at the first load
        self._startup_timeout = fleet.startup_timeout_for(spec)

    def bind(self, probe: HealthProbe) -> None:
        """Give the runner the HTTP GET it uses for health checks."""
        self._probe = probe

    def lacks(self, capability: str) -> str | None:
        """Why the model cannot serve ``capability`` though its kind does; None: it can. The answer comes
        from the model's files, which do not change under a plan: the request path asks them once."""
        if capability not in self._lacking:
            self._lacking[capability] = self.plan.kind.lacks(self.spec, self.plan, self._data_dir, capability)
        return self._lacking[capability]

    @property
    def origin(self) -> str:
        """scheme://host:port of the runner, without the /v1 API prefix."""
        return self.base_url.rsplit("/v1", 1)[0]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def ensure_ready(self) -> None:
        """Return once the runner is ready, starting it (once, for all waiters) if needed."""
        while self.state is not State.READY:
            if self.state is State.STOPPED:
                # The state changes now, not when the task first runs: later callers must see it.
                self.state = State.STARTING
                self.cancel_requested = False
                self._transition = asyncio.ensure_future(self._run_transition(self._start))
            assert self._transition is not None
            await asyncio.shield(self._transition)

    async def stop(self, drain: float = 0.0) -> None:
        """Stop the runner; in-flight requests get up to ``drain`` seconds to finish."""
        while self.state is State.STARTING:
            assert self._transition is not None
            try:
                await asyncio.shield(self._transition)
            except HomestackError:
                pass
        self.begin_stop(drain)
        if self.state is State.STOPPING and self._transition is not None:
            await asyncio.shield(self._transition)

    def begin_stop(self, drain: float = 0.0) -> None:
        """Start stopping a ready runner now: its state is STOPPING before this returns."""
        if self.state is State.READY:
            self.state = State.STOPPING
            self._transition = asyncio.ensure_future(self._run_transition(lambda: self._stop(drain)))

    async def _run_transition(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except BaseException:
            if self.state is State.STARTING:  # whatever went wrong, leave no half-started runner
                if self._proc is not None:
                    kill_group(self._proc)
                self._stopped("load failed")
            raise
        finally:
            self._transition = None

    async def _start(self) -> None:
        if self._attach_url is not None:
            await self._attach()
            return
        try:
            path = self._model_path
            if path is None or not path.exists():  # resolving finds packages and checks copies: once, not per load
                path = self._model_path = await asyncio.to_thread(self.plan.model_path, self._data_dir)
            port = free_port()
            argv = self.plan.argv(self.name, self.spec, port, path)
            self.log.write(f"[homestack] starting {self.name}: {' '.join(argv)}")
            self._proc = await spawn(argv, self.plan.env, self.log)
        except (HomestackError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            self.log.write(f"[homestack] {self.name} failed to start: {message}")
            raise RunnerError(f"model {self.name!r} failed to start: {message}") from None
        self.base_url = f"http://127.0.0.1:{port}/v1"
        await self._wait_healthy(f"http://127.0.0.1:{port}", self._proc)
        self._became_ready()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(self._proc))

    async def _attach(self) -> None:
        if self._health_path:
            await self._wait_healthy(self.origin, None)
        self._became_ready()

    def _became_ready(self) -> None:
        self.state = State.READY
        self.started_at = self.last_used = time.monotonic()
        self.log.write(f"[homestack] {self.name} is ready at {self.base_url}")

    async def _wait_healthy(self, origin: str, proc: RunnerProcess | None) -> None:
        """Return once the runner is ready: as soon as it logs its kind's ready line (written once its
        API answers), else once its health check answers 200, polled at a growing interval."""
        assert self._probe is not None, "Runner.bind() was not called"
        path = self._health_path
        deadline = time.monotonic() + self._startup_timeout
        delay = _POLL_FIRST
        # Watched from before the first line is read: the pump task has not run yet.
        ready = self.log.watch(self._ready_line) if proc is not None and self._ready_line is not None else None
        try:
            while True:
                if proc is not None and proc.returncode is not None:
                    raise self._start_failure(f"runner exited with code {proc.returncode}")
                if self.cancel_requested:
                    self.log.write(f"[homestack] {self.name}: load cancelled, every waiting request went away")
                    raise ClientClosed(f"load of {self.name!r} cancelled: every waiting request went away")
                if ready is not None and ready.done():
                    return  # the line says the API answers: a health check would only cost a round trip
                try:
                    if await asyncio.wait_for(self._probe(origin, path), _PROBE_TIMEOUT) == 200:
                        return
                except (OSError, TimeoutError):  # not listening yet, or busy loading
                    pass
                if time.monotonic() > deadline:
                    raise self._start_failure(
                        f"not healthy at {origin}{path} after {self._startup_timeout:g} s", RunnerTimeout
                    )
                await asyncio.wait((ready,), timeout=delay) if ready is not None else await asyncio.sleep(delay)
                delay = min(delay * 1.5, _POLL_MAX)
        finally:
            if ready is not None:
                ready.cancel()

    def _start_failure(self, reason: str, error: type[RunnerError] = RunnerError) -> RunnerError:
        self.log.write(f"[homestack] {self.name} failed to start: {reason}")
        tail = " | ".join(line for line in self.log.tail(_LOG_LINES_IN_ERRORS + 1)[:-1])
        return error(f"model {self.name!r} failed to start: {reason}; last log lines: {tail}")

    async def _stop(self, drain: float) -> None:
        deadline = time.monotonic() + drain
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._proc is not None:
            code = await terminate(self._proc, self._stop_grace)
            self.log.write(f"[homestack] {self.name} stopped (exit code {code})")
        self._stopped(None)

    async def _watch(self, proc: RunnerProcess) -> None:
        code = await proc.wait()
        if self._proc is proc and self.state is State.READY:
            self.log.write(f"[homestack] {self.name} exited unexpectedly with code {code}")
            self._stopped(f"exited unexpectedly with code {code}")

    def _stopped(self, reason: str | None) -> None:
        self._proc = None
        self.state = State.STOPPED
        self.started_at = None
        if self.on_stopped is not None:
            self.on_stopped(self, reason)

    def describe(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "name": self.name,
            "state": self.state.value,
            "runner": self.kind,
            "aliases": list(self.spec.aliases),
            "version": self.version,
            "pid": self.pid,
            "url": self.base_url or None,
            "pinned": self.pinned,
            "ttl": self.ttl,
            "inflight": self.inflight,
            "idle_seconds": round(now - self.last_used, 1) if not self.inflight else 0.0,
            "uptime_seconds": round(now - self.started_at, 1) if self.started_at else None,
            "log_file": str(self.log.path),
        }
