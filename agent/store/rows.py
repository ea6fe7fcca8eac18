"""A privacy-scrubbed `Event` -> the rows it becomes: one `events` row, and a row in each of the
documentation's audit tables the event belongs to.

`events.label`, `events.outcome` and `events.value` lift each catalog event's main dimension, result
and number out of its properties (DIMENSIONS below), so the analytics queries read an index instead
of parsing JSON. A property that is absent leaves the column NULL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.events.model import Event

EVENT_COLUMNS = ("event_id", "name", "category", "ts", "received_at", "user_id", "anonymous_id", "session_id",
                 "label", "outcome", "value", "retention_class", "properties", "context", "release")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "onboarding_funnel": ("event_id", "user_id", "flow_id", "step", "step_number", "status",
                          "time_spent_seconds", "ts"),
    "mfa_audit_logs": ("event_id", "user_id", "action", "method", "result", "failure_reason", "ip", "user_agent",
                       "ts"),
    "security_events": ("event_id", "user_id", "type", "severity", "result", "reason", "ip", "user_agent", "ts"),
    "download_logs": ("event_id", "user_id", "resource_id", "resource_type", "bytes", "ts"),
}

# categories whose events are performance metrics (30-day retention); the rest are analytics events
PERFORMANCE_CATEGORIES = frozenset({"performance", "web_vitals"})

# event name -> (label property, outcome property, value property); None: no such column.
# An outcome given as "=text" is that constant.
DIMENSIONS: dict[str, tuple[str | None, str | None, str | None]] = {
    "landing_page_view": ("source", "medium", None),
    "lead_capture": ("lead_type", "source", None),
    "signup_step": ("step", "status", "step_number"),
    "cta_click": ("cta_id", "location", None),
    "campaign_conversion": ("conversion_type", "source", "conversion_value"),
    "experiment_view": ("experiment_id", "variant_id", None),
    "referral": ("channel", "status", "reward_value"),
    "onboarding_step_started": ("step", "=started", "step_number"),
    "onboarding_step_completed": ("step", "=completed", "time_spent_seconds"),
    "onboarding_abandoned": ("step", "=abandoned", "time_spent_seconds"),
    "onboarding_completed": ("flow_id", "=completed", "total_time_seconds"),
    "onboarding_personalization": ("role", None, None),
    "feature_discovered": ("feature", "discovery_method", None),
    "first_action": ("action", None, "seconds_since_signup"),
    "resource_viewed": ("resource_type", None, "view_duration_seconds"),
    "resource_downloaded": ("resource_type", None, "bytes"),
    "resource_shared": ("resource_type", "share_method", "recipient_count"),
    "resource_created": ("resource_type", "visibility", "bytes"),
    "resource_search": ("resource_type", None, "results_count"),
    "resource_engagement_score": ("resource_type", None, "score"),
    "resource_rating": ("resource_type", None, "rating"),
    "notification_delivered": ("channel", "notification_type", "delivery_latency_ms"),
    "notification_displayed": ("channel", "notification_type", None),
    "notification_clicked": ("channel", "notification_type", "time_since_delivery_seconds"),
    "notification_dismissed": ("channel", "notification_type", "time_since_delivery_seconds"),
    "notification_delivery_failure": ("channel", "reason", "retry_count"),
    "notification_opt_out": ("channel", "notification_type", None),
    "push_permission_request": ("prompt_context", "result", None),
    "connection_established": ("transport", None, "connect_time_ms"),
    "connection_disconnected": ("transport", "reason", "duration_seconds"),
    "connection_error": ("transport", "reason", None),
    "connection_latency": ("transport", None, "latency_ms"),
    "login_attempt": ("method", "result", None),
    "logout": ("reason", None, "session_duration_seconds"),
    "mfa_challenge_sent": ("method", None, None),
    "mfa_verification": ("method", "result", "duration_ms"),
    "mfa_enrolled": ("method", None, None),
    "mfa_disabled": ("method", "reason", None),
    "security_event": ("type", "severity", None),
    "session_booked": ("coach_id", "session_type", "duration_minutes"),
    "session_completed": ("coach_id", "session_type", "duration_minutes"),
    "session_cancelled": ("coach_id", "cancelled_by", "duration_minutes"),
    "session_rated": ("coach_id", "session_type", "rating"),
    "goal_created": ("goal_category", "created_by", None),
    "goal_completed": ("goal_category", None, "days_to_complete"),
    "task_created": ("assigned_by", "priority", None),
    "task_completed": ("goal_id", "on_time", "days_to_complete"),
    "file_uploaded": ("file_type", None, "bytes"),
    "file_downloaded": ("file_type", None, "bytes"),
    "file_shared": ("file_type", "share_method", "bytes"),
    "api_request": ("route", "status", "duration_ms"),
    "page_load": ("page", "navigation_type", "load_time_ms"),
    "web_vitals": ("name", "rating", "value"),
    "feature_used": ("feature", None, None),
    "trial_started": ("plan", None, "duration_days"),
    "trial_converted": ("plan", "interval", "amount"),
    "subscription_started": ("plan", "interval", "amount"),
    "subscription_changed": ("to_plan", "direction", "amount"),
    "subscription_cancelled": ("plan", "cancelled_by", None),
    "payment_succeeded": ("plan", "provider", "amount"),
    "payment_failed": ("plan", "failure_reason", "amount"),
}
_NONE = (None, None, None)


@dataclass(slots=True)
class EventRows:
    """What one event writes: its `events` row, its audit-table rows, and its user's activity."""

    event: tuple[Any, ...]
    tables: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    role: str | None = None        # the user's role, when the event states it


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is bool:
        return "true" if value else "false"
    return value if type(value) is str else str(value)


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _outcome(props: dict[str, Any], spec: str | None) -> str | None:
    if spec is None:
        return None
    if spec[0] == "=":
        return spec[1:]
    return _text(props.get(spec))


def context_json(event: Event) -> str:
    c = event.context
    ctx: dict[str, str | bool] = {
        k: v for k, v in (("page", c.page), ("user_agent", c.user_agent), ("trace_id", c.trace_id),
                          ("span_id", c.span_id), ("ip", c.ip), ("library", c.library)) if v is not None}
    if c.dnt:
        ctx["dnt"] = True
    return orjson.dumps(ctx).decode()


def event_rows(event: Event) -> EventRows:
    props = event.properties
    label, outcome, value = DIMENSIONS.get(event.name, _NONE)
    row = (event.event_id, event.name, event.category, event.timestamp, event.received_at, event.user_id,
           event.anonymous_id, event.session_id, _text(props.get(label)) if label else None,
           _outcome(props, outcome), _number(props.get(value)) if value else None,
           "performance" if event.category in PERFORMANCE_CATEGORIES else "analytics",
           orjson.dumps(props, option=orjson.OPT_NON_STR_KEYS).decode(), context_json(event), event.release)
    rows = EventRows(row)
    derive = _DERIVED.get(event.category)
    if derive is not None:
        derive(event, rows.tables)
    if event.name == "onboarding_personalization" and type(props.get("role")) is str:
        rows.role = props["role"]
    return rows


def _onboarding(event: Event, out: list[tuple[str, tuple[Any, ...]]]) -> None:
    status = {"onboarding_step_started": "started", "onboarding_step_completed": "completed",
              "onboarding_abandoned": "abandoned", "onboarding_completed": "flow_completed"}.get(event.name)
    if status is None:
        return
    p = event.properties
    spent = p.get("total_time_seconds") if status == "flow_completed" else p.get("time_spent_seconds")
    out.append(("onboarding_funnel", (event.event_id, event.user_id, _text(p.get("flow_id")), _text(p.get("step")),
                                      p.get("step_number"), status, _number(spent), event.timestamp)))


def _mfa(event: Event, out: list[tuple[str, tuple[Any, ...]]]) -> None:
    p = event.properties
    action = event.name.removeprefix("mfa_")
    out.append(("mfa_audit_logs", (event.event_id, event.user_id, action, _text(p.get("method")),
                                   _text(p.get("result")), _text(p.get("failure_reason") or p.get("reason")),
                                   event.context.ip, event.context.user_agent, event.timestamp)))


def _security(event: Event, out: list[tuple[str, tuple[Any, ...]]]) -> None:
    p = event.properties
    kind = _text(p.get("type")) if event.name == "security_event" else event.name
    out.append(("security_events", (event.event_id, event.user_id, kind or event.name, _text(p.get("severity")),
                                    _text(p.get("result")), _text(p.get("failure_reason") or p.get("reason")),
                                    event.context.ip, event.context.user_agent, event.timestamp)))


def _download(event: Event, out: list[tuple[str, tuple[Any, ...]]]) -> None:
    p = event.properties
    if event.name == "resource_downloaded":
        out.append(("download_logs", (event.event_id, event.user_id, _text(p.get("resource_id")),
                                      _text(p.get("resource_type")), _number(p.get("bytes")), event.timestamp)))
    elif event.name == "file_downloaded":
        out.append(("download_logs", (event.event_id, event.user_id, _text(p.get("file_id")),
                                      _text(p.get("file_type")), _number(p.get("bytes")), event.timestamp)))


_DERIVED = {"onboarding": _onboarding, "mfa": _mfa, "auth": _security, "security": _security,
            "resource": _download, "file": _download}
