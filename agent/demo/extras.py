"""The demo's use of the Sentry/PostHog-style endpoints (errors, custom metrics, identify), sent only
when the agent's /openapi.json lists them, so the demo works with agents that predate them.

The bodies follow the documentation's calls (`Sentry.captureException` with tags and a release,
`Sentry.metrics.increment('conversions', 1, {tags: {type: 'trial_signup'}})`, PostHog's `identify`
with traits). An endpoint that refuses the demo's body (4xx) is switched off with the agent's answer
printed once, rather than counted as an error every second.
"""

from __future__ import annotations

import datetime as dt
from random import Random
from typing import Any

ERRORS, METRICS, IDENTIFY = "/v1/errors", "/v1/metrics", "/v1/identify"
PATHS = (ERRORS, METRICS, IDENTIFY)
RELEASES = ("loom-web@2026.11.1", "loom-web@2026.11.2")
# (type, message, feature, file, function): the bugs the demo application has
BUGS = [
    ("TypeError", "Cannot read properties of undefined (reading 'coachId')", "booking", "src/booking/book.ts",
     "bookSession"),
    ("PaymentError", "Card authorization timed out after 30000 ms", "payment", "src/payments/checkout.ts", "charge"),
    ("NetworkError", "Failed to fetch /api/messages", "messaging", "src/messages/send.ts", "sendMessage"),
    ("RangeError", "Invalid time value", "calendar", "src/calendar/sync.ts", "toIcs"),
]


def error_body(r: Random, user: str) -> dict[str, Any]:
    kind, message, feature, filename, function = r.choice(BUGS)
    frames = [{"filename": filename, "function": function, "lineno": r.randrange(40, 220), "colno": r.randrange(80),
               "in_app": True},
              {"filename": "node_modules/react-dom/cjs/react-dom.production.min.js", "function": "commitRoot",
               "lineno": 5, "in_app": False}]
    return {"type": kind, "message": message, "stacktrace": {"frames": frames}, "tags": {"feature": feature},
            "extra": {"attempt": r.randrange(1, 3)}, "user": {"id": user}, "release": r.choice(RELEASES),
            "environment": "demo"}


def metrics_body(r: Random) -> dict[str, Any]:
    return {"metrics": [
        {"type": "counter", "name": "conversions", "value": 1,
         "tags": {"type": r.choice(["trial_signup", "upgrade", "referral"])}},
        {"type": "gauge", "name": "active_coaches", "value": r.randrange(30, 45)},
        {"type": "distribution", "name": "checkout_duration", "value": round(r.uniform(0.8, 6.0), 2),
         "unit": "second", "tags": {"plan": r.choice(["basic", "premium"])}},
    ]}


def identify_body(r: Random, user: str) -> dict[str, Any]:
    return {"userId": user, "traits": {"role": r.choice(["client", "client", "client", "coach"]),
                                       "plan": r.choice(["basic", "premium", "team"]),
                                       "signupDate": _days_ago(r.uniform(1, 365)),
                                       "email": f"{user}@example.com"}}


def _days_ago(days: float) -> str:
    """An RFC 3339 time `days` before now (a sign-up date is never in the future)."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
