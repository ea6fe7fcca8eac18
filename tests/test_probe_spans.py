"""Each probe is an OpenTelemetry span: unit-level with the SDK, and exported over OTLP by the agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.collectors.spans import emit_probe_span
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import AgentProcess, free_port, loopback_http_server, wait_until


def test_span_has_phases_as_events_and_error_status() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    target = ProbeTarget("api", "http", "http://127.0.0.1:1/", None, 15, 5, 0, {}, None)
    result = ProbeResult(False, 0.25, Reason.STATUS, "status 503", phases={"resolve": 0.01, "connect": 0.04},
                         status_code=503)
    emit_probe_span(provider.get_tracer("t"), target, result, 1_700_000_000.0, attempts=2)
    (span,) = exporter.get_finished_spans()
    assert span.name == "probe http"
    assert span.end_time - span.start_time == 250_000_000
    assert [e.name for e in span.events] == ["phase.resolve", "phase.connect"]
    assert span.events[1].timestamp - span.start_time == 50_000_000
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "status"
    assert span.attributes["http.response.status_code"] == 503
    assert span.attributes["loom.probe.attempts"] == 2


def test_grpc_status_and_addresses_are_attributes() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    target = ProbeTarget("svc", "grpc", None, "svc.internal:50051", 15, 5, 0, {}, None)
    result = ProbeResult(False, 0.01, Reason.STATUS, "service '' is NOT_SERVING", grpc_status_code=0,
                         addresses=(("10.0.0.1", True), ("10.0.0.2", False), ("10.0.0.3", False)))
    emit_probe_span(provider.get_tracer("t"), target, result, 1_700_000_000.0, attempts=1)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert (span.attributes["loom.probe.addresses"], span.attributes["loom.probe.addresses_failed"]) == (3, 2)
    assert "http.response.status_code" not in span.attributes


@pytest.mark.slow
def test_agent_exports_probe_spans_over_otlp_http(tmp_path: Path) -> None:
    sink = OtlpReceiver("http/protobuf")
    try:
        with loopback_http_server() as url:
            agent = AgentProcess(tmp_path, {
                "telemetry": {"otlp": {"endpoint": sink.endpoint}},
                "targets": [{"name": "web", "kind": "http", "url": url + "/", "interval": "1s", "timeout": "500ms"},
                            {"name": "dead", "kind": "tcp", "address": f"127.0.0.1:{free_port()}",
                             "interval": "1s", "timeout": "500ms"}]})
            try:
                # spans are flushed in batches every 2 s, and at shutdown
                wait_until(lambda: len({s.name for s in sink.spans()}) == 2, 15, what="spans of both targets")
            finally:
                assert agent.stop() == 0
        by_target = {}
        for span in sink.spans():
            attrs = {a.key: a.value for a in span.attributes}
            by_target[attrs["loom.probe.target"].string_value] = (span, attrs)
        web_span, web_attrs = by_target["web"]
        assert web_span.name == "probe http" and web_attrs["loom.probe.success"].bool_value
        assert {e.name for e in web_span.events} >= {"phase.connect", "phase.processing"}
        dead_span, dead_attrs = by_target["dead"]
        assert dead_attrs["error.type"].string_value == "connect"
        assert dead_span.status.code == 2        # STATUS_CODE_ERROR
    finally:
        sink.stop()
