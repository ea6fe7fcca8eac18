"""One valid example payload per catalog event, as an application would send it.

Properties are written camelCase where the Loom documentation shows camelCase (its TypeScript
examples: campaign conversion, onboarding, resources, notifications, web vitals, `session_booked`
with `sessionType`/`coachId`/`duration`, `trial_started` with `duration`), snake_case elsewhere,
so both spellings go through every layer. Every example sets each property its event's metrics
read (values, labels), so one example per event updates every family the metric table lists for
it — except the `when`-filtered ones: `VARIANTS` adds the other web vitals and a failed login.
"""

from __future__ import annotations

import copy
from typing import Any

USER = "user_42"

PROPERTIES: dict[str, dict[str, Any]] = {
    # --- marketing -----------------------------------------------------------------------------
    "landing_page_view": {"page": "/pricing", "referrer": "https://www.google.com/", "source": "google",
                          "medium": "cpc", "campaign": "summer_trial", "term": "coaching app",
                          "content": "ad_a", "experimentId": "pricing_test_v2", "variantId": "variant_b"},
    "lead_capture": {"leadType": "demo_request", "formId": "demo_form", "page": "/demo", "source": "newsletter",
                     "medium": "email", "campaign": "spring"},
    "signup_step": {"step": "verify_email", "stepNumber": 2, "totalSteps": 4, "status": "completed",
                    "method": "email", "timeSpentSeconds": 30, "source": "google"},
    "cta_click": {"ctaId": "hero_start_trial", "ctaText": "Start your free trial", "location": "hero",
                  "page": "/", "destination": "/signup"},
    # the documentation's trackCampaignConversion example, with a paid conversion value
    "campaign_conversion": {"conversionType": "purchase", "conversionValue": 49.5, "currency": "EUR",
                            "source": "google", "medium": "cpc", "campaign": "summer_trial",
                            "experimentId": "pricing_test_v2", "variantId": "variant_b"},
    "experiment_view": {"experimentId": "pricing_test_v2", "variantId": "variant_b",
                        "experimentName": "Pricing page v2", "page": "/pricing"},
    "referral": {"status": "signed_up", "referralCode": "FRIEND10", "channel": "email", "rewardValue": 10},
    "newsletter_signup": {"listId": "weekly_digest", "page": "/blog", "source": "blog", "doubleOptIn": True},
    # --- onboarding ----------------------------------------------------------------------------
    "onboarding_step_started": {"step": "profile_setup", "stepNumber": 2, "totalSteps": 5, "flowId": "flow_1"},
    # the documentation's trackOnboardingStepCompleted example
    "onboarding_step_completed": {"step": "profile_setup", "stepNumber": 2, "totalSteps": 5,
                                  "timeSpentSeconds": 45, "interactionCount": 12, "flowId": "flow_1"},
    "onboarding_completed": {"totalSteps": 5, "totalTimeSeconds": 420, "stepsSkipped": 1, "flowId": "flow_1"},
    "onboarding_abandoned": {"step": "calendar_sync", "stepNumber": 4, "totalSteps": 5, "timeSpentSeconds": 200,
                             "reason": "closed the tab", "flowId": "flow_2"},
    "feature_discovered": {"feature": "goal_tracking", "discoveryMethod": "tooltip", "step": "dashboard_tour"},
    "first_action": {"action": "session_booked", "secondsSinceSignup": 3600},
    "onboarding_hint_interaction": {"hintId": "hint_calendar", "action": "dismissed", "step": "calendar_sync"},
    "onboarding_personalization": {"role": "client", "goals": ["career", "health"],
                                   "preferences": {"reminders": "daily"}, "step": "preferences"},
    "onboarding_reengagement": {"step": "calendar_sync", "daysSinceLastActivity": 3, "channel": "email"},
    # --- resource ------------------------------------------------------------------------------
    # the documentation's trackResourceViewed example
    "resource_viewed": {"resourceId": "res_9", "resourceType": "pdf", "resourceName": "Goal setting 101",
                        "viewDurationSeconds": 120, "scrollDepthPercent": 75, "isFirstView": True},
    "resource_downloaded": {"resourceId": "res_9", "resourceType": "pdf", "resourceName": "Goal setting 101",
                            "bytes": 250000},
    "resource_shared": {"resourceId": "res_9", "resourceType": "video", "shareMethod": "link", "recipientCount": 2},
    "resource_created": {"resourceId": "res_10", "resourceType": "worksheet", "resourceName": "Weekly review",
                         "bytes": 4096, "visibility": "shared"},
    "resource_search": {"query": "goal setting", "resultsCount": 7, "resourceType": "article",
                        "filters": {"language": "en"}, "durationMs": 35},
    "resource_recommendation": {"resourceId": "res_11", "action": "clicked", "position": 0,
                                "algorithm": "collaborative", "resourceType": "audio"},
    "resource_engagement_score": {"resourceId": "res_9", "score": 82.5, "previousScore": 80,
                                  "resourceType": "pdf"},
    "resource_rating": {"resourceId": "res_9", "rating": 4, "hasFeedback": True, "resourceType": "pdf"},
    "resource_deleted": {"resourceId": "res_10", "resourceType": "worksheet", "reason": "duplicate"},
    # --- notification --------------------------------------------------------------------------
    "notification_delivered": {"notificationId": "n_1", "notificationType": "session_reminder",
                               "channel": "push", "deliveryLatencyMs": 120, "provider": "fcm"},
    "notification_displayed": {"notificationId": "n_1", "notificationType": "session_reminder", "channel": "push"},
    # the documentation's trackNotificationClicked example
    "notification_clicked": {"notificationId": "n_1", "notificationType": "session_reminder", "channel": "push",
                             "clickAction": "view_session", "clickDestination": "/sessions/123",
                             "timeSinceDeliverySeconds": 15},
    "notification_dismissed": {"notificationId": "n_2", "notificationType": "weekly_digest", "channel": "email",
                               "dismissMethod": "swipe", "timeSinceDeliverySeconds": 40},
    "push_permission_request": {"result": "granted", "promptContext": "after_first_session"},
    "notification_preferences_update": {"channel": "sms", "notificationType": "session_reminder",
                                        "enabled": False, "frequency": "daily",
                                        "changes": {"sms": {"old": True, "new": False}}},
    "notification_opt_out": {"channel": "email", "notificationType": "marketing", "reason": "too many"},
    "notification_engagement_rate": {"engagementRatePercent": 12.5, "deliveredCount": 800, "clickedCount": 100,
                                     "windowSeconds": 86400, "channel": "push"},
    "notification_action_click": {"notificationId": "n_3", "actionId": "snooze",
                                  "notificationType": "session_reminder", "channel": "in_app"},
    "notification_delivery_failure": {"notificationId": "n_4", "notificationType": "session_reminder",
                                      "channel": "sms", "reason": "invalid_token", "errorCode": "21211",
                                      "retryCount": 1, "provider": "twilio"},
    "notification_batch_operation": {"operation": "mark_read", "count": 12, "channel": "in_app"},
    # --- realtime (RealtimeConnectionMonitor('conn_123', 'websocket', user.id)) -----------------
    "connection_attempt": {"connectionId": "conn_123", "transport": "websocket", "attempt": 1,
                           "endpoint": "/realtime"},
    "connection_established": {"connectionId": "conn_123", "transport": "websocket", "attempt": 1,
                               "connectTimeMs": 80},
    "connection_disconnected": {"connectionId": "conn_123", "transport": "websocket", "reason": "navigated away",
                                "closeCode": 1000, "wasClean": True, "durationSeconds": 300},
    "connection_error": {"connectionId": "conn_124", "transport": "websocket", "reason": "handshake failed",
                         "errorCode": "ECONNRESET", "attempt": 2},
    "fallback_polling_activated": {"connectionId": "conn_124", "fromTransport": "websocket",
                                   "reason": "websocket blocked", "failedAttempts": 3},
    "connection_latency": {"connectionId": "conn_123", "latencyMs": 45, "transport": "websocket"},
    "realtime_message": {"connectionId": "conn_123", "messageType": "notification_update", "bytes": 1024,
                         "direction": "inbound", "transport": "websocket"},
    "connection_health_check": {"connectionId": "conn_123", "healthy": True, "latencyMs": 30,
                                "transport": "websocket"},
    "connection_upgrade": {"connectionId": "conn_125", "fromTransport": "polling", "toTransport": "websocket"},
    # --- auth, MFA, security -------------------------------------------------------------------
    "login_attempt": {"result": "success", "method": "password", "mfa_required": True},
    "logout": {"reason": "user", "session_duration_seconds": 1800},
    "mfa_challenge_sent": {"method": "totp"},
    "mfa_verification": {"method": "totp", "result": "success", "attempt": 1, "duration_ms": 12000},
    "mfa_enrolled": {"method": "webauthn"},
    "mfa_disabled": {"method": "sms", "reason": "switched to totp"},
    "security_event": {"type": "brute_force", "severity": "high", "description": "20 failed logins in 1 minute",
                       "resource": "/api/auth/login"},
    # --- coaching sessions, goals, tasks, files ------------------------------------------------
    # the documentation's posthogEvent('session_booked', ...) example (its `timestamp` aside)
    "session_booked": {"sessionType": "coaching", "duration": 60, "price": 100, "coachId": "coach_7"},
    "session_completed": {"coaching_session_id": "cs_1", "coach_id": "coach_7", "session_type": "coaching",
                          "duration_minutes": 55},
    "session_cancelled": {"coaching_session_id": "cs_2", "session_type": "discovery", "cancelled_by": "client",
                          "hours_before_start": 12},
    "session_rated": {"rating": 5, "coaching_session_id": "cs_1", "session_type": "coaching", "has_feedback": False},
    "goal_created": {"goal_id": "g_1", "goal_category": "career", "created_by": "client",
                     "target_date": "2027-01-31T00:00:00Z"},
    "goal_completed": {"goal_id": "g_1", "goal_category": "career", "days_to_complete": 40},
    "task_created": {"task_id": "t_1", "goal_id": "g_1", "assigned_by": "coach", "priority": "high"},
    "task_completed": {"task_id": "t_1", "goal_id": "g_1", "days_to_complete": 2, "on_time": True},
    "file_uploaded": {"bytes": 2_500_000, "file_type": "pdf", "file_id": "f_1", "mime_type": "application/pdf"},
    "file_downloaded": {"bytes": 300_000, "file_type": "image", "file_id": "f_2", "mime_type": "image/png"},
    "file_shared": {"file_type": "document", "file_id": "f_3", "share_method": "email", "recipient_count": 1},
    # --- performance, web vitals, business -----------------------------------------------------
    "api_request": {"route": "/api/sessions/:id", "method": "GET", "status": 200, "duration_ms": 42,
                    "service": "api", "response_bytes": 512},
    "page_load": {"page": "/dashboard", "load_time_ms": 1800, "ttfb_ms": 150, "dom_content_loaded_ms": 900,
                  "navigation_type": "navigate"},
    # the documentation's trackWebVitals example
    "web_vitals": {"name": "LCP", "value": 2500, "rating": "good", "delta": 100},
    # the documentation's trackEvent / posthogEvent examples
    "feature_used": {"feature": "booking", "metadata": {"from": "calendar"}},
    "trial_started": {"plan": "premium", "duration": 14},
    "trial_converted": {"plan": "premium", "amount": 29, "currency": "USD", "interval": "month"},
    "subscription_started": {"plan": "premium", "amount": 290, "currency": "USD", "interval": "year"},
    "subscription_changed": {"from_plan": "basic", "to_plan": "premium", "direction": "upgrade", "amount": 29,
                             "currency": "USD"},
    "subscription_cancelled": {"plan": "premium", "reason": "too expensive", "cancelled_by": "user"},
    "payment_succeeded": {"amount": 29, "currency": "USD", "plan": "premium", "provider": "stripe"},
    "payment_failed": {"amount": 29, "currency": "USD", "plan": "premium", "provider": "stripe",
                       "failure_reason": "card_declined"},
    # --- PostHog's own events (posthog-js sends them; here through /v1/events as any client could) --------
    "$pageview": {"$current_url": "https://app.loom.test/coaches/42?tab=reviews", "$pathname": "/coaches/42",
                  "$referrer": "https://www.google.com/", "$prev_pageview_pathname": "/dashboard",
                  "$prev_pageview_duration": 12.5},
    "$pageleave": {"$current_url": "https://app.loom.test/coaches/42", "$pathname": "/coaches/42",
                   "$prev_pageview_pathname": "/coaches/42", "$prev_pageview_duration": 40},
    "$autocapture": {"$event_type": "click", "$current_url": "https://app.loom.test/pricing",
                     "$elements": [{"tag_name": "button", "$el_text": "Start trial", "classes": ["primary"],
                                    "attr__class": "primary", "nth_child": 1, "nth_of_type": 1}],
                     "$elements_chain": 'button.primary:attr__class="primary"nth-child="1"nth-of-type="1"'
                                       'text="Start trial";div:nth-child="2"nth-of-type="1"'},
    "$rageclick": {"$current_url": "https://app.loom.test/checkout",
                   "$elements_chain": 'a:attr__href="/pay"nth-child="1"nth-of-type="1";form:nth-child="1"'},
}

# (event, properties) beyond PROPERTIES: the metric families a `when` condition keeps from the first example
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("web_vitals", {"name": "INP", "value": 180, "rating": "good"}),
    ("web_vitals", {"name": "FID", "value": 90, "rating": "good"}),
    ("web_vitals", {"name": "TTFB", "value": 900, "rating": "needs-improvement"}),
    ("web_vitals", {"name": "FCP", "value": 1200, "rating": "good"}),
    ("web_vitals", {"name": "CLS", "value": 0.05, "rating": "good", "delta": 0.01}),
    ("login_attempt", {"result": "failure", "method": "password", "failure_reason": "invalid_credentials"}),
]


def properties(name: str) -> dict[str, Any]:
    """A fresh copy of the example properties of catalog event `name`."""
    return copy.deepcopy(PROPERTIES[name])


def envelope(name: str, props: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The `/v1/events` body of one event: `userId` (camelCase, as the documentation's clients send
    it), the example properties (or `props`), no timestamp (the agent's clock) unless given."""
    body: dict[str, Any] = {"event": name, "userId": USER,
                            "properties": properties(name) if props is None else props}
    body.update(fields)
    return body


def all_examples() -> list[tuple[str, dict[str, Any]]]:
    """(event, properties) for every catalog event, then the variants."""
    return [(name, properties(name)) for name in PROPERTIES] + copy.deepcopy(VARIANTS)
