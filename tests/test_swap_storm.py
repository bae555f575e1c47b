"""The swap storm from the issue, for real: two llama.cpp models, room for one, 200 alternating
requests from 32 clients. Nothing fails, nothing is left running, and swaps stay far below
the number of alternations. bench/swap_storm.py runs the same storm() and prints figures."""

from __future__ import annotations

import sys
import threading

from helpers import TESTS, pid_alive

sys.path.insert(0, str(TESTS.parent / "bench"))
import swap_storm  # noqa: E402


def test_swap_storm_serves_everything_with_few_swaps(gateway_factory, tmp_path):
    budget = swap_storm.one_at_a_time_budget(tmp_path)
    gw = gateway_factory(swap_storm.fleet_yaml(budget, max_wait=3.0, min_residency=1.0))
    together, pids, done = [], set(), threading.Event()

    def watch() -> None:  # the budget holds: never both resident at once
        while not done.is_set():
            running = gw.running()
            together.append(sum(r["state"] != "stopped" for r in running.values()))
            pids.update(r["pid"] for r in running.values() if r["pid"])
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = swap_storm.storm(gw.url, requests=200, clients=32)
    finally:
        done.set()
        watcher.join()
    assert result.statuses.count(200) == 200
    running = gw.running(all=True)
    swaps = sum(r["evictions"] for r in running.values())
    assert 1 <= swaps <= 199 // 5, swaps
    assert max(together) == 1
    gw.stop()
    assert pids and not any(pid_alive(pid) for pid in pids)
