"""Prometheus metrics: request counts, latency, findings per code, FHIR fallback outcomes.

With ``--workers N`` each worker writes to ``$PROMETHEUS_MULTIPROC_DIR`` (set by ``cds serve``) and
``/metrics`` aggregates all of them; otherwise the app's own registry is served.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The service's metrics in one registry per app (tests build several apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cds_hooks_requests",
            "CDS Hooks HTTP requests",
            ["endpoint", "service", "hook", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cds_hooks_request_seconds",
            "Service call latency (seconds)",
            ["service", "hook"],
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.findings = Counter(
            "cds_hooks_findings",
            "Findings returned as cards, by finding code",
            ["code"],
            registry=self.registry,
        )
        self.suppressed = Counter(
            "cds_hooks_cards_suppressed",
            "Cards not shown: overridden with a reason for the same patient, rule version and basis",
            ["service", "code"],
            registry=self.registry,
        )
        self.fhir_fallback = Counter(
            "cds_hooks_fhir_fallback",
            "Service calls that fetched data from the client's FHIR server",
            ["outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The exposition text, aggregated across workers when running multi-process."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
