"""Sentry's performance data into the agent's outputs: each span of a `transaction`, `span` or
`otel_span` item (parsed by agent/sentry/spans.py) becomes an OpenTelemetry span exported over OTLP
like the agent's own, and each transaction a RED sample:

- `loom_transactions_total{transaction, op, status}` and
  `loom_transaction_duration_seconds{transaction, op}` (buckets from 5 ms to 60 s: web requests and
  background tasks). `status` is a closed set (Sentry's span statuses, `unknown` when unset, else
  `other`); `transaction` and `op` are the application's names, so each family has a series limit
  (SERIES_LIMIT): past it a new name is folded to `other` and counted in
  loom_agent_label_overflow_total. Names of `transaction_info.source` "url" are folded first
  (agent/sentry/spans.py `url_name`). The metrics are counted whether or not traces are exported.
- the spans keep Sentry's trace, span and parent ids (a transaction's parent from an incoming
  `sentry-trace` is remote), its name, op-derived kind, times, and status: "ok" -> OK, anything
  else -> ERROR with the status as description, none -> UNSET. Attributes: `sentry.op`,
  `sentry.description`, `sentry.status`, the span's `data` as they are named (Sentry's data keys
  are OTel's semantic conventions: `db.system`, `http.response.status_code`), tags as
  `sentry.tag.<name>`, all through agent/sentry/otel.py `scrubbed` (no user PII, no query strings,
  the privacy rules). The resource is the application (otel.py `Resources`).

Why ReadableSpans handed to the SpanQueue rather than a tracer: a tracer makes its own span ids,
and the application's ids are the point (its errors' exception spans and other services' spans
hang on them). The queue is the agent's own bounded one (a full queue drops, counted in
loom_agent_export_dropped_total{signal="traces"}) and the spans take the same encoder and sender.
No queue (traces not exported): only the metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from agent.events.privacy import Privacy
from agent.metrics.store import MetricStore
from agent.sentry.otel import Resources, scrub_text, scrubbed, without_query
from agent.sentry.spans import STATUSES, UNKNOWN, SentrySpan, SpanBatch, parse_otel_span, parse_spans, parse_transaction

SERIES_LIMIT = 1000
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SPAN_ITEM_TYPES = frozenset({"transaction", "span", "otel_span"})
_PARSERS: dict[str, Callable[[Any], SpanBatch]] = {"transaction": parse_transaction, "span": parse_spans,
                                                  "otel_span": parse_otel_span}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK, _UNSET = Status(StatusCode.OK), Status(StatusCode.UNSET)


class SentryTransactions:
    """RED metrics of the application's transactions, and its spans into the OTLP span queue."""

    def __init__(self, metrics: MetricStore, privacy: Privacy | None, queue: SpanProcessor | None):
        self.privacy, self.queue = privacy, queue
        self.resources = Resources(privacy)
        self.requests = metrics.counter(
            "loom_transactions", "Transactions the Sentry SDKs reported, by transaction name, op and status.",
            ("transaction", "op", "status"), series_limit=SERIES_LIMIT,
            allow={"status": STATUSES | {UNKNOWN, "other"}})
        self.duration = metrics.histogram(
            "loom_transaction_duration_seconds", "Duration of the transactions the Sentry SDKs reported.",
            ("transaction", "op"), buckets=DURATION_BUCKETS, unit="seconds", series_limit=SERIES_LIMIT)
        self.invalid_spans = 0          # child spans dropped for their shape (the item itself is accepted)

    def record(self, item_type: str, payload: Any) -> int:
        """One item's spans and transactions; returns the spans handed to the queue. Raises ItemError."""
        batch = _PARSERS[item_type](payload)
        self.invalid_spans += batch.invalid
        text = self.privacy.text if self.privacy is not None else str
        for sample in batch.transactions:
            name, op = text(sample.name), text(sample.op)
            self.requests.inc((name, op, sample.status))
            self.duration.observe((name, op), sample.duration)
        queue = self.queue
        if queue is None:
            return 0
        resource, scope = self.resources.get(batch.release, batch.environment, batch.sdk_name, batch.sdk_version)
        for span in batch.spans:
            queue.on_end(self._span(span, resource, scope))
        return len(batch.spans)

    def _span(self, span: SentrySpan, resource: Any, scope: Any) -> ReadableSpan:
        privacy = self.privacy
        attributes: dict[str, Any] = {}
        if span.op:
            attributes["sentry.op"] = scrub_text(span.op, privacy)
        if span.description:
            description = span.description
            if span.op and span.op.startswith("http"):
                description = without_query(description)
            attributes["sentry.description"] = scrub_text(description, privacy)
        if span.status:
            attributes["sentry.status"] = span.status
        attributes.update(scrubbed(span.data, privacy))
        attributes.update(scrubbed(span.tags, privacy, "sentry.tag."))
        name = span.name
        if span.op and span.op.startswith("http") and name == span.description:
            name = without_query(name)
        parent = None
        if span.parent_id is not None:
            parent = SpanContext(span.trace_id, span.parent_id, is_remote=span.parent_remote, trace_flags=_SAMPLED)
        return ReadableSpan(name=scrub_text(name, privacy),
                            context=SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=_SAMPLED),
                            parent=parent, resource=resource, attributes=attributes, kind=span.kind,
                            status=_status(span, privacy), start_time=span.start_ns, end_time=span.end_ns,
                            instrumentation_scope=scope)


def _status(span: SentrySpan, privacy: Privacy | None) -> Status:
    if span.status is None:
        return _UNSET
    if span.status == "ok":
        return _OK
    return Status(StatusCode.ERROR, scrub_text(span.error_message, privacy) if span.error_message else span.status)
