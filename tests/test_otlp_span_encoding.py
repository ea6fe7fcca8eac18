"""agent/otlp/span_encoding.py against the SDK's OTLP encoder: our bytes, decoded, equal the SDK's
ExportTraceServiceRequest for the same spans (probe spans, event spans, every attribute type,
links, statuses, limits, many resources and scopes, random attributes); and the HTTP exporter that
posts them reaches a real receiver."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings, strategies as st
from opentelemetry.context import Context as OtelContext
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (Link, NonRecordingSpan, set_span_in_context, SpanContext, SpanKind, Status,
                                 StatusCode, TraceFlags, TraceState)

from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.events.model import Context, Event
from agent.events.spans import EventSpans
from agent.otlp.span_encoding import _tag, BoundedCache, encode_spans, varint
from agent.collectors.spans import emit_probe_span
from agent.otlp.tracing import DirectSpanExporter
from tests.support.otlp_receiver import OtlpReceiver

T0 = 1_700_000_000.0
NAN_MARK = 1.2345e-300           # stands in for NaN (never equal to itself) when comparing messages
INT64 = (-(1 << 63), (1 << 63) - 1)


def recording(resource: Resource | None = None, limits: SpanLimits | None = None
              ) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "loom-agent"}),
                              span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def mark_nans(message: Any) -> Any:
    """NaN doubles replaced by NAN_MARK, everywhere in the message (in place)."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in (value if field.is_repeated else [value]):
                mark_nans(item)
        elif field.type == FieldDescriptor.TYPE_DOUBLE and math.isnan(value):
            setattr(message, field.name, NAN_MARK)
    return message


def assert_encodes_like_sdk(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    expected = sdk_encode_spans(spans)
    assert mark_nans(ours) == mark_nans(expected)
    return ours


# -- the agent's own spans ------------------------------------------------------------------------

def test_probe_spans() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("agent.probes", "0.1.0")
    http = ProbeTarget("api", "http", "https://api.example.com/health", None, 15, 5, 0, {}, None)
    tcp = ProbeTarget("db", "tcp", None, "10.0.0.5:5432", 15, 5, 0, {}, None)
    results = [ProbeResult(True, 0.123, None, "", phases={"resolve": 0.001, "connect": 0.02, "tls": 0.05,
                                                          "processing": 0.04, "transfer": 0.002}, status_code=200),
               ProbeResult(False, 0.25, Reason.STATUS, "status 503", phases={"connect": 0.04}, status_code=503),
               ProbeResult(False, 5.0, Reason.TIMEOUT, "", phases={})]
    for i, result in enumerate(results):
        emit_probe_span(tracer, http, result, T0 + i, attempts=1 + i)
    emit_probe_span(tracer, tcp, ProbeResult(False, 0.001, Reason.CONNECT, "refused", phases={"connect": 0.001}),
                    T0, attempts=3)
    spans = exporter.get_finished_spans()
    decoded = assert_encodes_like_sdk(spans)
    pb_spans = decoded.resource_spans[0].scope_spans[0].spans
    assert len(pb_spans) == 4 and pb_spans[1].status.message == "status 503"
    assert encode_spans(spans) == sdk_encode_spans(spans).SerializeToString()   # byte for byte, even


def event(name: str, at: float, user: str | None = "user-1", context: Context | None = None,
          **properties: Any) -> Event:
    return Event(name=name, category="test", timestamp=T0 + at, received_at=T0 + at, properties=properties,
                 user_id=user, session_id="sess-1", context=context or Context())


def test_event_spans_connections_onboarding_and_trace_context() -> None:
    provider, exporter = recording()
    spans = EventSpans(provider.get_tracer("agent.events"), idle_timeout=60)
    parent = Context(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")
    lifecycle = [event("connection_attempt", 0, connection_id="c1", transport="websocket", attempt_number=1),
                 event("connection_established", 0.25, connection_id="c1", latency_ms=250, transport="websocket")]
    lifecycle += [event("realtime_message", 1 + m, connection_id="c1", message_type="chat", bytes=100 + m)
                  for m in range(9)]
    lifecycle += [event("connection_health_check", 11, connection_id="c1", healthy=True),
                  event("connection_disconnected", 12, connection_id="c1", reason="client_closed"),
                  event("connection_attempt", 0, connection_id="c2", transport="sse", context=parent),
                  event("connection_error", 3, connection_id="c2", error_type="timeout", error="no pong in 30 s"),
                  event("connection_attempt", 1, connection_id="c3", transport="polling"),
                  event("onboarding_step_started", 0, step="profile", flow_id="f1"),
                  event("onboarding_step_completed", 5, step="profile", flow_id="f1", time_spent_seconds=5),
                  event("onboarding_step_completed", 9, step=2, flow_id="f1", time_spent_seconds=3.5),
                  event("onboarding_completed", 10, flow_id="f1", total_time_seconds=10),
                  event("onboarding_step_started", 0, user="user-2", step=1),
                  event("onboarding_abandoned", 4, user="user-2", step=1),
                  event("cta_click", 2, context=parent, cta_id="hero", position=1, price=9.99)]
    for e in lifecycle:
        spans.handle(e)
    spans.sweep(T0 + 1000)                  # c3 ends idle (timed out, end reason)
    finished = exporter.get_finished_spans()
    assert {s.name for s in finished} == {"realtime connection", "onboarding", "onboarding.step", "cta_click"}
    decoded = assert_encodes_like_sdk(finished)
    pb_spans = decoded.resource_spans[0].scope_spans[0].spans
    assert max(len(s.events) for s in pb_spans) == 11
    (click,) = [s for s in pb_spans if s.name == "cta_click"]
    assert click.flags == 0x300           # has-is-remote + is-remote: a child of the application's span


# -- values, statuses, links, limits --------------------------------------------------------------

EVERY_TYPE: dict[str, Any] = {
    "text": "plain", "empty": "", "unicode": "ünïcødé ✓ 日本語 🚀", "true": True, "false": False,
    "zero": 0, "one": 1, "negative": -42, "int64.min": INT64[0], "int64.max": INT64[1], "big": 2 ** 40,
    "float": 1.5, "float.zero": 0.0, "float.negzero": -0.0, "inf": math.inf, "-inf": -math.inf, "nan": math.nan,
    "tiny": 5e-324, "strings": ["a", "", "ü"], "ints": [1, -1, INT64[0], INT64[1]], "bools": [True, False],
    "floats": [0.5, -2.0, math.inf], "empty.array": [], "ключ": "значение", "k" * 300: "v" * 5000,
}


def test_every_attribute_type_on_spans_events_and_links() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("first", attributes=EVERY_TYPE) as first:
        first.add_event("everything", EVERY_TYPE, timestamp=1)
        first.add_event("", {})
        first.add_event("no attributes")
    link = Link(first.get_span_context(), {"link.kind": "follows", "n": 3, "f": 0.25})
    tracer.start_span("second", links=[link, Link(first.get_span_context())], attributes=EVERY_TYPE).end()
    assert_encodes_like_sdk(exporter.get_finished_spans())


def test_extended_values_bytes_none_mappings_nested_arrays() -> None:
    provider, exporter = recording()
    values = {"bytes": b"\x00\xffraw", "empty.bytes": b"", "none": None, "map": {"a": 1, "b": {"c": [1, "x"]}},
              "nested": [[1, 2], ["a"]], "mixed": [1, "a", None, 2.5, b"z"]}
    span = provider.get_tracer("t").start_span("extended", attributes=values)
    span.add_event("extended", values)
    span.end()
    assert_encodes_like_sdk(exporter.get_finished_spans())


def test_same_key_with_values_of_different_types_is_not_confused_by_the_cache() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("t")
    for value in (True, 1, 1.0, "1", False, 0, 0.0, -0.0, "0", "", [1], [1.0], [True]):
        for _ in range(2):                   # the second one comes from the cache
            tracer.start_span("v", attributes={"same.key": value}).end()
    decoded = assert_encodes_like_sdk(exporter.get_finished_spans())
    values = [s.attributes[0].value for s in decoded.resource_spans[0].scope_spans[0].spans]
    assert values[6].double_value == 0.0 and math.copysign(1, values[14].double_value) == -1


def test_unencodable_values_are_skipped_and_logged_like_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    provider, exporter = recording()
    values = {"too.big": 1 << 63, "too.small": [-(1 << 63) - 1], "surrogate": "\ud800", "ok": "kept"}
    provider.get_tracer("t").start_span("bad", attributes=values).end()
    with caplog.at_level(logging.ERROR):
        decoded = assert_encodes_like_sdk(exporter.get_finished_spans())
    assert [a.key for a in decoded.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    assert sum("too.big" in r.getMessage() for r in caplog.records) == 2        # the SDK's log and ours


def test_kinds_statuses_parents_trace_state_and_times() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("t")
    state = TraceState([("vendor", "value"), ("loom", "a1")])
    remote = set_span_in_context(NonRecordingSpan(SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=state)))
    for kind in SpanKind:
        tracer.start_span(f"kind {kind.name}", kind=kind, start_time=1, context=remote).end(end_time=(1 << 64) - 1)
    statuses = [Status(StatusCode.OK), Status(StatusCode.ERROR), Status(StatusCode.ERROR, "boom ✗"),
                Status(StatusCode.UNSET), Status(StatusCode.ERROR, "")]
    for status in statuses:
        span = tracer.start_span("status", context=OtelContext())
        span.set_status(status)
        span.end()
    with tracer.start_as_current_span("local parent"):
        tracer.start_span("local child").end()
    assert_encodes_like_sdk(exporter.get_finished_spans())


def test_links_remote_and_local_and_dropped_counts() -> None:
    limits = SpanLimits(max_span_attributes=2, max_events=2, max_links=2, max_event_attributes=1,
                        max_link_attributes=1)
    provider, exporter = recording(limits=limits)
    tracer = provider.get_tracer("t")
    local = tracer.start_span("target")
    local.end()
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_state=TraceState([("k", "v")]))
    links = [Link(remote, {"c": "x"}), Link(remote), Link(local.get_span_context(), {"a": 1, "b": 2})]   # keeps 2
    span = tracer.start_span("limited", links=links, attributes={"a": 1, "b": 2, "c": 3, "d": 4})
    for i in range(5):
        span.add_event(f"e{i}", {"x": i, "y": i})
    span.end()
    decoded = assert_encodes_like_sdk(exporter.get_finished_spans())
    limited = decoded.resource_spans[0].scope_spans[0].spans[1]
    assert (limited.dropped_attributes_count, limited.dropped_events_count, limited.dropped_links_count) == (2, 3, 1)
    assert [link.dropped_attributes_count for link in limited.links] == [0, 1]
    assert [link.flags for link in limited.links] == [0x300, 0x100]


# -- grouping --------------------------------------------------------------------------------------

def test_many_resources_and_scopes_interleaved() -> None:
    exporter = InMemorySpanExporter()
    resources = [Resource.create({"service.name": "a"}), Resource({"service.name": "b", "n": 2}, "https://s/1"),
                 Resource.create({"service.name": "a"}),        # equal to the first: the same group
                 Resource({})]
    tracers = []
    for resource in resources:
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers += [provider.get_tracer("one"), provider.get_tracer("two", "2.0", "https://schema/2"),
                    provider.get_tracer("three", attributes={"scope.attr": "x", "n": 1}), provider.get_tracer("")]
    for round_ in range(3):
        for i, tracer in enumerate(reversed(tracers)):
            tracer.start_span(f"span {round_}.{i}").end()
    spans = list(exporter.get_finished_spans())
    unscoped = ReadableSpan("no scope", context=spans[0].context, resource=resources[1], instrumentation_scope=None,
                            start_time=5, end_time=None)
    decoded = assert_encodes_like_sdk(spans + [unscoped])
    assert len(decoded.resource_spans) == 3


def test_spans_built_by_hand_and_an_empty_batch() -> None:
    context = SpanContext(1, 2, is_remote=False)
    scope = InstrumentationScope("hand", None, None, None)
    resource = Resource({"r": 1})
    spans = [ReadableSpan("", context=context, parent=SpanContext(1, 3, is_remote=True), resource=resource,
                          instrumentation_scope=scope),
             ReadableSpan("unended", context=context, start_time=7, attributes={"a": "b"}, resource=resource,
                          instrumentation_scope=scope)]
    assert_encodes_like_sdk(spans)
    assert encode_spans([]) == b"" == sdk_encode_spans([]).SerializeToString()


# -- random attributes -----------------------------------------------------------------------------

SCALARS = {"str": st.text(max_size=20), "bool": st.booleans(), "int": st.integers(*INT64),
           "float": st.floats(allow_nan=True, allow_infinity=True)}
VALUES = st.one_of(*SCALARS.values(), *(st.lists(s, max_size=4) for s in SCALARS.values()))
ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=12), VALUES, max_size=8)


@settings(max_examples=150, deadline=None)
@given(span_attributes=ATTRIBUTES, event_attributes=st.lists(ATTRIBUTES, max_size=3), name=st.text(max_size=10))
def test_random_attributes_encode_like_the_sdk(span_attributes: dict[str, Any],
                                               event_attributes: list[dict[str, Any]], name: str) -> None:
    provider, exporter = recording()
    span = provider.get_tracer("random").start_span(name, attributes=span_attributes)
    for i, attributes in enumerate(event_attributes):
        span.add_event(name or "e", attributes, timestamp=i)
    span.end()
    spans = exporter.get_finished_spans() * 2          # the second copy meets a warm cache
    assert_encodes_like_sdk(spans)


# -- pieces ---------------------------------------------------------------------------------------

def test_varint_and_field_tags_follow_the_proto() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 16383, 16384)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\xff\x7f", b"\x80\x80\x01"]
    assert varint((1 << 64) - 1) == b"\xff" * 9 + b"\x01"
    assert _tag(PbSpan, "flags", FieldDescriptor.TYPE_FIXED32) == b"\x85\x01"        # field 16, fixed32
    with pytest.raises(ImportError):
        _tag(PbSpan, "name", FieldDescriptor.TYPE_BYTES)


def test_bounded_cache_keeps_recent_entries_within_its_size() -> None:
    cache = BoundedCache(10)
    for i in range(100):
        cache.put(i, b"%d" % i)
        assert len(cache) <= 10
    assert cache.get(99) == b"99" and cache.get(50) is None and cache.get(0) is None
    cache.put("hot", b"h")
    for i in range(1000):
        cache.put(i, b"")
        assert cache.get("hot") == b"h"           # used all the time: never evicted


# -- the exporter ----------------------------------------------------------------------------------

@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver("http/protobuf") as sink:
        yield sink


def some_spans() -> Sequence[ReadableSpan]:
    provider, exporter = recording()
    for i in range(3):
        span = provider.get_tracer("t").start_span(f"s{i}", attributes={"i": i, "text": "ü"})
        span.add_event("e", {"x": 1.5})
        span.end()
    return exporter.get_finished_spans()


def test_exporter_posts_our_bytes_with_the_sdk_client(receiver: OtlpReceiver) -> None:
    exporter = DirectSpanExporter(endpoint=receiver.endpoint + "/v1/traces", headers={"x-loom-key": "k"},
                                  timeout=2.0, compression=None)
    spans = some_spans()
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    (request,) = receiver.accepted("traces")
    assert request == sdk_encode_spans(spans)
    headers = {k.lower(): v for k, v in receiver.received[0].headers.items()}
    assert headers["x-loom-key"] == "k" and headers["content-type"] == "application/x-protobuf"
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE


def test_exporter_compresses_and_limits_request_size(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    spans = some_spans()
    exporter = DirectSpanExporter(endpoint=receiver.endpoint + "/v1/traces", timeout=2.0)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert {k.lower(): v for k, v in receiver.received[0].headers.items()}["content-encoding"] == "gzip"
    assert receiver.accepted("traces") == [sdk_encode_spans(spans)]
    small = DirectSpanExporter(endpoint=receiver.endpoint + "/v1/traces", timeout=2.0, max_request_size=100)
    assert small.export(spans) is SpanExportResult.FAILURE
    assert len(receiver.received) == 1                  # too large: never sent
