"""The OTLP receiver in-process: the real app (agent.app.root.build_app) with its OTLP/HTTP and OTLP/gRPC
listeners on 127.0.0.1 port 0, forwarding to a loopback OTLP collector (tests/support/otlp_receiver.py).

What the SDKs do against it is tests/test_otlp_receiver_sdk.py; here the wire itself: protobuf and JSON
(hex ids), gzip, partial_success, the refusals (400 with a google.rpc.Status, 401, 413 for a gzip bomb,
415), backpressure (503 + Retry-After and gRPC UNAVAILABLE with RetryInfo while the destination hangs,
nothing acknowledged lost), span metrics and their bounds, log counts, and the counters.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status as SpanStatus

from agent.api.keys import METRICS, OTLP_RECEIVER, RELOADER
from agent.app.root import build_app
from agent.config.load import load_config, parse_config
from agent.config.node import ConfigError
from agent.receiver.config import DEFAULT_SPAN_BUCKETS
from tests.support.agent_app import ServedAgent, served
from tests.support.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parent.parent
KEY = "otlp-ingest-key-0123456789"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
Run = Callable[[Any], Any]


def attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(name: str, *, kind: int = Span.SPAN_KIND_SERVER, error: bool = False, ms: float = 3.0,
         trace_id: bytes | None = None, span_id: bytes | None = None, attrs: dict[str, str] | None = None) -> Span:
    start = 1_700_000_000_000_000_000
    return Span(trace_id=os.urandom(16) if trace_id is None else trace_id,
                span_id=os.urandom(8) if span_id is None else span_id, name=name, kind=kind,
                start_time_unix_nano=start, end_time_unix_nano=start + int(ms * 1e6),
                attributes=[attribute(k, v) for k, v in (attrs or {}).items()],
                status=SpanStatus(code=SpanStatus.STATUS_CODE_ERROR if error else SpanStatus.STATUS_CODE_UNSET))


def traces(spans: list[Span], service: str = "checkout") -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[attribute("service.name", service)]),
        scope_spans=[ScopeSpans(spans=spans)])])


def logs(records: list[LogRecord], service: str = "checkout") -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[attribute("service.name", service)]),
        scope_logs=[ScopeLogs(log_records=records)])])


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series of the exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def collector() -> Iterator[OtlpReceiver]:
    with OtlpReceiver("http/protobuf") as receiver:
        yield receiver


def receiver_config(collector: OtlpReceiver | None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"otlp_receiver": {"http": {"enabled": True, "listen": "127.0.0.1:0"},
                                                "grpc": {"enabled": True, "listen": "127.0.0.1:0"},
                                                "ingest_keys": [KEY], **extra}}
    if collector is not None:
        config["telemetry"] = {"otlp": {"endpoint": collector.endpoint, "timeout": "2s", "queue_size": 64,
                                        "export_metrics": False}}
    return config


class Otlp:
    """The served agent's OTLP listeners."""

    def __init__(self, agent: ServedAgent, run: Run):
        self.agent, self.run = agent, run
        ports = agent.app[OTLP_RECEIVER].ports
        self.http = f"http://127.0.0.1:{ports['http']}"
        self.grpc = f"127.0.0.1:{ports['grpc']}"

    def post(self, signal: str, body: bytes, headers: dict[str, str] | None = None,
             key: str | None = KEY) -> tuple[int, bytes, dict[str, str]]:
        async def go() -> tuple[int, bytes, dict[str, str]]:
            sent = {**PROTOBUF, **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
            async with aiohttp.ClientSession(auto_decompress=False) as session, \
                    session.post(f"{self.http}/v1/{signal}", data=body, headers=sent) as resp:
                return resp.status, await resp.read(), dict(resp.headers)
        return self.run(go())

    def grpc_export(self, signal: str, request: Any, response_type: Any, key: str | None = KEY) -> Any:
        method = {"traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                  "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export"}[signal]

        async def go() -> Any:
            async with grpc.aio.insecure_channel(self.grpc) as channel:
                call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=response_type.FromString)
                metadata = (("authorization", f"Bearer {key}"),) if key else ()
                return await call(request, metadata=metadata, timeout=10)
        return self.run(go())

    def metrics(self) -> str:
        return str(self.agent.get("/metrics").body)

    def until(self, predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
        async def go() -> Any:
            deadline = asyncio.get_running_loop().time() + timeout
            while not (value := predicate()):
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                await asyncio.sleep(0.05)
            return value
        return self.run(go())


@pytest.fixture
def otlp(agent_server: Callable[..., ServedAgent], run: Run, collector: OtlpReceiver) -> Otlp:
    return Otlp(agent_server(receiver_config(collector)), run)


def test_spans_are_forwarded_with_their_ids_and_attributes_and_make_span_metrics(otlp: Otlp,
                                                                                 collector: OtlpReceiver) -> None:
    sent = [span("GET /cart", attrs={"http.route": "/cart"}, ms=3),
            span("GET /cart", error=True, ms=30),
            span("SELECT", kind=Span.SPAN_KIND_CLIENT, ms=700)]
    status, body, _ = otlp.post("traces", traces(sent).SerializeToString())
    assert status == 200
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    got = otlp.until(lambda: len(collector.spans()) >= 3 and collector.spans(), "the forwarded spans")
    assert sorted(s.SerializeToString() for s in got) == sorted(s.SerializeToString() for s in sent)
    forwarded = collector.accepted("traces")[0].resource_spans[0].resource
    assert forwarded.attributes[0].value.string_value == "checkout"
    text = otlp.metrics()
    labels = dict(service_name="checkout", span_name="GET /cart", span_kind="SPAN_KIND_SERVER")
    assert sample(text, "loom_span_calls_total", **labels, status_code="STATUS_CODE_UNSET") == 1
    assert sample(text, "loom_span_calls_total", **labels, status_code="STATUS_CODE_ERROR") == 1
    assert sample(text, "loom_span_duration_seconds_bucket", **labels, status_code="STATUS_CODE_ERROR",
                  le="0.01") == 0
    assert sample(text, "loom_span_duration_seconds_bucket", **labels, status_code="STATUS_CODE_ERROR",
                  le="0.05") == 1
    assert sample(text, "loom_span_duration_seconds_sum", service_name="checkout", span_name="SELECT",
                  span_kind="SPAN_KIND_CLIENT") == pytest.approx(0.7)
    assert sample(text, "loom_agent_otlp_received_spans_total", transport="http") == 3
    assert sample(text, "loom_agent_exported_total", signal="traces") == 3


def test_json_with_hex_ids_and_gzip_is_read_and_answered_in_json(otlp: Otlp, collector: OtlpReceiver) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                                "value": {"stringValue": "web"}}]},
                                   "scopeSpans": [{"scope": {"name": "s"}, "spans": [
                                       {"traceId": trace_id, "spanId": span_id, "name": "GET /",
                                        "kind": 2, "startTimeUnixNano": "1700000000000000000",
                                        "endTimeUnixNano": "1700000000004000000", "status": {"code": 2},
                                        "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                                        "unknownField": True}]}]}]}
    status, body, headers = otlp.post("traces", gzip.compress(json.dumps(document).encode()),
                                      {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 200 and headers["Content-Type"].startswith("application/json"), body
    assert json.loads(body) == {}
    got = otlp.until(collector.spans, "the forwarded span")[0]
    assert (got.trace_id.hex(), got.span_id.hex(), got.kind, got.status.code) == (trace_id, span_id, 2, 2)
    assert got.attributes[0].value.int_value == 7
    assert sample(otlp.metrics(), "loom_span_calls_total", service_name="web", span_kind="SPAN_KIND_SERVER",
                  status_code="STATUS_CODE_ERROR") == 1


def test_invalid_spans_are_refused_alone_in_partial_success(otlp: Otlp, collector: OtlpReceiver) -> None:
    good = span("ok")
    request = traces([good, span("short", trace_id=b"\x01" * 8), span("zero", span_id=bytes(8))])
    status, body, _ = otlp.post("traces", request.SerializeToString())
    answer = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and answer.partial_success.rejected_spans == 2
    assert "trace_id must be 16 bytes" in answer.partial_success.error_message
    assert [s.name for s in otlp.until(collector.spans, "the valid span")] == ["ok"]
    text = otlp.metrics()
    assert sample(text, "loom_agent_otlp_refused_total", signal="traces", reason="invalid_item") == 2
    assert sample(text, "loom_agent_otlp_received_spans_total", transport="http") == 3
    # the same over JSON: the partial success in OTLP JSON
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "", "spanId": "", "name": "x"}]}]}]}
    status, body, _ = otlp.post("traces", json.dumps(document).encode(), {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body) == {"partialSuccess": {
        "rejectedSpans": "1", "errorMessage": "1 span(s) refused: trace_id must be 16 bytes, not all zero"}}


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [
    (traces([span("x")]).SerializeToString()[:-3], {}, 400, "malformed"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}', {"Content-Type": "application/json"},
     400, "malformed"),
    (b'{"resourceSpans": "no"}', {"Content-Type": "application/json"}, 400, "malformed"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', {"Content-Type": "application/json"},
     400, "malformed"),
    (b"[1]", {"Content-Type": "application/json"}, 400, "malformed"),
    (b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, 400, "malformed"),
    (b"x", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b"x", {"Content-Encoding": "br"}, 415, "unsupported_media_type"),
    (gzip.compress(bytes(64 * 1024 * 1024)), {"Content-Encoding": "gzip"}, 413, "too_large"),
    (bytes(4 * 1024 * 1024 + 1), {}, 413, "too_large"),
], ids=["truncated", "json-wrong-type", "json-not-a-list", "json-bad-hex-id", "json-not-an-object", "bad-gzip",
        "text-plain", "brotli", "gzip-bomb", "too-large"])
def test_a_bad_body_is_refused_with_a_status_and_counted_never_a_500(otlp: Otlp, body: bytes,
                                                                     headers: dict[str, str], status: int,
                                                                     reason: str) -> None:
    got, answer, answer_headers = otlp.post("traces", body, headers)
    assert got == status, answer[:300]
    if answer_headers["Content-Type"].startswith("application/json"):
        assert json.loads(answer)["message"]
    else:
        assert Status.FromString(answer).message
    assert sample(otlp.metrics(), "loom_agent_otlp_refused_requests_total", signal="traces", reason=reason) == 1
    assert otlp.post("traces", traces([span("after")]).SerializeToString())[0] == 200


def test_ingest_keys_are_required_on_both_transports(otlp: Otlp) -> None:
    body = traces([span("x")]).SerializeToString()
    assert otlp.post("traces", body, key=None)[0] == 401
    assert otlp.post("traces", body, key="wrong-key-0123456789")[0] == 401
    assert otlp.post("traces", body, {"Authorization": "", "X-Loom-Api-Key": KEY}, key=None)[0] == 200
    with pytest.raises(grpc.aio.AioRpcError) as info:
        otlp.grpc_export("traces", traces([span("x")]), ExportTraceServiceResponse, key="wrong-key-0123456789")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert sample(otlp.metrics(), "loom_agent_otlp_refused_requests_total", signal="traces",
                  reason="unauthorized") == 3


def test_grpc_export_forwards_and_answers_partial_success(otlp: Otlp, collector: OtlpReceiver) -> None:
    sent = span("rpc", kind=Span.SPAN_KIND_SERVER)
    answer = otlp.grpc_export("traces", traces([sent, span("bad", trace_id=b"")], service="api"),
                              ExportTraceServiceResponse)
    assert answer.partial_success.rejected_spans == 1
    assert [s.SerializeToString() for s in otlp.until(collector.spans, "the span")] == [sent.SerializeToString()]
    text = otlp.metrics()
    assert sample(text, "loom_agent_otlp_received_spans_total", transport="grpc") == 2
    assert sample(text, "loom_span_calls_total", service_name="api", span_name="rpc") == 1


def test_malformed_grpc_request_is_invalid_argument(otlp: Otlp) -> None:
    async def go() -> None:
        async with grpc.aio.insecure_channel(otlp.grpc) as channel:
            call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            await call(b"\x0a\xff\xff\xff", metadata=(("authorization", f"Bearer {KEY}"),), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        otlp.run(go())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_logs_are_forwarded_and_counted_by_service_and_severity(otlp: Otlp, collector: OtlpReceiver) -> None:
    records = [LogRecord(severity_number=9, body=AnyValue(string_value="hello")),
               LogRecord(severity_number=18, body=AnyValue(string_value="boom"), trace_id=os.urandom(16),
                         span_id=os.urandom(8)),
               LogRecord(severity_text="Warning", body=AnyValue(string_value="careful")),
               LogRecord(body=AnyValue(string_value="plain")),
               LogRecord(trace_id=b"\x01\x02", body=AnyValue(string_value="bad id"))]
    status, body, _ = otlp.post("logs", logs(records).SerializeToString())
    assert status == 200 and ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records == 1
    assert otlp.grpc_export("logs", logs(records[:1], service="api"), ExportLogsServiceResponse) is not None
    got = otlp.until(lambda: len(collector.log_records()) >= 5 and collector.log_records(), "the records")
    assert sorted(r.body.string_value for r in got) == ["boom", "careful", "hello", "hello", "plain"]
    text = otlp.metrics()
    for severity, count in (("info", 1), ("error", 1), ("warn", 1), ("unspecified", 1)):
        assert sample(text, "loom_otlp_log_records_total", service_name="checkout", severity=severity) == count
    assert sample(text, "loom_otlp_log_records_total", service_name="api", severity="info") == 1
    assert sample(text, "loom_agent_otlp_received_log_records_total", transport="http") == 5
    assert sample(text, "loom_agent_otlp_refused_total", signal="logs", reason="invalid_item") == 1


@pytest.mark.slow
def test_a_hung_destination_fills_the_queue_then_503_and_unavailable_and_nothing_acknowledged_is_lost(
        otlp: Otlp, collector: OtlpReceiver) -> None:
    collector.hang()
    acknowledged: list[Span] = []
    first = [span(f"a{i}") for i in range(40)]
    assert otlp.post("traces", traces(first).SerializeToString())[0] == 200
    acknowledged += first
    otlp.until(lambda: collector.attempts("traces") >= 1, "the first export, hung at the destination")
    second = [span(f"b{i}") for i in range(40)]
    assert otlp.post("traces", traces(second).SerializeToString())[0] == 200         # 40 of the queue's 64
    acknowledged += second
    status, body, headers = otlp.post("traces", traces([span(f"c{i}") for i in range(40)]).SerializeToString())
    assert status == 503 and headers["Retry-After"] == "1", body
    assert Status.FromString(body).code == grpc.StatusCode.UNAVAILABLE.value[0]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        otlp.grpc_export("traces", traces([span(f"d{i}") for i in range(40)]), ExportTraceServiceResponse)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    retry = dict(info.value.trailing_metadata())["google.rpc.retryinfo-bin"]
    assert RetryInfo.FromString(retry).retry_delay.seconds == 1
    text = otlp.metrics()
    assert sample(text, "loom_agent_otlp_refused_requests_total", signal="traces", reason="queue_full") == 2
    assert sample(text, "loom_span_calls_total", span_name="c0") == 0          # a refused request counts nothing
    collector.answer_ok()
    names = {s.name for s in acknowledged}
    otlp.until(lambda: names <= {s.name for s in collector.spans()}, "every acknowledged span", timeout=30)
    assert otlp.post("traces", traces([span("after")]).SerializeToString())[0] == 200


def test_span_names_and_services_are_bounded(agent_server: Callable[..., ServedAgent], run: Run) -> None:
    otlp = Otlp(agent_server(receiver_config(None, span_metrics={"max_span_names": 20, "max_services": 3})), run)
    for batch in range(5):
        request = traces([span(f"/user/{batch}/{i}") for i in range(2000)], service=f"svc{batch % 4}")
        assert otlp.post("traces", request.SerializeToString())[0] == 200
    calls = otlp.agent.app[METRICS].get("loom_span_calls")
    assert calls is not None
    services = {key[0] for key in calls.series}
    names = {key[1] for key in calls.series}
    assert services == {"svc0", "svc1", "svc2", "other"}
    assert len(names) <= 4 * 20 + 1 and len(calls.series) <= 4 * 21
    assert sum(calls.series.values()) == 10_000
    text = otlp.metrics()
    assert sample(text, "loom_agent_label_overflow_total", metric="loom_span_calls", label="span_name") > 0
    assert sample(text, "loom_agent_otlp_not_forwarded_total", signal="traces") == 10_000


@pytest.mark.slow
def test_a_million_attribute_values_stay_out_of_the_labels(agent_server: Callable[..., ServedAgent],
                                                           run: Run) -> None:
    otlp = Otlp(agent_server(receiver_config(None, max_body_bytes=16 * 1024 * 1024)), run)
    for part in range(4):
        request = traces([span("GET /item", attrs={f"k{i}": f"value-{part}-{i}" for i in range(250)})
                          for _ in range(1000)])
        assert otlp.post("traces", request.SerializeToString())[0] == 200
    calls = otlp.agent.app[METRICS].get("loom_span_calls")
    assert calls is not None and len(calls.series) == 1 and sum(calls.series.values()) == 4000


def test_config_defaults_and_reload_of_the_keys(agent_server: Callable[..., ServedAgent], run: Run,
                                                tmp_path: Any) -> None:
    assert parse_config("targets: []").otlp_receiver.enabled is False
    shipped = parse_config((ROOT / "config.yaml").read_text(), environ={}).otlp_receiver
    assert (shipped.http.listen, shipped.grpc.listen, shipped.http.enabled, shipped.grpc.enabled) == \
        (("127.0.0.1", 4318), ("127.0.0.1", 4317), True, True)
    assert parse_config("targets: []").otlp_receiver.span_metrics.buckets == DEFAULT_SPAN_BUCKETS
    inherited = parse_config(f"targets: []\nevents: {{api_keys: [{KEY}]}}\notlp_receiver: {{http: {{enabled: true}}}}",
                             environ={})
    assert inherited.otlp_receiver.keys(inherited.events.api_keys) == (KEY,)
    path = tmp_path / "agent.yaml"
    path.write_text(f"targets: []\nstore: {{driver: none}}\notlp_receiver: {{ingest_keys: [{KEY}], "
                    "http: {enabled: true, listen: '127.0.0.1:0'}}\n")
    async def scenario() -> list[int]:
        app = build_app(load_config(str(path), environ={}))
        async with served(app):
            url = f"http://127.0.0.1:{app[OTLP_RECEIVER].ports['http']}/v1/traces"
            body = traces([span("x")]).SerializeToString()
            statuses = []
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=body, headers=PROTOBUF) as resp:
                    statuses.append(resp.status)
                path.write_text("targets: []\nstore: {driver: none}\notlp_receiver: {ingest_keys: [], "
                                "http: {enabled: true, listen: '127.0.0.1:0'}}\n")
                assert await app[RELOADER].reload()
                async with session.post(url, data=body, headers=PROTOBUF) as resp:
                    statuses.append(resp.status)
            return statuses
    assert run(scenario()) == [401, 200]


def test_forwarding_to_a_grpc_destination_sends_the_received_bytes(agent_server: Callable[..., ServedAgent],
                                                                   run: Run) -> None:
    """telemetry.otlp over gRPC: the SDK's gRPC exporters carry the forwarded requests (agent/otlp/forward.py)."""
    with OtlpReceiver("grpc") as destination:
        config = receiver_config(None)
        config["telemetry"] = {"otlp": {"endpoint": destination.endpoint, "protocol": "grpc", "timeout": "2s",
                                        "export_metrics": False}}
        otlp = Otlp(agent_server(config), run)
        sent = [span("over grpc", attrs={"a": "b"})]
        assert otlp.post("traces", traces(sent).SerializeToString())[0] == 200
        record = LogRecord(severity_number=13, body=AnyValue(string_value="to grpc"))
        assert otlp.grpc_export("logs", logs([record]), ExportLogsServiceResponse) is not None
        got = otlp.until(destination.spans, "the span at the gRPC destination")
        assert [s.SerializeToString() for s in got] == [s.SerializeToString() for s in sent]
        records = otlp.until(destination.log_records, "the record at the gRPC destination")
        assert [r.SerializeToString() for r in records] == [record.SerializeToString()]
        text = otlp.metrics()
        assert sample(text, "loom_agent_exported_total", signal="traces") == 1
        assert sample(text, "loom_agent_exported_total", signal="logs") == 1


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_listen_port_in_use_stops_the_start_with_the_reason(run: Run, transport: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = parse_config(yaml.safe_dump({"targets": [], "store": {"driver": "none"}, "otlp_receiver": {
            transport: {"enabled": True, "listen": f"127.0.0.1:{port}"}}}), environ={})

        async def start() -> None:
            async with served(build_app(config)):
                pass
        with pytest.raises(OSError):
            run(start())
    assert f"otlp_receiver.{transport}.listen" in caplog.text


def test_an_export_destination_on_the_receivers_own_port_is_refused() -> None:
    text = "targets: []\notlp_receiver: {grpc: {enabled: true, listen: '127.0.0.1:4317'}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317"})
    assert info.value.errors == [
        "otlp_receiver.grpc.listen: is where OTEL_EXPORTER_OTLP_ENDPOINT (http://localhost:4317) sends the agent's "
        "exports: the agent would forward what it receives to itself, without end; point telemetry.otlp at a "
        "collector"]
    assert parse_config(text, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}).otlp_receiver.enabled
    assert parse_config(text, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}).otlp_receiver.enabled
