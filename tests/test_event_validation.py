"""Event validation: the documentation's own examples, every bad-input message, batches, the PostHog
shape, and a property test that arbitrary JSON never raises anything but EventError."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events.catalog import CATALOG
from agent.events.posthog import capture_api_key, parse_capture, parse_posthog_batch
from agent.events.validate import BatchError, EventError, Limits, parse_batch, parse_event

NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z


def doc(event: str, properties: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"event": event, "userId": "user_42", "timestamp": "2026-11-24T10:00:00Z", "properties": properties,
            **envelope}


# --- the documentation's TypeScript examples, as a client would send them (camelCase) ---------------

DOC_EXAMPLES = [
    ("trackCampaignConversion",
     doc("campaign_conversion", {"conversionType": "trial", "conversionValue": 0, "source": "google",
                                 "medium": "cpc", "campaign": "summer_trial", "experimentId": "pricing_test_v2",
                                 "variantId": "variant_b"}),
     {"conversion_type": "trial", "conversion_value": 0.0, "source": "google", "medium": "cpc",
      "campaign": "summer_trial", "experiment_id": "pricing_test_v2", "variant_id": "variant_b"}),
    ("trackOnboardingStepCompleted",
     doc("onboarding_step_completed", {"step": "profile_setup", "stepNumber": 2, "totalSteps": 5,
                                       "timeSpentSeconds": 45, "interactionCount": 12}),
     {"step": "profile_setup", "step_number": 2, "total_steps": 5, "time_spent_seconds": 45.0,
      "interaction_count": 12}),
    ("trackResourceViewed",
     doc("resource_viewed", {"resourceId": "res_9", "resourceType": "pdf", "resourceName": "Goal setting 101",
                             "viewDurationSeconds": 120, "scrollDepthPercent": 75, "isFirstView": True}),
     {"resource_id": "res_9", "resource_type": "pdf", "resource_name": "Goal setting 101",
      "view_duration_seconds": 120.0, "scroll_depth_percent": 75.0, "is_first_view": True}),
    ("trackNotificationClicked",
     doc("notification_clicked", {"notificationId": "n_1", "notificationType": "session_reminder",
                                  "channel": "push", "clickAction": "view_session",
                                  "clickDestination": "/sessions/123", "timeSinceDeliverySeconds": 15}),
     {"notification_id": "n_1", "notification_type": "session_reminder", "channel": "push",
      "click_action": "view_session", "click_destination": "/sessions/123", "time_since_delivery_seconds": 15.0}),
    ("RealtimeConnectionMonitor.startConnection",
     doc("connection_attempt", {"connectionId": "conn_123", "transport": "websocket"}),
     {"connection_id": "conn_123", "transport": "websocket"}),
    ("RealtimeConnectionMonitor.connectionEstablished",
     doc("connection_established", {"connectionId": "conn_123", "transport": "websocket"}),
     {"connection_id": "conn_123", "transport": "websocket"}),
    ("RealtimeConnectionMonitor.messageReceived",
     doc("realtime_message", {"connectionId": "conn_123", "messageType": "notification_update", "bytes": 1024}),
     {"connection_id": "conn_123", "message_type": "notification_update", "bytes": 1024}),
    ("RealtimeConnectionMonitor.recordLatency",
     doc("connection_latency", {"connectionId": "conn_123", "latencyMs": 45}),
     {"connection_id": "conn_123", "latency_ms": 45.0}),
    ("trackWebVitals",
     doc("web_vitals", {"name": "LCP", "value": 2500, "rating": "good", "delta": 100}),
     {"name": "LCP", "value": 2500.0, "rating": "good", "delta": 100.0}),
    ("posthogEvent feature_used (userId inside properties)",
     {"event": "feature_used", "properties": {"feature": "session_booking", "userId": "user_42",
                                              "metadata": {"sessionType": "coaching"}}},
     {"feature": "session_booking", "metadata": {"sessionType": "coaching"}}),
    ("posthogEvent trial_started (duration: 14 days)",
     {"event": "trial_started", "properties": {"userId": "user_42", "plan": "premium", "duration": 14}},
     {"plan": "premium", "duration_days": 14}),
    ("trackEvent session_booked (duration: 60 minutes)",
     doc("session_booked", {"coachId": "coach_7", "duration": 60, "price": 100}),
     {"coach_id": "coach_7", "duration_minutes": 60.0, "price": 100.0}),
    ("best practices: session_booked with its metadata",
     {"event": "session_booked", "properties": {"userId": "user_42", "sessionType": "coaching", "duration": 60,
                                                "price": 100, "coachId": "coach_7",
                                                "timestamp": "2026-11-24T09:59:00.000Z"}},
     {"session_type": "coaching", "duration_minutes": 60.0, "price": 100.0, "coach_id": "coach_7",
      "timestamp": "2026-11-24T09:59:00.000Z"}),
]


@pytest.mark.parametrize("obj,expected", [(o, e) for _, o, e in DOC_EXAMPLES], ids=[n for n, _, _ in DOC_EXAMPLES])
def test_documentation_examples_validate_to_typed_snake_case(obj: dict[str, Any], expected: dict[str, Any]) -> None:
    event = parse_event(obj, now=NOW)
    assert event.properties == expected
    assert all(type(event.properties[k]) is type(v) for k, v in expected.items())
    assert (event.user_id, event.category, event.known) == ("user_42", CATALOG[obj["event"]].category, True)


# --- every bad input, with its exact message ---------------------------------------------------------

def base() -> dict[str, Any]:
    return doc("resource_viewed", {"resourceId": "r_1", "scrollDepthPercent": 50})


def edit(path: str, value: Any = ..., obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """base() with the dotted `path` set to `value` (deleted when value is ...)."""
    obj = copy.deepcopy(obj or base())
    *parents, last = path.split(".")
    target = obj
    for key in parents:
        target = target.setdefault(key, {})
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return obj


DEEP = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
BAD = [
    (edit("event"), "event: is required"),
    (edit("event", None), "event: is required"),
    (edit("event", 7), "event: must be a string, got integer"),
    (edit("event", ""), "event: must not be empty"),
    (edit("event", "1st_event"), "event: must match ^[A-Za-z][A-Za-z0-9_.:$-]*$"),
    (edit("event", "e" * 129), "event: must be at most 128 characters"),
    (edit("properties.scrollDepthPercent", "75"), "properties.scroll_depth_percent: must be a number, got string"),
    (edit("properties.scrollDepthPercent", True), "properties.scroll_depth_percent: must be a number, got boolean"),
    (edit("properties.scrollDepthPercent", float("nan")), "properties.scroll_depth_percent: must be a finite number"),
    (edit("properties.resourceId", 42), "properties.resource_id: must be a string, got integer"),
    (edit("properties.isFirstView", 1), "properties.is_first_view: must be a boolean, got integer"),
    (edit("properties.resourceId"), "properties.resource_id: is required"),
    (edit("properties.resourceId", None), "properties.resource_id: is required"),
    (edit("properties.scrollDepthPercent", 101), "properties.scroll_depth_percent: must be at most 100"),
    (edit("properties.scrollDepthPercent", -0.5), "properties.scroll_depth_percent: must be at least 0"),
    (edit("properties.resourceType", "book"), "properties.resource_type: must be one of: article, audio, "
                                              "document, image, link, other, pdf, template, video, worksheet"),
    (edit("properties.resourceName", "n" * 513), "properties.resource_name: must be at most 512 characters (got 513)"),
    (edit("properties.note", "x" * 4097), "properties.note: must be at most 4096 characters (got 4097)"),
    (edit("properties.meta", {"list": ["ok", "y" * 4097]}),
     "properties.meta.list[1]: must be at most 4096 characters (got 4097)"),
    (edit("properties.meta", DEEP), "properties.meta.a.b.c.d.e: must not be nested more than 5 levels deep"),
    (edit("properties.meta", [[[[[[1]]]]]]),
     "properties.meta[0][0][0][0][0]: must not be nested more than 5 levels deep"),
    (edit("properties", ["r_1"]), "properties: must be an object, got array"),
    (edit("properties", {f"p{i}": i for i in range(101)}), "properties: must have at most 100 properties (got 101)"),
    (edit("properties.bad key", 1), "properties: invalid property name 'bad key'"),
    (edit("properties.p" + "x" * 128, 1), "properties: property name longer than 128 characters"),
    (edit("properties.resource_id", "r_2"), "properties.resource_id: given twice (under two spellings)"),
    (edit("timestamp", "2026-11-24T10:05:06Z"), "timestamp: must not be more than 5 minutes in the future"),
    (edit("timestamp", "2026-10-24T10:00:04Z"), "timestamp: must not be more than 30 days in the past"),
    (edit("timestamp", "2026-11-24 10:00"), "timestamp: must be an RFC 3339 timestamp (e.g. 2025-11-14T10:00:00Z) "
                                            "or unix seconds"),
    (edit("timestamp", "2026-11-24T10:00:00"), "timestamp: must be an RFC 3339 timestamp (e.g. "
                                               "2025-11-14T10:00:00Z) or unix seconds"),
    (edit("timestamp", "2026-02-30T10:00:00Z"), "timestamp: must be an RFC 3339 timestamp (e.g. "
                                                "2025-11-14T10:00:00Z) or unix seconds"),
    (edit("timestamp", 1_795_514_400_000), "timestamp: must be unix seconds (this looks like milliseconds)"),
    (edit("timestamp", True), "timestamp: must be an RFC 3339 timestamp or unix seconds, got boolean"),
    (edit("context.traceId", "abc"), "context.trace_id: must be 32 hex digits, not all zero"),
    (edit("context.trace_id", "0" * 32), "context.trace_id: must be 32 hex digits, not all zero"),
    (edit("context.trace_id", "g" * 32), "context.trace_id: must be 32 hex digits, not all zero"),
    (edit("context.spanId", "1" * 32), "context.span_id: must be 16 hex digits, not all zero"),
    (edit("context.dnt", "1"), "context.dnt: must be a boolean, got string"),
    (edit("context.ip", "10.0.0.300"), "context.ip: must be an IP address"),
    (edit("context.locale", "en"), "context.locale: unknown key"),
    (edit("context", "web"), "context: must be an object, got string"),
    (edit("colour", "blue"), "colour: unknown key"),
    (edit("user_id", "other"), "user_id: given twice (as userId too)"),
    (edit("userId"), "user_id: one of user_id, anonymous_id is required"),
    (edit("userId", ""), "user_id: must be 1 to 256 characters"),
    (edit("userId", ["u"]), "user_id: must be a string, got array"),
    (edit("eventId", "e" * 129), "event_id: must be 1 to 128 characters"),
    (edit("properties", {"resourceId": "r", "userId": {"id": 1}}, edit("userId")),
     "properties.user_id: must be a string, got object"),
]


@pytest.mark.parametrize("obj,message", BAD, ids=[m for _, m in BAD])
def test_bad_event_is_rejected_naming_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(obj, index=3, now=NOW)
    assert str(info.value) == f"events[3].{message}"
    field, _, text = message.partition(": ")
    assert info.value.as_dict() == {"index": 3, "field": field, "message": text}


def test_single_event_error_has_no_index() -> None:
    with pytest.raises(EventError) as info:
        parse_event(edit("properties.scrollDepthPercent", 101), now=NOW)
    assert str(info.value) == "properties.scroll_depth_percent: must be at most 100"
    with pytest.raises(EventError, match=r"^must be an object, got array$"):
        parse_event([], now=NOW)


@pytest.mark.parametrize("obj,message", [
    (edit("properties.status", 200.5, doc("api_request", {"route": "/api/x", "method": "GET", "durationMs": 3})),
     "properties.status: must be an integer, got a fraction"),
    (doc("api_request", {"route": "/api/sessions/1?x=2", "method": "GET", "status": 200, "durationMs": 3}),
     "properties.route: must match ^/[^?#\\s]*$"),
    (doc("api_request", {"route": "/api/x", "method": "get", "status": 200, "durationMs": 3}),
     "properties.method: must be one of: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
    (doc("api_request", {"route": "/api/x", "method": "GET", "status": 600, "durationMs": 3}),
     "properties.status: must be at most 599"),
    (doc("session_rated", {"rating": 0}), "properties.rating: must be at least 1"),
    (doc("session_booked", {"duration": 60, "durationMinutes": 60}),
     "properties.duration_minutes: given twice (under two spellings)"),
    (doc("session_booked", {"scheduledAt": "tomorrow"}),
     "properties.scheduled_at: must be an RFC 3339 timestamp (e.g. 2025-11-14T10:00:00Z) or unix seconds"),
])
def test_bad_catalog_properties(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(obj, now=NOW)
    assert str(info.value) == message


def test_strict_mode_rejects_unknown_events() -> None:
    custom = doc("coach_profile_edited", {"sectionName": "bio"})
    with pytest.raises(EventError) as info:
        parse_event(custom, index=0, now=NOW, limits=Limits(strict=True))
    assert str(info.value) == "events[0].event: unknown event 'coach_profile_edited' (strict mode)"
    event = parse_event(custom, now=NOW)
    assert (event.category, event.known, event.properties) == ("custom", False, {"section_name": "bio"})


def test_limits_are_configurable() -> None:
    limits = Limits(max_string_length=10, max_properties=2, max_depth=1, max_future_skew=1, max_past_age=60)
    with pytest.raises(EventError, match="resource_id: must be at most 10 characters"):
        parse_event(edit("properties.resourceId", "r" * 11), now=NOW, limits=limits)
    with pytest.raises(EventError, match="at most 2 properties"):
        parse_event(edit("properties.x", 1), now=NOW, limits=limits)
    with pytest.raises(EventError, match=r"^properties.meta.a: must not be nested more than 1 levels deep$"):
        parse_event(edit("properties", {"resourceId": "r", "meta": {"a": {}}}), now=NOW, limits=limits)
    with pytest.raises(EventError, match="more than 1 s in the future"):
        parse_event(edit("timestamp", NOW + 2), now=NOW, limits=limits)
    with pytest.raises(EventError, match="more than 1 minutes in the past"):
        parse_event(edit("timestamp", NOW - 61), now=NOW, limits=limits)


# --- what valid input becomes -------------------------------------------------------------------------

def test_envelope_and_context_are_typed() -> None:
    event = parse_event({
        "event": "cta_click", "anonymousId": "anon_1", "sessionId": "s_1", "messageId": "m_1",
        "timestamp": "2026-11-24T12:00:00.250+02:00",
        "properties": {"ctaId": "hero_signup", "unknownNumber": 1.5, "empty": None, "HTTPStatus": 200},
        "context": {"page": "/pricing", "userAgent": "Mozilla/5.0", "dnt": False, "traceId": "A" * 32,
                    "spanId": "b" * 16, "ip": "2001:db8::1", "library": {"name": "loom-web", "version": "2.1"}},
    }, now=NOW, dnt_header=True)
    assert (event.name, event.category, event.timestamp, event.received_at) == ("cta_click", "marketing",
                                                                              NOW - 4.75, NOW)
    assert (event.user_id, event.anonymous_id, event.session_id, event.event_id) == (None, "anon_1", "s_1", "m_1")
    assert event.properties == {"cta_id": "hero_signup", "unknown_number": 1.5, "http_status": 200}
    ctx = event.context
    assert (ctx.page, ctx.user_agent, ctx.dnt, ctx.trace_id, ctx.span_id, ctx.ip, ctx.library) == (
        "/pricing", "Mozilla/5.0", True, "a" * 32, "b" * 16, "2001:db8::1", "loom-web/2.1")


def test_defaults_and_conversions() -> None:
    event = parse_event({"event": "web_vitals", "user_id": 42, "timestamp": NOW - 10,
                         "properties": {"name": "CLS", "value": 0.05}, "context": {"dnt": True}}, now=NOW)
    assert (event.user_id, event.timestamp, event.context.dnt) == ("42", NOW - 10, True)
    assert event.properties == {"name": "CLS", "value": 0.05}
    event = parse_event({"event": "onboarding_step_started", "user_id": "u", "properties": {"step": "a",
                                                                                          "stepNumber": 2.0}}, now=NOW)
    assert (event.timestamp, event.properties, event.context.dnt) == (NOW, {"step": "a", "step_number": 2}, False)
    assert type(event.properties["step_number"]) is int
    lifted = parse_event({"event": "x", "user_id": "envelope", "properties": {"user_id": "prop"}}, now=NOW)
    assert (lifted.user_id, lifted.properties) == ("envelope", {})


def test_deepest_allowed_nesting_is_kept() -> None:
    value = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    assert parse_event(edit("properties.meta", value), now=NOW).properties["meta"] == value


# --- batches ------------------------------------------------------------------------------------------

def test_batch_lists_every_invalid_event() -> None:
    batch = [base(), edit("properties.scrollDepthPercent", 101), base(), edit("event"), base()]
    with pytest.raises(BatchError) as info:
        parse_batch(batch, now=NOW)
    assert [str(e) for e in info.value.errors] == ["events[1].properties.scroll_depth_percent: must be at most 100",
                                                   "events[3].event: is required"]
    assert [e.index for e in info.value.errors] == [1, 3]


def test_valid_batch() -> None:
    events = parse_batch([base(), doc("web_vitals", {"name": "INP", "value": 180})], now=NOW)
    assert [(e.name, e.category) for e in events] == [("resource_viewed", "resource"), ("web_vitals", "web_vitals")]


@pytest.mark.parametrize("objs,message", [
    ([], "events: must not be empty"),
    ([{}] * 1001, "events: must have at most 1000 events (got 1001)"),
    ({"events": []}, "events: must be an array, got object"),
])
def test_batch_itself_rejected(objs: Any, message: str) -> None:
    with pytest.raises(BatchError) as info:
        parse_batch(objs, now=NOW)
    assert [str(e) for e in info.value.errors] == [message] and info.value.errors[0].index is None


def test_batch_limit_is_configurable() -> None:
    with pytest.raises(BatchError, match="at most 2 events"):
        parse_batch([base()] * 3, now=NOW, limits=Limits(max_batch=2))


# --- PostHog --------------------------------------------------------------------------------------------

CAPTURE = {
    "api_key": "phc_test", "event": "$pageview", "distinct_id": "user_42", "timestamp": "2026-11-24T10:00:00Z",
    "uuid": "0190f0e2-aaaa-7bbb-8ccc-123456789abc", "type": "capture",
    "properties": {"$current_url": "https://app.loom.test/dashboard", "$pathname": "/dashboard",
                   "$lib": "posthog-js", "$lib_version": "1.160.0", "$session_id": "ph_s1", "$browser": "Chrome",
                   "$ip": "192.0.2.7", "$raw_user_agent": "Mozilla/5.0", "token": "phc_test", "planTier": "pro"},
}


def test_posthog_capture() -> None:
    event = parse_capture(CAPTURE, now=NOW)
    assert (event.name, event.category, event.known, event.user_id, event.session_id, event.event_id) == (
        "$pageview", "posthog", True, "user_42", "ph_s1", CAPTURE["uuid"])
    # PostHog's own $-properties are kept (ids, the IP and the user agent only where privacy treats them so)
    assert event.properties == {"plan_tier": "pro", "$current_url": "https://app.loom.test/dashboard",
                                "$pathname": "/dashboard", "$browser": "Chrome"}
    ctx = event.context
    assert (ctx.page, ctx.library, ctx.ip, ctx.user_agent) == ("https://app.loom.test/dashboard",
                                                               "posthog-js/1.160.0", "192.0.2.7", "Mozilla/5.0")
    assert capture_api_key(CAPTURE) == "phc_test"
    assert capture_api_key({"event": "x", "properties": {"token": "phc_js"}}) == "phc_js"


def test_posthog_catalog_event_anonymous_and_offset() -> None:
    event = parse_capture({"event": "cta_click", "offset": 2000,
                           "properties": {"distinct_id": "anon-uuid", "$is_identified": False, "ctaId": "hero"}},
                          now=NOW)
    assert (event.category, event.anonymous_id, event.user_id, event.timestamp, event.properties) == (
        "marketing", "anon-uuid", None, NOW - 2, {"cta_id": "hero"})
    assert parse_capture({"event": "user signed up", "distinct_id": 7}, now=NOW).name == "user signed up"


@pytest.mark.parametrize("obj,message", [
    ({"event": "$pageview"}, "distinct_id: is required"),
    ({"distinct_id": "u"}, "event: is required"),
    ({"event": "$pageview", "distinct_id": ["u"]}, "distinct_id: must be a string, got array"),
    ({"event": "$pageview", "distinct_id": "u", "properties": {"$current_url": 5}},
     "properties.$current_url: must be a string, got integer"),
    ({"event": "$pageview", "distinct_id": "u", "properties": {"$ip": "nope"}},
     "properties.$ip: must be an IP address"),
    ({"event": "$pageview", "distinct_id": "u", "properties": "x"}, "properties: must be an object, got string"),
    ({"event": "cta_click", "distinct_id": "u"}, "properties.cta_id: is required"),
    ({"event": "$pageview", "distinct_id": "u", "timestamp": "yesterday"},
     "timestamp: must be an RFC 3339 timestamp (e.g. 2025-11-14T10:00:00Z) or unix seconds"),
])
def test_posthog_capture_errors(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_capture(obj, now=NOW)
    assert str(info.value) == message


def test_posthog_batch() -> None:
    second = {"event": "web_vitals", "distinct_id": "u2", "properties": {"name": "TTFB", "value": 420}}
    api_key, events = parse_posthog_batch({"api_key": "phc_test", "batch": [CAPTURE, second]}, now=NOW)
    assert api_key == "phc_test" and [(e.name, e.user_id) for e in events] == [("$pageview", "user_42"),
                                                                              ("web_vitals", "u2")]
    assert parse_posthog_batch({"batch": [second]}, now=NOW)[0] is None
    with pytest.raises(BatchError) as info:
        parse_posthog_batch({"api_key": "k", "batch": [CAPTURE, {"event": "x"}, second, "nope"]}, now=NOW)
    assert [str(e) for e in info.value.errors] == ["batch[1].distinct_id: is required",
                                                   "batch[3]: must be an object, got string"]


@pytest.mark.parametrize("obj,message", [
    ([CAPTURE], "must be an object, got array"),
    ({"api_key": 1, "batch": [CAPTURE]}, "api_key: must be a string, got integer"),
    ({"api_key": "k"}, "batch: is required"),
    ({"api_key": "k", "batch": []}, "batch: must not be empty"),
    ({"api_key": "k", "batch": CAPTURE}, "batch: must be an array, got object"),
    ({"api_key": "k", "batch": [CAPTURE] * 1001}, "batch: must have at most 1000 events (got 1001)"),
])
def test_posthog_batch_itself_rejected(obj: Any, message: str) -> None:
    with pytest.raises(BatchError) as info:
        parse_posthog_batch(obj, now=NOW)
    assert [str(e) for e in info.value.errors] == [message]


# --- property test: arbitrary JSON never raises anything but EventError ---------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=20)
KEYS = st.sampled_from(["event", "timestamp", "userId", "user_id", "anonymous_id", "session_id", "eventId",
                        "properties", "context", "other"])
NAMES = st.sampled_from(sorted(CATALOG) + ["custom_thing", "$pageview", "", "bad name"])
PROP_KEYS = st.sampled_from(sorted({k for s in CATALOG.values() for k in s.props}) + ["userId", "x y", "aB"])
PROPS = st.dictionaries(PROP_KEYS | st.text(max_size=6), JSON, max_size=6)
CONTEXT = st.dictionaries(st.sampled_from(["page", "userAgent", "dnt", "traceId", "span_id", "ip", "library", "x"]),
                          JSON, max_size=4)
ENVELOPES = st.builds(lambda base, name, props, ctx: {**base, "event": name, "user_id": "u", "properties": props,
                                                      "context": ctx},
                      st.dictionaries(KEYS, JSON, max_size=4), NAMES, PROPS, CONTEXT)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.dictionaries(KEYS, JSON, max_size=8), ENVELOPES))
def test_arbitrary_json_raises_only_event_error(obj: Any) -> None:
    for call in (lambda: parse_event(obj, index=0, now=NOW), lambda: parse_capture(obj, now=NOW)):
        try:
            call()
        except EventError as err:
            assert isinstance(err.field, str) and err.message
    try:
        parse_batch([obj], now=NOW)
    except BatchError as err:
        assert len(err.errors) == 1
