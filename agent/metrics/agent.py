"""The agent's own metrics (`loom_agent_*`), on a registry passed in (never the global one)."""

from __future__ import annotations

import platform
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from agent import __version__

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class SelfMetrics:
    """Instruments the scheduler, the reloader and the HTTP layer update."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("loom_agent_build", "loom-agent version and Python runtime.", registry=registry).info(
            {"version": __version__, "python_version": platform.python_version()})
        self.reload_successful = Gauge(
            "loom_agent_config_last_reload_successful",
            "Whether the last configuration (re)load succeeded (1) or failed (0).", registry=registry)
        self.reload_success_timestamp = Gauge(
            "loom_agent_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully, as unix seconds.", registry=registry)
        self.reloads = Counter("loom_agent_config_reloads", "Configuration reload attempts, by result.",
                               ["result"], registry=registry)
        self.config_loaded()
        self.targets = Gauge("loom_agent_targets", "Configured probe targets, by kind.", ["kind"], registry=registry)
        self.scheduler_lag = Histogram(
            "loom_agent_scheduler_lag_seconds",
            "How late a probe started against its scheduled time (includes waiting for a concurrency slot).",
            buckets=LAG_BUCKETS, registry=registry)
        self.probes_in_flight = Gauge("loom_agent_probes_in_flight", "Probes running now.", registry=registry)
        self.probe_slots_missed = Counter(
            "loom_agent_probe_slots_missed", "Scheduled probe runs skipped because the previous run overran.",
            ["kind"], registry=registry)
        self.probe_internal_errors = Counter(
            "loom_agent_probe_internal_errors", "Probes that ended in an agent bug (exception), by kind.",
            ["kind"], registry=registry)
        self.http_requests = Counter(
            "loom_agent_http_requests", "HTTP requests served, by handler and status code.",
            ["handler", "code"], registry=registry)

    def config_loaded(self) -> None:
        """The configuration in force was loaded successfully (at start, or by a reload)."""
        self.reload_successful.set(1)
        self.reload_success_timestamp.set(time.time())

    def reload_result(self, success: bool) -> None:
        """A reload attempt ended (agent/config/reload.py calls this)."""
        self.reloads.labels("success" if success else "failure").inc()
        if success:
            self.config_loaded()
        else:
            self.reload_successful.set(0)
