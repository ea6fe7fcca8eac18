"""The one path every validated event takes: metrics, then spans (privacy and storage join here).

`EventPipeline` is rebuilt on config reload around the same MetricStore, so counters survive a
reload while mapping rules change.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.events.config import EventsConfig
from agent.events.limits import Limits
from agent.events.mapping import EventMetrics
from agent.events.model import Event
from agent.events.spans import EventSpans
from agent.metricstore import MetricStore


def limits_of(config: EventsConfig) -> Limits:
    return Limits(max_batch=config.max_batch, max_future_skew=config.max_future_skew,
                  max_past_age=config.max_past_age, strict=config.strict)


class EventPipeline:
    def __init__(self, config: EventsConfig, store: MetricStore, spans: EventSpans | None):
        self.config = config
        self.limits = limits_of(config)
        self.store = store
        self.metrics = EventMetrics(store, config)     # raises ValueError on a metric/label conflict
        self.spans = spans
        self._batches = store.histogram(
            "loom_agent_ingest_batch_size", "Events per accepted ingest request.", ("api",),
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000), unit="",
            allow={"api": frozenset({"events", "posthog"})})
        self._rejected = store.counter(
            "loom_agent_ingest_rejected", "Ingest requests rejected, by API and reason.", ("api", "reason"),
            allow={"api": frozenset({"events", "posthog"}),
                   "reason": frozenset({"invalid", "auth", "too_large", "malformed"})})

    def prepare(self, config: EventsConfig):
        """Compile `config` against the live store; returns the function that switches to it.
        Raises ValueError (naming the metric) when a mapping rule conflicts with a live family."""
        metrics = EventMetrics(self.store, config)

        def commit() -> None:
            self.config, self.limits, self.metrics = config, limits_of(config), metrics
        return commit

    def ingest(self, events: Iterable[Event], api: str) -> int:
        """Process validated events; returns how many were accepted (all of them, today)."""
        apply, spans = self.metrics.apply, self.spans
        count = 0
        for event in events:
            if apply(event) and spans is not None:     # a mapping rule may drop the event
                spans.handle(event)
            count += 1
        self._batches.observe((api,), count)
        return count

    def rejected(self, api: str, reason: str) -> None:
        self._rejected.inc((api, reason))
