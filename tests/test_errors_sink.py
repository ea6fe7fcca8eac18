"""The error path after validation (agent/error_tracking/sink.py, spans.py), without a store: privacy before
everything (scrubbed message, extra, tags and frames, pseudonymised user, Do-Not-Track and opted-out
errors kept without the person), loom_errors_total and its cardinality guard, and the OTel exception
span under the application's trace (in-memory exporter)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.fingerprint import fingerprint
from agent.error_tracking.sink import ErrorSink, sample_json
from agent.error_tracking.spans import render_stacktrace
from agent.error_tracking.validate import parse_error
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.events.span_common import to_ns
from agent.events.validate import Limits
from agent.metrics.store import OTHER, MetricStore

NOW = 1_795_514_405.0
KEY = b"k" * 32
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CARD = "4111 1111 1111 1111"
ALICE = "alice@example.com"


def make_error(config: ErrorsConfig = ErrorsConfig(), dnt: bool = False, **fields: Any):
    body = {"type": "TypeError", "message": "boom", "frames": [
        {"filename": "src/app.ts", "function": "main", "lineno": 3, "inApp": True},
        {"filename": "src/pay.ts", "function": "charge", "lineno": 42, "colno": 7, "inApp": True}], **fields}
    return parse_error(body, now=NOW, config=config, limits=Limits(), dnt_header=dnt)


class Setup:
    def __init__(self, config: ErrorsConfig = ErrorsConfig(), privacy: PrivacyConfig = PrivacyConfig()):
        self.metrics = MetricStore()
        self.privacy = Privacy(privacy, KEY)
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.sink = ErrorSink(config, self.metrics, self.privacy, provider.get_tracer("test"))

    def record(self, *errors: Any):
        return asyncio.run(self.sink.record(list(errors), None))

    def counts(self) -> dict[tuple[str, ...], float]:
        return dict(self.metrics.get("loom_errors").series)

    def anonymized(self) -> dict[tuple[str, ...], float]:
        return dict(self.metrics.get("loom_agent_events_anonymized").series)


# --- privacy ----------------------------------------------------------------------------------------

def test_message_extra_tags_frames_and_ids_are_scrubbed_before_anything_else():
    setup = Setup(privacy=PrivacyConfig(private_properties=("home_address",)))
    error = make_error(message=f"charge failed for {ALICE} with card {CARD}", userId=ALICE, eventId=f"{ALICE}:1",
                       extra={"amount": 49, "password": "hunter2", "note": f"card {CARD}", "homeAddress": "1 Main St",
                              "nested": {"apiKey": "k", "contact": ALICE}},
                       tags={"feature": "payment", "customer": ALICE, "access_token": "t"},
                       frames=[{"filename": f"/home/{ALICE}/app.py", "function": "charge", "inApp": True}],
                       context={"page": f"/pay?email={ALICE}", "ip": "192.0.2.77"})
    result = setup.record(error)
    pseudonym = setup.privacy.pseudonymize(ALICE)
    assert error.message == f"charge failed for {pseudonym} with card [card]"
    assert error.user_id == pseudonym and error.event_id == f"{pseudonym}:1"
    assert error.extra == {"amount": 49, "note": "card [card]", "homeAddress": "[private]",
                           "nested": {"contact": pseudonym}}
    assert error.tags == {"feature": "payment", "customer": pseudonym}
    assert error.frames[0].filename == f"/home/{pseudonym}/app.py"
    assert (error.context.page, error.context.ip) == (f"/pay?email={pseudonym}", "192.0.2.0")
    stored = sample_json(error)
    for secret in (ALICE, "hunter2", "4111", "1 Main St", "192.0.2.77"):
        assert secret not in stored
    assert result.fingerprints == [fingerprint(error)]


def test_the_type_environment_and_fingerprint_are_scrubbed_and_the_release_kept():
    setup = Setup()
    error = make_error(type=f"Err{CARD.replace(' ', '')}", environment=f"qa:{ALICE}", fingerprint=[f"card {CARD}"],
                       release="loom-web@2.3.1+b7")
    setup.record(error)
    assert error.type == "Err[card]" and error.environment == "qa:" + setup.privacy.pseudonymize(ALICE)
    assert error.fingerprint == ("card [card]",)
    assert error.release == "loom-web@2.3.1+b7"          # a build, not a person: e-mail shapes are refused earlier


def test_dnt_and_opted_out_errors_are_kept_and_counted_without_the_person():
    """An error is service health: it is never dropped, whatever privacy.dnt says, only anonymised."""
    setup = Setup(privacy=PrivacyConfig(dnt="drop", opted_out="drop"))
    setup.privacy.opted_out.add(setup.privacy.pseudonymize("user_7"))
    dnt = make_error(userId="user_1", dnt=True, context={"userAgent": "Firefox", "ip": "192.0.2.1"})
    opted_out = make_error(userId="user_7")
    plain = make_error(userId="user_2")
    result = setup.record(dnt, opted_out, plain)
    assert (result.accepted, result.stored) == (3, 3)
    assert [e.user_id for e in (dnt, opted_out, plain)] == [None, None, "user_2"]
    assert (dnt.context.user_agent, dnt.context.ip) == (None, None)
    assert setup.anonymized() == {("dnt",): 1.0, ("opted_out",): 1.0}
    assert setup.counts() == {("unknown", "TypeError", "unknown"): 3.0}


# --- metrics ----------------------------------------------------------------------------------------

def test_loom_errors_total_counts_by_feature_type_and_release():
    setup = Setup()
    setup.record(make_error(tags={"feature": "payment"}, release="1.4.2"),
                 make_error(tags={"feature": "payment"}, release="1.4.2"),
                 make_error(type="RangeError", tags={"feature": "goals"}),
                 make_error())
    assert setup.counts() == {("payment", "TypeError", "1.4.2"): 2.0, ("goals", "RangeError", "unknown"): 1.0,
                              ("unknown", "TypeError", "unknown"): 1.0}


def test_every_label_is_bounded_by_the_series_limit():
    setup = Setup(ErrorsConfig(series_limit=3))
    setup.record(*[make_error(type=f"Error{i}", tags={"feature": f"f{i}"}, release=f"r{i}") for i in range(6)])
    counts = setup.counts()
    assert len(counts) == 4 and counts[(OTHER, OTHER, OTHER)] == 3.0
    assert sum(counts.values()) == 6.0
    assert setup.metrics.overflow[("loom_errors", "type")] == 3
    setup.sink.reconfigure(ErrorsConfig(series_limit=10))           # a reload raises the bound
    setup.record(make_error(type="Late", tags={"feature": "late"}))
    assert setup.counts()[("late", "Late", "unknown")] == 1.0


# --- the exception span -----------------------------------------------------------------------------

def test_with_trace_context_an_exception_span_joins_the_applications_trace():
    setup = Setup()
    error = make_error(message=f"charge failed for {ALICE}", tags={"feature": "payment"}, release="1.4.2",
                       environment="production", userId="user_9", timestamp=NOW - 2,
                       context={"traceId": TRACE_ID, "spanId": SPAN_ID})
    (print_,) = setup.record(error).fingerprints
    (span,) = setup.exporter.get_finished_spans()
    assert span.name == "exception TypeError" and span.kind == SpanKind.INTERNAL
    assert format(span.context.trace_id, "032x") == TRACE_ID and format(span.parent.span_id, "016x") == SPAN_ID
    assert span.parent.is_remote and span.status.status_code == StatusCode.ERROR
    assert span.start_time == span.end_time == to_ns(NOW - 2)
    (event,) = span.events
    pseudonym = setup.privacy.pseudonymize(ALICE)
    assert event.name == "exception" and event.timestamp == to_ns(NOW - 2)
    assert dict(event.attributes) == {
        "exception.type": "TypeError", "exception.message": f"charge failed for {pseudonym}",
        "exception.stacktrace": f"TypeError: charge failed for {pseudonym}\n"
                                "    at charge (src/pay.ts:42:7)\n"
                                "    at main (src/app.ts:3)"}
    assert dict(span.attributes) == {"loom.error.fingerprint": print_, "loom.error.level": "error",
                                     "loom.error.release": "1.4.2", "loom.error.environment": "production",
                                     "loom.error.tag.feature": "payment"}
    assert "user_9" not in orjson.dumps({**span.attributes, **event.attributes}).decode()


def test_without_trace_context_there_is_no_span():
    setup = Setup()
    setup.record(make_error(), make_error(context={"traceId": TRACE_ID}))       # a trace id alone is not a parent
    assert setup.exporter.get_finished_spans() == ()


def test_the_stacktrace_of_an_oversized_stack_marks_the_omitted_frames():
    frames = [{"filename": f"f{i}.js", "function": f"fn{i}", "lineno": i} for i in range(9)]
    error = make_error(ErrorsConfig(max_frames=4), frames=frames, message="")
    assert render_stacktrace(error).splitlines() == [
        "TypeError", "    at fn8 (f8.js:8)", "    at fn7 (f7.js:7)", "    ... 5 frames omitted ...",
        "    at fn1 (f1.js:1)", "    at fn0 (f0.js:0)"]
    place_only = make_error(frames=[{"module": "app.pay"}, {"filename": "x.py", "lineno": 2}])
    assert render_stacktrace(place_only).splitlines()[1:] == ["    at x.py:2", "    at app.pay"]


def test_observers_see_the_errors_once_stored():
    setup = Setup()
    seen: list[list[str | None]] = []
    setup.sink.observers.append(lambda errors: seen.append([e.release for e in errors]))
    setup.record(make_error(release="1.4.2"), make_error())
    assert seen == [["1.4.2", None]]
