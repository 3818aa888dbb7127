"""The daemon's Prometheus metrics, served as text at GET /metrics.

A registry of our own (not the library's global one), so tests and two daemons in one process
never share counters. Labels are repository names from the config: bounded by it, and
deployment names for schedule errors: bounded by the store.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._reconciles = Counter(
            "reconciler_reconciles",
            "Reconcile attempts, by repository and outcome.",
            ["repo", "outcome"],
            registry=self.registry,
        )
        self._durations = Histogram(
            "reconciler_reconcile_duration_seconds",
            "How long each reconcile attempt took.",
            ["repo"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self._errors = Counter(
            "reconciler_errors",
            "Attempts that ended in Error or Stalled.",
            ["repo"],
            registry=self.registry,
        )
        self._builds = Counter(
            "reconciler_builds",
            "Build and push steps that ran (unchanged steps are not counted).",
            ["repo"],
            registry=self.registry,
        )
        self._schedule_errors = Counter(
            "reconciler_schedule_errors",
            "Scheduler ticks in which a deployment's schedules failed or ran out of time.",
            ["deployment"],
            registry=self.registry,
        )
        self._last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "When the repository was last in sync with the store (Unix time).",
            ["repo"],
            registry=self.registry,
        )

    def register(self, repo: str) -> None:
        """Make the repository's series exist (at zero) before its first attempt."""
        self._errors.labels(repo)
        self._builds.labels(repo)
        self._durations.labels(repo)

    def reconciled(self, repo: str, outcome: str, seconds: float) -> None:
        self._reconciles.labels(repo, outcome).inc()
        self._durations.labels(repo).observe(seconds)

    def error(self, repo: str) -> None:
        self._errors.labels(repo).inc()

    def schedule_error(self, deployment: str) -> None:
        self._schedule_errors.labels(deployment).inc()

    def builds(self, repo: str, count: int) -> None:
        if count:
            self._builds.labels(repo).inc(count)

    def success(self, repo: str) -> None:
        self._last_success.labels(repo).set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)
