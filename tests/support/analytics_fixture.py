"""A small, hand-counted set of events and probe results, and the dashboard and business-metrics documents
they must give over RANGE (2025-03-01 to 2025-03-08). Every expected number below was computed by hand
from FIXTURE; the comments show the arithmetic.

Users: alice and bob (clients), erin (a client whose first event is exactly at `from`), carol (active only
the week before), coach_7 (role coach), coach_9 (the coach of sessions, and of role coach by identify), dave
(whose only event is exactly at `to`, so out of every event count), and three anonymous signup visitors.

IDENTIFIES adds traits (POST /v1/identify): roles (alice, erin: client; coach_9, grace, frank: coach; dave:
admin, which counts as "other"; bob and carol have none: other too) and sign-up dates, which decide when
a user counts as new: coach_9 signed up 30 days before `from` (so is not new though first seen in the
range), dave signed up inside the range (so is new, though his only event is at `to`), frank signed up
inside it and has no event at all (new, never active). grace is a coach by role only, with one event in
the range (so she counts among the coaches without any session).
"""

from __future__ import annotations

from typing import Any

from agent.events.identify import parse_identifies
from agent.events.limits import Limits
from agent.events.model import Event
from agent.events.validate import parse_event
from agent.store.base import Store
from agent.store.probe_rollups import ProbeRollups
from agent.store.rollups import RELATIVE_ERROR
from agent.store.rows import event_rows
from agent.store.traits import store_identifies

T0 = 1740787200.0          # 2025-03-01T00:00:00Z: `from`
H = 3600.0
D = 86400.0
T1 = T0 + 7 * D            # 2025-03-08T00:00:00Z: `to`
QUERY = {"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"}

# (event, user (or "anon:<id>"), hours after T0, properties)
FIXTURE: list[tuple[str, str, float, dict[str, Any]]] = [
    # --- the week before the range (retention's previous period; MAU) ---
    ("login_attempt", "carol", -72, {"result": "success"}),
    ("login_attempt", "alice", -48, {"result": "success"}),
    ("mfa_enrolled", "alice", -48 + 1 / 60, {"method": "totp"}),
    ("onboarding_personalization", "alice", -48 + 2 / 60, {"role": "client"}),
    ("mfa_enrolled", "bob", -240, {"method": "sms"}),
    ("mfa_disabled", "bob", -24, {"method": "sms"}),
    ("onboarding_personalization", "coach_7", -120, {"role": "coach"}),
    ("resource_created", "coach_7", -1, {"resourceId": "r_0", "resourceType": "pdf"}),
    # --- coaching sessions ---
    ("session_booked", "alice", 0, {"coachId": "coach_7"}),                 # exactly at `from`: in
    ("session_booked", "bob", 1, {"coachId": "coach_7"}),
    ("session_booked", "alice", 2, {"coachId": "coach_9"}),
    ("session_completed", "alice", 24, {"coachId": "coach_7"}),
    ("session_completed", "bob", 25, {"coachId": "coach_7"}),
    ("session_cancelled", "alice", 26, {"coachId": "coach_9", "cancelledBy": "client"}),
    ("session_rated", "alice", 27, {"coachId": "coach_7", "rating": 5}),
    ("session_rated", "bob", 28, {"coachId": "coach_7", "rating": 4}),
    ("session_booked", "erin", 30, {"coachId": "coach_9"}),
    ("session_booked", "bob", 168, {"coachId": "coach_9"}),                 # exactly at `to`: out
    # --- coaches' own work ---
    ("resource_created", "coach_7", 3, {"resourceId": "r_1", "resourceType": "worksheet"}),
    ("resource_created", "coach_7", 4, {"resourceId": "r_2", "resourceType": "video"}),
    ("task_created", "coach_7", 5, {"taskId": "t_c7", "assignedBy": "coach"}),
    ("task_created", "coach_9", 6, {"taskId": "t_c9", "assignedBy": "coach"}),
    ("resource_created", "grace", 5.5, {"resourceId": "r_3", "resourceType": "pdf"}),   # grace's only event
    ("mfa_enrolled", "coach_9", 168, {"method": "totp"}),                   # at `to`: not an adopter
    # --- goals and tasks ---
    ("goal_created", "alice", 10, {"goalCategory": "career"}),
    ("goal_created", "bob", 11, {"goalCategory": "career"}),
    ("goal_created", "alice", 12, {"goalCategory": "health"}),
    ("goal_completed", "alice", 30, {"goalCategory": "career", "daysToComplete": 40}),
    ("goal_completed", "bob", 31, {"goalCategory": "career", "daysToComplete": 20}),
    ("goal_completed", "erin", 32, {"goalCategory": "fitness", "daysToComplete": 10}),
    ("goal_created", "erin", 33, {"goalCategory": "career"}),
    ("task_created", "alice", 13, {"taskId": "t_1"}),
    ("task_created", "alice", 14, {"taskId": "t_2"}),
    ("task_created", "bob", 15, {"taskId": "t_3"}),
    ("task_completed", "alice", 16, {"taskId": "t_1"}),
    # --- resources ---
    ("resource_engagement_score", "alice", 17, {"resourceId": "r_1", "score": 82.5}),
    ("resource_engagement_score", "bob", 18, {"resourceId": "r_1", "score": 60}),
    ("resource_engagement_score", "alice", 19, {"resourceId": "r_2", "score": 70}),
    ("resource_viewed", "alice", 20, {"resourceId": "r_1"}),
    ("resource_viewed", "alice", 21, {"resourceId": "r_2"}),
    ("resource_viewed", "bob", 22, {"resourceId": "r_1"}),
    ("resource_viewed", "erin", 150, {"resourceId": "r_1"}),                # the last day: DAU
    # --- authentication ---
    ("login_attempt", "alice", 7, {"result": "success"}),
    ("login_attempt", "bob", 8, {"result": "failure", "failureReason": "invalid_credentials"}),
    ("login_attempt", "bob", 8.1, {"result": "success"}),
    ("login_attempt", "erin", 9, {"result": "success"}),
    ("login_attempt", "dave", 168, {"result": "success"}),                 # dave's only event, at `to`
    ("logout", "alice", 23, {"sessionDurationSeconds": 1800}),
    ("logout", "bob", 23.5, {"sessionDurationSeconds": 600}),
    ("mfa_enrolled", "erin", 12.5, {"method": "totp"}),
    # --- onboarding ---
    ("onboarding_step_started", "erin", 0, {"step": "profile_setup", "stepNumber": 1, "flowId": "f1"}),
    ("onboarding_step_completed", "erin", 0.6, {"step": "profile_setup", "stepNumber": 1, "flowId": "f1"}),
    ("onboarding_step_started", "erin", 0.7, {"step": "calendar_sync", "stepNumber": 2, "flowId": "f1"}),
    ("onboarding_abandoned", "erin", 0.8, {"step": "calendar_sync", "stepNumber": 2, "flowId": "f1"}),
    ("onboarding_step_started", "bob", 40, {"step": "profile_setup", "stepNumber": 1, "flowId": "f2"}),
    ("onboarding_step_completed", "bob", 41, {"step": "profile_setup", "stepNumber": 1, "flowId": "f2"}),
    ("onboarding_step_started", "bob", 42, {"step": "calendar_sync", "stepNumber": 2, "flowId": "f2"}),
    ("onboarding_step_completed", "bob", 43, {"step": "calendar_sync", "stepNumber": 2, "flowId": "f2"}),
    ("onboarding_completed", "bob", 44, {"flowId": "f2", "totalSteps": 2}),
    # --- signup funnel (anonymous visitors) ---
    ("signup_step", "anon:v1", 1, {"step": "email", "stepNumber": 1}),
    ("signup_step", "anon:v1", 1.1, {"step": "verify", "stepNumber": 2}),
    ("signup_step", "anon:v1", 1.2, {"step": "email", "stepNumber": 1}),     # a visitor counts once
    ("signup_step", "anon:v2", 2, {"step": "email", "stepNumber": 1}),
    ("signup_step", "anon:v3", 3, {"step": "email", "stepNumber": 1}),
    ("signup_step", "anon:v3", 3.1, {"step": "verify", "stepNumber": 2}),
    ("signup_step", "anon:v3", 3.2, {"step": "profile", "stepNumber": 3}),
    # --- files ---
    ("file_uploaded", "alice", 50, {"bytes": 2_500_000}),
    ("file_uploaded", "bob", 51, {"bytes": 1_000_000}),
    ("file_downloaded", "alice", 52, {"bytes": 300_000}),
    ("file_shared", "bob", 53, {"fileId": "f_9"}),
    # --- performance ---
    *[("page_load", "alice", 60 + i, {"page": "/dashboard", "loadTimeMs": ms})
      for i, ms in enumerate((1800, 1000, 2500, 1200))],
    *[("api_request", "alice", 64 + i, {"route": "/api/x", "method": "GET", "status": status, "durationMs": ms})
      for i, (status, ms) in enumerate(((200, 42), (200, 100), (503, 250), (404, 80), (500, 500)))],
    ("web_vitals", "bob", 70, {"name": "LCP", "value": 2500, "rating": "good"}),
    ("web_vitals", "bob", 71, {"name": "LCP", "value": 4100, "rating": "poor"}),
    ("web_vitals", "bob", 72, {"name": "LCP", "value": 3000, "rating": "needs-improvement"}),
    ("web_vitals", "bob", 73, {"name": "CLS", "value": 0.05, "rating": "good"}),
    ("web_vitals", "bob", 74, {"name": "INP", "value": 180, "rating": "good"}),
]

# (user, hours after T0 (the identify's time), traits); written after the events
IDENTIFIES: list[tuple[str, float, dict[str, Any]]] = [
    ("alice", 1, {"role": "client", "plan": "pro", "signupDate": "2025-02-01T00:00:00Z", "email": "alice@example.com"}),
    ("erin", 0.5, {"role": "client"}),
    ("coach_9", 2, {"role": "coach", "createdAt": T0 - 30 * D}),             # signed up before the range
    ("grace", 5, {"role": "coach"}),
    ("dave", 3, {"role": "admin", "signup_date": "2025-03-04T00:00:00Z"}),  # signed up in the range
    ("frank", 50, {"role": "coach", "signupDate": "2025-03-03T00:00:00Z"}),  # no event at all
    ("bob", 10, {"plan": "free"}),
]

# (target, success, duration seconds, ended at); two flushes, the second adding to the first's minute
PROBES_FIRST = [("auth-api", True, 0.1, T0 + 5), ("auth-api", True, 0.3, T0 + 65), ("db", True, 0.05, T0 + 100)]
PROBES_SECOND = [("auth-api", False, 1.0, T0 + 70),        # same minute as the 0.3 s one: upserted
                 ("auth-api", True, 0.2, T1 - 1),          # the range's last minute
                 ("auth-api", True, 9.0, T1 + 5),          # after `to`
                 ("auth-api", True, 5.0, T0 - 1),          # the minute before `from`
                 ("db", True, 0.15, T0 + 200)]


def fixture_bodies() -> list[dict[str, Any]]:
    """FIXTURE as the /v1/events envelopes a client would send."""
    bodies = []
    for name, user, hours, props in FIXTURE:
        body: dict[str, Any] = {"event": name, "timestamp": T0 + hours * H, "properties": dict(props)}
        if user.startswith("anon:"):
            body["anonymousId"] = user[5:]
        else:
            body["userId"] = user
        bodies.append(body)
    return bodies


def identify_bodies() -> list[dict[str, Any]]:
    """IDENTIFIES as the POST /v1/identify bodies a client would send."""
    return [{"userId": user, "timestamp": T0 + hours * H, "traits": dict(traits)} for user, hours, traits in IDENTIFIES]


def fixture_events() -> list[Event]:
    """FIXTURE through the ingest API's validation (camelCase properties become snake_case)."""
    limits = Limits(max_past_age=400 * D)
    return [parse_event(body, now=T1 + H, limits=limits) for body in fixture_bodies()]


async def load_fixture(store: Store) -> None:
    """Write FIXTURE in batches of 10 (users' first/last seen merge across batches), then IDENTIFIES,
    then the probes."""
    rows = [event_rows(event) for event in fixture_events()]
    for start in range(0, len(rows), 10):
        await store.write_events(rows[start:start + 10])
    await store_identifies(store, parse_identifies(identify_bodies(), now=T1 + H, limits=Limits(max_past_age=400 * D)))
    rollups = ProbeRollups()
    for probes in (PROBES_FIRST, PROBES_SECOND):
        for probe in probes:
            rollups.observe(*probe)
        await rollups.flush(store)


EXPECTED_DASHBOARD: dict[str, Any] = {
    "summary": {
        # carol alice bob coach_7 coach_9 erin grace, and dave and frank (signed up in the range): a user
        # starts at the sign-up date when known (dave's first event at `to` would leave him out)
        "totalUsers": 9,
        "activeUsers": 6,                # alice bob erin coach_7 coach_9 grace
        "activeUsersByRole": {"coach": 3, "client": 2, "other": 1},      # coach_7 coach_9 grace; alice erin; bob
        # erin (first event at `from`), grace (first event at 5.5 h), dave and frank (signed up in the range);
        # not coach_9 (first seen in the range, but signed up 30 days before)
        "newUsers": 4,
        "newUsersByRole": {"coach": 2, "client": 1, "other": 1},         # frank grace; erin; dave (admin)
        "totalSessions": 4,              # booked at 0h, 1h, 2h, 30h (168h is `to`)
        "completedSessions": 2,
        "sessionCompletionRate": 50.0,   # 2 / 4
        "cancelledSessions": 1,
        "goals": {"total": 4, "completed": 3, "active": 1, "completionRate": 75.0},
        "engagement": {"averageEngagementScore": 70.83,     # (82.5 + 60 + 70) / 3
                       "taskCompletionRate": 20.0},          # 1 completed / 5 created (2 by coaches)
        # coach_7 coach_9 (session events), grace (role coach, active); frank (role coach) has no event
        "coaches": {"activeCoaches": 3, "averageSessionsPerCoach": 0.67},  # (2 + 0 + 0) completed / 3
    },
    "funnelMetrics": [
        {"funnel": "signup", "steps": [
            {"step": "email", "stepNumber": 1, "users": 3, "conversionRate": 100.0, "dropOff": 0,
             "dropOffRate": 0.0},
            {"step": "verify", "stepNumber": 2, "users": 2, "conversionRate": 66.7, "dropOff": 1,
             "dropOffRate": 33.3},
            {"step": "profile", "stepNumber": 3, "users": 1, "conversionRate": 50.0, "dropOff": 1,
             "dropOffRate": 50.0},
        ]},
        {"funnel": "onboarding", "steps": [
            {"step": "profile_setup", "stepNumber": 1, "started": 2, "completed": 2, "abandoned": 0,
             "completionRate": 100.0, "abandonmentRate": 0.0},
            {"step": "calendar_sync", "stepNumber": 2, "started": 2, "completed": 1, "abandoned": 1,
             "completionRate": 50.0, "abandonmentRate": 50.0},
        ], "flowsCompleted": 1},
    ],
    "coachProductivity": [
        {"coachId": "coach_7", "sessionsCompleted": 2, "sessionsBooked": 2, "sessionsCancelled": 0,
         "clientsManaged": 2, "averageRating": 4.5, "resourcesCreated": 2, "tasksManaged": 1},
        {"coachId": "coach_9", "sessionsCompleted": 0, "sessionsBooked": 2, "sessionsCancelled": 1,
         "clientsManaged": 2, "averageRating": None, "resourcesCreated": 0, "tasksManaged": 1},
        {"coachId": "grace", "sessionsCompleted": 0, "sessionsBooked": 0, "sessionsCancelled": 0,
         "clientsManaged": 0, "averageRating": None, "resourcesCreated": 1, "tasksManaged": 0},
    ],
    "clientEngagement": [
        # alice: 5 session + 3 goal + 3 task + 2 score + 2 view + login + logout + 2 file + 4 page + 5 api
        {"userId": "alice", "events": 28, "resourceViews": 2, "tasksCreated": 2, "tasksCompleted": 1,
         "taskCompletionRate": 50.0, "averageEngagementScore": 76.25},
        # bob: 3 session + 2 goal + task + score + view + 2 login + logout + 5 onboarding + 2 file + 5 vitals
        {"userId": "bob", "events": 23, "resourceViews": 1, "tasksCreated": 1, "tasksCompleted": 0,
         "taskCompletionRate": 0.0, "averageEngagementScore": 60.0},
        # erin: 4 onboarding + session + 2 goal + login + mfa + view
        {"userId": "erin", "events": 10, "resourceViews": 1, "tasksCreated": 0, "tasksCompleted": 0,
         "taskCompletionRate": 0.0, "averageEngagementScore": None},
    ],
    "goalCompletion": [
        {"category": "career", "created": 3, "completed": 2, "active": 1, "completionRate": 66.7,
         "averageDaysToComplete": 30.0},
        {"category": "health", "created": 1, "completed": 0, "active": 1, "completionRate": 0.0,
         "averageDaysToComplete": None},
        {"category": "fitness", "created": 0, "completed": 1, "active": 0, "completionRate": 0.0,
         "averageDaysToComplete": 10.0},
    ],
    "serviceUptime": [
        {"target": "auth-api", "probes": 4, "successes": 3, "uptimeRatio": 0.75,
         "averageLatencySeconds": 0.4, "maxLatencySeconds": 1.0},          # (0.1 + 0.3 + 1.0 + 0.2) / 4
        {"target": "db", "probes": 2, "successes": 2, "uptimeRatio": 1.0,
         "averageLatencySeconds": 0.1, "maxLatencySeconds": 0.15},
    ],
    "range": {"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"},
}

_NO_VITAL = {"p75": None, "good": 0, "needsImprovement": 0, "poor": 0, "count": 0}
EXPECTED_BUSINESS: dict[str, Any] = {
    "userEngagement": {
        "dau": 1,                         # erin at 150h
        "wau": 6,                         # the range is the week: activeUsers
        "mau": 7,                         # + carol (-72h)
        "newUsers": 4,
        "newUsersByRole": {"coach": 2, "client": 1, "other": 1},
        "averageSessionDurationSeconds": 1200.0,    # (1800 + 600) / 2
        "retentionRate": 75.0,            # the week before: carol alice bob coach_7; 3 of them came back
    },
    "sessions": {"bookings": 4, "completions": 2, "cancellations": 1, "averageRating": 4.5},
    "files": {"uploads": 2, "downloads": 1, "shares": 1, "bytesUploaded": 3_500_000, "bytesDownloaded": 300_000},
    "authentication": {"loginAttempts": 4, "successfulLogins": 3, "successRate": 75.0,
                       "mfaAdoptionRate": 22.2},      # alice, erin of 9 (bob disabled, coach_9 at `to`)
    "performance": {
        "pageLoadMs": {"p50": 1200.0, "p75": 1800.0, "p95": 2500.0},    # ranks 2, 3, 4 of [1000 1200 1800 2500]
        "apiResponseMs": {"p50": 100.0, "p95": 500.0, "p99": 500.0},    # ranks 3, 5, 5 of [42 80 100 250 500]
        "errorRate": 40.0,                # 503 and 500 of 5
        "uptime": 83.333,                 # 5 of 6 probes in the range
        "webVitals": {
            "LCP": {"p75": 4100.0, "good": 1, "needsImprovement": 1, "poor": 1, "count": 3},   # rank 3 of 3
            "FID": _NO_VITAL,
            "INP": {"p75": 180.0, "good": 1, "needsImprovement": 0, "poor": 0, "count": 1},
            "CLS": {"p75": 0.05, "good": 1, "needsImprovement": 0, "poor": 0, "count": 1},
            "TTFB": _NO_VITAL,
            "FCP": _NO_VITAL,
        },
    },
    "range": {"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"},
}


PERCENTILE_SECTIONS = ("pageLoadMs", "apiResponseMs", "webVitals")


def within_sketch(actual: Any, expected: Any, inside: bool = False) -> Any:
    """`actual` with each percentile (under pageLoadMs, apiResponseMs, webVitals) that is within the
    sketch's relative error (agent/store/rollups.py RELATIVE_ERROR) of the expected one replaced by it, so
    `within_sketch(got, want) == want` checks the documents exactly but for that bound, with a readable diff."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        return {k: within_sketch(v, expected.get(k), inside or k in PERCENTILE_SECTIONS) if k in expected else v
                for k, v in actual.items()}
    if inside and isinstance(actual, float) and isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return expected if abs(actual - expected) <= RELATIVE_ERROR * abs(expected) else actual
    return actual
