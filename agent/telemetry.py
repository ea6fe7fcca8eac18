"""OpenTelemetry providers for the agent's own signals (spans now; metrics join with events).

The TracerProvider always exists, so spans are created with the SDK whether or not they are
exported; an OTLP exporter (HTTP/protobuf or gRPC) is attached when `telemetry.otlp.endpoint`
or the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variable names one. The batch processor's
queue is bounded: when the collector is down, spans are dropped, never buffered without end.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from agent import __version__
from agent.telemetry_config import TelemetryConfig

SPAN_QUEUE_SIZE = 8192


def build_tracer_provider(config: TelemetryConfig, environ: Mapping[str, str] = os.environ) -> TracerProvider:
    resource = Resource.create({"service.name": config.service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    exporter = _span_exporter(config, environ)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=SPAN_QUEUE_SIZE))
    return provider


def otlp_protocol(config: TelemetryConfig, environ: Mapping[str, str]) -> str:
    return (config.otlp.protocol or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")


def _span_exporter(config: TelemetryConfig, environ: Mapping[str, str]) -> SpanExporter | None:
    env_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not (config.otlp.endpoint or env_endpoint):
        return None
    headers = dict(config.otlp.headers) or None
    if otlp_protocol(config, environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=config.otlp.endpoint, headers=headers, timeout=config.otlp.timeout,
                            insecure=config.otlp.insecure if config.otlp.endpoint else None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    endpoint = config.otlp.endpoint
    if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint, headers=headers, timeout=config.otlp.timeout)
