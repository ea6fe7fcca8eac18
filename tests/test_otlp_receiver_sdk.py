"""The real OpenTelemetry Python SDK against an agent process: OTLPSpanExporter, OTLPLogExporter and
OTLPMetricExporter (HTTP/protobuf and gRPC) through a TracerProvider, LoggerProvider and MeterProvider,
with their default endpoints (OTEL_EXPORTER_OTLP_ENDPOINT only says where the agent is, as a
deployment would) and the key in OTEL_EXPORTER_OTLP_HEADERS. The agent forwards to a loopback OTLP
collector (tests/support/otlp_receiver.py): the spans arrive with their own ids and attributes, the
log records with their bodies; span metrics count exactly the spans sent. Backpressure: the collector
hangs, the agent's forwarding queue fills, the agent answers 503 + Retry-After / UNAVAILABLE + RetryInfo,
the SDK exporter retries on its own, and every span it was told were accepted arrives. And
@opentelemetry/sdk-node (tests/js/otel_node_app.js) configured by the same variables only, over
http/protobuf, http/json (OTLP JSON, hex ids) and grpc.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import AgentProcess, free_port, wait_until

KEY = "otlp-sdk-key-0123456789abc"
pytestmark = pytest.mark.slow


def exporters(protocol: str) -> tuple[Any, Any, Any]:
    """The SDK's span, log and metric exporters of `protocol`, built with no arguments (defaults + env)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # type: ignore[assignment]
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter, OTLPLogExporter, OTLPMetricExporter


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not re.match(re.escape(name) + r"[{ ]", line):
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Stack:
    def __init__(self, tmp: Path, queue_size: int = 8192):
        self.collector = OtlpReceiver("http/protobuf")
        self.http_port, self.grpc_port = free_port(), free_port()
        self.agent = AgentProcess(tmp, {
            "targets": [], "store": {"driver": "none"},
            "telemetry": {"otlp": {"endpoint": self.collector.endpoint, "timeout": "2s", "queue_size": queue_size,
                                   "export_metrics": False}},
            "otlp_receiver": {"http": {"enabled": True, "listen": f"127.0.0.1:{self.http_port}"},
                              "grpc": {"enabled": True, "listen": f"127.0.0.1:{self.grpc_port}"},
                              "ingest_keys": [KEY]}})

    def endpoint(self, protocol: str) -> str:
        return f"http://127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def stop(self) -> None:
        self.agent.stop()
        self.collector.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    yield stack
    stack.stop()


def point_sdk_at(monkeypatch: pytest.MonkeyPatch, stack: Stack, protocol: str) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", stack.endpoint(protocol))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{KEY}")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_python_sdk_sends_traces_logs_and_metrics_with_its_default_endpoints(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    point_sdk_at(monkeypatch, stack, protocol)
    span_exporter, log_exporter, metric_exporter = exporters(protocol)
    resource = Resource.create({"service.name": "shop", "service.instance.id": "shop-1"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter()))
    tracer = tracer_provider.get_tracer("shop.checkout")
    sent = {}
    for index in range(5):
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER,
                                          attributes={"http.route": "/checkout", "order": index}) as server:
            with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as client:
                if index == 4:
                    client.set_status(Status(StatusCode.ERROR, "deadlock"))
            sent[client.get_span_context().span_id] = client
        sent[server.get_span_context().span_id] = server
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter()))
    logger = logging.getLogger(f"shop.{protocol}")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=logger_provider))
    logger.warning("stock low for %s", "sku-1")
    logger.error("payment declined")
    meter_provider = MeterProvider(resource=resource, metric_readers=[
        PeriodicExportingMetricReader(metric_exporter(), export_interval_millis=60_000)])
    meter_provider.get_meter("shop").create_counter("orders", unit="1").add(3, {"country": "fr"})
    meter_provider.force_flush()
    for provider in (tracer_provider, logger_provider, meter_provider):
        provider.shutdown()

    collector = stack.collector
    wait_until(lambda: len(collector.spans()) >= 10, 20, what="the forwarded spans")
    got = {int.from_bytes(s.span_id, "big"): s for s in collector.spans()}
    assert set(got) == set(sent)
    for span_id, span in sent.items():
        forwarded = got[span_id]
        assert int.from_bytes(forwarded.trace_id, "big") == span.get_span_context().trace_id
        assert forwarded.name == span.name
        assert {a.key: a.value for a in forwarded.attributes}.keys() == dict(span.attributes or {}).keys()
    orders = sorted({a.key: a.value.int_value for a in s.attributes}["order"] for s in got.values()
                    if s.name == "POST /checkout")
    assert orders == [0, 1, 2, 3, 4]
    resource_keys = {a.key: a.value.string_value for request in collector.accepted("traces")
                     for rs in request.resource_spans for a in rs.resource.attributes}
    assert resource_keys["service.name"] == "shop" and resource_keys["service.instance.id"] == "shop-1"
    wait_until(lambda: len(collector.log_records()) >= 2, 20, what="the forwarded log records")
    assert sorted(r.body.string_value for r in collector.log_records()) == ["payment declined", "stock low for sku-1"]

    transport = "grpc" if protocol == "grpc" else "http"
    text = wait_until(lambda: (t := stack.agent.metrics()) and
                      value(t, "loom_agent_otlp_received_metric_points_total", transport=transport) > 0 and t,
                      10, what="the metric points counted")
    assert value(text, "loom_agent_otlp_received_spans_total", transport=transport) == 10
    assert value(text, "loom_agent_otlp_received_log_records_total", transport=transport) == 2
    assert value(text, "loom_span_calls_total", service_name="shop", span_name="POST /checkout",
                 span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET") == 5
    assert value(text, "loom_span_calls_total", service_name="shop", span_name="SELECT orders",
                 span_kind="SPAN_KIND_CLIENT", status_code="STATUS_CODE_ERROR") == 1
    assert value(text, "loom_span_duration_seconds_count", service_name="shop") == 10
    assert value(text, "loom_otlp_log_records_total", service_name="shop", severity="warn") == 1
    assert value(text, "loom_otlp_log_records_total", service_name="shop", severity="error") == 1
    assert value(text, "loom_agent_otlp_refused_requests_total") == 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_hung_destination_makes_the_sdk_retry_and_nothing_acknowledged_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    stack = Stack(tmp_path, queue_size=64)
    try:
        point_sdk_at(monkeypatch, stack, protocol)
        span_exporter = exporters(protocol)[0](timeout=60)
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        tracer = provider.get_tracer("t")

        def batch(prefix: str) -> list[Any]:
            spans = []
            for index in range(40):
                with tracer.start_as_current_span(f"{prefix}{index}") as span:
                    spans.append(span)
            return spans

        stack.collector.hang()
        first = batch("a")
        assert span_exporter.export(first) is SpanExportResult.SUCCESS
        wait_until(lambda: stack.collector.attempts("traces") >= 1, 20, what="the first forward, hung")
        second = batch("b")
        assert span_exporter.export(second) is SpanExportResult.SUCCESS       # 40 of the queue's 64
        third, outcome = batch("c"), []
        sender = threading.Thread(target=lambda: outcome.append(span_exporter.export(third)), daemon=True)
        sender.start()                   # refused (the queue is full): the SDK retries on its own
        wait_until(lambda: value(stack.agent.metrics(), "loom_agent_otlp_refused_requests_total",
                                 signal="traces", reason="queue_full") >= 1, 20, what="a queue_full refusal")
        stack.collector.answer_ok()
        sender.join(60)
        assert outcome == [SpanExportResult.SUCCESS]
        wanted = {s.get_span_context().span_id for s in first + second + third}
        wait_until(lambda: wanted <= {int.from_bytes(s.span_id, "big") for s in stack.collector.spans()}, 30,
                   what="every acknowledged span at the collector")
        text = stack.agent.metrics()
        assert value(text, "loom_span_calls_total", service_name="shop") == 120        # retries counted once
        assert value(text, "loom_agent_export_dropped_total", signal="traces") == 0
        span_exporter.shutdown()
    finally:
        stack.stop()


NODE = shutil.which("node")
JS = Path(__file__).resolve().parent / "js"


@pytest.mark.skipif(NODE is None or not (JS / "node_modules" / "@opentelemetry" / "sdk-node").is_dir(),
                    reason="node and tests/js's packages are installed by scripts/test.sh")
@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json", "grpc"])
def test_the_node_sdk_sends_traces_logs_and_metrics(stack: Stack, tmp_path: Path, protocol: str) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": stack.endpoint(protocol),
           "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {KEY}",
           "OTEL_SERVICE_NAME": "basket", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
           "OTEL_LOGS_EXPORTER": "otlp", "OTEL_NODE_RESOURCE_DETECTORS": "env"}
    proc = subprocess.run([str(NODE), "otel_node_app.js"], cwd=JS, env=env, capture_output=True, timeout=90)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    sent = json.loads(proc.stdout.decode().strip().splitlines()[-1])["spans"]
    collector = stack.collector
    wait_until(lambda: len(collector.spans()) >= len(sent), 20, what="the node SDK's spans")
    got = {(s.trace_id.hex(), s.span_id.hex()): s for s in collector.spans()}
    assert set(got) == {(s["traceId"], s["spanId"]) for s in sent}
    assert {got[(s["traceId"], s["spanId"])].name for s in sent} == {"GET /basket", "redis GET"}
    server = next(s for s in got.values() if s.name == "GET /basket")
    assert {a.key: a.value.string_value for a in server.attributes}["http.route"] == "/basket"
    wait_until(lambda: len(collector.log_records()) >= 2, 20, what="the node SDK's log records")
    assert sorted(r.body.string_value for r in collector.log_records()) == ["basket viewed", "redis timeout"]
    transport = "grpc" if protocol == "grpc" else "http"
    text = wait_until(lambda: (t := stack.agent.metrics()) and
                      value(t, "loom_agent_otlp_received_metric_points_total", transport=transport) > 0 and t,
                      10, what="the node SDK's metric points")
    assert value(text, "loom_span_calls_total", service_name="basket", span_name="GET /basket",
                 span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_UNSET") == 3
    assert value(text, "loom_span_calls_total", service_name="basket", span_name="redis GET",
                 span_kind="SPAN_KIND_CLIENT", status_code="STATUS_CODE_ERROR") == 3
    assert value(text, "loom_otlp_log_records_total", service_name="basket", severity="error") == 1
    assert value(text, "loom_agent_otlp_refused_requests_total") == 0


def test_sigterm_with_the_receiver_busy_and_the_destination_hung_exits_cleanly(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The listeners stop before the export (agent/app/root.py _lifetimes) and the export gives up on the hung
    destination within its budget: exit 0, what was left counted as dropped."""
    stack = Stack(tmp_path)
    try:
        point_sdk_at(monkeypatch, stack, "grpc")
        exporter = exporters("grpc")[0](timeout=5)
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        spans = []
        for index in range(20):
            with provider.get_tracer("t").start_as_current_span(f"s{index}") as span:
                spans.append(span)
        stack.collector.hang()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        wait_until(lambda: stack.collector.attempts("traces") >= 1, 20, what="the forward, hung")
        assert stack.agent.stop(timeout=10) == 0
        assert "Traceback" not in stack.agent.log()
        exporter.shutdown()
    finally:
        stack.stop()
