"""The event catalog: every event the documentation lists is there, well formed, and an example
built from each spec (required properties only, then every property) validates to typed values."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent.events.catalog import CATALOG, CATEGORIES, CUSTOM, EventSpec, Prop
from agent.events.catalog_types import PROP_TYPES
from agent.events.validate import parse_event

NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z
SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")

DOCUMENTED = {
    "marketing": ["landing_page_view", "lead_capture", "signup_step", "cta_click", "campaign_conversion",
                  "experiment_view", "referral", "newsletter_signup"],
    "onboarding": ["onboarding_step_started", "onboarding_step_completed", "onboarding_completed",
                   "onboarding_abandoned", "feature_discovered", "first_action", "onboarding_hint_interaction",
                   "onboarding_personalization", "onboarding_reengagement"],
    "resource": ["resource_viewed", "resource_downloaded", "resource_shared", "resource_created",
                 "resource_search", "resource_recommendation", "resource_engagement_score", "resource_rating",
                 "resource_deleted"],
    "notification": ["notification_delivered", "notification_displayed", "notification_clicked",
                     "notification_dismissed", "push_permission_request", "notification_preferences_update",
                     "notification_opt_out", "notification_engagement_rate", "notification_action_click",
                     "notification_delivery_failure", "notification_batch_operation"],
    "realtime": ["connection_attempt", "connection_established", "connection_disconnected", "connection_error",
                 "fallback_polling_activated", "connection_latency", "realtime_message",
                 "connection_health_check", "connection_upgrade"],
    # issue 3, item 2, and the documentation's business examples
    "auth": ["login_attempt", "logout"],
    "mfa": ["mfa_challenge_sent", "mfa_verification", "mfa_enrolled"],
    "security": ["security_event"],
    "session": ["session_booked", "session_completed", "session_cancelled", "session_rated"],
    "goal": ["goal_created", "goal_completed"],
    "task": ["task_created", "task_completed"],
    "file": ["file_uploaded", "file_downloaded", "file_shared"],
    "performance": ["api_request", "page_load"],
    "web_vitals": ["web_vitals"],
    "business": ["feature_used", "trial_started"],
    # issue 14, item 4: PostHog's own events that feed metrics
    "posthog": ["$pageview", "$pageleave", "$autocapture", "$rageclick"],
}
POSTHOG_NAME = re.compile(r"\$[a-z][a-z0-9]*(_[a-z0-9]+)*")      # PostHog's spelling: `$` + snake_case


@pytest.mark.parametrize("category,names", DOCUMENTED.items(), ids=list(DOCUMENTED))
def test_every_documented_event_is_in_the_catalog(category: str, names: list[str]) -> None:
    assert [(n, CATALOG[n].category) for n in names if n in CATALOG] == [(n, category) for n in names]


def test_categories() -> None:
    assert set(DOCUMENTED) | {CUSTOM} == set(CATEGORIES)
    assert {spec.category for spec in CATALOG.values()} == set(CATEGORIES) - {CUSTOM}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_spec_is_well_formed(name: str) -> None:
    spec = CATALOG[name]
    pattern = POSTHOG_NAME if spec.category == "posthog" else SNAKE
    assert spec.name == name and pattern.fullmatch(name) and spec.description.strip()
    for prop_name, prop in spec.props.items():
        assert pattern.fullmatch(prop_name), prop_name
        assert prop.type in PROP_TYPES and prop.description.strip(), prop_name
        if prop.enum is not None:
            assert prop.type == "string" and prop.enum and all(isinstance(v, str) for v in prop.enum)
        if prop.minimum is not None or prop.maximum is not None:
            assert prop.type in ("integer", "number")
        if prop.minimum is not None and prop.maximum is not None:
            assert prop.minimum <= prop.maximum
    for alias, target in spec.aliases.items():
        assert target in spec.props and alias not in spec.props and SNAKE.fullmatch(alias)


def test_label_candidates_are_closed_enums() -> None:
    """The metrics layer uses enums as label allow-lists: these properties must have one."""
    for spec in CATALOG.values():
        for prop_name in ("channel", "transport", "rating", "result", "method", "resource_type", "file_type",
                          "session_type", "severity", "from_transport", "to_transport"):
            prop = spec.props.get(prop_name)
            if prop is not None and prop.type == "string":
                assert prop.enum, f"{spec.name}.{prop_name}"


def test_ranges_the_issue_names() -> None:
    def bounds(event: str, prop: str) -> tuple[float | None, float | None]:
        return CATALOG[event].props[prop].minimum, CATALOG[event].props[prop].maximum

    assert bounds("resource_viewed", "scroll_depth_percent") == (0, 100)
    assert bounds("session_rated", "rating") == (1, 5)
    assert bounds("api_request", "status") == (100, 599)
    assert CATALOG["web_vitals"].props["rating"].enum == {"good", "needs-improvement", "poor"}
    assert CATALOG["mfa_verification"].props["method"].enum == {"totp", "sms", "email", "webauthn", "backup_code"}
    assert CATALOG["login_attempt"].props["result"].enum == {"success", "failure"}
    assert {"LCP", "INP", "FID", "CLS", "TTFB"} <= CATALOG["web_vitals"].props["name"].enum


# --- examples generated from the specs -------------------------------------------------------------

def example_value(prop: Prop) -> tuple[Any, Any]:
    """(a valid JSON value for the property, the typed value validation must produce)."""
    if prop.type == "string":
        if prop.enum:
            value = sorted(prop.enum)[0]
        elif prop.pattern:
            value = "/api/sessions/:id"
        else:
            value = "x" * min(prop.max_length or 8, 8)
        return value, value
    if prop.type in ("integer", "number"):
        low = prop.minimum if prop.minimum is not None else -3
        high = prop.maximum if prop.maximum is not None else low + 10
        value = int(low + (high - low) // 2)
        return value, value if prop.type == "integer" else float(value)
    if prop.type == "boolean":
        return True, True
    if prop.type == "object":
        return {"a": {"b": [1, "c"]}}, {"a": {"b": [1, "c"]}}
    if prop.type == "array":
        return ["a", 1, {"b": None}], ["a", 1, {"b": None}]
    return "2026-11-24T10:00:00Z", NOW - 5                 # timestamp


def example(spec: EventSpec, everything: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    props, expected = {}, {}
    for name, prop in spec.props.items():
        if prop.required or everything:
            props[name], expected[name] = example_value(prop)
    return {"event": spec.name, "user_id": "u_1", "properties": props}, expected


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_generated_example_with_required_properties_validates(name: str) -> None:
    obj, expected = example(CATALOG[name], everything=False)
    event = parse_event(obj, now=NOW)
    assert (event.name, event.category, event.known) == (name, CATALOG[name].category, True)
    assert event.properties == expected
    assert all(type(event.properties[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_generated_example_with_every_property_validates(name: str) -> None:
    obj, expected = example(CATALOG[name], everything=True)
    assert parse_event(obj, now=NOW).properties == expected


@pytest.mark.parametrize("name", sorted(n for n, s in CATALOG.items() if any(p.required for p in s.props.values())))
def test_each_required_property_is_required(name: str) -> None:
    spec = CATALOG[name]
    for prop_name, prop in spec.props.items():
        if prop.required:
            obj, _ = example(spec, everything=True)
            del obj["properties"][prop_name]
            with pytest.raises(ValueError, match=f"^properties.{prop_name}: is required$"):
                parse_event(obj, now=NOW)
