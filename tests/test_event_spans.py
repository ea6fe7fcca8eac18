"""Events to spans (agent.events.spans) against an in-memory SDK exporter."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agent.events.model import Context, Event
from agent.events.spans import EventSpans, to_ns

T0 = 1_700_000_000.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def setup(**options: Any) -> tuple[EventSpans, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return EventSpans(provider.get_tracer("test"), **options), exporter


def event(name: str, at: float, received_at: float | None = None, user: str | None = "user-1",
          context: Context | None = None, **properties: Any) -> Event:
    return Event(name=name, category="test", timestamp=T0 + at,
                 received_at=T0 + (at if received_at is None else received_at), properties=properties,
                 user_id=user, session_id="sess-1", context=context or Context())


def conn(name: str, at: float, conn_id: str = "c1", **properties: Any) -> Event:
    return event(name, at, connection_id=conn_id, **properties)


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def all_attribute_values(span: ReadableSpan) -> list[Any]:
    values = list(span.attributes.values())
    for span_event in span.events:
        values.extend(span_event.attributes.values())
    return values


def test_connection_lifecycle_is_one_span_with_events_in_order() -> None:
    spans, exporter = setup()
    for e in [conn("connection_attempt", 0, transport="websocket"),
              conn("connection_established", 0.25, latency_ms=250, transport="websocket"),
              conn("realtime_message", 1, message_type="notification_update", bytes=1024),
              conn("connection_health_check", 2, healthy=True),
              conn("realtime_message", 3, message_type="chat", bytes=12),
              conn("connection_disconnected", 10.5, reason="client_closed")]:
        spans.handle(e)
        if e.name != "connection_disconnected":
            assert exporter.get_finished_spans() == ()      # exported when the connection ends
    (span,) = exporter.get_finished_spans()
    assert span.name == "realtime connection" and span.kind is SpanKind.CLIENT
    assert span.start_time == to_ns(T0) and span.end_time == to_ns(T0 + 10.5)
    assert [e.name for e in span.events] == ["connection_established", "realtime_message",
                                             "connection_health_check", "realtime_message"]
    assert [e.timestamp for e in span.events] == [to_ns(T0 + t) for t in (0.25, 1, 2, 3)]
    assert span.events[0].attributes["loom.connection.latency_ms"] == 250
    assert span.events[1].attributes["loom.connection.message_type"] == "notification_update"
    assert span.events[1].attributes["loom.connection.bytes"] == 1024
    assert span.status.status_code is StatusCode.OK
    attributes = span.attributes
    assert attributes["loom.connection.id"] == "c1"
    assert attributes["loom.connection.transport"] == "websocket"
    assert attributes["loom.connection.reason"] == "client_closed"
    assert attributes["loom.connection.messages"] == 2 and attributes["loom.connection.attempts"] == 1
    assert "enduser.id" not in attributes and "user-1" not in all_attribute_values(span)
    assert "loom.span.timed_out" not in attributes
    assert spans.counts()["connection"]["open"] == 0 and spans.counts()["connection"]["spans"] == 1


def test_connection_error_ends_span_with_error_status() -> None:
    spans, exporter = setup()
    spans.handle(conn("connection_attempt", 0, transport="sse"))
    spans.handle(conn("connection_error", 4, error="handshake refused", error_type="handshake"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "handshake refused"
    assert span.attributes["error.type"] == "handshake"
    assert span.attributes["loom.connection.transport"] == "sse"
    assert span.end_time - span.start_time == 4_000_000_000


def test_connection_error_in_the_catalog_shape() -> None:
    spans, exporter = setup()
    spans.handle(conn("connection_attempt", 0, transport="websocket"))
    spans.handle(conn("connection_error", 1, reason="server went away", error_code="ECONNRESET"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "server went away"
    assert span.attributes["error.type"] == "ECONNRESET"


def test_idle_connection_times_out_at_its_last_event() -> None:
    spans, exporter = setup(idle_timeout=300)
    spans.handle(conn("connection_attempt", 0, transport="websocket"))
    spans.handle(conn("realtime_message", 7.5, message_type="ping", bytes=4))
    spans.sweep(T0 + 7.5 + 299)
    assert exporter.get_finished_spans() == () and spans.counts()["connection"]["open"] == 1
    spans.sweep(T0 + 7.5 + 300)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["loom.span.timed_out"] is True
    assert span.attributes["loom.span.end_reason"] == "idle"
    assert span.end_time == to_ns(T0 + 7.5)
    assert span.status.status_code is StatusCode.UNSET
    assert spans.counts()["connection"]["open"] == 0 and spans.counts()["connection"]["timed_out"] == 1


def test_idle_is_measured_on_the_agent_clock_not_event_timestamps() -> None:
    spans, exporter = setup(idle_timeout=60)
    # a backfilled event from an hour ago, received now: not idle
    spans.handle(event("connection_attempt", -3600, received_at=0, connection_id="old"))
    spans.sweep(T0 + 30)
    assert exporter.get_finished_spans() == ()
    spans.sweep(T0 + 60)
    (span,) = exporter.get_finished_spans()
    assert span.end_time == to_ns(T0 - 3600)


def test_messages_beyond_the_cap_are_counted_not_recorded() -> None:
    spans, exporter = setup(max_span_events=3)
    spans.handle(conn("connection_attempt", 0))
    for i in range(5):
        spans.handle(conn("realtime_message", 1 + i, message_type="m", bytes=i))
    spans.handle(conn("connection_disconnected", 9))
    (span,) = exporter.get_finished_spans()
    assert len(span.events) == 3
    assert span.attributes["loom.span.events_dropped"] == 2
    assert span.attributes["loom.connection.messages"] == 5


def test_established_before_attempt_still_starts_at_the_attempt() -> None:
    spans, exporter = setup()
    spans.handle(conn("realtime_message", 2, message_type="a", bytes=1))
    spans.handle(conn("connection_established", 0.5, latency_ms=500))
    spans.handle(conn("connection_attempt", 0, transport="websocket"))
    spans.handle(conn("connection_disconnected", 5, reason="done"))
    (span,) = exporter.get_finished_spans()
    assert span.start_time == to_ns(T0) and span.end_time == to_ns(T0 + 5)
    assert [e.name for e in span.events] == ["connection_established", "realtime_message"]
    assert span.attributes["loom.connection.transport"] == "websocket"


def test_late_events_after_close_are_dropped_and_newer_ones_open_a_new_span() -> None:
    spans, exporter = setup()
    spans.handle(conn("connection_attempt", 0))
    spans.handle(conn("connection_disconnected", 5))
    spans.handle(conn("realtime_message", 4, message_type="late", bytes=1))   # before the end: late
    assert spans.counts()["connection"]["late"] == 1 and spans.counts()["connection"]["open"] == 0
    spans.handle(conn("connection_attempt", 60))                               # the id reused
    spans.handle(conn("connection_disconnected", 61))
    first, second = exporter.get_finished_spans()
    assert first.events == () and second.start_time == to_ns(T0 + 60)


def test_memory_of_closed_ids_is_bounded_and_expires() -> None:
    spans, exporter = setup(max_open=1, idle_timeout=60)
    for conn_id in ("a", "b"):
        spans.handle(conn("connection_attempt", 0, conn_id))
        spans.handle(conn("connection_disconnected", 5, conn_id))
    spans.handle(conn("realtime_message", 1, "b", message_type="m", bytes=1))    # b remembered: late
    assert spans.counts()["connection"]["late"] == 1
    spans.handle(conn("realtime_message", 1, "a", message_type="m", bytes=1))    # a forgotten (cap): opens
    assert spans.counts()["connection"]["open"] == 1


def test_closed_ids_are_forgotten_after_the_idle_timeout() -> None:
    spans, exporter = setup(idle_timeout=60)
    spans.handle(conn("connection_attempt", 0))
    spans.handle(conn("connection_disconnected", 5))
    spans.sweep(T0 + 5 + 59)
    spans.handle(conn("realtime_message", 1, message_type="m", bytes=1))
    assert spans.counts()["connection"]["late"] == 1
    spans.sweep(T0 + 5 + 60)
    spans.handle(conn("realtime_message", 1, message_type="m", bytes=1))
    assert spans.counts()["connection"]["late"] == 1 and spans.counts()["connection"]["open"] == 1


def test_open_connection_cap_evicts_the_least_recently_active() -> None:
    spans, exporter = setup(max_open=2)
    spans.handle(conn("connection_attempt", 0, "a"))
    spans.handle(conn("connection_attempt", 1, "b"))
    spans.handle(conn("realtime_message", 2, "a", message_type="m", bytes=1))     # a is now the most recent
    spans.handle(conn("connection_attempt", 3, "c"))
    (evicted,) = exporter.get_finished_spans()
    assert evicted.attributes["loom.connection.id"] == "b"
    assert evicted.attributes["loom.span.timed_out"] is True
    assert evicted.attributes["loom.span.end_reason"] == "evicted"
    assert spans.counts()["connection"]["open"] == 2 and spans.counts()["connection"]["evicted"] == 1


def test_connection_without_id_is_counted_and_ignored() -> None:
    spans, exporter = setup()
    spans.handle(event("connection_attempt", 0, transport="websocket"))
    spans.handle(event("realtime_message", 1, connection_id=["not", "an", "id"]))
    spans.close()
    assert exporter.get_finished_spans() == ()
    assert spans.counts()["connection"]["unkeyed"] == 2


def test_onboarding_flow_is_one_trace_with_a_span_per_step() -> None:
    spans, exporter = setup()
    spans.handle(event("onboarding_step_started", 0, step="welcome", step_number=1, total_steps=3))
    spans.handle(event("onboarding_step_completed", 20, step="welcome", step_number=1, total_steps=3,
                       time_spent_seconds=20))
    spans.handle(event("onboarding_step_started", 21, step="profile_setup", step_number=2, total_steps=3))
    spans.handle(event("onboarding_step_completed", 66, step="profile_setup", step_number=2, total_steps=3,
                       time_spent_seconds=45, interaction_count=12))
    # no start event for step 3: its start comes from time_spent_seconds
    spans.handle(event("onboarding_step_completed", 100, step="first_goal", step_number=3, total_steps=3,
                       time_spent_seconds=30))
    # each step is exported when it completes, before the flow ends
    assert len(exporter.get_finished_spans()) == 3 and spans.counts()["onboarding"]["open"] == 1
    spans.handle(event("onboarding_completed", 101, total_steps=3))
    (root,) = by_name(exporter, "onboarding")
    steps = by_name(exporter, "onboarding.step")
    assert root.parent is None
    assert root.start_time == to_ns(T0) and root.end_time == to_ns(T0 + 101)
    assert root.status.status_code is StatusCode.OK
    assert root.attributes["loom.onboarding.outcome"] == "completed"
    assert root.attributes["loom.onboarding.steps_completed"] == 3
    assert [s.attributes["loom.onboarding.step"] for s in steps] == ["welcome", "profile_setup", "first_goal"]
    for step in steps:
        assert step.context.trace_id == root.context.trace_id
        assert step.parent.span_id == root.context.span_id
    assert steps[1].start_time == to_ns(T0 + 21) and steps[1].end_time == to_ns(T0 + 66)
    assert steps[1].attributes["loom.onboarding.time_spent_seconds"] == 45
    assert steps[1].attributes["loom.onboarding.interaction_count"] == 12
    assert steps[2].start_time == to_ns(T0 + 70) and steps[2].end_time == to_ns(T0 + 100)
    for span in exporter.get_finished_spans():
        assert "user-1" not in all_attribute_values(span) and "enduser.id" not in span.attributes


def test_two_users_get_two_traces() -> None:
    spans, exporter = setup()
    spans.handle(event("onboarding_step_started", 0, user="u1", step="welcome"))
    spans.handle(Event("onboarding_step_started", "onboarding", T0, T0, {"step": "welcome"}, anonymous_id="anon-9"))
    spans.close()
    roots = by_name(exporter, "onboarding")
    assert len(roots) == 2 and roots[0].context.trace_id != roots[1].context.trace_id


def test_flow_id_separates_runs_of_one_user() -> None:
    spans, exporter = setup()
    spans.handle(event("onboarding_step_started", 0, step="welcome", flow_id="run-1"))
    spans.handle(event("onboarding_step_started", 1, step="welcome", flow_id="run-2"))
    spans.handle(event("onboarding_completed", 2, flow_id="run-1", total_time_seconds=2))
    assert spans.counts()["onboarding"]["open"] == 1
    spans.close()
    assert [root.attributes["loom.onboarding.flow_id"] for root in by_name(exporter, "onboarding")] == [
        "run-1", "run-2"]


def test_completion_without_steps_is_a_root_span_back_to_its_total_time() -> None:
    spans, exporter = setup()
    spans.handle(event("onboarding_completed", 100, total_time_seconds=40, total_steps=5))
    (root,) = exporter.get_finished_spans()
    assert root.start_time == to_ns(T0 + 60) and root.end_time == to_ns(T0 + 100)
    assert root.attributes["loom.onboarding.total_steps"] == 5


def test_abandoned_flow_is_not_an_error_and_exports_the_unfinished_step() -> None:
    spans, exporter = setup()
    spans.handle(event("onboarding_step_started", 0, step="welcome", step_number=1))
    spans.handle(event("onboarding_step_completed", 10, step="welcome", step_number=1))
    spans.handle(event("onboarding_step_started", 11, step="profile_setup", step_number=2))
    spans.handle(event("onboarding_abandoned", 50, step="profile_setup"))
    (root,) = by_name(exporter, "onboarding")
    assert root.attributes["loom.onboarding.outcome"] == "abandoned"
    assert root.status.status_code is StatusCode.UNSET
    unfinished = [s for s in by_name(exporter, "onboarding.step")
                  if s.attributes["loom.onboarding.step_outcome"] == "unfinished"]
    assert [s.attributes["loom.onboarding.step"] for s in unfinished] == ["profile_setup"]
    assert unfinished[0].end_time == to_ns(T0 + 50) and unfinished[0].parent.span_id == root.context.span_id


def test_idle_flow_times_out_at_its_last_event() -> None:
    spans, exporter = setup(idle_timeout=60)
    spans.handle(event("onboarding_step_started", 0, step="welcome"))
    spans.handle(event("onboarding_step_completed", 5, step="welcome"))
    spans.sweep(T0 + 65)
    (root,) = by_name(exporter, "onboarding")
    assert root.attributes["loom.span.timed_out"] is True
    assert root.attributes["loom.onboarding.outcome"] == "timed_out"
    assert root.end_time == to_ns(T0 + 5)
    assert spans.counts()["onboarding"]["open"] == 0 and spans.counts()["onboarding"]["timed_out"] == 1


def test_late_step_completion_joins_the_closed_flow() -> None:
    spans, exporter = setup()
    spans.handle(event("onboarding_step_started", 0, step="a"))
    spans.handle(event("onboarding_completed", 30))
    spans.handle(event("onboarding_step_completed", 29, step="a", time_spent_seconds=9))
    (root,) = by_name(exporter, "onboarding")
    completed = [s for s in by_name(exporter, "onboarding.step")
                 if s.attributes["loom.onboarding.step_outcome"] == "completed"]
    assert len(completed) == 1 and completed[0].parent.span_id == root.context.span_id
    assert completed[0].start_time == to_ns(T0 + 20)
    assert spans.counts()["onboarding"]["open"] == 0


def test_event_with_trace_context_becomes_a_span_in_that_trace() -> None:
    spans, exporter = setup()
    spans.handle(event("cta_click", 3, context=Context(trace_id=TRACE_ID, span_id=SPAN_ID), cta_id="hero",
                       email="someone@example.com"))
    (span,) = exporter.get_finished_spans()
    assert span.name == "cta_click"
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.parent.span_id == int(SPAN_ID, 16) and span.parent.is_remote
    assert span.start_time == span.end_time == to_ns(T0 + 3)
    assert span.attributes["loom.event.cta_id"] == "hero"
    assert span.attributes["loom.event.category"] == "test"
    assert "someone@example.com" not in all_attribute_values(span)


def test_invalid_trace_context_produces_no_span() -> None:
    spans, exporter = setup()
    spans.handle(event("cta_click", 0, context=Context(trace_id="xyz", span_id=SPAN_ID)))
    spans.handle(event("cta_click", 0, context=Context(trace_id="0" * 32, span_id=SPAN_ID)))
    spans.handle(event("cta_click", 0, context=Context(trace_id=TRACE_ID, span_id=None)))
    assert exporter.get_finished_spans() == ()
    assert spans.counts()["trace_context"]["unkeyed"] == 3


def test_connection_and_flow_join_the_trace_of_their_first_event() -> None:
    spans, exporter = setup()
    traced = Context(trace_id=TRACE_ID, span_id=SPAN_ID)
    spans.handle(event("connection_attempt", 0, context=traced, connection_id="c9"))
    spans.handle(event("connection_disconnected", 1, connection_id="c9"))
    spans.handle(event("onboarding_step_started", 0, context=traced, step="welcome"))
    spans.handle(event("onboarding_step_completed", 1, step="welcome"))
    spans.handle(event("onboarding_completed", 2))
    (connection,) = by_name(exporter, "realtime connection")
    (root,) = by_name(exporter, "onboarding")
    (step,) = by_name(exporter, "onboarding.step")
    for span in (connection, root):
        assert span.context.trace_id == int(TRACE_ID, 16) and span.parent.span_id == int(SPAN_ID, 16)
    assert step.context.trace_id == int(TRACE_ID, 16) and step.parent.span_id == root.context.span_id
    assert len(exporter.get_finished_spans()) == 3     # no extra trace-context span for these events


def test_unrelated_events_produce_no_spans() -> None:
    spans, exporter = setup()
    for name in ("cta_click", "landing_page_view", "session_booked", "web_vital", "my_custom_event"):
        spans.handle(event(name, 0, connection_id="c1", step="welcome"))
    spans.close()
    assert exporter.get_finished_spans() == ()
    assert all(kind["open"] == 0 and kind["spans"] == 0 for kind in spans.counts().values())


def test_close_ends_open_spans_as_shutdown() -> None:
    spans, exporter = setup()
    spans.handle(conn("connection_attempt", 0))
    spans.handle(event("onboarding_step_started", 0, step="welcome"))
    spans.close()
    assert {s.attributes.get("loom.span.end_reason") for s in exporter.get_finished_spans()
            if s.name != "onboarding.step"} == {"shutdown"}
    assert spans.counts()["connection"]["open"] == spans.counts()["onboarding"]["open"] == 0


def test_run_sweeper_sweeps_until_cancelled() -> None:
    async def scenario() -> int:
        spans, exporter = setup(idle_timeout=0)
        spans.handle(conn("connection_attempt", 0))
        task = asyncio.create_task(spans.run_sweeper(0.01))
        for _ in range(500):                 # bounded wait, not a timing assertion
            if exporter.get_finished_spans():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        return len(exporter.get_finished_spans())

    assert asyncio.run(scenario()) == 1
