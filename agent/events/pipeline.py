"""The one path every validated event takes: metrics, then spans (privacy and storage join here).

`EventPipeline` is rebuilt on config reload around the same MetricStore, so counters survive a
reload while mapping rules change.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.events.config import EventsConfig
from agent.events.limits import Limits
from agent.events.mapping import TABLE_METRICS, EventMetrics, check_rules, family_shape, rule_shape
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
        """Check `config`'s mapping rules against the live store; returns the function that switches
        to it. Raises ValueError (naming the metric) when a rule conflicts with a catalog family.
        The running rules' own families may change shape or go away: the switch removes them
        (with their series) unless the new config keeps them unchanged, whose counts carry on."""
        owned = frozenset(rule.name for rule in self.config.mappings
                          if rule.name and rule.action != "drop" and rule.name not in TABLE_METRICS)
        check_rules(self.store, config.mappings, owned)
        kept = {rule.name: rule_shape(rule) for rule in config.mappings if rule.name and rule.action != "drop"}

        def commit() -> None:
            for name in owned:
                family = self.store.get(name)
                if family is not None and kept.get(name) != family_shape(family):
                    self.store.remove(name)
            self.config, self.limits = config, limits_of(config)
            self.metrics = EventMetrics(self.store, config)
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
