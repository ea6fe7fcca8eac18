"""Sentry's transactions, spans and log records as OpenTelemetry (agent/sentry/spans.py, transactions.py,
logs.py, otel.py; agent/otlp/logs.py, log_encoding.py): parsing of hand-made and hostile payloads (a bad
item is `rejected`, never a 500, never a lost sibling), the RED metrics and their cardinality guard, the
privacy of attributes, the log encoder against the generated protobuf classes; then the real sentry-sdk
(traces_sample_rate=1.0, enable_logs=True) against a real agent process whose OTLP export points at the
real test receiver: the spans arrive with the SDK's trace id, the log records with theirs, and
`loom_transactions_*` is on /metrics."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from agent.api.keys import METRICS
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.metrics.store import MetricStore
from agent.otlp.config import OtlpConfig, TelemetryConfig
from agent.otlp.export import OtlpExport
from agent.otlp.log_encoding import encode_logs
from agent.otlp.logs import LogQueue
from agent.otlp.span_encoding import encode_spans
from agent.otlp.traces import SpanQueue
from agent.otlp.tracing import build_log_exporter, build_tracer_provider
from agent.sentry.items import ItemError
from agent.sentry.logs import SentryLogs
from agent.sentry.otel import scrubbed, timestamp_ns
from agent.sentry.spans import parse_otel_span, parse_spans, parse_transaction, url_name
from agent.sentry.transactions import SERIES_LIMIT, SentryTransactions
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import AgentProcess

KEY = "0123456789abcdef0123456789abcdef"
AUTH = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7", "Content-Type": "application/x-sentry-envelope"}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, CHILD, REMOTE = "00f067aa0ba902b7", "b7ad6b7169203331", "a3ce929d0e0e4736"
START = 1_767_225_600.0
EMAIL = "ada@example.com"


def privacy() -> Privacy:
    return Privacy(PrivacyConfig(), b"test-key-0123456789abcdef0123456789")


def transaction(**fields: Any) -> dict[str, Any]:
    return {"type": "transaction", "transaction": "/checkout", "transaction_info": {"source": "route"},
            "start_timestamp": START, "timestamp": START + 0.25, "release": "shop@1.2.3", "environment": "prod",
            "sdk": {"name": "sentry.python", "version": "2.76.0"},
            "contexts": {"trace": {"trace_id": TRACE, "span_id": ROOT, "parent_span_id": REMOTE, "op": "http.server",
                                   "status": "ok", "data": {"thread.id": 1, "user.email": EMAIL}}},
            "tags": {"feature": "payment", "contact": EMAIL},
            "spans": [{"span_id": CHILD, "parent_span_id": ROOT, "trace_id": TRACE, "op": "db",
                       "description": "SELECT * FROM orders", "start_timestamp": START + 0.1,
                       "timestamp": START + 0.2, "status": "internal_error",
                       "data": {"db.system": "postgresql", "password": "hunter2", "rows": [1, 2]}}],
            **fields}


def spans_of(queue: SpanQueue) -> list[Any]:
    request = ExportTraceServiceRequest.FromString(encode_spans(queue.take(1000)))
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def attrs(message: Any) -> dict[str, Any]:
    out = {}
    for a in message.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind != "array_value" else \
            [v.int_value for v in a.value.array_value.values]
    return out


# --- parsing ------------------------------------------------------------------------------------------

def test_a_transaction_becomes_its_spans_with_sentry_ids_and_one_red_sample() -> None:
    metrics, queue = MetricStore(), SpanQueue(100, 10)
    transactions = SentryTransactions(metrics, privacy(), queue)
    assert transactions.record("transaction", transaction()) == 2
    root, child = spans_of(queue)
    assert (root.trace_id.hex(), root.span_id.hex(), root.parent_span_id.hex()) == (TRACE, ROOT, REMOTE)
    assert (child.trace_id.hex(), child.span_id.hex(), child.parent_span_id.hex()) == (TRACE, CHILD, ROOT)
    assert (root.name, root.kind, root.status.code) == ("/checkout", SpanKind.SERVER.value + 1, 1)
    assert (child.name, child.kind, child.status.code, child.status.message) == \
        ("SELECT * FROM orders", SpanKind.CLIENT.value + 1, 2, "internal_error")
    assert (root.start_time_unix_nano, root.end_time_unix_nano) == (1_767_225_600_000_000_000,
                                                                    1_767_225_600_250_000_000)
    assert child.start_time_unix_nano == 1_767_225_600_100_000_000
    root_attrs, child_attrs = attrs(root), attrs(child)
    assert root_attrs["sentry.op"] == "http.server" and root_attrs["sentry.tag.feature"] == "payment"
    assert "user.email" not in root_attrs                               # user PII: dropped by name
    assert root_attrs["sentry.tag.contact"].startswith("email:")        # an e-mail anywhere: pseudonymized
    assert "password" not in child_attrs and child_attrs["db.system"] == "postgresql"
    assert child_attrs["rows"] == [1, 2]
    assert metrics.get("loom_transactions").series == {("/checkout", "http.server", "ok"): 1.0}
    (histogram,) = metrics.get("loom_transaction_duration_seconds").series.values()
    assert histogram[-1] == 0.25 and sum(histogram[:-1]) == 1


def test_the_resource_is_the_application_and_not_the_agent() -> None:
    queue = SpanQueue(100, 10)
    SentryTransactions(MetricStore(), privacy(), queue).record("transaction", transaction())
    request = ExportTraceServiceRequest.FromString(encode_spans(queue.take(10)))
    (rs,) = request.resource_spans
    assert {a.key: a.value.string_value for a in rs.resource.attributes} == {
        "service.name": "shop", "service.version": "1.2.3", "sentry.release": "shop@1.2.3",
        "deployment.environment.name": "prod"}
    assert (rs.scope_spans[0].scope.name, rs.scope_spans[0].scope.version) == ("sentry.python", "2.76.0")


@pytest.mark.parametrize("payload", [
    [], "transaction", None, {}, {"transaction": "x"},
    transaction(contexts={"trace": {"trace_id": "zz", "span_id": ROOT}}),
    transaction(contexts={"trace": {"trace_id": "0" * 32, "span_id": ROOT}}),
    transaction(contexts=[]), transaction(start_timestamp="yesterday"), transaction(timestamp=START - 1),
    transaction(timestamp=float("nan")), transaction(start_timestamp=10 ** 30), transaction(transaction=["x"]),
    transaction(transaction=""), transaction(spans={"a": 1}), transaction(spans=[{}] * 10_001),
])
def test_a_transaction_that_cannot_be_read_is_refused(payload: Any) -> None:
    with pytest.raises(ItemError):
        parse_transaction(payload)


def test_a_bad_child_span_is_dropped_alone() -> None:
    batch = parse_transaction(transaction(spans=[
        None, 7, {"span_id": "x"}, {"span_id": CHILD, "start_timestamp": START + 1, "timestamp": START},
        {"span_id": CHILD, "start_timestamp": START, "timestamp": START + 0.1, "op": ["db"], "data": "x"}]))
    assert batch.invalid == 4 and len(batch.spans) == 2
    assert batch.spans[1].trace_id == int(TRACE, 16) and batch.spans[1].name == "span"


def test_url_names_are_folded_and_other_names_bounded_by_the_series_limit() -> None:
    assert url_name("/users/4711/orders/9f86d081884c7d65?token=abc#x") == "/users/*/orders/*"
    assert url_name("GET /api/v1/items/3fa85f64-5717-4562-b3fc-2c963f66afa6") == "GET /api/v1/items/*"
    assert url_name("https://shop.example.com/u/ada@example.com/cart") == "/u/*/cart"
    assert url_name("/" + "/".join("abcdefghijklmn")) == "/a/b/c/d/e/f/g/h/i/j/**"
    metrics = MetricStore()
    transactions = SentryTransactions(metrics, None, None)
    for n in range(5):
        transactions.record("transaction", transaction(transaction=f"/orders/{n}",
                                                       transaction_info={"source": "url"}))
    assert metrics.get("loom_transactions").series == {("/orders/*", "http.server", "ok"): 5.0}
    for n in range(SERIES_LIMIT + 10):
        transactions.record("transaction", transaction(transaction=f"task-{n}"))
    series = metrics.get("loom_transactions").series
    assert len(series) == SERIES_LIMIT + 1 and series[("other", "other", "ok")] >= 10
    assert metrics.overflow[("loom_transactions", "transaction")] >= 10


def test_status_is_a_closed_set() -> None:
    metrics = MetricStore()
    transactions = SentryTransactions(metrics, None, None)
    for status in ("ok", "not_found", "I am a teapot", None):
        trace = {"trace_id": TRACE, "span_id": ROOT, "op": "http.server"}
        if status is not None:
            trace["status"] = status
        transactions.record("transaction", transaction(contexts={"trace": trace}))
    assert {key[2] for key in metrics.get("loom_transactions").series} == {"ok", "not_found", "other", "unknown"}


def test_span_v2_container_as_sentry_python_streams_it() -> None:
    queue, metrics = SpanQueue(100, 10), MetricStore()
    attributes = {"sentry.op": {"value": "http.server", "type": "string"},
                  "sentry.release": {"value": "shop@2.0.0", "type": "string"},
                  "sentry.segment.name": {"value": "/users/42", "type": "string"},
                  "sentry.segment.name.source": {"value": "url", "type": "string"},
                  "http.response.status_code": {"value": 200, "type": "integer"}}
    payload = {"version": 2, "items": [
        {"trace_id": TRACE, "span_id": ROOT, "name": "/users/42", "status": "ok", "is_segment": True,
         "start_timestamp": START, "end_timestamp": START + 0.5, "attributes": attributes},
        {"trace_id": TRACE, "span_id": CHILD, "parent_span_id": ROOT, "name": "cache.get", "status": "error",
         "is_segment": False, "start_timestamp": START, "end_timestamp": START + 0.1},
        {"trace_id": "nope"}]}
    transactions = SentryTransactions(metrics, None, queue)
    assert transactions.record("span", payload) == 2 and transactions.invalid_spans == 1
    segment, child = spans_of(queue)
    assert (segment.name, attrs(segment)["http.response.status_code"]) == ("/users/*", 200)
    assert "sentry.release" not in attrs(segment)
    assert (child.parent_span_id.hex(), child.status.code) == (ROOT, 2)
    assert metrics.get("loom_transactions").series == {("/users/*", "http.server", "ok"): 1.0}
    with pytest.raises(ItemError):
        parse_spans({"items": [{"trace_id": "x"}]})
    with pytest.raises(ItemError):
        parse_spans({"items": "x"})


def test_a_v1_standalone_span_and_an_otel_span() -> None:
    batch = parse_spans({"trace_id": TRACE, "span_id": CHILD, "op": "ui.interaction.click", "description": "button",
                         "start_timestamp": START, "timestamp": START + 0.05, "status": "ok"})
    assert (batch.spans[0].name, batch.spans[0].status) == ("button", "ok")
    for bad in ({"span_id": CHILD}, [], {"trace_id": TRACE, "span_id": CHILD, "start_timestamp": START}):
        with pytest.raises(ItemError):
            parse_spans(bad)
    otel = parse_otel_span({"traceId": TRACE, "spanId": CHILD, "parentSpanId": ROOT, "name": "GET /x",
                            "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": "1767225600000000000",
                            "endTimeUnixNano": 1767225600100000000, "status": {"code": 2, "message": "boom"},
                            "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}},
                                           {"key": "n", "value": {"intValue": "3"}}]})
    (span,) = otel.spans
    assert (span.kind, span.status, span.error_message, span.data) == \
        (SpanKind.CLIENT, "error", "boom", {"http.method": "GET", "n": 3})
    for bad in ({"traceId": TRACE}, "x", {"traceId": TRACE, "spanId": CHILD, "startTimeUnixNano": "-1",
                                          "endTimeUnixNano": "1"}):
        with pytest.raises(ItemError):
            parse_otel_span(bad)


def test_attribute_privacy() -> None:
    out = scrubbed({"user.id": "42", "client.address": "10.1.2.3", "http.request.header.cookie": "a=b",
                    "url.full": f"https://x.io/a?email={EMAIL}&token=t", "url.query": "token=t",
                    "api_key": "k", "note": f"mail {EMAIL}", "card": "4111 1111 1111 1111", "obj": {"a": [1, "b"]},
                    7: "not a key"}, privacy())
    assert set(out) == {"url.full", "note", "card", "obj"}
    assert out["url.full"] == "https://x.io/a" and EMAIL not in out["note"] and out["card"] == "[card]"
    assert out["obj"] == '{"a":[1,"b"]}'
    assert timestamp_ns("2026-01-01T00:00:00.5Z") == 1_767_225_600_500_000_000
    assert timestamp_ns("2026-01-01T00:00:00") == 1_767_225_600_000_000_000
    assert timestamp_ns(True) is None and timestamp_ns(-1) is None and timestamp_ns("soon") is None


def test_an_attribute_nested_past_the_depth_bound_is_left_out_alone() -> None:
    """JSON nests 1024 levels, the privacy rules walked them recursively: RecursionError refused the whole
    span container (every span of it), log item or otel_span, logged as an agent bug."""
    deep: Any = "x"
    for _ in range(900):
        deep = {"a": deep}
    assert set(scrubbed({"deep": deep, "list": [[[[1]]]], "ok": 1}, privacy())) == {"list", "ok"}
    transactions = SentryTransactions(MetricStore(), privacy(), SpanQueue(100, 10))
    payload = {"items": [{"trace_id": TRACE, "span_id": ROOT, "name": "a", "start_timestamp": START,
                          "end_timestamp": START + 1, "attributes": {"deep": {"value": deep, "type": "x"}, "n": 1}},
                         {"trace_id": TRACE, "span_id": CHILD, "name": "b", "start_timestamp": START,
                          "end_timestamp": START + 1}]}
    assert transactions.record("span", payload) == 2
    (first, _) = spans_of(transactions.queue)
    assert attrs(first) == {"n": 1}
    logs = SentryLogs(privacy(), LogQueue(100, 10))
    assert logs.export({"items": [{"body": "b", "attributes": {"deep": deep}}]}) == 1


# --- logs ----------------------------------------------------------------------------------------------

def test_log_records_are_encoded_as_otlp_with_their_trace() -> None:
    queue = LogQueue(3, 10)
    logs = SentryLogs(privacy(), queue, clock=lambda: 1_767_225_700_000_000_000)
    payload = {"items": [
        {"timestamp": START, "level": "info", "body": f"payment done for {EMAIL}", "trace_id": TRACE,
         "span_id": CHILD, "attributes": {"sentry.release": {"value": "shop@1.2.3", "type": "string"},
                                          "sentry.severity_number": {"value": 9, "type": "integer"},
                                          "payment": {"value": "p-1", "type": "string"},
                                          "user.email": {"value": EMAIL, "type": "string"}}},
        {"level": "warning", "body": {"nested": True}},
        "not a record",
        {"timestamp": START, "severity_number": 17, "body": "third"},
        {"timestamp": START, "level": "fatal", "body": "fourth: the queue is full"}]}
    assert logs.export(payload) == 3 and queue.dropped == 1
    request = ExportLogsServiceRequest.FromString(encode_logs(queue.take(10)))
    records = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    first, second, third = records
    assert (first.time_unix_nano, first.severity_number, first.severity_text) == (1_767_225_600_000_000_000, 9, "info")
    assert first.body.string_value.startswith("payment done for email:") and EMAIL not in str(request)
    assert (first.trace_id.hex(), first.span_id.hex(), first.flags) == (TRACE, CHILD, 1)
    assert attrs(first) == {"payment": "p-1"}
    assert (second.time_unix_nano, second.severity_number, second.body.string_value) == \
        (1_767_225_700_000_000_000, 13, '{"nested":true}')
    assert (third.severity_number, third.severity_text) == (17, "error")
    services = {a.value.string_value for rl in request.resource_logs for a in rl.resource.attributes
                if a.key == "service.name"}
    assert services == {"shop", "unknown_service"}
    otel = logs.records({"timeUnixNano": "1767225600000000000", "severityNumber": 5, "severityText": "debug",
                         "body": {"stringValue": "hi"}, "traceId": TRACE, "spanId": CHILD,
                         "attributes": [{"key": "k", "value": {"boolValue": True}}]}, "otel_log")
    assert (otel[0].body, otel[0].severity_number, otel[0].attributes) == ("hi", 5, {"k": True})
    for bad in ([], {"items": 3}, {"items": [{}] * 10_001}):
        with pytest.raises(ItemError):
            logs.records(bad)
    assert SentryLogs(None, None).export(payload) == 0


# --- the route ------------------------------------------------------------------------------------------

def envelope(*items: tuple[str, Any]) -> bytes:
    lines = [orjson.dumps({"sent_at": "2026-01-01T00:00:00Z"})]
    for kind, payload in items:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        lines += [orjson.dumps({"type": kind, "length": len(data)}), data]
    return b"\n".join(lines) + b"\n"


def test_hostile_performance_items_are_rejected_beside_good_ones(agent_server: Any) -> None:
    agent = agent_server({"sentry": {"projects": [{"id": 1, "keys": [KEY]}]}})
    body = envelope(("transaction", transaction()), ("transaction", b"{not json"), ("transaction", [1]),
                    ("span", {"items": [{"trace_id": 5}]}), ("otel_span", {"traceId": TRACE}),
                    ("span", {"items": [{"trace_id": TRACE, "span_id": CHILD, "start_timestamp": START,
                                         "end_timestamp": START + 1, "name": "s"}]}),
                    ("log", {"items": "no"}), ("log", {"items": [{"level": "info", "body": "kept"}]}))
    status, answer, _ = agent.post("/api/1/envelope/", data=body, headers=AUTH)
    assert status == 200, answer
    counted = {key: value for key, value in agent.app[METRICS].get("loom_agent_sentry_items").series.items()
               if value}
    assert counted == {("transaction", "accepted"): 1, ("transaction", "rejected"): 2, ("span", "rejected"): 1,
                       ("otel_span", "rejected"): 1, ("span", "accepted"): 1, ("log", "rejected"): 1,
                       ("log", "accepted"): 1}
    assert 'loom_transactions_total{transaction="/checkout",op="http.server",status="ok"} 1.0' in \
        agent.get("/metrics").body


# --- the real SDK, a real agent, a real receiver -------------------------------------------------------------

@pytest.mark.slow
def test_the_real_sdk_traces_and_logs_arrive_over_otlp(tmp_path: Path) -> None:
    sentry_sdk = pytest.importorskip("sentry_sdk")
    sentry_logger = pytest.importorskip("sentry_sdk.logger")
    with OtlpReceiver("http/protobuf") as receiver:
        config = {"sentry": {"projects": [{"id": 1, "keys": [KEY]}]},
                  "telemetry": {"otlp": {"endpoint": receiver.endpoint, "protocol": "http/protobuf",
                                         "export_metrics": False, "timeout": "2s"}}}
        agent = AgentProcess(tmp_path, config)
        try:
            sentry_sdk.init(dsn=f"http://{KEY}@127.0.0.1:{agent.port}/1", traces_sample_rate=1.0,
                            enable_logs=True, release="shop@1.2.3", environment="staging",
                            auto_enabling_integrations=False, default_integrations=False)
            try:
                with sentry_sdk.start_transaction(op="task", name="nightly-export") as tx:
                    with sentry_sdk.start_span(op="db", name="SELECT 1"):
                        time.sleep(0.01)
                    with sentry_sdk.start_span(op="http.client", name=f"GET https://api.example.com/u?mail={EMAIL}"):
                        pass
                    sentry_logger.info("exported {count} rows for {who}", count=12, who=EMAIL)
                trace_id = tx.trace_id
                sentry_sdk.flush(timeout=10)
            finally:
                sentry_sdk.get_client().close()
                sentry_sdk.init()
            spans = receiver.wait_for(lambda: [s for s in receiver.spans() if s.trace_id.hex() == trace_id and
                                               len([1 for t in receiver.spans() if t.trace_id.hex() == trace_id]) >= 3],
                                      15, "the transaction's spans")
            by_name = {span.name: span for span in spans}
            root = by_name["nightly-export"]
            assert root.span_id.hex() == tx.span_id
            assert by_name["SELECT 1"].parent_span_id == root.span_id
            client = next(span for span in spans if span.name.startswith("GET https://api.example.com/u"))
            assert client.name == "GET https://api.example.com/u" and client.kind == SpanKind.CLIENT.value + 1
            records = receiver.wait_for(receiver.log_records, 15, "the log record")
            (record,) = [r for r in records if r.body.string_value.startswith("exported 12 rows")]
            assert record.trace_id.hex() == trace_id and record.severity_text == "info"
            raw = b"".join(m.SerializeToString() for m in receiver.accepted("traces") + receiver.accepted("logs"))
            assert EMAIL.encode() not in raw
            metrics = agent.metrics()
            # sentry-python sets no status on a transaction that ended normally: `unknown`, as Relay reads it
            assert 'loom_transactions_total{transaction="nightly-export",op="task",status="unknown"} 1.0' in metrics
            assert root.status.code == 0                                          # UNSET
            assert 'loom_transaction_duration_seconds_count{transaction="nightly-export",op="task"} 1' in metrics
            assert 'loom_agent_exported_total{signal="logs"}' in metrics
        finally:
            assert agent.stop() == 0


# --- the log export itself, over both protocols ----------------------------------------------------------

@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_log_records_reach_the_receiver_and_a_full_queue_is_counted(protocol: str, run: Any) -> None:
    with OtlpReceiver(protocol) as receiver:
        config = TelemetryConfig(otlp=OtlpConfig(endpoint=receiver.endpoint, protocol=protocol, timeout=2.0,
                                                 export_metrics=False, export_traces=False, queue_size=2))
        registry = CollectorRegistry()
        export = OtlpExport.from_config(config, registry=registry, tracer_provider=build_tracer_provider(config),
                                        environ={}, flush_interval=0.05, stop_timeout=2.0)
        assert export.logs is not None and export.traces is None
        logs = SentryLogs(None, export.logs.queue)
        records = {"items": [{"timestamp": START, "level": "error", "body": f"record {n}", "trace_id": TRACE}
                             for n in range(3)]}

        async def scenario() -> None:
            await export.start()
            assert logs.export(records) == 2                  # the third does not fit: dropped, counted
            await asyncio.sleep(0)
            await asyncio.to_thread(receiver.wait_for, lambda: len(receiver.log_records()) == 2, 10, "2 records")
            await export.stop()

        run(scenario())
        assert [r.body.string_value for r in receiver.log_records()] == ["record 0", "record 1"]
        assert {r.trace_id.hex() for r in receiver.log_records()} == {TRACE}
        assert registry.get_sample_value("loom_agent_exported_total", {"signal": "logs"}) == 2
        assert registry.get_sample_value("loom_agent_export_dropped_total", {"signal": "logs"}) == 1


def test_no_endpoint_or_export_logs_false_queues_nothing() -> None:
    assert build_log_exporter(TelemetryConfig(), {}) is None
    off = TelemetryConfig(otlp=OtlpConfig(endpoint="http://127.0.0.1:4318", export_logs=False))
    assert build_log_exporter(off, {}) is None
    assert build_log_exporter(TelemetryConfig(), {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://x:4318/v1/logs"}) \
        is not None


JUNK_KEYS = ["transaction", "start_timestamp", "timestamp", "contexts", "trace", "trace_id", "span_id", "op",
             "parent_span_id", "status", "data", "spans", "tags", "items", "name", "is_segment", "end_timestamp",
             "attributes", "value", "type", "traceId", "spanId", "startTimeUnixNano", "endTimeUnixNano", "kind",
             "body", "level", "severityNumber", "transaction_info", "source", "release", "sdk", "description",
             "stringValue", "intValue", "arrayValue", "values", "key", "timeUnixNano", "message", "code"]
JUNK_LEAVES = [None, True, 0, -1, 2 ** 70, 1.5, float("inf"), float("nan"), START, "", "ok", "a" * 32, TRACE, ROOT,
               "2026-01-01T00:00:00Z", "1767225600000000000", EMAIL, "url", "http.server"]


def test_junk_payloads_are_read_or_refused_never_raise_otherwise() -> None:
    """Nested junk of the right key names (seeded): every reader either takes it or raises ItemError, and
    whatever it took encodes."""
    rng = random.Random(13)

    def junk(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 4 or roll < 0.3:
            return rng.choice(JUNK_LEAVES)
        if roll < 0.6:
            return {rng.choice(JUNK_KEYS): junk(depth + 1) for _ in range(rng.randint(0, 6))}
        return [junk(depth + 1) for _ in range(rng.randint(0, 4))]

    transactions = SentryTransactions(MetricStore(), privacy(), SpanQueue(10 ** 6, 10))
    logs = SentryLogs(privacy(), LogQueue(10 ** 6, 10))
    taken = 0
    for _ in range(4000):
        payload = junk()
        if isinstance(payload, dict) and rng.random() < 0.5:         # a readable transaction around the junk
            payload = {**transaction(spans=[]), **payload}
        for kind in ("transaction", "span", "otel_span"):
            try:
                transactions.record(kind, payload)
                taken += 1
            except ItemError:
                pass
        for kind in ("log", "otel_log"):
            try:
                logs.export(payload, kind)
            except ItemError:
                pass
    assert taken > 100
    assert transactions.queue is not None and logs.queue is not None
    encode_spans(transactions.queue.take(10 ** 6))
    encode_logs(logs.queue.take(10 ** 6))
