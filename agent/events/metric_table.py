"""Which catalog events become which metrics: the one table `mapping.py` compiles and
`docs/event-metrics.md` is rendered from (`python -m agent render-docs`... see tests).

A label source is a property name, `"=constant"`, or `Derived(fn, doc)`. Durations in
milliseconds are scaled to seconds (`scale=0.001`): metric names carry base units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.events.posthog_props import EVENT_TYPES, TAGS, element_tag, event_type, page_path, previous_page_path


@dataclass(frozen=True, slots=True)
class Derived:
    fn: Callable[[Mapping[str, Any]], str]
    doc: str


@dataclass(frozen=True, slots=True)
class Emit:
    events: tuple[str, ...]
    metric: str
    kind: str                                   # counter | histogram (gauges of event state, such as
                                                # open connections, are read from the span records)
    help: str
    labels: Mapping[str, str | Derived] = field(default_factory=dict)
    value: str | None = None                    # property: counter amount or observed value
    scale: float = 1.0
    buckets: tuple[float, ...] = ()
    unit: str = ""
    labels_allow: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # for Derived labels
    when: Callable[[Mapping[str, Any]], bool] | None = None   # only events whose properties pass
    when_doc: str = ""


def _status_class(props: Mapping[str, Any]) -> str:
    status = props.get("status")
    if isinstance(status, int) and 100 <= status <= 599:
        return f"{status // 100}xx"
    return "unknown"


STATUS_CLASS = Derived(_status_class, "`status` as 1xx..5xx")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "unknown")

SECONDS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
API_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PAGE_LOAD = (0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20)
# web vitals: buckets around Google's good / needs-improvement / poor thresholds
LCP = (0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 10)            # good <= 2.5 s, poor > 4 s
INP = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2)         # good <= 200 ms, poor > 500 ms
FID = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1)          # good <= 100 ms, poor > 300 ms
TTFB = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.5, 1.8, 2.5, 4)            # good <= 800 ms, poor > 1.8 s
CLS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1)     # good <= 0.1, poor > 0.25 (unitless)


def _vital(name: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda props: props.get("name") == name


def _failed(props: Mapping[str, Any]) -> bool:
    return props.get("result") == "failure"


Condition = Callable[[Mapping[str, Any]], bool]     # an Emit's `when`: only events whose properties pass


def _counter(events: str, metric: str, help: str, value: str | None = None, *, when: Condition | None = None,
             when_doc: str = "", labels_allow: Mapping[str, tuple[str, ...]] | None = None,
             **labels: str | Derived) -> Emit:
    return Emit(tuple(events.split()), metric, "counter", help, labels, value=value, when=when, when_doc=when_doc,
                labels_allow=labels_allow or {})


def _histogram(events: str, metric: str, help: str, value: str, buckets: tuple[float, ...], *,
               scale: float = 1.0, unit: str = "seconds", when: Condition | None = None, when_doc: str = "",
               labels_allow: Mapping[str, tuple[str, ...]] | None = None, **labels: str | Derived) -> Emit:
    return Emit(tuple(events.split()), metric, "histogram", help, labels, value=value, scale=scale,
                buckets=buckets, unit=unit, labels_allow=labels_allow or {}, when=when, when_doc=when_doc)



MS = 0.001
RESOURCE_EVENTS = ("resource_viewed resource_downloaded resource_shared resource_created resource_search "
                   "resource_recommendation resource_rating resource_deleted")
NOTIFICATION_STAGES = {"notification_delivered": "delivered", "notification_displayed": "displayed",
                       "notification_clicked": "clicked", "notification_dismissed": "dismissed",
                       "notification_delivery_failure": "failed", "notification_action_click": "action_clicked"}


MARKETING = (
    _counter("landing_page_view", "loom_landing_page_views", "Landing page views, by UTM source and medium.",
             source="source", medium="medium"),
    _counter("lead_capture", "loom_leads", "Leads captured, by lead type and UTM source.",
             type="lead_type", source="source"),
    _counter("signup_step", "loom_signup_steps", "Signup funnel steps, by step and status.",
             step="step", status="status"),
    _counter("cta_click", "loom_cta_clicks", "Call-to-action clicks, by CTA id and location.",
             cta="cta_id", location="location"),
    _counter("campaign_conversion", "loom_conversions", "Marketing conversions, by type, UTM source and medium.",
             type="conversion_type", source="source", medium="medium"),
    _counter("campaign_conversion", "loom_conversion_value", "Summed conversion value, by conversion type "
             "(in the currency the application sends).", value="conversion_value", type="conversion_type"),
    _counter("experiment_view", "loom_experiment_exposures", "A/B test exposures, by experiment and variant.",
             experiment="experiment_id", variant="variant_id"),
    _counter("referral", "loom_referrals", "Referrals, by status and channel.", status="status", channel="channel"),
    _counter("newsletter_signup", "loom_newsletter_signups", "Newsletter subscriptions, by list.", list="list_id"),
)

ONBOARDING = (
    _counter("onboarding_step_started", "loom_onboarding_steps", "Onboarding steps, by step and outcome.",
             step="step", outcome="=started"),
    _counter("onboarding_step_completed", "loom_onboarding_steps", "Onboarding steps, by step and outcome.",
             step="step", outcome="=completed"),
    _counter("onboarding_abandoned", "loom_onboarding_steps", "Onboarding steps, by step and outcome.",
             step="step", outcome="=abandoned"),
    _histogram("onboarding_step_completed", "loom_onboarding_step_duration_seconds",
               "Time spent in an onboarding step, by step.", "time_spent_seconds", SECONDS, step="step"),
    _counter("onboarding_completed", "loom_onboarding_flows", "Onboarding flows ended, by outcome.",
             outcome="=completed"),
    _counter("onboarding_abandoned", "loom_onboarding_flows", "Onboarding flows ended, by outcome.",
             outcome="=abandoned"),
    _histogram("onboarding_completed", "loom_onboarding_duration_seconds", "Duration of a completed onboarding flow.",
               "total_time_seconds", SECONDS),
    _counter("feature_discovered", "loom_features_discovered", "Features discovered during onboarding, by feature "
             "and discovery method.", feature="feature", method="discovery_method"),
    _counter("first_action", "loom_first_actions", "Activation milestones, by action.", action="action"),
    _counter("onboarding_hint_interaction", "loom_onboarding_hint_interactions", "Onboarding hint interactions, "
             "by action.", action="action"),
    _counter("onboarding_reengagement", "loom_onboarding_reengagements", "Returns to an unfinished onboarding, "
             "by channel.", channel="channel"),
)

RESOURCE = (
    *(_counter(name, "loom_resource_events", "Resource interactions, by action and resource type.",
               action="=" + name.removeprefix("resource_"), type="resource_type") for name in RESOURCE_EVENTS.split()),
    _histogram("resource_viewed", "loom_resource_view_duration_seconds", "How long a resource was viewed.",
               "view_duration_seconds", SECONDS, type="resource_type"),
    _histogram("resource_viewed", "loom_resource_scroll_depth_ratio", "Scroll depth reached in a resource (0-1).",
               "scroll_depth_percent", (0.1, 0.25, 0.5, 0.75, 0.9, 1.0), scale=0.01, unit="ratio",
               type="resource_type"),
    _histogram("resource_rating", "loom_resource_rating", "Resource ratings (1-5).", "rating", (1, 2, 3, 4, 5),
               unit=""),
    _histogram("resource_search", "loom_resource_search_results", "Results returned per resource search.",
               "results_count", (0, 1, 5, 10, 25, 50, 100), unit=""),
)


NOTIFICATION = (
    *(_counter(name, "loom_notifications", "The notification funnel: notifications by stage, type and channel.",
               stage="=" + stage, type="notification_type", channel="channel")
      for name, stage in NOTIFICATION_STAGES.items()),
    _histogram("notification_clicked", "loom_notification_time_to_click_seconds",
               "Time from delivery to click, by notification type and channel.", "time_since_delivery_seconds",
               SECONDS, type="notification_type", channel="channel"),
    _histogram("notification_delivered", "loom_notification_delivery_latency_seconds",
               "Delivery latency reported by the provider, by channel.", "delivery_latency_ms", LATENCY, scale=MS,
               channel="channel"),
    _counter("notification_delivery_failure", "loom_notification_delivery_failures",
             "Failed deliveries, by channel and reason.", channel="channel", reason="reason"),
    _counter("push_permission_request", "loom_push_permission_requests", "Push permission prompts, by result.",
             result="result"),
    _counter("notification_opt_out", "loom_notification_opt_outs", "Notification opt-outs, by channel.",
             channel="channel"),
    _counter("notification_preferences_update", "loom_notification_preference_updates",
             "Notification preference changes, by channel and frequency.", channel="channel", frequency="frequency"),
)

REALTIME = (
    _counter("connection_attempt", "loom_realtime_connection_attempts", "Realtime connection attempts, by transport.",
             transport="transport"),
    _histogram("connection_established", "loom_realtime_connect_duration_seconds",
               "Time to establish a realtime connection, by transport.", "connect_time_ms", LATENCY, scale=MS,
               transport="transport"),
    _histogram("connection_latency", "loom_realtime_connection_latency_seconds",
               "Realtime connection latency measurements, by transport.", "latency_ms", LATENCY, scale=MS,
               transport="transport"),
    _counter("connection_disconnected", "loom_realtime_disconnects", "Realtime disconnections, by transport and "
             "whether the close was clean (the free-text reason is a span attribute).", transport="transport",
             clean="was_clean"),
    _counter("connection_error", "loom_realtime_connection_errors", "Realtime connection errors, by transport and "
             "error code.", transport="transport", code="error_code"),
    _counter("fallback_polling_activated", "loom_realtime_polling_fallbacks", "Fallbacks to polling, by the "
             "transport that failed.", from_transport="from_transport"),
    _counter("realtime_message", "loom_realtime_messages", "Realtime messages, by type and direction.",
             type="message_type", direction="direction"),
    _counter("realtime_message", "loom_realtime_message_bytes", "Realtime message bytes, by direction.",
             value="bytes", direction="direction"),
    _counter("connection_health_check", "loom_realtime_health_checks", "Realtime health checks, by result.",
             healthy="healthy"),
    _counter("connection_upgrade", "loom_realtime_upgrades", "Realtime transport changes.",
             from_transport="from_transport", to_transport="to_transport"),
)

AUTH = (
    _counter("login_attempt", "loom_login_attempts", "Login attempts, by result and method.", result="result",
             method="method"),
    _counter("login_attempt", "loom_login_failures", "Failed logins, by failure reason.",
             when=_failed, when_doc="result = failure", reason="failure_reason"),
    _counter("logout", "loom_logouts", "Logouts, by reason.", reason="reason"),
    _counter("mfa_challenge_sent", "loom_mfa_challenges", "MFA challenges sent, by method.", method="method"),
    _counter("mfa_verification", "loom_mfa_verifications", "MFA verifications, by method and result.",
             method="method", result="result"),
    _histogram("mfa_verification", "loom_mfa_verification_duration_seconds", "Time to complete an MFA "
               "verification, by method.", "duration_ms", SECONDS, scale=MS, method="method"),
    _counter("mfa_enrolled", "loom_mfa_enrolments", "MFA enrolments, by method.", method="method"),
    _counter("mfa_disabled", "loom_mfa_disablements", "MFA disablements, by method.", method="method"),
    _counter("security_event", "loom_security_events", "Security events, by type and severity.", type="type",
             severity="severity"),
)

COACHING = (
    *(_counter(name, "loom_coaching_sessions", "Coaching sessions, by status and session type.",
               status="=" + name.removeprefix("session_"), type="session_type")
      for name in ("session_booked", "session_completed", "session_cancelled")),
    _histogram("session_rated", "loom_coaching_session_rating", "Coaching session ratings (1-5).", "rating",
               (1, 2, 3, 4, 5), unit="", type="session_type"),
    _histogram("session_completed", "loom_coaching_session_duration_seconds", "Duration of completed coaching "
               "sessions.", "duration_minutes", (900, 1800, 2700, 3600, 5400, 7200), scale=60, type="session_type"),
    *(_counter(name, "loom_goals", "Goals, by status.", status="=" + name.removeprefix("goal_"))
      for name in ("goal_created", "goal_completed")),
    *(_counter(name, "loom_tasks", "Tasks, by status.", status="=" + name.removeprefix("task_"))
      for name in ("task_created", "task_completed")),
    *(_counter(name, "loom_files", "File operations, by action and file type.",
               action="=" + name.removeprefix("file_"), type="file_type")
      for name in ("file_uploaded", "file_downloaded", "file_shared")),
    *(_counter(name, "loom_file_bytes", "Bytes of file operations, by action.", value="bytes",
               action="=" + name.removeprefix("file_")) for name in ("file_uploaded", "file_downloaded")),
)

PERFORMANCE = (
    _histogram("api_request", "loom_api_request_duration_seconds", "API request duration, by route template, "
               "method and status class.", "duration_ms", API_LATENCY, scale=MS, route="route", method="method",
               status_class=STATUS_CLASS, labels_allow={"status_class": STATUS_CLASSES}),
    _histogram("page_load", "loom_page_load_duration_seconds", "Page load time, by page.", "load_time_ms",
               PAGE_LOAD, scale=MS, page="page"),
    *(_histogram("web_vitals", f"loom_web_vitals_{vital.lower()}{suffix}", f"Core Web Vital {vital}, by rating.",
                 "value", buckets, scale=scale, unit=unit, when=_vital(vital), when_doc=f"name = {vital}",
                 rating="rating")
      for vital, buckets, scale, suffix, unit in (
          ("LCP", LCP, MS, "_seconds", "seconds"), ("INP", INP, MS, "_seconds", "seconds"),
          ("FID", FID, MS, "_seconds", "seconds"), ("TTFB", TTFB, MS, "_seconds", "seconds"),
          ("FCP", LCP, MS, "_seconds", "seconds"), ("CLS", CLS, 1.0, "", ""))),
    _counter("web_vitals", "loom_web_vitals_ratings", "Web vitals measurements, by vital and rating.",
             name="name", rating="rating"),
)

BUSINESS = (
    _counter("feature_used", "loom_feature_usage", "Feature usage, by feature.", feature="feature"),
    _counter("trial_started", "loom_trials_started", "Trials started, by plan.", plan="plan"),
    _counter("trial_converted", "loom_trials_converted", "Trials converted to paid, by plan.", plan="plan"),
    _counter("subscription_started", "loom_subscriptions_started", "Subscriptions started, by plan and interval.",
             plan="plan", interval="interval"),
    _counter("subscription_changed", "loom_subscription_changes", "Subscription plan changes, by direction.",
             direction="direction"),
    _counter("subscription_cancelled", "loom_subscriptions_cancelled", "Subscriptions cancelled, by plan and who "
             "cancelled.", plan="plan", cancelled_by="cancelled_by"),
    _counter("payment_succeeded", "loom_payments", "Payments, by result.", result="=success"),
    _counter("payment_failed", "loom_payments", "Payments, by result.", result="=failure"),
    _counter("payment_failed", "loom_payment_failures", "Failed payments, by reason.", reason="failure_reason"),
)

# PostHog's own events: paths are templates (agent/events/posthog_props.py) bounded by the series limit;
# event types and element tags are closed sets
TIME_ON_PAGE = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
PAGE_PATH = Derived(page_path, "the template of `$pathname` (else `$current_url`): ids -> `:id`, no query")
PREVIOUS_PATH = Derived(previous_page_path, "the template of `$prev_pageview_pathname` (else the page's own)")
ELEMENT_TAG = Derived(element_tag, "the clicked element's tag (`$elements[0]`, else `$elements_chain`); "
                                   "one of the common HTML tags, else `other`")
CLICK_LABELS = {"event_type": (*sorted(EVENT_TYPES), "unknown"), "tag": (*sorted(TAGS), "unknown")}
POSTHOG = (
    _counter("$pageview", "loom_pageviews", "Page views (PostHog `$pageview`), by path template.", path=PAGE_PATH),
    _histogram("$pageview $pageleave", "loom_time_on_page_seconds", "Time spent on a page (PostHog "
               "`$prev_pageview_duration`), by path template.", "$prev_pageview_duration", TIME_ON_PAGE,
               path=PREVIOUS_PATH),
    _counter("$autocapture", "loom_autocapture", "Interactions posthog-js autocaptured, by event type and element "
             "tag.", event_type=Derived(event_type, "`$event_type`: click, submit, change, copy, cut, else `other`"),
             tag=ELEMENT_TAG, labels_allow=CLICK_LABELS),
    _counter("$rageclick", "loom_autocapture", "Interactions posthog-js autocaptured, by event type and element "
             "tag.", event_type="=rageclick", tag=ELEMENT_TAG, labels_allow=CLICK_LABELS),
)

TABLE: tuple[Emit, ...] = (*MARKETING, *ONBOARDING, *RESOURCE, *NOTIFICATION, *REALTIME, *AUTH, *COACHING,
                           *PERFORMANCE, *BUSINESS, *POSTHOG)
