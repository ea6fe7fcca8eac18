"""Events -> metrics, in process: every catalog event updates exactly the families the metric table
lists for it; hand-written label values and values per category; the rendered exposition parses;
cardinality guards; user ids never become label values; config-driven mapping rules."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.config.load import ConfigError, parse_config
from agent.events.catalog import CATALOG
from agent.events.config import EventsConfig
from agent.events.mapping import EventMetrics
from agent.events.metric_table import TABLE
from agent.events.model import Event
from agent.events.pipeline import EventPipeline
from agent.events.posthog import parse_capture
from agent.events.validate import EventError, parse_event
from agent.metrics.exposition import render
from agent.metrics.store import OTHER, Histogram, MetricStore
from tests.support.event_examples import all_examples, envelope, properties

NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z
TABLE_FAMILIES = {emit.metric for emit in TABLE}


def event(name: str, props: dict[str, Any] | None = None, **fields: Any) -> Event:
    return parse_event(envelope(name, props, **fields), now=NOW)


def setup(config: EventsConfig = EventsConfig()) -> tuple[MetricStore, EventMetrics]:
    store = MetricStore(config.series_limit)
    return store, EventMetrics(store, config)


def events_config(block: dict[str, Any]) -> EventsConfig:
    """The `events:` block as the config file would carry it (YAML, validated like the agent's)."""
    return parse_config(yaml.safe_dump({"events": block})).events


def samples(store: MetricStore, metric: str) -> dict[frozenset, Any]:
    """frozenset of (label, value) -> the series value (a histogram's: {"count", "sum", "le": {bound: cumulative}})."""
    family = store.get(metric)
    assert family is not None, f"{metric} is not registered"
    out: dict[frozenset, Any] = {}
    for key, value in family.series.items():
        labels = frozenset(zip(family.labels, key))
        if isinstance(family, Histogram):
            cumulative, running = {}, 0
            for bound, count in zip((*family.buckets, float("inf")), value[:-1]):
                running += count
                cumulative[bound] = running
            value = {"count": running, "sum": value[-1], "le": cumulative}
        out[labels] = value
    return out


def one(store: MetricStore, metric: str, **labels: str) -> Any:
    """The value of the series with exactly these labels (fails when it does not exist)."""
    found = samples(store, metric)
    key = frozenset(labels.items())
    assert key in found, f"{metric}{labels} not among {[dict(k) for k in found]}"
    return found[key]


def changed_families(store: MetricStore) -> set[str]:
    return {family.name for family in store.families() if family.series} - {"loom_events"}


# --- 1. every catalog event ---------------------------------------------------------------------------

def _applies(emit, props: dict[str, Any]) -> bool:
    return (emit.when is None or emit.when(props)) and (emit.value is None or emit.value in props)


@pytest.mark.parametrize("name,props", all_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_catalog_event_counts_once_and_updates_exactly_its_table_families(name: str, props: dict) -> None:
    store, metrics = setup()
    ev = event(name, props)
    assert metrics.apply(ev) is True
    assert samples(store, "loom_events") == {frozenset({("category", CATALOG[name].category), ("event", name)}): 1.0}
    emits = [emit for emit in TABLE if name in emit.events and _applies(emit, ev.properties)]
    assert changed_families(store) == {emit.metric for emit in emits}
    for emit in emits:
        (key, value), = store.get(emit.metric).series.items()          # exactly one new series
        assert OTHER not in key and "unknown" not in key, (emit.metric, key)
        amount = ev.properties[emit.value] * emit.scale if emit.value else None
        if emit.kind == "counter":
            assert value == pytest.approx(1.0 if amount is None else amount), emit.metric
        else:
            assert sum(value[:-1]) == 1 and value[-1] == pytest.approx(amount), emit.metric


def test_the_examples_reach_every_family_of_the_table() -> None:
    store, metrics = setup()
    for name, props in all_examples():
        metrics.apply(event(name, props))
    assert changed_families(store) == TABLE_FAMILIES
    assert sum(samples(store, "loom_events").values()) == len(all_examples())


# --- 1b. label values and values, written out by hand, per category ------------------------------------

def test_performance_api_request_and_page_load() -> None:
    store, metrics = setup()
    metrics.apply(event("api_request", {"route": "/api/sessions/:id", "method": "GET", "status": 503,
                                        "duration_ms": 250}))
    h = one(store, "loom_api_request_duration_seconds", route="/api/sessions/:id", method="GET", status_class="5xx")
    assert (h["count"], h["sum"], h["le"][0.1], h["le"][0.25], h["le"][float("inf")]) == (1, 0.25, 0, 1, 1)
    metrics.apply(event("page_load", {"page": "/dashboard", "loadTimeMs": 1800}))
    h = one(store, "loom_page_load_duration_seconds", page="/dashboard")
    assert (h["count"], h["sum"], h["le"][1.5], h["le"][2.0]) == (1, 1.8, 0, 1)


def test_web_vitals_lcp_in_seconds_and_cls_unitless() -> None:
    store, metrics = setup()
    metrics.apply(event("web_vitals", {"name": "LCP", "value": 2500, "rating": "good", "delta": 100}))
    h = one(store, "loom_web_vitals_lcp_seconds", rating="good")
    assert (h["count"], h["sum"], h["le"][2.0], h["le"][2.5]) == (1, 2.5, 0, 1)
    assert samples(store, "loom_web_vitals_inp_seconds") == {}
    assert one(store, "loom_web_vitals_ratings", name="LCP", rating="good") == 1
    metrics.apply(event("web_vitals", {"name": "CLS", "value": 0.3, "rating": "poor"}))
    h = one(store, "loom_web_vitals_cls", rating="poor")
    assert (h["count"], h["sum"], h["le"][0.25], h["le"][0.3]) == (1, 0.3, 0, 1)
    assert samples(store, "loom_web_vitals_lcp_seconds").keys() == {frozenset({("rating", "good")})}


def test_resource_viewed_scroll_depth_as_a_ratio() -> None:
    store, metrics = setup()
    metrics.apply(event("resource_viewed", {"resourceId": "res_9", "resourceType": "pdf", "scrollDepthPercent": 75,
                                            "viewDurationSeconds": 120}))
    h = one(store, "loom_resource_scroll_depth_ratio", type="pdf")
    assert (h["count"], h["sum"], h["le"][0.5], h["le"][0.75]) == (1, 0.75, 0, 1)
    h = one(store, "loom_resource_view_duration_seconds", type="pdf")
    assert (h["count"], h["sum"], h["le"][60.0], h["le"][120.0]) == (1, 120.0, 0, 1)
    assert one(store, "loom_resource_events", action="viewed", type="pdf") == 1
    metrics.apply(event("resource_downloaded", {"resource_id": "res_9"}))        # no type: `unknown`
    assert one(store, "loom_resource_events", action="downloaded", type="unknown") == 1


def test_notification_clicked_funnel_stage_and_time_to_click() -> None:
    store, metrics = setup()
    metrics.apply(event("notification_delivered", {"notificationId": "n_1", "notificationType": "session_reminder",
                                                   "channel": "push"}))
    metrics.apply(event("notification_clicked", properties("notification_clicked")))
    assert one(store, "loom_notifications", stage="delivered", type="session_reminder", channel="push") == 1
    assert one(store, "loom_notifications", stage="clicked", type="session_reminder", channel="push") == 1
    h = one(store, "loom_notification_time_to_click_seconds", type="session_reminder", channel="push")
    assert (h["count"], h["sum"], h["le"][10.0], h["le"][30.0]) == (1, 15.0, 0, 1)


def test_realtime_connection_lifecycle() -> None:
    """(Open connections are counted from the connection spans, loom_realtime_connections_open:
    test_event_api checks it goes back to 0 through a real agent.)"""
    store, metrics = setup()
    metrics.apply(event("connection_attempt", {"connectionId": "c1", "transport": "websocket"}))
    metrics.apply(event("connection_established", {"connectionId": "c1", "transport": "websocket",
                                                   "connectTimeMs": 80}))
    metrics.apply(event("connection_latency", {"connectionId": "c1", "latencyMs": 45, "transport": "websocket"}))
    metrics.apply(event("realtime_message", {"connectionId": "c1", "messageType": "notification_update",
                                             "bytes": 1024, "direction": "inbound"}))
    metrics.apply(event("connection_disconnected", {"connectionId": "c1", "transport": "websocket",
                                                    "reason": "user closed the tab", "wasClean": True}))
    assert one(store, "loom_realtime_connection_attempts", transport="websocket") == 1
    h = one(store, "loom_realtime_connect_duration_seconds", transport="websocket")
    assert (h["count"], h["sum"], h["le"][0.05], h["le"][0.1]) == (1, pytest.approx(0.08), 0, 1)
    h = one(store, "loom_realtime_connection_latency_seconds", transport="websocket")
    assert (h["count"], h["sum"], h["le"][0.025], h["le"][0.05]) == (1, pytest.approx(0.045), 0, 1)
    assert one(store, "loom_realtime_messages", type="notification_update", direction="inbound") == 1
    assert one(store, "loom_realtime_message_bytes", direction="inbound") == 1024
    # the free-text reason is a span attribute, never a label value
    assert samples(store, "loom_realtime_disconnects") == {
        frozenset({("transport", "websocket"), ("clean", "true")}): 1.0}


def test_login_attempt_failure_and_success() -> None:
    store, metrics = setup()
    metrics.apply(event("login_attempt", {"result": "failure", "method": "password",
                                          "failureReason": "invalid_credentials"}))
    metrics.apply(event("login_attempt", {"result": "success", "method": "oauth", "provider": "google"}))
    assert one(store, "loom_login_attempts", result="failure", method="password") == 1
    assert one(store, "loom_login_attempts", result="success", method="oauth") == 1
    # a successful login is not a failure of reason `unknown`
    assert samples(store, "loom_login_failures") == {frozenset({("reason", "invalid_credentials")}): 1.0}
    metrics.apply(event("logout", {"reason": "timeout"}))
    assert one(store, "loom_logouts", reason="timeout") == 1


def test_mfa_verification_and_security_event() -> None:
    store, metrics = setup()
    metrics.apply(event("mfa_challenge_sent", {"method": "sms"}))
    metrics.apply(event("mfa_verification", {"method": "sms", "result": "failure", "failureReason": "invalid_code",
                                             "durationMs": 12000}))
    assert one(store, "loom_mfa_challenges", method="sms") == 1
    assert one(store, "loom_mfa_verifications", method="sms", result="failure") == 1
    h = one(store, "loom_mfa_verification_duration_seconds", method="sms")
    assert (h["count"], h["sum"], h["le"][10.0], h["le"][30.0]) == (1, 12.0, 0, 1)
    metrics.apply(event("security_event", {"type": "suspicious_login", "severity": "critical"}))
    assert one(store, "loom_security_events", type="suspicious_login", severity="critical") == 1


def test_campaign_conversion_counts_and_sums_value_and_experiment_view() -> None:
    store, metrics = setup()
    metrics.apply(event("campaign_conversion", properties("campaign_conversion")))          # 49.5 EUR
    metrics.apply(event("campaign_conversion", {"conversionType": "purchase", "conversionValue": 20.5,
                                                "source": "google", "medium": "cpc"}))
    metrics.apply(event("campaign_conversion", {"conversionType": "trial", "conversionValue": 0}))   # the doc's
    assert one(store, "loom_conversions", type="purchase", source="google", medium="cpc") == 2
    assert one(store, "loom_conversions", type="trial", source="unknown", medium="unknown") == 1
    assert one(store, "loom_conversion_value", type="purchase") == 70.0
    assert one(store, "loom_conversion_value", type="trial") == 0.0
    metrics.apply(event("experiment_view", {"experimentId": "pricing_test_v2", "variantId": "variant_b"}))
    assert one(store, "loom_experiment_exposures", experiment="pricing_test_v2", variant="variant_b") == 1


def test_onboarding_steps_started_completed_and_duration() -> None:
    store, metrics = setup()
    metrics.apply(event("onboarding_step_started", {"step": "profile_setup", "stepNumber": 2}))
    metrics.apply(event("onboarding_step_completed", properties("onboarding_step_completed")))      # 45 s
    assert one(store, "loom_onboarding_steps", step="profile_setup", outcome="started") == 1
    assert one(store, "loom_onboarding_steps", step="profile_setup", outcome="completed") == 1
    h = one(store, "loom_onboarding_step_duration_seconds", step="profile_setup")
    assert (h["count"], h["sum"], h["le"][30.0], h["le"][60.0]) == (1, 45.0, 0, 1)
    metrics.apply(event("onboarding_completed", {"totalTimeSeconds": 420}))
    assert one(store, "loom_onboarding_flows", outcome="completed") == 1
    assert one(store, "loom_onboarding_duration_seconds")["sum"] == 420.0


def test_coaching_sessions_goals_and_tasks() -> None:
    store, metrics = setup()
    metrics.apply(event("session_booked", properties("session_booked")))      # the doc's: sessionType, duration
    metrics.apply(event("session_completed", {"sessionType": "coaching", "duration": 55}))
    assert one(store, "loom_coaching_sessions", status="booked", type="coaching") == 1
    assert one(store, "loom_coaching_sessions", status="completed", type="coaching") == 1
    assert one(store, "loom_coaching_session_duration_seconds", type="coaching")["sum"] == 3300.0
    metrics.apply(event("session_rated", {"rating": 4}))
    h = one(store, "loom_coaching_session_rating", type="unknown")
    assert (h["count"], h["sum"], h["le"][3.0], h["le"][4.0]) == (1, 4.0, 0, 1)
    metrics.apply(event("goal_completed", {}))
    metrics.apply(event("task_created", {}))
    assert one(store, "loom_goals", status="completed") == 1
    assert one(store, "loom_tasks", status="created") == 1


def test_file_uploaded_bytes_and_payment_failed() -> None:
    store, metrics = setup()
    metrics.apply(event("file_uploaded", {"bytes": 2_500_000, "fileType": "pdf"}))
    metrics.apply(event("file_uploaded", {"bytes": 500_000, "fileType": "image"}))
    assert one(store, "loom_file_bytes", action="uploaded") == 3_000_000
    assert one(store, "loom_files", action="uploaded", type="pdf") == 1
    metrics.apply(event("payment_failed", {"amount": 29, "failureReason": "card_declined"}))
    metrics.apply(event("payment_succeeded", {"amount": 29}))
    assert one(store, "loom_payments", result="failure") == 1
    assert one(store, "loom_payments", result="success") == 1
    assert samples(store, "loom_payment_failures") == {frozenset({("reason", "card_declined")}): 1.0}
    metrics.apply(event("feature_used", {"feature": "booking"}))
    assert one(store, "loom_feature_usage", feature="booking") == 1


def test_events_without_a_table_entry_and_custom_events_only_count() -> None:
    store, metrics = setup()
    metrics.apply(event("resource_engagement_score", {"resourceId": "r", "score": 50}))
    metrics.apply(event("video_played", {"quality": "hd"}))
    assert changed_families(store) == set()
    assert one(store, "loom_events", category="resource", event="resource_engagement_score") == 1
    assert one(store, "loom_events", category="custom", event="video_played") == 1


# --- 2. the rendered exposition parses ----------------------------------------------------------------

def _fed_store() -> MetricStore:
    store, metrics = setup()
    for name, props in all_examples():
        metrics.apply(event(name, props))
    metrics.apply(event("cta_click", {"ctaId": 'quote " back\\slash\nnewline'}))
    return store


def test_rendered_text_format_parses_and_carries_the_samples() -> None:
    families = {f.name: f for f in parse_text(render(_fed_store(), None, openmetrics=False).decode())}
    assert TABLE_FAMILIES <= families.keys()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("loom_events_total", (("category", "marketing"), ("event", "cta_click")))] == 2
    assert values[("loom_web_vitals_lcp_seconds_sum", (("rating", "good"),))] == 2.5
    assert values[("loom_api_request_duration_seconds_bucket",
                   (("le", "0.05"), ("method", "GET"), ("route", "/api/sessions/:id"), ("status_class", "2xx")))] == 1
    assert values[("loom_cta_clicks_total", (("cta", 'quote " back\\slash\nnewline'), ("location", "unknown")))] == 1
    assert families["loom_realtime_disconnects"].type == "counter"
    assert families["loom_resource_scroll_depth_ratio"].type == "histogram"


def test_rendered_openmetrics_parses() -> None:
    body = render(_fed_store(), None, openmetrics=True).decode()
    families = {f.name: f for f in parse_openmetrics(body)}
    assert families["loom_events"].type == "counter"
    assert families["loom_resource_scroll_depth_ratio"].unit == "ratio"
    assert TABLE_FAMILIES <= families.keys()


# --- 3. cardinality ----------------------------------------------------------------------------------

def test_series_limit_folds_new_cta_ids_to_other_and_counts_the_folds() -> None:
    store, metrics = setup(EventsConfig(series_limit=100))
    for i in range(5000):
        metrics.apply(event("cta_click", {"ctaId": f"cta_{i}", "location": "hero"}))
    found = samples(store, "loom_cta_clicks")
    assert len(found) == 101
    assert found[frozenset({("cta", OTHER), ("location", OTHER)})] == 4900
    assert sum(found.values()) == 5000
    assert store.overflow[("loom_cta_clicks", "cta")] == 4900
    metrics.apply(event("cta_click", {"ctaId": "cta_7", "location": "hero"}))     # an existing series still counts
    assert found != samples(store, "loom_cta_clicks")
    assert one(store, "loom_cta_clicks", cta="cta_7", location="hero") == 2
    text = render(store, None, openmetrics=False).decode()
    overflow = {tuple(sorted(s.labels.items())): s.value for f in parse_text(text)
                if f.name == "loom_agent_label_overflow" for s in f.samples}
    assert overflow[(("label", "cta"), ("metric", "loom_cta_clicks"))] == 4900


def test_per_family_series_limit_from_config() -> None:
    store, metrics = setup(events_config({"series_limit": 1000, "series_limits": {"loom_cta_clicks": 10}}))
    for i in range(50):
        metrics.apply(event("cta_click", {"ctaId": f"cta_{i}"}))
        metrics.apply(event("feature_used", {"feature": f"feature_{i}"}))
    assert len(samples(store, "loom_cta_clicks")) == 11
    assert len(samples(store, "loom_feature_usage")) == 50


def test_an_enum_label_has_its_catalog_values_as_allow_list() -> None:
    with pytest.raises(EventError) as err:                 # validation keeps out-of-enum values away...
        event("notification_clicked", {"notificationId": "n", "channel": "carrier_pigeon"})
    assert err.value.field == "properties.channel"
    store, _ = setup()
    family = store.get("loom_notifications")                # ...and the family folds them even if one got in
    family.inc(("clicked", "session_reminder", "carrier_pigeon"))
    family.inc(("clicked", "session_reminder", "push"))
    family.inc(("clicked", "session_reminder", "unknown"))
    assert set(family.series) == {("clicked", "session_reminder", OTHER), ("clicked", "session_reminder", "push"),
                                  ("clicked", "session_reminder", "unknown")}
    assert store.overflow == {("loom_notifications", "channel"): 1}


SECRETS = ("user-7f3a9c", "anon-5b2e11", "alice@example.com", "bob@example.org", "sess-91c2d0", "203.0.113.77",
           "coach-e4d1b8", "posthog-distinct-42")


def test_user_ids_and_emails_never_become_label_values() -> None:
    store, metrics = setup()
    u, a, e1, e2, s, ip, coach, distinct = SECRETS
    metrics.apply(event("cta_click", {"ctaId": "hero", "userId": u, "email": e1}, userId=None, anonymousId=a,
                        sessionId=s, context={"ip": ip, "page": "/"}))
    metrics.apply(event("login_attempt", {"result": "failure", "email": e2, "user_id": u}, userId=None))
    metrics.apply(event("session_booked", {"coachId": coach, "sessionType": "coaching"}, userId=u))
    metrics.apply(event("video_played", {"email": e1, "viewer": {"email": e2}, "user": u}, userId=u))
    metrics.apply(parse_capture({"event": "$pageview", "distinct_id": distinct, "properties": {
        "$current_url": "https://app.example.com/", "$ip": ip, "email": e1}}, now=NOW))
    for ev in store.families():
        for key in ev.series:
            assert not set(key) & set(SECRETS), (ev.name, key)
    for openmetrics in (False, True):
        text = render(store, None, openmetrics=openmetrics).decode()
        assert not [secret for secret in SECRETS if secret in text]
    assert sum(samples(store, "loom_events").values()) == 5


def test_a_mapping_rule_cannot_label_by_a_user_identifier() -> None:
    with pytest.raises(ConfigError) as err:
        events_config({"mappings": [{"match": "video_*", "name": "loom_videos", "labels": {"who": "user_id"}},
                                    {"match": "x_*", "name": "loom_x", "labels": {"email": "email"}}]})
    assert len([e for e in err.value.errors if "identifies a person" in e]) == 2


# --- 4. mapping rules ----------------------------------------------------------------------------------

def test_rule_count_with_labels_from_properties() -> None:
    store, metrics = setup(events_config({"mappings": [
        {"match": "video_*", "action": "count", "name": "loom_video_events", "labels": {"quality": "quality",
                                                                                       "kind": "video_kind"}}]}))
    metrics.apply(event("video_played", {"quality": "hd", "videoKind": "lesson"}))       # camelCase property
    metrics.apply(event("video_paused", {"quality": "hd", "video_kind": "lesson"}))
    metrics.apply(event("video_played", {}))
    metrics.apply(event("audio_played", {"quality": "hd"}))
    assert samples(store, "loom_video_events") == {
        frozenset({("quality", "hd"), ("kind", "lesson")}): 2.0,
        frozenset({("quality", "unknown"), ("kind", "unknown")}): 1.0}
    assert one(store, "loom_events", category="custom", event="video_played") == 2


def test_rule_observe_into_custom_buckets() -> None:
    store, metrics = setup(events_config({"mappings": [
        {"match": "checkout_*", "action": "observe", "name": "loom_checkout_value", "value": "cart_value",
         "labels": {"step": "step"}, "buckets": [10, 50, 100]}]}))
    metrics.apply(event("checkout_completed", {"cartValue": 75, "step": "pay"}))
    metrics.apply(event("checkout_completed", {"cart_value": 5, "step": "pay"}))
    metrics.apply(event("checkout_completed", {"cart_value": "not a number", "step": "pay"}))   # not observed
    h = one(store, "loom_checkout_value", step="pay")
    assert h == {"count": 2, "sum": 80.0, "le": {10.0: 1, 50.0: 1, 100.0: 2, float("inf"): 2}}
    assert one(store, "loom_events", category="custom", event="checkout_completed") == 3


def test_rule_drop_is_not_counted_but_counted_as_dropped() -> None:
    config = events_config({"mappings": [{"match": "debug_*", "action": "drop"}]})
    store = MetricStore(config.series_limit)
    pipeline = EventPipeline(config, store, None)
    result = asyncio.run(pipeline.ingest([event("debug_ping", {}), event("debug_pong", {}),
                                          event("video_played", {})], "events"))
    assert result.accepted == 3                                     # the API accepted them all
    assert samples(store, "loom_events") == {frozenset({("category", "custom"), ("event", "video_played")}): 1.0}
    assert samples(store, "loom_agent_events_dropped") == {frozenset({("reason", "mapping_drop")}): 2.0}


def test_first_matching_rule_wins() -> None:
    store, metrics = setup(events_config({"mappings": [
        {"match": "debug_keep", "action": "count", "name": "loom_debug_kept"},
        {"match": "debug_*", "action": "drop"},
        {"match": "video_*", "action": "count", "name": "loom_video_first"},
        {"match": "video_played", "action": "count", "name": "loom_video_second"},
        {"match": "cta_*", "action": "count", "name": "loom_cta_rule", "labels": {"location": "location"}}]}))
    assert metrics.apply(event("debug_keep", {})) is True
    assert metrics.apply(event("debug_other", {})) is False
    metrics.apply(event("video_played", {}))
    metrics.apply(event("cta_click", {"ctaId": "hero", "location": "footer"}))
    assert samples(store, "loom_debug_kept") == {frozenset(): 1.0}
    assert samples(store, "loom_video_first") == {frozenset(): 1.0}
    assert samples(store, "loom_video_second") == {}
    assert one(store, "loom_cta_rule", location="footer") == 1           # a rule adds to a catalog event's metrics
    assert one(store, "loom_cta_clicks", cta="hero", location="footer") == 1
    assert one(store, "loom_agent_events_dropped", reason="mapping_drop") == 1


def test_a_rule_colliding_with_a_catalog_family_is_a_value_error() -> None:
    collides = events_config({"mappings": [
        {"match": "x_*", "action": "count", "name": "loom_cta_clicks", "labels": {"page": "page"}}]})
    with pytest.raises(ValueError, match="loom_cta_clicks"):
        setup(collides)
    as_histogram = events_config({"mappings": [
        {"match": "x_*", "action": "observe", "name": "loom_logouts", "value": "v", "labels": {"reason": "reason"}}]})
    with pytest.raises(ValueError, match="loom_logouts"):
        setup(as_histogram)


def test_pipeline_prepare_rejects_a_colliding_reload_and_keeps_the_running_rules() -> None:
    running = events_config({"mappings": [{"match": "video_*", "name": "loom_video_events"}]})
    store = MetricStore(running.series_limit)
    pipeline = EventPipeline(running, store, None)
    asyncio.run(pipeline.ingest([event("video_played", {})], "events"))
    bad = events_config({"mappings": [
        {"match": "audio_*", "name": "loom_audio_events", "labels": {"codec": "codec"}},      # fine on its own
        {"match": "x_*", "name": "loom_cta_clicks", "labels": {"page": "page"}}]})             # collides
    with pytest.raises(ValueError, match="loom_cta_clicks"):
        pipeline.prepare(bad)
    assert store.get("loom_audio_events") is None          # a rejected config leaves nothing behind
    asyncio.run(pipeline.ingest([event("video_played", {})], "events"))
    assert samples(store, "loom_video_events") == {frozenset(): 2.0}
    fixed = events_config({"mappings": [
        {"match": "audio_*", "name": "loom_audio_events", "labels": {"format": "format"}},
        {"match": "video_*", "name": "loom_video_events"}]})
    pipeline.prepare(fixed)()                               # commit
    asyncio.run(pipeline.ingest([event("audio_played", {"format": "mp3"}), event("video_played", {})], "events"))
    assert one(store, "loom_audio_events", format="mp3") == 1
    assert samples(store, "loom_video_events") == {frozenset(): 3.0}     # counters survive the reload


def test_two_rules_of_one_config_disagreeing_on_labels_are_rejected_before_registering() -> None:
    store = MetricStore()
    pipeline = EventPipeline(EventsConfig(), store, None)
    bad = events_config({"mappings": [
        {"match": "a_*", "name": "loom_custom_shared", "labels": {"x": "x"}},
        {"match": "b_*", "name": "loom_custom_shared", "labels": {"y": "y"}}]})
    with pytest.raises(ValueError, match="loom_custom_shared"):
        pipeline.prepare(bad)
    assert store.get("loom_custom_shared") is None


def test_example_payloads_are_not_mutated_by_validation() -> None:
    before = copy.deepcopy(all_examples())
    for name, props in all_examples():
        event(name, props)
    assert all_examples() == before


def test_reload_may_change_or_remove_the_running_rules_families() -> None:
    store = MetricStore()
    first = events_config({"mappings": [
        {"match": "checkout_*", "name": "loom_checkout_events", "labels": {"plan": "plan"}},
        {"match": "upload_*", "action": "observe", "name": "loom_upload_size_bytes", "value": "bytes",
         "buckets": [10, 100]},
        {"match": "kept_*", "name": "loom_kept_events"}]})
    pipeline = EventPipeline(first, store, None)
    for name in ("checkout_done", "upload_done", "kept_one"):
        asyncio.run(pipeline.ingest([event(name, {"plan": "pro", "bytes": 50})], "events"))
    second = events_config({"mappings": [
        {"match": "checkout_*", "name": "loom_checkout_events", "labels": {"plan": "plan", "region": "region"}},
        {"match": "kept_*", "name": "loom_kept_events"}]})
    pipeline.prepare(second)()
    assert store.get("loom_upload_size_bytes") is None                     # removed with its series
    assert store.get("loom_checkout_events").labels == ("plan", "region")   # replaced: new labels
    assert not store.get("loom_checkout_events").series
    assert store.get("loom_kept_events").series == {(): 1.0}                # unchanged: counts carry on
    asyncio.run(pipeline.ingest([event("checkout_done", {"plan": "pro", "region": "eu"})], "events"))
    assert store.get("loom_checkout_events").series == {("pro", "eu"): 1.0}
    # a catalog family still cannot be redefined by a rule
    with pytest.raises(ValueError, match="loom_cta_clicks is already registered"):
        pipeline.prepare(events_config({"mappings": [{"match": "x", "name": "loom_cta_clicks"}]}))
