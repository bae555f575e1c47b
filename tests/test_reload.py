"""Hot reload under load: clients stream without pause while the fleet file is edited three times
(a route's weights, a changed model, a removed model), through `homestack reload`, SIGHUP and
POST /admin/reload. No request fails; unchanged runners keep their process; an invalid edit is
refused with the file and key named, and the old fleet keeps serving."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter

import httpx

from helpers import TESTS, GatewayProcess, wait_until


def _fake(name: str, extra: str = "") -> str:
    command = [sys.executable, str(TESTS / "fake_openai.py"), "--port", "{port}", "--tag", name]
    return f"  {name}: {{runner: command, command: {command}, ttl: 0{extra}}}"


def _fleet(weights: str = "{a: 1, b: 1}", c_extra: str = "", with_d: bool = True,
           route_extra: str = "") -> str:
    models = [_fake("a"), _fake("b"), _fake("c", c_extra)] + ([_fake("d")] if with_d else [])
    return "\n".join(["models:", *models, "routes:", f"  chat: {{targets: {weights}, sticky: none{route_extra}}}"]) + "\n"


class _Clients:
    """Clients that stream chat completions back to back until stopped, counting every outcome."""

    def __init__(self, gw: GatewayProcess, models: list[str]):
        self.gw, self.stop = gw, threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(m,)) for m in models]

    def _run(self, model: str) -> None:
        body = {"model": model, "stream": True, "fake_sleep": 0.05, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=self.gw.url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                        lines = [line for line in resp.iter_lines() if line]
                        ok = resp.status_code == 200 and lines[-1] == "data: [DONE]" and \
                            not any('"error"' in line for line in lines)
                        served = resp.headers.get("x-homestack-model", "")
                except httpx.HTTPError as exc:
                    ok, lines, served = False, [repr(exc)], ""
                self.outcomes["ok" if ok else "failed"] += 1
                self.served[served] += 1
                if not ok:
                    self.failures.append(f"{model}: {lines[-3:]}")

    def __enter__(self) -> "_Clients":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _requests_so_far(clients: _Clients) -> int:
    return sum(clients.outcomes.values())


def test_reload_under_load_keeps_every_request_and_untouched_runners(tmp_path):
    gw = GatewayProcess(tmp_path / "gw", _fleet())
    fleet_file = gw.home / "fleet.yaml"
    try:
        httpx.post(gw.url + "/admin/models/d/load", timeout=60).raise_for_status()
        steps = []
        with _Clients(gw, ["chat"] * 3 + ["a"] * 2 + ["c"] * 3) as clients:
            wait_until(lambda: {"a", "b", "c"} <= {n for n, r in gw.running().items() if r["state"] == "ready"},
                       30, message="a, b, c ready")
            pids = {name: r["pid"] for name, r in gw.running().items()}

            def step(name: str, apply) -> None:
                before, started = _requests_so_far(clients), time.monotonic()
                apply()
                time.sleep(1.0)  # traffic flows on the new fleet for a while
                steps.append((name, time.monotonic() - started, _requests_so_far(clients) - before))

            # 1. a route's weights, by `homestack reload`
            fleet_file.write_text(_fleet(weights="{a: 1, b: 0}"))
            step("route weights (homestack reload)",
                 lambda: gw.cli("reload", "--url", gw.url).stdout.startswith("reloaded "))
            routed_after = Counter(clients.served)
            # 2. a changed model, by SIGHUP
            fleet_file.write_text(_fleet(weights="{a: 1, b: 0}", c_extra=", max_concurrency: 2"))

            def hangup() -> None:
                gw.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: gw.running().get("c", {}).get("pid") not in (None, pids["c"]), 30,
                           message="c restarted with its new settings")
            step("changed model (SIGHUP)", hangup)
            # 3. a removed model, by POST /admin/reload
            fleet_file.write_text(_fleet(weights="{a: 1, b: 0}", c_extra=", max_concurrency: 2", with_d=False))
            step("removed model (POST /admin/reload)",
                 lambda: httpx.post(gw.url + "/admin/reload", timeout=60).raise_for_status())
            # An invalid edit: refused, naming file and key; the running fleet serves on.
            fleet_file.write_text(_fleet(route_extra=", fallbacks: [gone]"))
            refused = gw.cli("reload", "--url", gw.url, check=False)
            time.sleep(0.5)
        assert clients.failures == [], clients.failures[:5]
        running = gw.running(all=True)
        assert running["a"]["pid"] == pids["a"] and running["b"]["pid"] == pids["b"]  # untouched
        assert running["c"]["pid"] != pids["c"] and running["c"]["limit"] == 2  # restarted, new settings
        assert "d" not in running and pids["d"] is not None
        assert routed_after["b"] > 0 and clients.served["b"] == routed_after["b"]  # weight 0: no more traffic
        assert refused.returncode == 1
        assert f"{fleet_file}: routes.chat.fallbacks.0: unknown target 'gone'" in refused.stderr
        assert "keeps serving" in refused.stderr
        assert "homestack: reloaded" in gw.stderr()
        total = sum(clients.outcomes.values())
        print(f"\nreload under load: {total} streamed requests, {clients.outcomes['failed']} failed, 8 clients")
        for name, seconds, requests in steps:
            print(f"  {name}: {seconds:.2f} s (incl. 1 s of traffic after), {requests} requests meanwhile")
    finally:
        gw.stop()
