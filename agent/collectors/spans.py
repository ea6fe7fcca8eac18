"""One OpenTelemetry span per probe, built from its result after the fact.

The span covers the probe (explicit start and end times); each phase is a span event at the
instant the phase ended, with its duration, so a trace view shows where the time went without
the cost of a child span per phase on every probe.
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from agent.collectors.base import ProbeResult, ProbeTarget


def emit_probe_span(tracer: Tracer, target: ProbeTarget, result: ProbeResult, start_unix: float,
                    attempts: int) -> None:
    start_ns = int(start_unix * 1e9)
    attributes: dict[str, AttributeValue] = {
        "loom.probe.target": target.name,
        "loom.probe.kind": target.kind,
        "loom.probe.success": result.success,
        "loom.probe.attempts": attempts,
    }
    if target.url:
        attributes["url.full"] = target.url
    if target.address:
        attributes["server.address"] = target.address
    if result.status_code is not None:
        attributes["http.response.status_code"] = result.status_code
    if result.grpc_status_code is not None:
        attributes["rpc.grpc.status_code"] = result.grpc_status_code
    if result.addresses:            # all_addresses: how many of the host's addresses were probed, and failed
        attributes["loom.probe.addresses"] = len(result.addresses)
        attributes["loom.probe.addresses_failed"] = sum(not ok for _, ok in result.addresses)
    if result.reason is not None:
        attributes["error.type"] = result.reason_value
    span = tracer.start_span(f"probe {target.kind}", kind=SpanKind.CLIENT, start_time=start_ns,
                             attributes=attributes)
    offset = start_ns
    for phase, seconds in result.phases.items():
        offset += int(seconds * 1e9)
        span.add_event(f"phase.{phase}", {"loom.probe.phase.duration_s": seconds}, timestamp=offset)
    if not result.success:
        span.set_status(Status(StatusCode.ERROR, result.detail or result.reason_value))
    span.end(end_time=start_ns + int(result.duration_seconds * 1e9))
