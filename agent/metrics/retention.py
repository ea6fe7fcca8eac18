"""loom_agent_retention_*: what the retention clean-up deleted, and when it last ran."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.store.config import CLASSES


class RetentionMetrics:
    """loom_agent_retention_* on the registry given (never the global one)."""

    def __init__(self, registry: CollectorRegistry):
        self.deleted = Counter("loom_agent_retention_deleted_rows", "Rows deleted by the retention clean-up, "
                               "by class of data.", ["class"], registry=registry)
        self.runs = Counter("loom_agent_retention_runs", "Retention clean-up runs, by result (success or "
                            "failure: the store refused a batch).", ["result"], registry=registry)
        self.last_run = Gauge("loom_agent_retention_last_run_timestamp_seconds",
                              "When the last successful retention clean-up finished, as unix seconds.",
                              registry=registry)
        self.duration = Gauge("loom_agent_retention_run_duration_seconds",
                              "How long the last retention clean-up took.", registry=registry)
        for name in CLASSES:
            self.deleted.labels(name)
        for result in ("success", "failure"):
            self.runs.labels(result)
