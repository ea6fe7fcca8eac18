"""GET /api/analytics/dashboard: the documentation's admin dashboard, from the event store.

The documentation's example keys come first and keep their meaning (summary.totalUsers, activeUsers,
newUsers, totalSessions, completedSessions, sessionCompletionRate); the rest fill in what its list of
"metrics provided" names. Definitions, all over the half-open range [from, to):

summary         totalUsers: users who started before `to`; activeUsers: users with an event in the range,
                and activeUsersByRole; newUsers: users who started in it, and newUsersByRole. A user starts
                at the sign-up date identify gave (users.signed_up_at), else when first seen; the roles are
                coach, client and other (users.role from identify or onboarding_personalization; none
                counts as other). totalSessions / completedSessions / cancelledSessions: session_booked /
                session_completed / session_cancelled events; goals: goal_created (total) and
                goal_completed events, active = created - completed (at least 0); engagement: mean
                resource_engagement_score, task_completed per task_created; coaches: the coaches (coach
                ids of session events in the range, and users of role coach with an event in it), and
                session_completed events per coach.
funnelMetrics   the signup funnel (signup_step: distinct visitors reaching each step, conversion from the
                previous step, visitors lost since it) and the onboarding funnel (onboarding_funnel rows
                per step: started, completed, abandoned, and the rates of the last two per started).
coachProductivity  the 50 coaches (as counted in summary.coaches) with the most completed sessions.
clientEngagement   the 50 most active users (events in the range) who are not coaches.
goalCompletion  per goal category (the 100 with the most goals created).
serviceUptime   per probe target, from probe_rollups (the minutes that start in the range).

With a release (the `release=` filter), every number counts only that release's events, and the user
counts only users with an event of that release (totalUsers: before `to`; the others: in the range);
serviceUptime (probes have no release) is unchanged.
"""

from __future__ import annotations

from typing import Any

from agent.analytics import queries as q, rollup_queries as rq
from agent.analytics.stats import average, percent, rounded
from agent.analytics.timerange import TimeRange
from agent.store.base import Store

TOP_COACHES = 50
TOP_CLIENTS = 50
MAX_STEPS = 50
MAX_GOAL_CATEGORIES = 100
SUMMARY_COUNTS = ("session_booked", "session_completed", "session_cancelled", "goal_created", "goal_completed",
                  "task_created", "task_completed")
COACH_WORK = ("resource_created", "task_created")
CLIENT_WORK = ("resource_viewed", "task_created", "task_completed", "resource_engagement_score")


async def dashboard(store: Store, r: TimeRange, release: str | None = None) -> dict[str, Any]:
    with rq.request_cache():        # the range's persons: read once for the coaches and the active users
        return await _dashboard(store, r, release)


async def _dashboard(store: Store, r: TimeRange, release: str | None) -> dict[str, Any]:
    coaches = await all_coaches(store, r, release)
    return {
        "summary": await summary(store, r, coaches, release),
        "funnelMetrics": [signup_funnel(await rq.signup_steps(store, r, release)),
                          onboarding_funnel(await rq.onboarding_steps(store, r, release))],
        "coachProductivity": await coach_productivity(store, r, coaches, release),
        "clientEngagement": await client_engagement(store, r, release),
        "goalCompletion": goal_completion(await rq.goal_categories(store, r, release)),
        "serviceUptime": service_uptime(await q.probe_uptime(store, r)),
        "range": r.to_json(),
    }


async def all_coaches(store: Store, r: TimeRange, release: str | None) -> list[q.CoachSessions]:
    """The coaches of session events in the range, and the active users of role coach without any."""
    coaches = await rq.coach_sessions(store, r, release, clients=False)    # clients: the top coaches' only
    known = {c.coach for c in coaches}
    return coaches + [q.CoachSessions(user, 0, 0, 0, 0, None) for user in await rq.role_coaches(store, r, release)
                      if user not in known]


async def summary(store: Store, r: TimeRange, coaches: list[q.CoachSessions],
                  release: str | None = None) -> dict[str, Any]:
    n = await rq.counts(store, SUMMARY_COUNTS, r, release)
    score = (await rq.value_stats(store, ("resource_engagement_score",), r, release))["resource_engagement_score"]
    booked, completed = n["session_booked"], n["session_completed"]
    goals_created, goals_completed = n["goal_created"], n["goal_completed"]
    active = await rq.active_users_by_role(store, r, release)
    new = await q.new_users_by_role(store, r, release)
    return {
        "totalUsers": await q.total_users(store, r.end, release),
        "activeUsers": sum(active.values()),
        "activeUsersByRole": active,
        "newUsers": sum(new.values()),
        "newUsersByRole": new,
        "totalSessions": booked,
        "completedSessions": completed,
        "sessionCompletionRate": percent(completed, booked),
        "cancelledSessions": n["session_cancelled"],
        "goals": {"total": goals_created, "completed": goals_completed,
                  "active": max(goals_created - goals_completed, 0),
                  "completionRate": percent(goals_completed, goals_created)},
        "engagement": {"averageEngagementScore": rounded(score.mean),
                       "taskCompletionRate": percent(n["task_completed"], n["task_created"])},
        "coaches": {"activeCoaches": len(coaches),
                    "averageSessionsPerCoach": average(sum(c.completed for c in coaches), len(coaches))},
    }


def _step_order(step: str | None, number: int | None) -> tuple[bool, int, str]:
    """By step number, unnumbered steps last, then by name."""
    return (number is None, number or 0, step or "")


def signup_funnel(rows: list[tuple[str | None, int | None, int]]) -> dict[str, Any]:
    steps = []
    previous: int | None = None
    for step, number, users in sorted(rows, key=lambda row: _step_order(row[0], row[1]))[:MAX_STEPS]:
        lost = 0 if previous is None else max(previous - users, 0)
        steps.append({"step": step, "stepNumber": number, "users": users,
                      "conversionRate": 100.0 if previous is None else percent(users, previous),
                      "dropOff": lost, "dropOffRate": 0.0 if previous is None else percent(lost, previous)})
        previous = users
    return {"funnel": "signup", "steps": steps}


def onboarding_funnel(rows: list[tuple[str | None, int | None, str, int]]) -> dict[str, Any]:
    per_step: dict[str | None, dict[str, Any]] = {}
    flows_completed = 0
    for step, number, status, n in rows:
        if status == "flow_completed":
            flows_completed += n
            continue
        entry = per_step.setdefault(step, {"step": step, "stepNumber": number, "started": 0, "completed": 0,
                                           "abandoned": 0})
        if number is not None and (entry["stepNumber"] is None or number < entry["stepNumber"]):
            entry["stepNumber"] = number
        if status in ("started", "completed", "abandoned"):
            entry[status] += n
    steps = sorted(per_step.values(), key=lambda e: _step_order(e["step"], e["stepNumber"]))[:MAX_STEPS]
    for entry in steps:
        entry["completionRate"] = percent(entry["completed"], entry["started"])
        entry["abandonmentRate"] = percent(entry["abandoned"], entry["started"])
    return {"funnel": "onboarding", "steps": steps, "flowsCompleted": flows_completed}


async def coach_productivity(store: Store, r: TimeRange, coaches: list[q.CoachSessions],
                             release: str | None = None) -> list[dict[str, Any]]:
    top = sorted(coaches, key=lambda c: (-c.completed, -c.booked, c.coach))[:TOP_COACHES]
    work = await rq.per_user(store, [c.coach for c in top], COACH_WORK, r, release)
    clients = {c.coach: c.clients for c in top} if release is not None else \
        await rq.coach_clients(store, r, [c.coach for c in top])
    empty = q.ValueStats()
    return [{"coachId": c.coach, "sessionsCompleted": c.completed, "sessionsBooked": c.booked,
             "sessionsCancelled": c.cancelled, "clientsManaged": clients.get(c.coach, 0),
             "averageRating": rounded(c.rating),
             "resourcesCreated": work.get((c.coach, "resource_created"), empty).events,
             "tasksManaged": work.get((c.coach, "task_created"), empty).events}
            for c in top]


async def client_engagement(store: Store, r: TimeRange, release: str | None = None) -> list[dict[str, Any]]:
    top = await rq.top_clients(store, r, TOP_CLIENTS, release)
    work = await rq.per_user(store, [user for user, _ in top], CLIENT_WORK, r, release)
    empty = q.ValueStats()
    clients = []
    for user, events in top:
        created = work.get((user, "task_created"), empty).events
        completed = work.get((user, "task_completed"), empty).events
        clients.append({"userId": user, "events": events,
                        "resourceViews": work.get((user, "resource_viewed"), empty).events,
                        "tasksCreated": created, "tasksCompleted": completed,
                        "taskCompletionRate": percent(completed, created),
                        "averageEngagementScore": rounded(work.get((user, "resource_engagement_score"),
                                                                   empty).mean)})
    return clients


def goal_completion(categories: dict[str | None, tuple[int, q.ValueStats]]) -> list[dict[str, Any]]:
    ordered = sorted(categories.items(), key=lambda item: (-item[1][0], -item[1][1].events, item[0] or ""))
    return [{"category": category, "created": created, "completed": done.events,
             "active": max(created - done.events, 0), "completionRate": percent(done.events, created),
             "averageDaysToComplete": rounded(done.mean)}
            for category, (created, done) in ordered[:MAX_GOAL_CATEGORIES]]


def service_uptime(rows: list[q.Uptime]) -> list[dict[str, Any]]:
    return [{"target": u.target, "probes": u.probes, "successes": u.successes,
             "uptimeRatio": round(u.successes / u.probes, 6) if u.probes else None,
             "averageLatencySeconds": round(u.duration_sum / u.probes, 6) if u.probes else None,
             "maxLatencySeconds": round(u.duration_max, 6)}
            for u in rows]
