"""The OTLP receiver against requests an SDK would not send: many refused items in one request, refusals
answered in the request's own encoding, AnyValues nested past protobuf's depth limit. The units where a
unit is enough (agent/receiver/spans.py, logs.py), the real served agent for the wire."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agent.api.keys import OTLP_RECEIVER
from agent.metrics.store import MetricStore
from agent.otlp.forward import EncodedQueue
from agent.receiver.config import ReceiverConfig
from agent.receiver.ingest import OtlpIngest, Refused
from agent.receiver.logs import LogCounts
from agent.receiver.prom_series import OtlpMetricSeries
from agent.receiver.spans import DELETE_ONE_BY_ONE, read_spans
from agent.receiver.stats import ITEM_REASONS
from tests.support.agent_app import ServedAgent
from tests.support.procs import ROOT, free_port

KEY = "otlp-hostile-key-0123456789"
Run = Callable[[Any], Any]


def good(name: str) -> Span:
    return Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name)


@pytest.mark.parametrize("refused", [3, DELETE_ONE_BY_ONE + 1, 5000])
def test_refused_spans_leave_the_valid_ones_in_their_order_in_every_scope(refused: int) -> None:
    scopes = []
    for scope in range(2):
        spans = []
        for index in range(refused):                 # a refused span before each valid one, and at the end
            spans.append(Span(name=f"bad{scope}.{index}"))
            spans.append(good(f"s{scope}.{index}"))
        spans.append(Span(trace_id=bytes(16), span_id=b"\x02" * 8))
        scopes.append(ScopeSpans(spans=spans))
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=scopes)])
    read = read_spans(request)
    assert (read.accepted, read.rejected) == (2 * refused, 2 * (refused + 1))
    for scope, scope_spans in enumerate(request.resource_spans[0].scope_spans):
        assert [s.name for s in scope_spans.spans] == [f"s{scope}.{i}" for i in range(refused)]


@pytest.mark.parametrize("refused", [2, DELETE_ONE_BY_ONE + 1])
def test_refused_log_records_leave_the_valid_ones_in_their_order(refused: int) -> None:
    records = []
    for index in range(refused):
        records.append(LogRecord(trace_id=b"\x01", severity_number=9))
        records.append(LogRecord(severity_number=17, event_name=f"r{index}"))
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])])
    read, counts = LogCounts(MetricStore(), 10).read(request)
    assert (read.accepted, read.rejected) == (refused, refused)
    assert counts == {("unknown_service", "error"): refused}
    kept = request.resource_logs[0].scope_logs[0].log_records
    assert [r.event_name for r in kept] == [f"r{i}" for i in range(refused)]


@pytest.fixture
def receiver(agent_server: Callable[..., ServedAgent]) -> str:
    agent = agent_server({"otlp_receiver": {"http": {"enabled": True, "listen": "127.0.0.1:0"},
                                            "ingest_keys": [KEY]}})
    return f"127.0.0.1:{agent.app[OTLP_RECEIVER].ports['http']}"


def post(run: Run, address: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    async def go() -> tuple[int, bytes, str]:
        async with aiohttp.ClientSession() as session, \
                session.post(f"http://{address}/v1/traces", data=body, headers=headers) as answer:
            return answer.status, await answer.read(), answer.headers["Content-Type"]
    return run(go())


def test_a_refusal_is_in_the_requests_encoding_even_before_the_body_is_read(receiver: str, run: Run) -> None:
    status, body, content_type = post(run, receiver, b"{}", {"Content-Type": "application/json"})
    assert (status, content_type) == (401, "application/json")
    assert "ingest key" in json.loads(body)["message"]
    status, body, content_type = post(run, receiver, b"", {"Content-Type": "application/x-protobuf"})
    assert (status, content_type) == (401, "application/x-protobuf")
    assert "ingest key" in Status.FromString(body).message
    status, body, content_type = post(run, receiver, b"{}", {"Content-Type": "application/json; charset=utf-8",
                                                         "Authorization": f"Bearer {KEY}"})
    assert (status, content_type, json.loads(body)) == (200, "application/json", {})


def gauges(names: list[str], scopes: list[str]) -> ExportMetricsServiceRequest:
    point = NumberDataPoint(as_double=1.0, time_unix_nano=1)
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(scope_metrics=[
        ScopeMetrics(scope=InstrumentationScope(name=scope),
                     metrics=[Metric(name=name, description="d" * 1000, gauge=Gauge(data_points=[point]))
                              for name in names]) for scope in scopes])])


def test_names_and_scopes_past_max_series_hold_no_memory() -> None:
    """A family was kept for every name whose points max_series refused, and a context for every scope
    name: 100,000 names grew the receiver by 143 MB, 100,000 scopes by 78 MB, while its series stayed at 100."""
    series = OtlpMetricSeries(max_series=10, stale_after=300, clock=lambda: 0.0)
    first = series.consume(gauges([f"kept_{i}" for i in range(10)], ["app"]))
    assert (first.accepted, series.series_count) == (10, 10)
    for batch in range(5):
        answer = series.consume(gauges([f"m{batch}_{i}" for i in range(1000)], ["app"]))
        assert (answer.accepted, answer.rejected) == (0, 1000)
    assert len(series.families) == 10
    for batch in range(5):
        series.consume(gauges(["kept_0"], [f"scope{batch}_{i}" for i in range(1000)]))
    assert len(series._scopes) <= 4 * 10 and series.series_count == 10
    assert series.render(False).count("# TYPE") == 10


def test_a_receiver_port_in_use_is_named_and_the_agents_own_address_is_not_blamed(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        main = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{main}", "targets": [], "store": {"driver": "none"},
                                          "otlp_receiver": {"http": {"enabled": True, "listen":
                                                                     f"127.0.0.1:{taken.getsockname()[1]}"}}}))
        proc = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "cannot listen on 127.0.0.1" in proc.stderr and "(otlp_receiver.http.listen)" in proc.stderr
    assert f"cannot listen on 127.0.0.1:{main}" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_items_refused_while_shutting_down_are_a_documented_reason() -> None:
    """A request that arrives once the forwarding queue is closed: refused whole as unavailable, its items
    counted under a reason the README and docs/otlp-receiver.md list."""
    queue = EncodedQueue(64, 16)
    queue.close()
    ingest = OtlpIngest(ReceiverConfig(), (), MetricStore(), metric_series=None, traces=queue, logs=None)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
        spans=[good("a"), good("b")])])])
    with pytest.raises(Refused) as info:
        ingest.traces(request, None, "http")
    assert info.value.reason == "unavailable" and info.value.retryable
    assert ingest.stats.refused_items == {("traces", "unavailable"): 2}
    assert set(ITEM_REASONS) == {reason for _, reason in ingest.stats.refused_items} | {
        "invalid_item", "metric_refused", "queue_full"}
    for page in ("README.md", "docs/otlp-receiver.md"):
        row = next(line for line in (ROOT / page).read_text().splitlines()
                   if line.startswith("| `loom_agent_otlp_refused_total`"))
        assert all(reason in row for reason in ITEM_REASONS), (page, row)
