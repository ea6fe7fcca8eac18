"""Span metrics as the collector's spanmetrics connector makes them, in Prometheus' conventions.

- `loom_span_calls_total{service_name, span_name, span_kind, status_code}`: every received span;
  errors are the calls with status_code="STATUS_CODE_ERROR" (a counter, no exemplars).
- `loom_span_duration_seconds{service_name, span_name, span_kind, status_code}`: end - start, in
  seconds (the connector's `duration` in its newer unit), buckets from `span_metrics.buckets`
  (default: the connector's 2ms ... 15s).

Label values are the connector's: `span_kind` is the enum name (SPAN_KIND_SERVER, ...), `status_code`
STATUS_CODE_UNSET / STATUS_CODE_OK / STATUS_CODE_ERROR; a number outside the enum is `other`.

Bounds: span names are the application's and can be unbounded (a URL per request), so each service
keeps at most `max_span_names` distinct names (later ones count as span_name="other") and at most
`max_services` services are told apart (later ones: service_name="other"), each fold counted in
loom_agent_label_overflow_total{metric,label}; both families also have the store's series limit
(`series_limit`). A value longer than 128 characters is cut by the store.
"""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.metrics.store import OTHER, MetricStore
from agent.receiver.config import SpanMetricsConfig
from agent.receiver.spans import Groups

CALLS = "loom_span_calls"
DURATION = "loom_span_duration_seconds"
LABELS = ("service_name", "span_name", "span_kind", "status_code")
KINDS = {number: name for name, number in Span.SpanKind.items()}
STATUS_CODES = {number: name for name, number in Status.StatusCode.items()}


class SpanMetrics:
    def __init__(self, store: MetricStore, config: SpanMetricsConfig):
        self._store = store
        allow = {"span_kind": set(KINDS.values()) | {OTHER}, "status_code": set(STATUS_CODES.values()) | {OTHER}}
        self.calls = store.counter(CALLS, "Spans received over OTLP, by service, span name, kind and status code "
                                   "(the spanmetrics connector's calls; errors: status_code=\"STATUS_CODE_ERROR\").",
                                   LABELS, series_limit=config.series_limit, allow=allow)
        self.duration = store.histogram(DURATION, "Duration of the spans received over OTLP (end - start).",
                                        LABELS, buckets=config.buckets, unit="seconds",
                                        series_limit=config.series_limit, allow=allow)
        self.max_span_names, self.max_services = config.max_span_names, config.max_services
        self._names: dict[str, set[str]] = {}          # service -> span names told apart

    def reconfigure(self, config: SpanMetricsConfig) -> None:
        """The limits (a reload): lowering one keeps the names already seen, folds new ones."""
        self.calls.series_limit = self.duration.series_limit = config.series_limit
        self.max_span_names, self.max_services = config.max_span_names, config.max_services

    def record(self, groups: Groups) -> None:
        calls, duration = self.calls, self.duration
        for (service, name, kind, code), durations in groups.items():
            key = (*self._bounded(service, name), KINDS.get(kind, OTHER), STATUS_CODES.get(code, OTHER))
            calls.inc(key, len(durations))
            for seconds in durations:
                duration.observe(key, seconds)

    def _bounded(self, service: str, name: str) -> tuple[str, str]:
        names = self._names.get(service)
        if names is None:
            if len(self._names) >= self.max_services:
                self._fold("service_name")
                service = OTHER
                names = self._names.setdefault(OTHER, set())
            else:
                names = self._names[service] = set()
        if name not in names:
            if len(names) >= self.max_span_names:
                self._fold("span_name")
                return service, OTHER
            names.add(name)
        return service, name

    def _fold(self, label: str) -> None:
        overflow = self._store.overflow
        key = (CALLS, label)
        overflow[key] = overflow.get(key, 0) + 1
