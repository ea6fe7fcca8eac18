"""The state of the event spans as metrics, read at scrape (and OTLP snapshot) time.

`loom_realtime_connections_open{transport}` counts the connection spans that are open: attempted
or established, not yet disconnected, failed, timed out or evicted. Derived from the spans' own
records, it cannot drift the way a gauge bumped by established/disconnected events would when a
client loses one of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.events.span_connections import _Connection
from agent.events.spans import EventSpans

TRANSPORTS = frozenset({"websocket", "sse", "polling"})


class EventSpanMetrics:
    def __init__(self, spans: EventSpans):
        self._spans = spans

    def collect(self) -> Iterator[Metric]:
        by_transport = Counter(_transport(record) for record in list(self._spans.connections.open.values()))
        active = GaugeMetricFamily("loom_realtime_connections_open",
                                   "Realtime connections open now (attempted or established, not yet closed), "
                                   "by transport.", labels=["transport"])
        for transport in sorted(TRANSPORTS | set(by_transport)):
            active.add_metric([transport], by_transport.get(transport, 0))
        yield active
        counts = self._spans.counts()
        open_spans = GaugeMetricFamily("loom_agent_event_spans_open", "Event spans open now, by kind.",
                                       labels=["kind"])
        families = {name: CounterMetricFamily(metric, text, labels=["kind"]) for name, metric, text in (
            ("timed_out", "loom_agent_event_spans_timed_out", "Event spans ended by the idle timeout."),
            ("evicted", "loom_agent_event_spans_evicted", "Event spans ended early because too many were open."),
            ("late", "loom_agent_event_spans_late", "Events dropped because their span had already ended."),
            ("unkeyed", "loom_agent_event_spans_unkeyed",
             "Events with no usable connection id, user id or trace context."))}
        for kind, values in counts.items():
            open_spans.add_metric([kind], values["open"])
            for name, family in families.items():
                family.add_metric([kind], values.get(name, 0))
        yield open_spans
        yield from families.values()


def _transport(record: _Connection) -> str:
    transport = record.opening.get("transport") if record.opening else None
    return transport if transport in TRANSPORTS else "unknown"
