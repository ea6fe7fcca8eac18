"""GET /api/monitoring/business-metrics: the documentation's business metrics dashboard, from the event store.

Over the half-open range [from, to) unless said otherwise:

userEngagement  dau / wau / mau: users with an event in the day / 7 days / 30 days ENDING AT `to` (whatever
                the range); newUsers: users who started in the range (signed up, per identify's sign-up
                date, else first seen), and newUsersByRole (coach, client, other); averageSessionDurationSeconds: mean
                session_duration_seconds of logout events; retentionRate: of the users active in the
                period of the same length just before the range, the percent also active in the range.
sessions        session_booked / session_completed / session_cancelled events, mean session_rated rating.
files           file_uploaded / file_downloaded / file_shared events, bytes uploaded and downloaded.
authentication  login_attempt events and the percent with result success; mfaAdoptionRate: users whose
                latest mfa_enrolled / mfa_disabled event before `to` is an enrolment, per user first seen
                before `to`, in percent.
performance     page_load load_time_ms and api_request duration_ms percentiles (nearest-rank, see
                agent/analytics/stats.py), errorRate: api_request events with status >= 500 in percent,
                uptime: probe successes per probe over every target in percent (null without probes),
                webVitals: per metric, the p75 value and the count of each rating.

With a release (the `release=` filter) every number counts only that release's events and the users with
an event of that release (in the window each user count is about); uptime (probes) is unchanged.
"""

from __future__ import annotations

from typing import Any

from agent.analytics import queries as q, rollup_queries as rq
from agent.analytics.stats import percent, rounded
from agent.analytics.timerange import DAY, TimeRange
from agent.store.base import Store

VALUE_EVENTS = ("logout", "session_rated", "file_uploaded", "file_downloaded")
COUNT_EVENTS = ("session_booked", "session_completed", "session_cancelled", "file_shared")
WEB_VITALS = ("LCP", "FID", "INP", "CLS", "TTFB", "FCP")
RATINGS = {"good": "good", "needs-improvement": "needsImprovement", "poor": "poor"}


async def business_metrics(store: Store, r: TimeRange, release: str | None = None) -> dict[str, Any]:
    # MAU and the retained users' current range are often the same persons; of the labels, web vitals' only
    with rq.request_cache(labels=("web_vitals",)):
        return await _business_metrics(store, r, release)


async def _business_metrics(store: Store, r: TimeRange, release: str | None) -> dict[str, Any]:
    stats = await rq.value_stats(store, VALUE_EVENTS, r, release)
    n = await rq.counts(store, COUNT_EVENTS, r, release)
    return {
        "userEngagement": await user_engagement(store, r, stats["logout"], release),
        "sessions": {"bookings": n["session_booked"], "completions": n["session_completed"],
                     "cancellations": n["session_cancelled"], "averageRating": rounded(stats["session_rated"].mean)},
        "files": {"uploads": stats["file_uploaded"].events, "downloads": stats["file_downloaded"].events,
                  "shares": n["file_shared"], "bytesUploaded": int(stats["file_uploaded"].total),
                  "bytesDownloaded": int(stats["file_downloaded"].total)},
        "authentication": await authentication(store, r, release),
        "performance": await performance(store, r, release),
        "range": r.to_json(),
    }


async def user_engagement(store: Store, r: TimeRange, logout: q.ValueStats,
                          release: str | None = None) -> dict[str, Any]:
    previous = TimeRange(r.start - r.length, r.start, r.asked)
    before, kept = await rq.retained_users(store, previous, r, release)
    new = await q.new_users_by_role(store, r, release)
    return {
        "dau": await rq.active_users(store, r.ending(DAY), release),
        "wau": await rq.active_users(store, r.ending(7 * DAY), release),
        "mau": await rq.active_users(store, r.ending(30 * DAY), release),
        "newUsers": sum(new.values()),
        "newUsersByRole": new,
        "averageSessionDurationSeconds": rounded(logout.mean, 1),
        "retentionRate": percent(kept, before),
    }


async def authentication(store: Store, r: TimeRange, release: str | None = None) -> dict[str, Any]:
    logins = await rq.outcome_counts(store, "login_attempt", r, release)
    attempts, succeeded = sum(logins.values()), logins.get("success", 0)
    users = await q.total_users(store, r.end, release)
    return {"loginAttempts": attempts, "successfulLogins": succeeded, "successRate": percent(succeeded, attempts),
            "mfaAdoptionRate": percent(await rq.mfa_adopters(store, r.end, release), users)}


async def performance(store: Store, r: TimeRange, release: str | None = None) -> dict[str, Any]:
    requests = (await rq.counts(store, ("api_request",), r, release))["api_request"]
    probes = await q.probe_uptime(store, r)
    total, up = sum(u.probes for u in probes), sum(u.successes for u in probes)
    return {
        "pageLoadMs": await rq.value_percentiles(store, "page_load", r, (50, 75, 95), release),
        "apiResponseMs": await rq.value_percentiles(store, "api_request", r, (50, 95, 99), release),
        "errorRate": percent(await rq.server_errors(store, r, release), requests),
        "uptime": percent(up, total, 3) if total else None,
        "webVitals": web_vitals(await rq.labelled_percentile(store, "web_vitals", r, 75, release),
                                await rq.labelled_outcome_counts(store, "web_vitals", r, release)),
    }


def web_vitals(p75: dict[str | None, float], counts: dict[tuple[str | None, str | None], int]) -> dict[str, Any]:
    """Per Core Web Vital: its p75, the count of each rating, and how many values it has."""
    out: dict[str, dict[str, Any]] = {name: {"p75": p75.get(name), **dict.fromkeys(RATINGS.values(), 0), "count": 0}
                                      for name in WEB_VITALS}
    for (name, rating), n in counts.items():
        entry = out.get(name or "")
        if entry is None:
            continue
        entry["count"] += n
        if rating in RATINGS:
            entry[RATINGS[rating]] += n
    return out
