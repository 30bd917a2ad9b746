"""Prometheus metrics, in a registry owned by the app (never the global one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lifecycle.domain import RunStatus


class _RunsByStatus(Collector):
    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("lifecycle_runs", "Runs by status", labels=["status"])
        counts = self._counts()
        for status in RunStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


class _HrEventsBySourceAndOutcome(Collector):
    def __init__(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lifecycle_hr_events",
            "HR inbox rows by source and outcome",
            labels=["source", "outcome"],
        )
        for (source, outcome), n in sorted(self._counts().items()):
            family.add_metric([source, outcome], n)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.time_to_revoke = Histogram(
            "lifecycle_time_to_revoke_seconds",
            "HR event receipt to last verified read-back",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600),
            registry=self.registry,
        )
        self.step_attempts = Counter(
            "lifecycle_step_attempts",
            "Connector call attempts",
            ["connector", "action"],
            registry=self.registry,
        )
        self.step_errors = Counter(
            "lifecycle_step_errors",
            "Connector call errors",
            ["connector", "action", "kind"],
            registry=self.registry,
        )
        self._attempts: dict[tuple[str, str], Counter] = {}

    def attempted(self, connector: str, action: str) -> None:
        """Count a connector call attempt (``step_attempts``; the labelled child is kept, as
        ``labels()`` looks it up under a lock on every call)."""
        child = self._attempts.get((connector, action))
        if child is None:
            child = self._attempts[(connector, action)] = self.step_attempts.labels(
                connector, action
            )
        child.inc()

    def watch_runs(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Report ``lifecycle_runs{status}`` from the database at each scrape."""
        self.registry.register(_RunsByStatus(counts))

    def watch_inbox(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Report ``lifecycle_hr_events{source, outcome}`` from the database at each scrape."""
        self.registry.register(_HrEventsBySourceAndOutcome(counts))
