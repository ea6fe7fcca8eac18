"""The `telemetry:` block: how the agent exports its own OpenTelemetry signals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config.node import Node

PROTOCOLS = ("http/protobuf", "grpc")
MAX_QUEUE_SIZE = 1_000_000
MAX_RETRIES_LIMIT = 20


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    """Empty endpoint: the standard OTEL_EXPORTER_OTLP_* variables decide; none set: no export."""

    endpoint: str | None = None
    protocol: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    insecure: bool = True          # gRPC only: plaintext unless the endpoint is https
    export_metrics: bool = True
    export_traces: bool = True
    export_logs: bool = True        # log records the agent relays (Sentry log items), not its own logging
    metrics_interval: float = 15.0  # how often a cumulative snapshot of every metric is sent
    queue_size: int = 8192          # spans (and log records, apart) waiting for export; full: new ones dropped
    max_retries: int = 5            # re-attempts of a failed batch, with exponential backoff + jitter


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    service_name: str = "loom-agent"
    trace_probes: bool = True          # one span per probe
    otlp: OtlpConfig = field(default_factory=OtlpConfig)


def parse_telemetry(node: Node) -> TelemetryConfig:
    base = TelemetryConfig()
    config = TelemetryConfig(
        service_name=node.str("service_name", base.service_name),
        trace_probes=node.bool("trace_probes", base.trace_probes),
        otlp=_parse_otlp(node.child("otlp"), base.otlp),
    )
    node.finish()
    return config


def _parse_otlp(node: Node, base: OtlpConfig) -> OtlpConfig:
    otlp = OtlpConfig(
        endpoint=node.str("endpoint"),
        protocol=node.str("protocol", choices=PROTOCOLS),
        headers=node.str_map("headers"),
        timeout=node.duration("timeout", base.timeout),
        insecure=node.bool("insecure", base.insecure),
        export_metrics=node.bool("export_metrics", base.export_metrics),
        export_traces=node.bool("export_traces", base.export_traces),
        export_logs=node.bool("export_logs", base.export_logs),
        metrics_interval=node.duration("metrics_interval", base.metrics_interval),
        queue_size=node.int("queue_size", base.queue_size, minimum=1, maximum=MAX_QUEUE_SIZE),
        max_retries=node.int("max_retries", base.max_retries, minimum=0, maximum=MAX_RETRIES_LIMIT),
    )
    if otlp.endpoint is not None and not otlp.endpoint.startswith(("http://", "https://")):
        node.error("must start with http:// or https://", "endpoint")
    node.finish()
    return otlp
