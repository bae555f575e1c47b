"""The promotion driver: an asyncio task per promotion in the gateway, applying decide.py's decisions.

It starts the candidate, asks it the smoke requests and the eval suite (through
the gateway itself, in process, as a client would), moves the route's weights
stage by stage, feeds each finished request of the route into the stage's
windows, and ends by writing the fleet file or by putting the weights back.
The route's weights during a promotion live only in memory: a gateway that
stops half way comes back on the fleet file, which still names the old target.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import httpx
from pydantic import ValidationError

from ..config.promotion import PromotionSpec
from ..errors import BadRequest, ConfigError, Conflict, HomestackError, NotFound
from ..evals.run import Options, run
from ..evals.suite import load, resolve
from ..keys import Key, Role
from . import decide
from .fleetfile import write_targets
from .history import History

if TYPE_CHECKING:
    from ..gateway.context import Services
    from ..observe import RequestRecord

_POLL = 0.2  # seconds between looks at a stage's windows
_BASE = "http://homestack.promotion"  # in-process requests: any host, the transport is the app itself


@dataclass
class Promotion:
    id: str
    route: str
    current: str
    candidate: str
    who: str | None
    targets: dict[str, float]  # the route's targets when it began
    spec: PromotionSpec
    stages: list[decide.Stage]
    phase: str = "starting"  # starting, smoke, eval, canary, watch, finishing
    share: float = 0.0
    windows: dict[str, decide.Window] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def event(self, event: str, **extra: Any) -> dict[str, Any]:
        return {"event": event, "promotion": self.id, "route": self.route, "from": self.current,
                "to": self.candidate, "who": self.who, **extra}


class Promotions:
    """At most one promotion per route; the weights they set; the history and rollback counts."""

    def __init__(self, services: "Services", app: Callable[..., Awaitable[None]],
                 reload: Callable[["Services"], Awaitable[dict[str, Any]]]):
        self.services = services
        self._app = app  # the gateway's ASGI app: smoke and eval requests go through it
        self._reload = reload
        self.history = History(services.fleet.data_dir)
        self.active: dict[str, Promotion] = {}
        self.rollbacks: Counter[tuple[str, str]] = Counter()  # (route, reason)
        self._token = os.urandom(24).hex()

    # -- gateway start ----------------------------------------------------------------------------

    def resume(self) -> list[dict[str, Any]]:
        """End the promotions a previous gateway left half way, as the fleet file says they ended."""
        ended = []
        for started in decide.unfinished(self.history.read()):
            route = self.services.fleet.routes.get(str(started.get("route")))
            outcome, why = decide.resumed(started, route.targets if route else {})
            keep = {k: started.get(k) for k in ("promotion", "route", "from", "to")}
            extra = {"reason": "restart"} if outcome == "aborted" else {}
            ended.append(self.history.append({"event": outcome, **keep, "who": "gateway", "detail": why, **extra}))
        return ended

    # -- requests ---------------------------------------------------------------------------------

    def observe(self, rec: "RequestRecord") -> None:
        """A finished request (the request log's listener, on the event loop): count it in its stage."""
        promotion = self.active.get(rec.route) if rec.route else None
        if promotion is None or promotion.phase not in ("canary", "watch"):
            return
        for target in rec.fell_back_from:
            promotion.windows.setdefault(target, decide.Window()).add(False, None)
        if rec.runner:
            ok = rec.status < 500 and rec.status != 429
            ttft = rec.first_byte - rec.started if ok and rec.first_byte is not None else None
            promotion.windows.setdefault(rec.runner, decide.Window()).add(ok, ttft)

    # -- commands ---------------------------------------------------------------------------------

    def start(self, route_name: str, candidate: str, who: str | None, canary: list[float] | None = None,
              step_seconds: float | None = None, watch_seconds: float | None = None,
              swap: bool = False) -> dict[str, Any]:
        """Check the request, record "started" and run the promotion as a task; the started event."""
        services = self.services
        route = services.fleet.routes.get(route_name)
        if route is None:
            raise NotFound(f"no route {route_name!r}; routes: {', '.join(services.fleet.routes) or 'none'}")
        if services.fleet_file is None:
            raise Conflict("the gateway serves the embedded default fleet: a promotion writes the fleet file, so "
                           "start it with --config FILE")
        if route_name in self.active:
            raise Conflict(f"route {route_name!r} is already being promoted to {self.active[route_name].candidate}; "
                           f"wait, or `homestack rollback {route_name}`")
        current = decide.current_target(route.targets)
        runner = services.scheduler.resolve(candidate)  # ModelNotFound names the models
        if candidate in services.fleet.routes or runner.name == current:
            raise BadRequest(f"promote to a fleet model other than {current!r}, the route's current target",
                             param="to")
        if current not in services.scheduler.runners:
            raise BadRequest(f"route {route_name!r}'s current target {current!r} is a route; promote that route",
                             param="route")
        capacity = services.scheduler.capacity
        if not swap and not capacity.fits([current, runner.name]):
            raise Conflict(f"{runner.name} cannot be resident beside {current} within the memory plan; pass --swap "
                           "to promote anyway, the two swapping in and out (within scheduling.max_wait)")
        if canary is not None:
            try:
                PromotionSpec(canary=canary)  # the same checks as the fleet file's
            except ValidationError as exc:
                raise BadRequest(exc.errors()[0]["msg"], param="canary") from None
        if route.promotion.eval is not None:
            try:
                resolve(route.promotion.eval.suite)  # a missing suite is the file's fault, not the candidate's
            except ConfigError as exc:
                raise BadRequest(f"routes.{route_name}.promotion.eval.suite: {exc.message}") from None
        promotion = Promotion(os.urandom(6).hex(), route_name, current, runner.name, who, dict(route.targets),
                              route.promotion,
                              decide.stages(route.promotion, canary, step_seconds, watch_seconds))
        started = self.history.append(promotion.event(
            "started", targets=promotion.targets, swap=swap,
            stages=[{"share": s.share, "seconds": s.seconds, "kind": s.kind} for s in promotion.stages]))
        self.active[route_name] = promotion
        promotion.task = asyncio.get_running_loop().create_task(self._run(promotion))
        return started

    async def rollback(self, route_name: str, who: str | None) -> dict[str, Any]:
        """Back to the previous target at once: stop a running promotion, or undo the last finished one."""
        if route_name not in self.services.fleet.routes:
            raise NotFound(f"no route {route_name!r}; routes: {', '.join(self.services.fleet.routes) or 'none'}")
        promotion = self.active.get(route_name)
        if promotion is not None:
            if promotion.phase == "finishing":
                raise Conflict(f"route {route_name!r} is being written as promoted; roll back once it is")
            assert promotion.task is not None
            promotion.task.cancel()
            return self._rolled_back(promotion, "manual", f"rolled back by {who or 'an admin'}", who=who)
        last = decide.last_promotion(self.history.read(route_name), route_name)
        if last is None:
            raise Conflict(f"route {route_name!r} has no promotion to roll back (see `homestack history`)")
        async with self.services.reload_lock:
            await asyncio.to_thread(write_targets, str(self.services.fleet_file), route_name, last["targets"])
        await self._reload(self.services)
        self._spawn_load(str(last["from"]))
        self.rollbacks[route_name, "manual"] += 1
        return self.history.append({"event": "rolled_back", "promotion": last["promotion"], "route": route_name,
                                    "from": last["to"], "to": last["from"], "who": who, "reason": "manual",
                                    "undone": True, "targets": last["targets"],
                                    "detail": f"{last['from']} is the route's target again (fleet file written)"})

    # -- the task ---------------------------------------------------------------------------------

    async def _run(self, p: Promotion) -> None:
        try:
            if not await self._gates(p):
                return
            for stage in p.stages:
                if not await self._stage(p, stage):
                    return
            await self._finish(p)
        except asyncio.CancelledError:  # a manual rollback: it records itself
            raise
        except HomestackError as exc:
            self._rolled_back(p, "candidate_failed", exc.message)
        except Exception as exc:  # a bug: the route must still go back to its target
            traceback.print_exc(file=sys.stderr)
            self._rolled_back(p, "candidate_failed", f"internal error: {type(exc).__name__}")

    async def _gates(self, p: Promotion) -> bool:
        p.phase = "starting"
        started = time.monotonic()
        await self.services.scheduler.load(p.candidate)
        self.history.append(p.event("ready", seconds=round(time.monotonic() - started, 3)))
        if p.spec.smoke:
            p.phase = "smoke"
            started = time.monotonic()
            report = await self._ask({"smoke": list(p.spec.smoke)}, [p.candidate])
            results = report[p.candidate]["smoke"]["results"]
            failed = [{"id": r["id"], "note": r["note"], "answer": (r["answer"] or "")[:200]}
                      for r in results if not r["passed"]]
            self.history.append(p.event("gate", gate="smoke", passed=not failed, requests=len(results),
                                        failed=failed, seconds=round(time.monotonic() - started, 3)))
            if failed:
                return self._gate_failed(p, f"smoke test: {len(failed)} of {len(results)} checks failed "
                                            f"({failed[0]['id']}: {failed[0]['note'] or 'no match'})")
        gate = p.spec.eval
        if gate is not None:
            p.phase = "eval"
            started = time.monotonic()
            name, items = await asyncio.to_thread(load, gate.suite)
            cap = gate.max_tokens
            items = [i.model_copy(update={"max_tokens": min(i.max_tokens, cap or i.max_tokens)})
                     for i in items[: gate.limit]]
            report = await self._ask({name: items}, [p.candidate, p.current])
            scores = {model: report[model][name]["score"] for model in (p.candidate, p.current)}
            why = decide.gate(scores[p.candidate], scores[p.current], gate.threshold, gate.tolerance)
            self.history.append(p.event("gate", gate="eval", suite=name, passed=why is None, scores=scores,
                                        threshold=gate.threshold, tolerance=gate.tolerance,
                                        seconds=round(time.monotonic() - started, 3)))
            if why is not None:
                return self._gate_failed(p, why)
        return True

    async def _stage(self, p: Promotion, stage: decide.Stage) -> bool:
        p.phase, p.share = stage.kind, stage.share
        p.windows = {}
        weights = decide.weights(p.targets, p.current, p.candidate, stage.share)
        self.services.route_weights[p.route] = weights
        self.history.append(p.event("step", kind=stage.kind, share=stage.share, seconds=stage.seconds,
                                    weights=weights))
        started = time.monotonic()
        while True:
            await asyncio.sleep(_POLL)
            candidate = p.windows.get(p.candidate, decide.Window())
            current = p.windows.get(p.current, decide.Window())
            rollback = decide.verdict(p.spec, candidate, current)
            action = decide.next_step(stage, time.monotonic() - started, rollback)
            if action == "rollback":
                assert rollback is not None
                self._rolled_back(p, *rollback, figures=self._figures(p))
                return False
            if action == "advance":
                self.history.append(p.event("stage_ok", kind=stage.kind, share=stage.share,
                                            seconds=round(time.monotonic() - started, 3), figures=self._figures(p)))
                return True

    async def _finish(self, p: Promotion) -> None:
        p.phase = "finishing"
        targets = decide.promoted_targets(p.targets, p.current, p.candidate)
        services = self.services
        async with services.reload_lock:
            backup = await asyncio.to_thread(write_targets, str(services.fleet_file), p.route, targets)
        await self._reload(services)
        self._end(p)
        self.history.append(p.event("promoted", targets=p.targets, new_targets=targets, backup=str(backup)))
        # The old model drains and stops, unless another route still sends it traffic (as a fallback it
        # starts again on demand).
        if not any(r.targets.get(p.current, 0) > 0 for r in services.fleet.routes.values()):
            self._spawn(self._unload(p.current))

    # -- endings ----------------------------------------------------------------------------------

    def _gate_failed(self, p: Promotion, why: str) -> bool:
        self._end(p)
        self.history.append(p.event("gate_failed", reason="gate", detail=why))
        return False

    def _rolled_back(self, p: Promotion, reason: str, detail: str, **extra: Any) -> dict[str, Any]:
        self._end(p)
        self.rollbacks[p.route, reason] += 1
        return self.history.append(p.event("rolled_back", reason=reason, detail=detail, phase=p.phase,
                                           share=p.share, **extra))

    def _end(self, p: Promotion) -> None:
        """The route serves as its fleet file says again (no weights of ours over it)."""
        self.services.route_weights.pop(p.route, None)
        if self.active.get(p.route) is p:
            del self.active[p.route]

    def _figures(self, p: Promotion) -> dict[str, Any]:
        return {target: window.to_dict() for target, window in p.windows.items()}

    # -- effects ----------------------------------------------------------------------------------

    async def _ask(self, suites: dict[str, list], models: list[str]) -> dict[str, Any]:
        """Eval suites through the gateway itself, with a key only this gateway knows."""
        self.services.auth.ring.add(self._token, Key("promotion", frozenset({Role.INFERENCE})))
        options = Options(url=_BASE + "/v1", api_key=self._token)
        transport = httpx.ASGITransport(app=self._app)
        return await run(suites, models, options, lambda: None, transport=transport)

    async def _unload(self, model: str) -> None:
        try:
            await self.services.scheduler.unload(model)
        except HomestackError:  # pinned, or removed meanwhile: it stays as it is
            pass

    def _spawn_load(self, model: str) -> None:
        async def load() -> None:
            try:
                await self.services.scheduler.load(model)
            except HomestackError:  # the next request will say why
                pass
        self._spawn(load())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.services.background.add(task)
        task.add_done_callback(self.services.background.discard)

    def close(self) -> None:
        """The gateway stops: promotions end where they are (the fleet file still names the old targets)."""
        for promotion in self.active.values():
            if promotion.task is not None:
                promotion.task.cancel()

    def report(self) -> dict[str, dict[str, Any]]:
        """Each route's promotion state now (for /admin/history, metrics and the status page)."""
        return {route: {"promotion": p.id, "from": p.current, "to": p.candidate, "phase": p.phase, "share": p.share,
                        "figures": self._figures(p)} for route, p in self.active.items()}

