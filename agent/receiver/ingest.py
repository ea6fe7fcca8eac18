"""What the OTLP receiver does with one export request, whatever the transport (http.py, grpc_server.py).

Traces: the spans are checked (agent/receiver/spans.py), the valid ones queued for forwarding as
bytes (agent/otlp/forward.py: the received body itself when nothing was taken out of it) and summed
into span metrics; logs the same way with their counts (logs.py); metric points go to the Prometheus
series (prom_series.py, helper module of this package). The order makes a refusal clean: a request
whose items do not fit in the forwarding queue is refused whole (`Refused("queue_full")`, HTTP 503
with Retry-After, gRPC UNAVAILABLE with RetryInfo) before anything of it is counted, so the SDK's
retry neither duplicates span metrics nor loses what was acknowledged.

When a signal has no OTLP destination (telemetry.otlp), its queue is None: the items are accepted,
counted in span metrics / log counts and in loom_agent_otlp_not_forwarded_total{signal}.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.metrics.store import MetricStore
from agent.otlp.forward import EncodedQueue
from agent.receiver.config import ReceiverConfig
from agent.receiver.logs import LogCounts
from agent.receiver.span_metrics import SpanMetrics
from agent.receiver.spans import read_spans
from agent.receiver.stats import ReceiverStats

RETRY_AFTER_SECONDS = 1            # what a refused sender is told to wait (HTTP Retry-After, gRPC RetryInfo)


class Consumed(Protocol):
    @property
    def accepted(self) -> int: ...

    @property
    def rejected(self) -> int: ...

    @property
    def message(self) -> str: ...


class MetricSeries(Protocol):
    """agent/receiver/prom_series.py OtlpMetricSeries, as the receiver uses it."""

    def consume(self, request: ExportMetricsServiceRequest) -> Consumed: ...

    def reconfigure(self, *, max_series: int, stale_after: float) -> None: ...


class Refused(Exception):
    """A request refused whole; `reason` is a loom_agent_otlp_refused_requests_total reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message

    @property
    def retryable(self) -> bool:
        return self.reason in ("queue_full", "unavailable")


@dataclass(frozen=True, slots=True)
class Answer:
    """A request accepted; `rejected` items of it were refused (partial_success), `message` says why."""

    rejected: int = 0
    message: str = ""


def keys_match(presented: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every key (as agent/api/auth.py token_matches)."""
    if presented is None:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of X-Loom-Api-Key."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return api_key


class OtlpIngest:
    def __init__(self, config: ReceiverConfig, ingest_keys: tuple[str, ...], store: MetricStore, *,
                 metric_series: MetricSeries | None, traces: EncodedQueue | None, logs: EncodedQueue | None):
        self.config = config
        self.keys = config.keys(ingest_keys)
        self.stats = ReceiverStats()
        self.span_metrics = SpanMetrics(store, config.span_metrics) if config.span_metrics.enabled else None
        self.log_counts = LogCounts(store, config.span_metrics.max_services)
        self.metric_series = metric_series
        self.forward_traces, self.forward_logs = traces, logs
        self.ports: dict[str, int] = {}            # transport -> the port its listener bound (for port 0)

    def prepare(self, config: Any) -> Callable[[], None]:
        """Reloadable (bound to the whole Config): the keys (events.api_keys or otlp_receiver.ingest_keys), the
        span-metric limits and the metric series' stale_after / max_series."""
        receiver: ReceiverConfig = config.otlp_receiver

        def commit() -> None:
            self.config = receiver
            self.keys = receiver.keys(config.events.api_keys)
            if self.span_metrics is not None:
                self.span_metrics.reconfigure(receiver.span_metrics)
            self.log_counts.max_services = receiver.span_metrics.max_services
            if self.metric_series is not None:
                self.metric_series.reconfigure(max_series=receiver.metrics.max_series,
                                               stale_after=receiver.metrics.stale_after)
        return commit

    def authorize(self, signal: str, presented: str | None) -> None:
        if self.keys and not keys_match(presented, self.keys):
            self.stats.refuse_request(signal, "unauthorized")
            raise Refused("unauthorized", "a valid ingest key is required (Authorization: Bearer <key>)")

    def refuse(self, signal: str, reason: str, message: str) -> Refused:
        """Count a refusal found by a transport (a body that does not decode, ...) and return it to raise."""
        self.stats.refuse_request(signal, reason)
        return Refused(reason, message)

    def _queue(self, signal: str, queue: EncodedQueue | None, request: Any, body: bytes | None,
               accepted: int, rejected: int) -> None:
        if not accepted:
            return
        if queue is None:
            self.stats.not_forwarded[signal] += accepted
            return
        chunk = body if body is not None and not rejected else request.SerializeToString()
        if not queue.put(chunk, accepted):
            reason = "queue_full" if queue.fits(0, 0) else "unavailable"
            self.stats.refuse_request(signal, reason)
            self.stats.refuse_items(signal, reason, accepted + rejected)
            raise Refused(reason, f"the agent's {signal} export queue is full; retry later" if reason == "queue_full"
                          else "the agent is shutting down")

    def traces(self, request: ExportTraceServiceRequest, body: bytes | None, transport: str) -> Answer:
        """`body`: the request's protobuf bytes when it came as such (forwarded as they are)."""
        read = read_spans(request, group=self.span_metrics is not None)
        self._queue("traces", self.forward_traces, request, body, read.accepted, read.rejected)
        self.stats.received[("traces", transport)] += read.accepted + read.rejected
        self.stats.refuse_items("traces", "invalid_item", read.rejected)
        if self.span_metrics is not None:
            self.span_metrics.record(read.groups)
        return Answer(read.rejected, read.message)

    def logs(self, request: ExportLogsServiceRequest, body: bytes | None, transport: str) -> Answer:
        read, counts = self.log_counts.read(request)
        self._queue("logs", self.forward_logs, request, body, read.accepted, read.rejected)
        self.stats.received[("logs", transport)] += read.accepted + read.rejected
        self.stats.refuse_items("logs", "invalid_item", read.rejected)
        self.log_counts.count(counts)
        return Answer(read.rejected, read.message)

    def metrics(self, request: ExportMetricsServiceRequest, transport: str) -> Answer:
        if self.metric_series is None:
            raise self.refuse("metrics", "unavailable", "metric points are not received by this agent")
        consumed = self.metric_series.consume(request)
        self.stats.received[("metrics", transport)] += consumed.accepted + consumed.rejected
        self.stats.refuse_items("metrics", "metric_refused", consumed.rejected)
        return Answer(consumed.rejected, consumed.message)
