"""Cold starts: unload through the admin API, then time the load from the client and from the runner's log.

The runner's log is followed over ``GET /admin/logs/NAME?follow=1`` while the cold request runs;
each line is stamped on arrival (same clock as the request), so the runner's own ready time
(from the gateway's "starting" line to the runner's "listening" line) and the client-seen load
time come from one clock, and the gateway's overhead on a swap is their difference.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from ..errors import HomestackError
from .client import Target

# Log events -> the line that marks them (first match after the request was sent).
MARKERS = {
    "starting": re.compile(r"^\[homestack\] starting "),
    # llama-server and the embeddings runner once the model is loaded (they answer /health from then).
    "runner_ready": re.compile(r"\bmodel loaded$|^embeddings: loaded "),
    "gateway_ready": re.compile(r"^\[homestack\] \S+ is ready"),
}


FIGURES = ("client_load_s", "runner_ready_s", "gateway_overhead_s", "before_spawn_s", "ready_to_gateway_s")


def admin_origin(target: Target) -> str:
    return target.url.rstrip("/").rsplit("/v1", 1)[0]


async def unload(client: httpx.AsyncClient, target: Target) -> None:
    resp = await client.post(f"{admin_origin(target)}/admin/models/{target.model}/unload", headers=target.headers())
    if resp.status_code != 200:
        raise HomestackError(f"--cold needs the gateway's admin API: unloading {target.model} answered "
                             f"HTTP {resp.status_code}: {resp.text[:200]}")


class LogWatch:
    """Follows a model's runner log while in use; ``times`` holds when each marker's line arrived."""

    def __init__(self, client: httpx.AsyncClient, target: Target):
        self._client, self._target = client, target
        self.times: dict[str, float] = {}
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "LogWatch":
        self._task = asyncio.ensure_future(self._follow())
        waiter = asyncio.ensure_future(self._connected.wait())
        await asyncio.wait({self._task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()  # raises what went wrong
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.sleep(0.05)  # lines written just before the answer are still in flight
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _follow(self) -> None:
        url = f"{admin_origin(self._target)}/admin/logs/{self._target.model}?follow=1&lines=0"
        async with self._client.stream("GET", url, headers=self._target.headers(), timeout=None) as resp:
            if resp.status_code != 200:
                raise HomestackError(f"--cold follows the runner log at {url}: HTTP {resp.status_code}")
            self._connected.set()  # the gateway registers the follower before it sends the headers
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    self._stamp(line[6:], time.perf_counter())

    def _stamp(self, line: str, when: float) -> None:
        for event, pattern in MARKERS.items():
            if event not in self.times and pattern.search(line):
                self.times[event] = when


def cold_figures(sent: float, first_token: float | None, warm_ttft: float | None, times: dict[str, float]) -> dict:
    """Seconds: the load the client saw (cold TTFT minus the warm TTFT right after), the runner's
    own ready time, and the gateway's share (their difference), with the phases that make it up."""
    figures: dict[str, float | None] = dict.fromkeys(FIGURES)
    if "starting" in times:
        figures["before_spawn_s"] = times["starting"] - sent
    if "starting" in times and "runner_ready" in times:
        figures["runner_ready_s"] = times["runner_ready"] - times["starting"]
    if "runner_ready" in times and "gateway_ready" in times:
        figures["ready_to_gateway_s"] = times["gateway_ready"] - times["runner_ready"]
    if first_token is not None and warm_ttft is not None:
        figures["client_load_s"] = first_token - sent - warm_ttft
        if figures["runner_ready_s"] is not None:
            figures["gateway_overhead_s"] = figures["client_load_s"] - figures["runner_ready_s"]
    return figures
