"""Prometheus metrics of routes and promotions, read at scrape time from the gateway's services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from ..gateway.context import Services

# Every state a route can be in, so a dashboard sees each as 0 or 1.
STATES = ("idle", "starting", "smoke", "eval", "canary", "watch", "finishing")


class PromotionCollector:
    def __init__(self, services: "Services"):
        self.services = services

    def collect(self) -> Iterable[Metric]:
        services, promotions = self.services, self.services.promotions
        weight = GaugeMetricFamily("homestack_route_weight", "A route's weight for each target now (a promotion's "
                                   "canary weights while one runs).", labels=["route", "target"])
        state = GaugeMetricFamily("homestack_promotion_state", "1 for the state of the route's promotion (idle: "
                                  "none running).", labels=["route", "state"])
        share = GaugeMetricFamily("homestack_promotion_candidate_share", "Percent of the route's traffic the "
                                  "candidate of a running promotion gets.", labels=["route", "candidate"])
        rollbacks = CounterMetricFamily("homestack_promotion_rollbacks", "Promotions rolled back, by route and "
                                        "reason (error_rate, ttft, candidate_failed, manual).", labels=["route", "reason"])
        active = promotions.report() if promotions is not None else {}
        for route, spec in services.routes().items():
            for target, w in spec.targets.items():
                weight.add_metric([route, target], w)
            now = active.get(route, {}).get("phase", "idle")
            for name in STATES:
                state.add_metric([route, name], 1.0 if name == now else 0.0)
        for route, info in active.items():
            share.add_metric([route, info["to"]], info["share"])
        if promotions is not None:
            for (route, reason), count in promotions.rollbacks.items():
                rollbacks.add_metric([route, reason], count)
        return [weight, state, share, rollbacks]
