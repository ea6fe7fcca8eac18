"""OpenTelemetry plumbing for the agent's own signals: the resource, the TracerProvider, and the
SDK's OTLP exporters (HTTP/protobuf or gRPC) for traces and metrics.

The TracerProvider always exists, so spans are created with the SDK whether or not they are
exported; `agent/otlp/export.py` attaches its bounded span queue to it and drives both exporters.
An exporter exists when `telemetry.otlp.endpoint` or the standard variables name an endpoint
(OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT) and its signal is
enabled. Values the config leaves unset (endpoint, headers) are read from the environment by the
SDK exporters themselves. Traces over HTTP/protobuf go through `DirectSpanExporter`: the SDK's
exporter with its request body written by agent/otlp/span_encoding.py (~5x cheaper per span);
gRPC traces stay on the SDK's own exporter and encoder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agent import __version__
from agent.otlp.config import TelemetryConfig
from agent.otlp.forward import Encoded
from agent.otlp.logs import DirectLogExporter, grpc_log_exporter
from agent.otlp.span_encoding import encode_spans

log = logging.getLogger("agent.otlp")

Signal = Literal["traces", "metrics", "logs"]
# data points per metrics request: a collector's gRPC receiver accepts 4 MiB messages by default,
# and 5,000 histogram points with a dozen buckets stay near 1.3 MB (counters: ~0.3 MB)
METRIC_POINTS_PER_REQUEST = 5000


class DirectSpanExporter(HttpSpanExporter):
    """The SDK's OTLP/HTTP span exporter, posting the bytes of agent/otlp/span_encoding.py.

    Everything but the encoding is the SDK's: its HTTP client (session, headers, timeout,
    compression, retries with backoff), request size limit and exporter metrics. `export` repeats
    the SDK's own `export` (1.45) around them; if a future SDK lacks these parts, the SDK's
    `export` (and encoder) is used, with a warning."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._direct = all(hasattr(self, part) for part in ("_client", "_metrics", "_max_request_size", "_shutdown"))
        if not self._direct:
            log.warning("this opentelemetry-exporter-otlp-proto-http differs from 1.45: spans use its own encoder")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._direct or self._shutdown:
            return super().export(spans)
        with self._metrics.export_operation(len(spans)) as result:
            try:
                body = encode_spans(spans)
            except Exception as error:  # a batch that cannot be encoded is a failed export
                log.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if 0 < self._max_request_size < len(body):
                log.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                            len(body), self._max_request_size)
                result.error = ValueError(f"span request of {len(body)} bytes exceeds max_request_size")
                return SpanExportResult.FAILURE
            sent = self._client.export(body)
            if not sent.success:
                result.error = sent.error
                result.error_attrs = {"http.response.status_code": sent.status_code} \
                    if sent.status_code is not None else None
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def export_encoded(self, batch: Encoded) -> bool:
        """Post an already serialized request (spans the OTLP receiver forwards, agent/otlp/forward.py)."""
        if not self._direct or self._shutdown:
            return False
        if 0 < self._max_request_size < len(batch.body):
            log.warning("Dropping forwarded span batch: %d bytes exceed max_request_size %d bytes.",
                        len(batch.body), self._max_request_size)
            return False
        with self._metrics.export_operation(batch.count) as result:
            sent = self._client.export(batch.body)
            if not sent.success:
                result.error = sent.error
                return False
        return True


def grpc_span_exporter(**kwargs: Any) -> SpanExporter:
    """The SDK's gRPC span exporter; `export_encoded` sends a forwarded request's bytes through it."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    class ForwardingGrpcSpanExporter(GrpcExporter):
        def _translate_data(self, data: Any) -> ExportTraceServiceRequest:
            if isinstance(data, Encoded):
                return ExportTraceServiceRequest.FromString(data.body)
            return super()._translate_data(data)

        def export_encoded(self, batch: Encoded) -> bool:
            return self._export(batch) is SpanExportResult.SUCCESS  # type: ignore[arg-type]

    return ForwardingGrpcSpanExporter(**kwargs)


def build_resource(config: TelemetryConfig) -> Resource:
    """service.name/version, merged with OTEL_RESOURCE_ATTRIBUTES by the SDK."""
    return Resource.create({"service.name": config.service_name, "service.version": __version__})


def build_tracer_provider(config: TelemetryConfig) -> TracerProvider:
    """A provider without processors: OtlpExport adds its span queue when traces are exported."""
    return TracerProvider(resource=build_resource(config))


def otlp_protocol(config: TelemetryConfig, environ: Mapping[str, str], signal: Signal = "traces") -> str:
    return (config.otlp.protocol or environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")


def export_enabled(config: TelemetryConfig, environ: Mapping[str, str], signal: Signal) -> bool:
    wanted = {"traces": config.otlp.export_traces, "metrics": config.otlp.export_metrics,
              "logs": config.otlp.export_logs}[signal]
    env_endpoint = (environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
                    or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    return wanted and bool(config.otlp.endpoint or env_endpoint)


def http_endpoint(config: TelemetryConfig, signal: Signal) -> str | None:
    """The config's base URL with /v1/<signal> appended; None lets the SDK read the environment."""
    endpoint = config.otlp.endpoint
    if not endpoint:
        return None
    path = f"/v1/{signal}"
    return endpoint if endpoint.rstrip("/").endswith(path) else endpoint.rstrip("/") + path


def build_span_exporter(config: TelemetryConfig, environ: Mapping[str, str] = os.environ) -> SpanExporter | None:
    if not export_enabled(config, environ, "traces"):
        return None
    otlp = config.otlp
    headers = dict(otlp.headers) or None
    if otlp_protocol(config, environ, "traces") == "grpc":
        return grpc_span_exporter(endpoint=otlp.endpoint, headers=headers, timeout=otlp.timeout,
                                  insecure=otlp.insecure if otlp.endpoint else None)
    return DirectSpanExporter(endpoint=http_endpoint(config, "traces"), headers=headers, timeout=otlp.timeout)


def build_log_exporter(config: TelemetryConfig, environ: Mapping[str, str] = os.environ) -> Any | None:
    """The exporter of the log records the agent relays (agent/otlp/logs.py); None when not exported."""
    if not export_enabled(config, environ, "logs"):
        return None
    otlp = config.otlp
    headers = dict(otlp.headers) or None
    if otlp_protocol(config, environ, "logs") == "grpc":
        return grpc_log_exporter(endpoint=otlp.endpoint, headers=headers, timeout=otlp.timeout,
                                 insecure=otlp.insecure if otlp.endpoint else None)
    return DirectLogExporter(endpoint=http_endpoint(config, "logs"), headers=headers, timeout=otlp.timeout)


def build_metric_exporter(config: TelemetryConfig, environ: Mapping[str, str] = os.environ) -> MetricExporter | None:
    if not export_enabled(config, environ, "metrics"):
        return None
    otlp = config.otlp
    headers = dict(otlp.headers) or None
    if otlp_protocol(config, environ, "metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return GrpcExporter(endpoint=otlp.endpoint, headers=headers, timeout=otlp.timeout,
                            insecure=otlp.insecure if otlp.endpoint else None,
                            max_export_batch_size=METRIC_POINTS_PER_REQUEST)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(endpoint=http_endpoint(config, "metrics"), headers=headers, timeout=otlp.timeout,
                        max_export_batch_size=METRIC_POINTS_PER_REQUEST)
