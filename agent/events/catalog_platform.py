"""Catalog: the platform and business events — auth, MFA, security, coaching sessions, goals,
tasks, files, performance (api_request, page_load), web vitals and business events."""

from __future__ import annotations

from agent.events.catalog_types import (
    EventSpec,
    boolean,
    described,
    event,
    integer,
    number,
    obj,
    req,
    string,
    timestamp,
)

ID = 256
NAME = 512
RESULT = string("Outcome.", enum={"success", "failure"})
MFA_METHOD = string("Second factor.", enum={"totp", "sms", "email", "webauthn", "backup_code"})

COACHING_SESSION_ID = string("Coaching session id (the envelope's session_id is the browsing session).",
                             max_length=ID)
COACH_ID = string("Coach's user id (never a label).", max_length=ID)
SESSION_TYPE = string("Kind of coaching session.", enum={
    "coaching", "discovery", "follow_up", "group", "workshop", "other"})
DURATION_MINUTES = number("Scheduled length in minutes.", minimum=0)
MINUTES_ALIAS = {"duration": "duration_minutes"}   # the documentation's examples send `duration: 60`
PRICE = number("Price in `currency`.", minimum=0)
CURRENCY = string("ISO 4217 currency code.", max_length=3)

GOAL_ID = string("Goal id.", max_length=ID)
GOAL_CATEGORY = string("Application-defined goal category, e.g. career, health.", max_length=ID)
TASK_ID = string("Task id.", max_length=ID)
ASSIGNED_BY = string("Who created or assigned it.", enum={"coach", "client", "system"})
DAYS_TO_COMPLETE = number("Days from creation to completion.", minimum=0)

FILE_ID = string("File id.", max_length=ID)
FILE_BYTES = integer("File size in bytes.", minimum=0)
FILE_TYPE = string("Class of file (put the exact type in mime_type).", enum={
    "pdf", "image", "video", "audio", "document", "spreadsheet", "presentation", "archive", "text", "other"})
MIME_TYPE = string("MIME type, e.g. application/pdf.", max_length=255)

HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
ROUTE_PATTERN = r"/[^?#\s]*"
PAGE = string("Path (or URL) of the page.", max_length=2048)

PLAN = string("Application-defined plan name, e.g. premium.", max_length=ID)
AMOUNT = number("Amount in `currency`.", minimum=0)
INTERVAL = string("Billing interval.", enum={"month", "year", "one_time"})

AUTH: tuple[EventSpec, ...] = (
    event("login_attempt", "auth", "A login attempt and its result.",
          result=req(RESULT), method=string("How the user authenticated.", enum={
              "password", "magic_link", "oauth", "sso", "webauthn", "otp", "other"}),
          provider=string("OAuth/SSO provider, e.g. google.", max_length=ID),
          failure_reason=string("Why it failed.", enum={
              "invalid_credentials", "user_not_found", "account_locked", "mfa_required", "rate_limited",
              "expired", "other"}),
          mfa_required=boolean("True when a second factor is asked next.")),
    event("logout", "auth", "The user logged out or was logged out.",
          reason=string("Why the session ended.", enum={"user", "timeout", "expired", "revoked", "other"}),
          session_duration_seconds=number("Seconds the login session lasted.", minimum=0)),
)

MFA: tuple[EventSpec, ...] = (
    event("mfa_challenge_sent", "mfa", "A second-factor challenge was sent or prompted.",
          method=req(MFA_METHOD)),
    event("mfa_verification", "mfa", "A second-factor verification and its result.",
          method=req(MFA_METHOD), result=req(RESULT),
          failure_reason=string("Why it failed.", enum={"invalid_code", "expired", "too_many_attempts", "other"}),
          attempt=integer("1-based attempt number.", minimum=1),
          duration_ms=number("Milliseconds from challenge to verification.", minimum=0)),
    event("mfa_enrolled", "mfa", "The user enrolled a second factor.", method=req(MFA_METHOD)),
    event("mfa_disabled", "mfa", "The user removed a second factor.", method=req(MFA_METHOD),
          reason=string("Why.", max_length=NAME)),
)

SECURITY: tuple[EventSpec, ...] = (
    event("security_event", "security", "A security-relevant event (authentication or authorization).",
          type=req(string("Kind of event.", enum={
              "brute_force", "suspicious_login", "account_locked", "password_reset", "password_changed",
              "permission_denied", "rate_limited", "token_revoked", "csrf_failure", "session_hijack", "other"})),
          severity=string("Severity.", enum={"low", "medium", "high", "critical"}),
          description=string("What happened.", max_length=1024),
          resource=string("What was targeted, e.g. a route template.", max_length=ID)),
)

SESSION: tuple[EventSpec, ...] = (
    event("session_booked", "session", "A coaching session was booked.", MINUTES_ALIAS,
          coaching_session_id=COACHING_SESSION_ID, coach_id=COACH_ID, session_type=SESSION_TYPE,
          duration_minutes=DURATION_MINUTES, price=PRICE, currency=CURRENCY,
          scheduled_at=timestamp("When the session is scheduled to start.")),
    event("session_completed", "session", "A coaching session took place.", MINUTES_ALIAS,
          coaching_session_id=COACHING_SESSION_ID, coach_id=COACH_ID, session_type=SESSION_TYPE,
          duration_minutes=described(DURATION_MINUTES, "Actual length in minutes.")),
    event("session_cancelled", "session", "A coaching session was cancelled.", MINUTES_ALIAS,
          coaching_session_id=COACHING_SESSION_ID, coach_id=COACH_ID, session_type=SESSION_TYPE,
          duration_minutes=DURATION_MINUTES,
          cancelled_by=string("Who cancelled.", enum={"client", "coach", "system"}),
          hours_before_start=number("Notice given, in hours (negative: after the start).")),
    event("session_rated", "session", "A coaching session was rated.", MINUTES_ALIAS,
          rating=req(integer("Stars, 1-5.", minimum=1, maximum=5)),
          coaching_session_id=COACHING_SESSION_ID, coach_id=COACH_ID, session_type=SESSION_TYPE,
          duration_minutes=described(DURATION_MINUTES, "Length of the rated session in minutes."),
          has_feedback=boolean("True when written feedback came with the rating.")),
)

GOAL: tuple[EventSpec, ...] = (
    event("goal_created", "goal", "A goal was created.",
          goal_id=GOAL_ID, goal_category=GOAL_CATEGORY, created_by=ASSIGNED_BY,
          target_date=timestamp("When the goal should be reached.")),
    event("goal_completed", "goal", "A goal was completed.",
          goal_id=GOAL_ID, goal_category=GOAL_CATEGORY, days_to_complete=DAYS_TO_COMPLETE),
)

TASK: tuple[EventSpec, ...] = (
    event("task_created", "task", "A task was created.",
          task_id=TASK_ID, goal_id=GOAL_ID, assigned_by=ASSIGNED_BY,
          priority=string("Priority.", enum={"low", "medium", "high"}), due_date=timestamp("Due date.")),
    event("task_completed", "task", "A task was completed.",
          task_id=TASK_ID, goal_id=GOAL_ID, days_to_complete=DAYS_TO_COMPLETE,
          on_time=boolean("True when completed by its due date.")),
)

FILE: tuple[EventSpec, ...] = (
    event("file_uploaded", "file", "A file was uploaded.",
          bytes=req(FILE_BYTES), file_type=FILE_TYPE, file_id=FILE_ID, mime_type=MIME_TYPE),
    event("file_downloaded", "file", "A file was downloaded.",
          bytes=FILE_BYTES, file_type=FILE_TYPE, file_id=FILE_ID, mime_type=MIME_TYPE),
    event("file_shared", "file", "A file was shared.",
          file_type=FILE_TYPE, file_id=FILE_ID, bytes=FILE_BYTES, mime_type=MIME_TYPE,
          share_method=string("How it was shared.", enum={"link", "email", "in_app", "other"}),
          recipient_count=integer("Number of recipients.", minimum=0)),
)

PERFORMANCE: tuple[EventSpec, ...] = (
    event("api_request", "performance", "An API request as the client or server saw it.",
          route=req(string("Route TEMPLATE, e.g. /api/sessions/:id (never the concrete path).",
                           max_length=ID, pattern=ROUTE_PATTERN)),
          method=req(string("HTTP method, upper case.", enum=HTTP_METHODS)),
          status=req(integer("HTTP status code.", minimum=100, maximum=599)),
          duration_ms=req(number("Milliseconds from request to response.", minimum=0)),
          service=string("Service that answered.", max_length=ID),
          response_bytes=integer("Response body size in bytes.", minimum=0)),
    event("page_load", "performance", "A page finished loading.",
          page=req(PAGE), load_time_ms=req(number("Milliseconds until the load event.", minimum=0)),
          ttfb_ms=number("Milliseconds until the first byte.", minimum=0),
          dom_content_loaded_ms=number("Milliseconds until DOMContentLoaded.", minimum=0),
          navigation_type=string("Kind of navigation.", enum={"navigate", "reload", "back_forward", "prerender"})),
)

WEB_VITALS: tuple[EventSpec, ...] = (
    event("web_vitals", "web_vitals", "One Core Web Vitals measurement (the web-vitals library's metric).",
          name=req(string("Metric name.", enum={"LCP", "INP", "FID", "CLS", "TTFB", "FCP"})),
          value=req(number("Value: milliseconds, except CLS (unitless).", minimum=0)),
          rating=string("The library's rating of the value.", enum={"good", "needs-improvement", "poor"}),
          delta=number("Change since the last report of this metric."),
          id=string("The library's id of this metric instance.", max_length=ID),
          navigation_type=string("Kind of navigation.", enum={
              "navigate", "reload", "back-forward", "back-forward-cache", "prerender", "restore"}),
          page=PAGE),
)

BUSINESS: tuple[EventSpec, ...] = (
    event("feature_used", "business", "A product feature was used.",
          feature=req(string("Feature name, e.g. session_booking.", max_length=ID)),
          metadata=obj("Feature-specific details.")),
    event("trial_started", "business", "A free trial started.", {"duration": "duration_days"},
          plan=PLAN, duration_days=integer("Trial length in days.", minimum=0)),
    event("trial_converted", "business", "A trial turned into a paid subscription.",
          plan=PLAN, amount=AMOUNT, currency=CURRENCY, interval=INTERVAL),
    event("subscription_started", "business", "A paid subscription started.",
          plan=PLAN, amount=AMOUNT, currency=CURRENCY, interval=INTERVAL),
    event("subscription_changed", "business", "A subscription changed plan.",
          from_plan=PLAN, to_plan=PLAN,
          direction=string("Upgrade or downgrade.", enum={"upgrade", "downgrade", "lateral"}),
          amount=described(AMOUNT, "New amount per interval."), currency=CURRENCY),
    event("subscription_cancelled", "business", "A subscription was cancelled.",
          plan=PLAN, reason=string("Why.", max_length=NAME),
          cancelled_by=string("Who cancelled.", enum={"user", "admin", "system", "payment_failure"})),
    event("payment_succeeded", "business", "A payment went through (payment callback).",
          amount=AMOUNT, currency=CURRENCY, plan=PLAN,
          provider=string("Payment provider, e.g. stripe.", max_length=ID)),
    event("payment_failed", "business", "A payment failed (payment callback).",
          amount=AMOUNT, currency=CURRENCY, plan=PLAN, provider=string("Payment provider.", max_length=ID),
          failure_reason=string("Why it failed.", enum={
              "card_declined", "insufficient_funds", "expired_card", "authentication_required",
              "processing_error", "other"})),
)
