"""Realistic properties for every catalog event, drawn at random: one builder per event name.

The values follow what a coaching web application would send (UTM sources, onboarding steps,
resource types, notification channels, API routes with log-normal latencies, Web Vitals around
the web.dev thresholds); the scenarios in traffic.py override what a story fixes (the flow, the
connection, the result). tests/test_demo.py checks that every catalog event has a builder and that
everything they build passes the agent's own validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from random import Random
from typing import Any

Props = dict[str, Any]

SOURCES = [("google", "cpc"), ("google", "organic"), ("newsletter", "email"), ("linkedin", "social"),
           ("facebook", "social"), ("partner_blog", "referral"), ("direct", "none")]
CAMPAIGNS = ["summer_trial", "coach_week", "spring_webinar", "brand"]
PAGES = ["/", "/pricing", "/dashboard", "/sessions", "/goals", "/resources", "/messages", "/settings"]
LANDING = ["/", "/pricing", "/coaches", "/for-teams", "/blog/goal-setting"]
SIGNUP_STEPS = ["account", "verify_email", "profile", "plan"]
ONBOARDING_STEPS = ["welcome", "profile_setup", "goals", "calendar_sync", "preferences"]
FEATURES = ["session_booking", "goal_tracking", "resource_library", "messaging", "calendar_sync", "journaling",
            "progress_reports", "video_sessions"]
RESOURCE_TYPES = ["pdf", "video", "article", "worksheet", "audio", "template", "link"]
CHANNELS = ["push", "email", "in_app", "sms"]
NOTIFICATION_TYPES = ["session_reminder", "new_message", "goal_nudge", "weekly_digest", "resource_shared",
                      "payment_receipt"]
PLANS = ["basic", "premium", "team"]
# route template -> (method, median ms, share of 5xx)
ROUTES: dict[str, tuple[str, float, float]] = {
    "/api/sessions": ("GET", 45, 0.002), "/api/sessions/:id": ("GET", 30, 0.002),
    "/api/sessions/book": ("POST", 160, 0.01), "/api/goals": ("GET", 35, 0.001),
    "/api/goals/:id/tasks": ("POST", 70, 0.005), "/api/resources/search": ("GET", 120, 0.004),
    "/api/messages": ("POST", 55, 0.003), "/api/payments/checkout": ("POST", 420, 0.03),
    "/api/auth/login": ("POST", 210, 0.005), "/api/files/upload": ("POST", 650, 0.02),
}
# vital -> (median, spread, good up to, poor above), milliseconds except CLS
VITALS: dict[str, tuple[float, float, float, float]] = {
    "LCP": (1900, 0.45, 2500, 4000), "INP": (140, 0.6, 200, 500), "FID": (40, 0.8, 100, 300),
    "CLS": (0.06, 0.9, 0.1, 0.25), "TTFB": (450, 0.5, 800, 1800), "FCP": (1200, 0.4, 1800, 3000),
}
FILE_TYPES = {"pdf": "application/pdf", "image": "image/png", "document": "application/msword",
              "spreadsheet": "text/csv", "video": "video/mp4"}


def lognormal(r: Random, median: float, sigma: float) -> float:
    return median * math.exp(r.gauss(0, sigma))


def ident(r: Random, prefix: str, n: int = 10_000) -> str:
    return f"{prefix}_{r.randrange(n)}"


def rating(value: float, good: float, poor: float) -> str:
    return "good" if value <= good else "poor" if value > poor else "needs-improvement"


def _utm(r: Random) -> Props:
    source, medium = r.choice(SOURCES)
    return {"source": source, "medium": medium, "campaign": r.choice(CAMPAIGNS)}


def _resource(r: Random) -> Props:
    return {"resourceId": ident(r, "res", 400), "resourceType": r.choice(RESOURCE_TYPES)}


def _notification(r: Random) -> Props:
    return {"notificationId": ident(r, "n", 10**9), "notificationType": r.choice(NOTIFICATION_TYPES),
            "channel": r.choice(CHANNELS)}


def _connection(r: Random) -> Props:
    return {"connectionId": ident(r, "conn", 10**9), "transport": "websocket"}


def _file(r: Random) -> Props:
    kind = r.choice(list(FILE_TYPES))
    return {"file_id": ident(r, "f", 10**6), "file_type": kind, "mime_type": FILE_TYPES[kind],
            "bytes": int(lognormal(r, 400_000, 1.2))}


def web_vital(r: Random, name: str, page: str) -> Props:
    median, sigma, good, poor = VITALS[name]
    value = round(lognormal(r, median, sigma), 4 if name == "CLS" else 1)
    return {"name": name, "value": value, "rating": rating(value, good, poor), "page": page,
            "id": f"v4-{r.getrandbits(40):x}", "navigationType": "navigate"}


def api_request(r: Random) -> Props:
    route = r.choice(list(ROUTES))
    method, median, errors = ROUTES[route]
    status = 500 if r.random() < errors else r.choice([400, 401, 404, 409]) if r.random() < 0.03 else 200
    return {"route": route, "method": method, "status": status, "duration_ms": round(lognormal(r, median, 0.7), 1),
            "service": "api", "response_bytes": int(lognormal(r, 2000, 1))}


def _posthog_page(r: Random, path: str) -> Props:
    return {"$current_url": f"https://app.loom.example{path}", "$pathname": path, "$host": "app.loom.example",
            "$browser": r.choice(["Chrome", "Firefox", "Safari"]), "$os": r.choice(["Mac OS X", "Windows", "iOS"])}


BUILDERS: dict[str, Callable[[Random], Props]] = {
    # marketing
    "landing_page_view": lambda r: {"page": r.choice(LANDING), "referrer": "https://www.google.com/", **_utm(r)},
    "lead_capture": lambda r: {"leadType": r.choice(["email_signup", "demo_request", "trial_signup", "waitlist"]),
                               "formId": "hero_form", "page": r.choice(LANDING), **_utm(r)},
    "signup_step": lambda r: {"step": "account", "stepNumber": 1, "totalSteps": len(SIGNUP_STEPS),
                              "status": "started", "method": r.choice(["email", "google", "apple"]), **_utm(r)},
    "cta_click": lambda r: {"ctaId": r.choice(["hero_start_trial", "pricing_premium", "book_demo", "footer_signup"]),
                            "ctaText": "Start", "location": r.choice(["hero", "pricing_table", "footer"]),
                            "page": r.choice(LANDING), "destination": "/signup"},
    "campaign_conversion": lambda r: {"conversionType": r.choice(["signup", "trial", "purchase"]),
                                      "conversionValue": r.choice([0, 0, 29, 49.5, 290]), "currency": "EUR",
                                      **_utm(r)},
    "experiment_view": lambda r: {"experimentId": "pricing_page_v2", "variantId": r.choice(["control", "variant_b"]),
                                  "experimentName": "Pricing page v2", "page": "/pricing"},
    "referral": lambda r: {"status": r.choice(["sent", "sent", "clicked", "signed_up", "converted"]),
                           "referralCode": f"FRIEND{r.randrange(100)}",
                           "channel": r.choice(["email", "link", "social"]),
                           "rewardValue": 10},
    "newsletter_signup": lambda r: {"listId": r.choice(["weekly_digest", "coach_tips"]), "page": "/blog",
                                    "source": "blog", "doubleOptIn": True},
    # onboarding
    "onboarding_step_started": lambda r: {"step": "welcome", "stepNumber": 1, "totalSteps": len(ONBOARDING_STEPS)},
    "onboarding_step_completed": lambda r: {"step": "welcome", "stepNumber": 1, "totalSteps": len(ONBOARDING_STEPS),
                                            "timeSpentSeconds": round(lognormal(r, 40, 0.8), 1),
                                            "interactionCount": r.randrange(1, 30)},
    "onboarding_completed": lambda r: {"totalSteps": len(ONBOARDING_STEPS),
                                       "totalTimeSeconds": round(lognormal(r, 420, 0.5)),
                                       "stepsSkipped": r.randrange(2)},
    "onboarding_abandoned": lambda r: {"step": "calendar_sync", "stepNumber": 4, "totalSteps": len(ONBOARDING_STEPS),
                                       "timeSpentSeconds": round(lognormal(r, 200, 0.6)), "reason": "closed the tab"},
    "feature_discovered": lambda r: {"feature": r.choice(FEATURES),
                                     "discoveryMethod": r.choice(["tooltip", "tour", "navigation", "hint"])},
    "first_action": lambda r: {"action": r.choice(["session_booked", "goal_created", "task_created", "resource_viewed",
                                                   "message_sent"]), "secondsSinceSignup": int(lognormal(r, 3600, 1))},
    "onboarding_hint_interaction": lambda r: {"hintId": f"hint_{r.choice(ONBOARDING_STEPS)}",
                                              "action": r.choice(["shown", "shown", "clicked", "dismissed",
                                                                  "completed"])},
    "onboarding_personalization": lambda r: {"role": "client", "goals": r.sample(["career", "health", "leadership",
                                                                                  "relationships"], 2),
                                             "preferences": {"reminders": r.choice(["daily", "weekly"])},
                                             "step": "preferences"},
    "onboarding_reengagement": lambda r: {"step": "calendar_sync", "daysSinceLastActivity": r.randrange(1, 14),
                                          "channel": r.choice(["email", "push", "direct"])},
    # resource
    "resource_viewed": lambda r: {**_resource(r), "resourceName": "Goal setting 101",
                                  "viewDurationSeconds": round(lognormal(r, 90, 0.9), 1),
                                  "scrollDepthPercent": min(100, round(r.uniform(5, 110))),
                                  "isFirstView": r.random() < 0.6},
    "resource_downloaded": lambda r: {**_resource(r), "bytes": int(lognormal(r, 300_000, 1))},
    "resource_shared": lambda r: {**_resource(r), "shareMethod": r.choice(["link", "email", "in_app"]),
                                  "recipientCount": r.randrange(1, 4)},
    "resource_created": lambda r: {**_resource(r), "resourceName": "Weekly review",
                                   "bytes": int(lognormal(r, 50_000, 1)),
                                   "visibility": r.choice(["private", "shared", "public"])},
    "resource_search": lambda r: {"query": r.choice(["goal setting", "burnout", "time management", "feedback"]),
                                  "resultsCount": max(0, int(lognormal(r, 8, 1.2)) - 1),
                                  "durationMs": round(lognormal(r, 40, 0.5), 1)},
    "resource_recommendation": lambda r: {**_resource(r),
                                          "action": r.choice(["shown", "shown", "clicked", "dismissed"]),
                                          "position": r.randrange(5), "algorithm": "collaborative"},
    "resource_engagement_score": lambda r: {**_resource(r), "score": round(r.uniform(20, 95), 1),
                                            "previousScore": round(r.uniform(20, 95), 1)},
    "resource_rating": lambda r: {**_resource(r), "rating": r.choice([3, 4, 4, 5, 5, 5]),
                                  "hasFeedback": r.random() < 0.3},
    "resource_deleted": lambda r: {**_resource(r), "reason": "outdated"},
    # notification
    "notification_delivered": lambda r: {**_notification(r), "deliveryLatencyMs": round(lognormal(r, 180, 0.8)),
                                         "provider": "fcm"},
    "notification_displayed": lambda r: _notification(r),
    "notification_clicked": lambda r: {**_notification(r), "clickAction": "open", "clickDestination": "/sessions",
                                       "timeSinceDeliverySeconds": round(lognormal(r, 45, 1.2), 1)},
    "notification_dismissed": lambda r: {**_notification(r), "dismissMethod": r.choice(["swipe", "close_button"]),
                                         "timeSinceDeliverySeconds": round(lognormal(r, 20, 1), 1)},
    "push_permission_request": lambda r: {"result": r.choice(["granted", "granted", "denied", "dismissed"]),
                                          "promptContext": "after_first_session"},
    "notification_preferences_update": lambda r: {"channel": r.choice(CHANNELS), "notificationType": "weekly_digest",
                                                  "enabled": r.random() < 0.5,
                                                  "frequency": r.choice(["immediate", "daily", "weekly", "never"])},
    "notification_opt_out": lambda r: {"channel": r.choice(["email", "sms", "push"]), "notificationType": "marketing",
                                       "reason": "too many"},
    "notification_engagement_rate": lambda r: {"engagementRatePercent": round(r.uniform(5, 25), 1),
                                               "deliveredCount": 800, "clickedCount": 100, "windowSeconds": 86400,
                                               "channel": "push"},
    "notification_action_click": lambda r: {**_notification(r), "actionId": r.choice(["snooze", "reply", "join"])},
    "notification_delivery_failure": lambda r: {**_notification(r), "reason": r.choice(
        ["invalid_token", "invalid_token", "rate_limited", "provider_error", "timeout"]), "errorCode": "E42",
        "retryCount": r.randrange(3), "provider": "fcm"},
    "notification_batch_operation": lambda r: {"operation": r.choice(["mark_read", "archive", "delete"]),
                                               "count": r.randrange(1, 40), "channel": "in_app"},
    # realtime
    "connection_attempt": lambda r: {**_connection(r), "attempt": 1, "endpoint": "/realtime"},
    "connection_established": lambda r: {**_connection(r), "attempt": 1,
                                         "connectTimeMs": round(lognormal(r, 90, 0.6), 1)},
    "connection_disconnected": lambda r: {**_connection(r), "reason": "navigated away", "closeCode": 1000,
                                          "wasClean": True, "durationSeconds": round(lognormal(r, 300, 1))},
    "connection_error": lambda r: {**_connection(r), "reason": "handshake failed",
                                   "errorCode": r.choice(["ECONNRESET", "ETIMEDOUT", "1006"]), "attempt": 2},
    "fallback_polling_activated": lambda r: {"connectionId": ident(r, "conn", 10**9), "fromTransport": "websocket",
                                             "reason": "websocket blocked", "failedAttempts": 3},
    "connection_latency": lambda r: {**_connection(r), "latencyMs": round(lognormal(r, 45, 0.6), 1)},
    "realtime_message": lambda r: {**_connection(r), "messageType": r.choice(["notification_update", "chat_message",
                                                                             "presence", "session_update"]),
                                   "bytes": int(lognormal(r, 600, 0.8)),
                                   "direction": r.choice(["inbound", "outbound"])},
    "connection_health_check": lambda r: {**_connection(r), "healthy": r.random() > 0.03,
                                          "latencyMs": round(lognormal(r, 40, 0.5), 1)},
    "connection_upgrade": lambda r: {"connectionId": ident(r, "conn", 10**9), "fromTransport": "polling",
                                     "toTransport": "websocket"},
    # auth, mfa, security
    "login_attempt": lambda r: {"result": "success",
                                "method": r.choice(["password", "password", "oauth", "magic_link"]),
                                "mfa_required": r.random() < 0.4},
    "logout": lambda r: {"reason": r.choice(["user", "user", "timeout", "expired"]),
                         "session_duration_seconds": round(lognormal(r, 1500, 0.9))},
    "mfa_challenge_sent": lambda r: {"method": r.choice(["totp", "totp", "sms", "webauthn", "email"])},
    "mfa_verification": lambda r: {"method": "totp", "result": "success", "attempt": 1,
                                   "duration_ms": round(lognormal(r, 9000, 0.6))},
    "mfa_enrolled": lambda r: {"method": r.choice(["totp", "webauthn", "sms"])},
    "mfa_disabled": lambda r: {"method": r.choice(["sms", "totp"]), "reason": "switched device"},
    "security_event": lambda r: {"type": r.choice(["password_reset", "suspicious_login", "rate_limited",
                                                   "permission_denied", "brute_force"]),
                                 "severity": r.choice(["low", "medium", "medium", "high"]),
                                 "description": "detected by the auth service", "resource": "/api/auth/login"},
    # coaching sessions, goals, tasks, files
    "session_booked": lambda r: {"sessionType": r.choice(["coaching", "coaching", "discovery", "follow_up", "group"]),
                                 "duration": r.choice([30, 45, 60, 60, 90]), "price": r.choice([60, 100, 150]),
                                 "currency": "EUR", "coachId": ident(r, "coach", 40)},
    "session_completed": lambda r: {"session_type": "coaching", "coach_id": ident(r, "coach", 40),
                                    "duration_minutes": round(r.uniform(25, 95))},
    "session_cancelled": lambda r: {"session_type": "coaching", "cancelled_by": r.choice(["client", "client", "coach"]),
                                    "hours_before_start": round(r.uniform(-1, 72), 1)},
    "session_rated": lambda r: {"rating": r.choice([3, 4, 4, 5, 5, 5]), "session_type": "coaching",
                                "has_feedback": r.random() < 0.4},
    "goal_created": lambda r: {"goal_id": ident(r, "g", 10**6),
                               "goal_category": r.choice(["career", "health", "leadership"]),
                               "created_by": r.choice(["client", "coach"])},
    "goal_completed": lambda r: {"goal_id": ident(r, "g", 10**6), "goal_category": r.choice(["career", "health"]),
                                 "days_to_complete": round(lognormal(r, 30, 0.7), 1)},
    "task_created": lambda r: {"task_id": ident(r, "t", 10**6), "assigned_by": r.choice(["coach", "client"]),
                               "priority": r.choice(["low", "medium", "high"])},
    "task_completed": lambda r: {"task_id": ident(r, "t", 10**6), "days_to_complete": round(lognormal(r, 3, 0.8), 1),
                                 "on_time": r.random() < 0.75},
    "file_uploaded": _file,
    "file_downloaded": _file,
    "file_shared": lambda r: {**_file(r), "share_method": r.choice(["link", "email"]), "recipient_count": 1},
    # performance, web vitals, business
    "api_request": api_request,
    "page_load": lambda r: {"page": r.choice(PAGES), "load_time_ms": round(lognormal(r, 1400, 0.45)),
                            "ttfb_ms": round(lognormal(r, 300, 0.5)), "navigation_type": "navigate"},
    "web_vitals": lambda r: web_vital(r, r.choice(list(VITALS)), r.choice(PAGES)),
    "feature_used": lambda r: {"feature": r.choice(FEATURES)},
    "trial_started": lambda r: {"plan": r.choice(PLANS), "duration": 14},
    "trial_converted": lambda r: {"plan": r.choice(PLANS), "amount": 29, "currency": "EUR", "interval": "month"},
    "subscription_started": lambda r: {"plan": r.choice(PLANS), "amount": r.choice([29, 290]), "currency": "EUR",
                                       "interval": r.choice(["month", "month", "year"])},
    "subscription_changed": lambda r: {"from_plan": "basic", "to_plan": "premium",
                                       "direction": r.choice(["upgrade", "upgrade", "downgrade"]), "amount": 29,
                                       "currency": "EUR"},
    "subscription_cancelled": lambda r: {"plan": r.choice(PLANS), "reason": "too expensive",
                                         "cancelled_by": r.choice(["user", "user", "payment_failure"])},
    "payment_succeeded": lambda r: {"amount": r.choice([29, 49, 290]), "currency": "EUR", "plan": r.choice(PLANS),
                                    "provider": "stripe"},
    "payment_failed": lambda r: {"amount": 29, "currency": "EUR", "plan": r.choice(PLANS), "provider": "stripe",
                                 "failure_reason": r.choice(["card_declined", "insufficient_funds", "expired_card"])},
    # PostHog's own events, as posthog-js sends them (the same catalog names and `$`-properties)
    "$pageview": lambda r: _posthog_page(r, r.choice(PAGES)),
    "$pageleave": lambda r: {**_posthog_page(r, r.choice(PAGES)),
                             "$prev_pageview_duration": round(lognormal(r, 45, 1.0), 1)},
    "$autocapture": lambda r: {**_posthog_page(r, r.choice(PAGES)), "$event_type": r.choice(["click", "click",
                                                                                             "submit", "change"]),
                               "$elements_chain": r.choice(["button.btn-primary:text=\"Book a session\"",
                                                            "a:href=\"/goals\"", "input.search"])},
    "$rageclick": lambda r: {**_posthog_page(r, "/sessions"), "$elements_chain": "button.calendar-next"},
}
