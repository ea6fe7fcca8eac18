"""The receiver's own counters (`loom_agent_otlp_*`): plain integers bumped per request, read at scrape time.

Why not prometheus_client counters: a labelled `.inc()` costs ~1.3 µs and takes a lock; these are bumped
once per request (never per item) on the event loop, and `ReceiverStatsCollector` turns them into
families when /metrics is scraped, as agent/otlp/sender.py does for the export counters.

Every label is a closed set: `transport` http|grpc, `signal` traces|metrics|logs, `reason` below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily

SIGNALS = ("traces", "metrics", "logs")
TRANSPORTS = ("http", "grpc")
# why a whole request was refused (HTTP status / gRPC code in docs/otlp-receiver.md)
REQUEST_REASONS = ("unauthorized", "malformed", "too_large", "unsupported_media_type", "timeout", "queue_full",
                   "unavailable")
# why items inside an accepted request were refused (OTLP partial_success)
ITEM_REASONS = ("invalid_item", "metric_refused", "queue_full", "unavailable")
_ITEM_FAMILIES = {"traces": ("loom_agent_otlp_received_spans", "Spans received over OTLP (accepted or refused "
                             "inside an accepted request), by transport."),
                  "metrics": ("loom_agent_otlp_received_metric_points", "Metric data points received over OTLP, "
                              "by transport."),
                  "logs": ("loom_agent_otlp_received_log_records", "Log records received over OTLP, by transport.")}


class ReceiverStats:
    def __init__(self) -> None:
        self.received: dict[tuple[str, str], int] = {(s, t): 0 for s in SIGNALS for t in TRANSPORTS}
        self.refused_requests: dict[tuple[str, str], int] = {}
        self.refused_items: dict[tuple[str, str], int] = {}
        self.not_forwarded: dict[str, int] = {"traces": 0, "logs": 0}

    def refuse_request(self, signal: str, reason: str) -> None:
        key = (signal, reason)
        self.refused_requests[key] = self.refused_requests.get(key, 0) + 1

    def refuse_items(self, signal: str, reason: str, count: int) -> None:
        if count:
            key = (signal, reason)
            self.refused_items[key] = self.refused_items.get(key, 0) + count


class ReceiverStatsCollector:
    def __init__(self, stats: ReceiverStats):
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self._stats
        for signal, (name, help_text) in _ITEM_FAMILIES.items():
            family = CounterMetricFamily(name, help_text, labels=["transport"])
            for transport in TRANSPORTS:
                family.add_metric([transport], stats.received[(signal, transport)])
            yield family
        requests = CounterMetricFamily(
            "loom_agent_otlp_refused_requests", "OTLP export requests refused whole (nothing of them was kept), "
            "by signal and reason.", labels=["signal", "reason"])
        for (signal, reason), count in sorted(stats.refused_requests.items()):
            requests.add_metric([signal, reason], count)
        yield requests
        items = CounterMetricFamily(
            "loom_agent_otlp_refused", "Items (spans, metric points, log records) refused inside accepted OTLP "
            "requests (the answer's partial_success), and the items of requests refused for a full queue, "
            "by signal and reason.", labels=["signal", "reason"])
        for (signal, reason), count in sorted(stats.refused_items.items()):
            items.add_metric([signal, reason], count)
        yield items
        skipped = CounterMetricFamily(
            "loom_agent_otlp_not_forwarded", "Received items accepted but not forwarded because no OTLP "
            "destination is configured for the signal (telemetry.otlp).", labels=["signal"])
        for signal, count in stats.not_forwarded.items():
            skipped.add_metric([signal], count)
        yield skipped
