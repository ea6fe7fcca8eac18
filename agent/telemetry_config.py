"""The `telemetry:` block: how the agent exports its own OpenTelemetry signals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.schema import Node

PROTOCOLS = ("http/protobuf", "grpc")


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    """Empty endpoint: the standard OTEL_EXPORTER_OTLP_* variables decide; none set: no export."""

    endpoint: str | None = None
    protocol: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    insecure: bool = True     # gRPC only: plaintext unless the endpoint is https


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    service_name: str = "loom-agent"
    trace_probes: bool = True          # one span per probe
    otlp: OtlpConfig = field(default_factory=OtlpConfig)


def parse_telemetry(node: Node) -> TelemetryConfig:
    base = TelemetryConfig()
    otlp_node = node.child("otlp")
    headers = otlp_node.str_map("headers")
    otlp = OtlpConfig(
        endpoint=otlp_node.str("endpoint"),
        protocol=otlp_node.str("protocol", choices=PROTOCOLS),
        headers=headers,
        timeout=otlp_node.duration("timeout", base.otlp.timeout),
        insecure=otlp_node.bool("insecure", base.otlp.insecure),
    )
    if otlp.endpoint is not None and not otlp.endpoint.startswith(("http://", "https://")):
        otlp_node.error("must start with http:// or https://", "endpoint")
    otlp_node.finish()
    config = TelemetryConfig(
        service_name=node.str("service_name", base.service_name),
        trace_probes=node.bool("trace_probes", base.trace_probes),
        otlp=otlp,
    )
    node.finish()
    return config
