"""A privacy-scrubbed `Event` -> the rows it becomes: one `events` row, and a row in each of the
documentation's audit tables the event belongs to.

`events.label`, `events.outcome` and `events.value` lift each catalog event's main dimension, result
and number out of its properties (DIMENSIONS below), so the analytics queries read an index instead
of parsing JSON. A property that is absent leaves the column NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    tables: Sequence[tuple[str, tuple[Any, ...]]] = ()    # most events have none: no list each
    role: str | None = None        # the user's role, when the event states it


# A lifted number past +-1e15 (no duration, score, amount or byte count the analytics read comes near it) is
# left out of `events.value` (the property keeps it): the rollups add values, and PostgreSQL refuses a sum
# past the double range, so two events of 1e308 in one bucket failed the whole group commit (found by
# tests/test_fuzz_properties.py).
MAX_VALUE = 1e15


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is bool:
        return "true" if value else "false"
    return value if type(value) is str else str(value)


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _specs() -> dict[str, tuple[str | None, str | None, str | None, str | None]]:
    """DIMENSIONS as event_rows reads them: (label property, outcome property, constant outcome, value
    property)."""
    out = {}
    for name, (label, outcome, value) in DIMENSIONS.items():
        constant = outcome[1:] if outcome is not None and outcome[0] == "=" else None
        out[name] = (label, None if constant is not None else outcome, constant, value)
    return out


_SPECS = _specs()
_NO_SPEC = (None, None, None, None)
_dumps = orjson.dumps
_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


def context_json(event: Event) -> str:
    c = event.context
    ctx: dict[str, str | bool] = {}
    if c.page is not None:
        ctx["page"] = c.page
    if c.user_agent is not None:
        ctx["user_agent"] = c.user_agent
    if c.trace_id is not None:
        ctx["trace_id"] = c.trace_id
    if c.span_id is not None:
        ctx["span_id"] = c.span_id
    if c.ip is not None:
        ctx["ip"] = c.ip
    if c.library is not None:
        ctx["library"] = c.library
    if c.dnt:
        ctx["dnt"] = True
    return _dumps(ctx).decode() if ctx else "{}"


def event_rows(event: Event) -> EventRows:
    """The rows of one event. On the durable ingest path of every stored event, so written out for speed
    (in-process on bench/ingest_events.py's mix, median of 9 runs of 40,000 events: 3.3 -> 2.5 CPU µs an
    event): one lookup of the name's columns, str values checked inline, the context's JSON without a
    generator, no list for events without audit rows. tests/test_rows.py holds the plain version."""
    props = event.properties
    name = event.name
    category = event.category
    label_key, outcome_key, outcome, value_key = _SPECS.get(name, _NO_SPEC)
    label = None
    if label_key is not None:
        label = props.get(label_key)
        if label is not None and type(label) is not str:
            label = _text(label)
    if outcome_key is not None:
        outcome = props.get(outcome_key)
        if outcome is not None and type(outcome) is not str:
            outcome = _text(outcome)
    value: float | None = None
    if value_key is not None:
        number: Any = props.get(value_key)
        kind = type(number)
        if (kind is int or kind is float) and -MAX_VALUE <= number <= MAX_VALUE:
            value = float(number)
    row = (event.event_id, name, category, event.timestamp, event.received_at, event.user_id,
           event.anonymous_id, event.session_id, label, outcome, value,
           "performance" if category in PERFORMANCE_CATEGORIES else "analytics",
           _dumps(props, option=_NON_STR_KEYS).decode(), context_json(event), event.release)
    derive = _DERIVED.get(category)
    if derive is None:
        return EventRows(row)
    tables: list[tuple[str, tuple[Any, ...]]] = []
    derive(event, tables)
    if name == "onboarding_personalization":        # an onboarding event: the role it states
        role = props.get("role")
        return EventRows(row, tables, role if type(role) is str else None)
    return EventRows(row, tables)


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
