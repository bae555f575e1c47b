"""Counters and histograms cheap enough to update for every request.

prometheus_client takes a lock per increment; these are plain lists updated by
one writer (the request log's thread) under a lock it holds once per batch, and
read under the same lock at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class HistogramSeries:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...], bounds: tuple[float, ...]):
        self.name, self.help, self.labels, self.bounds = name, help_text, labels, bounds
        self._series: dict[tuple[str, ...], list[float]] = {}  # labels -> [bucket counts..., +Inf, sum, count]

    def child(self, *labels: str) -> list[float]:
        """The series for ``labels``; keep it and pass it to ``observe``."""
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = [0] * (len(self.bounds) + 1) + [0.0, 0]
        return found

    def observe(self, child: list[float], value: float) -> None:
        child[bisect_left(self.bounds, value)] += 1  # le: the first bound >= value
        child[-2] += value
        child[-1] += 1

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        for labels, child in self._series.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*map(_le, self.bounds), "+Inf"), child[:-2]):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, child[-2])
        return family


class CounterSeries:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]):
        self.name, self.help, self.labels = name, help_text, labels
        self.counts: dict[tuple[str, ...], int] = {}

    def inc(self, *labels: str) -> None:
        self.counts[labels] = self.counts.get(labels, 0) + 1

    def add(self, amount: int, *labels: str) -> None:
        self.counts[labels] = self.counts.get(labels, 0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for labels, count in self.counts.items():
            family.add_metric(list(labels), count)
        return family


def families(series: Iterable[HistogramSeries | CounterSeries]) -> list[Metric]:
    return [s.family() for s in series]


def _le(bound: float) -> str:
    return repr(float(bound))
