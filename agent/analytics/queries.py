"""The analytics SQL, written once with `?` placeholders for SQLite and PostgreSQL, and the fetches
that run it and hand back plain Python values.

Every query reads through an index of agent/store/schema.py, never a full scan of `events`
(tests/test_analytics_queries.py checks SQLite's plans):
- by event name and time: events_name_dims (name, ts, label, outcome, value, user_id), so that counts,
  sums, percentiles' values, coaches and ratings are read from the index alone (before it, with
  events_name_ts (name, ts), each matching event cost a row lookup: business-metrics over 30 days of
  1M events took 0.7 s instead of 0.25 s);
- by user and time: events_by_user (user_id, ts, id) (agent/store/user_index.py: SQLite's table folded
  with the rollups, PostgreSQL's view over its index events_user_ts), probed once per candidate user,
  the candidates coming from users_last_seen / users_first_seen (so "active users" costs users, not
  events: 10 ms over 1M events where count(DISTINCT user_id) took 100-250 ms); with a release, through
  user_index.rows (on SQLite a join of events_by_user to the events by id, for their release);
- onboarding_funnel_ts, and probe_rollups_minute.
No query parses JSON: the numbers come from the lifted columns label / outcome / value
(agent/store/rows.py DIMENSIONS says which property each one is for each event).

Every range is half-open, [start, end): `ts >= ? AND ts < ?`.

`release` (the `release=` filter of the API): every read of `events` adds `AND release = ?`, and the
users-table counts keep only users with an event of that release in the same window (agent/analytics/
dashboard.py says what each number then means). Without it the SQL is exactly the unfiltered text.

Users: a user "starts" at `signed_up_at` (identify's sign-up date) when known, else at `first_seen`;
`role` (identify, or onboarding_personalization) is grouped as coach, client or other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.analytics.timerange import TimeRange
from agent.store import user_index
from agent.store.base import Store

SESSION_EVENTS = ("session_booked", "session_completed", "session_cancelled", "session_rated")
ONBOARDING_EVENTS = ("onboarding_step_started", "onboarding_step_completed", "onboarding_abandoned",
                     "onboarding_completed")
ROLES = ("coach", "client", "other")
MINUTE = 60


def placeholders(n: int) -> str:
    """'(?, ?, ?)' for an IN list of n values (n >= 1)."""
    return "(" + ", ".join("?" * n) + ")"


def of_release(release: str | None, alias: str = "") -> tuple[str, tuple[Any, ...]]:
    """The condition keeping one release's events (" AND e.release = ?") and its parameter; nothing
    without a release."""
    if release is None:
        return "", ()
    return f" AND {alias + '.' if alias else ''}release = ?", (release,)


@dataclass(frozen=True, slots=True)
class ValueStats:
    """One event name's events in the range, and the sum of their `value` column."""

    events: int = 0
    values: int = 0          # events whose value is not NULL
    total: float = 0.0       # sum of the values

    @property
    def mean(self) -> float | None:
        return self.total / self.values if self.values else None


# --- counts and sums by event name ---------------------------------------------------------------

async def counts(store: Store, names: Sequence[str], r: TimeRange, release: str | None = None) -> dict[str, int]:
    """name -> events in the range (index-only)."""
    cond, extra = of_release(release)
    sql = (f"SELECT name, count(*) FROM events WHERE name IN {placeholders(len(names))} "
           f"AND ts >= ? AND ts < ?{cond} GROUP BY name")
    found = {name: int(n) for name, n in await store.fetch(sql, (*names, r.start, r.end, *extra))}
    return {name: found.get(name, 0) for name in names}


async def value_stats(store: Store, names: Sequence[str], r: TimeRange,
                      release: str | None = None) -> dict[str, ValueStats]:
    """name -> events, values and their sum, in the range."""
    cond, extra = of_release(release)
    sql = (f"SELECT name, count(*), count(value), sum(value) FROM events WHERE name IN {placeholders(len(names))} "
           f"AND ts >= ? AND ts < ?{cond} GROUP BY name")
    found = {name: ValueStats(int(n), int(nv), float(total or 0.0))
             for name, n, nv, total in await store.fetch(sql, (*names, r.start, r.end, *extra))}
    return {name: found.get(name, ValueStats()) for name in names}


async def outcome_counts(store: Store, name: str, r: TimeRange, release: str | None = None) -> dict[str | None, int]:
    """outcome -> events of `name` in the range (login_attempt: success / failure)."""
    cond, extra = of_release(release)
    sql = f"SELECT outcome, count(*) FROM events WHERE name = ? AND ts >= ? AND ts < ?{cond} GROUP BY outcome"
    return {outcome: int(n) for outcome, n in await store.fetch(sql, (name, r.start, r.end, *extra))}


def _ranked(partition: str, cond: str) -> str:
    """Rows of one event name's non-NULL values in the range, numbered in ascending order (rn) within
    `partition` ("" or "PARTITION BY label ") and counted (n), for a nearest-rank pick in SQL."""
    return (f"SELECT label, value, row_number() OVER ({partition}ORDER BY value) AS rn, "
            f"count(*) OVER ({partition.rstrip()}) AS n FROM events "
            f"WHERE name = ? AND ts >= ? AND ts < ? AND value IS NOT NULL{cond}")


async def value_percentiles(store: Store, name: str, r: TimeRange, ps: Sequence[int],
                            release: str | None = None) -> dict[str, float | None]:
    """{"p50": ...} of `name`'s values in the range, nearest-rank, None when there are none. The database
    sorts and picks the ranks: fetching every value into Python cost ~50 bytes of RSS and event-loop time
    per event in the range (bench/soak.py: +300 MiB and 1 s stalls at 6M events). `ps` are integers: the
    rank ceil(p * n / 100) in exact integer arithmetic is stats.nearest_rank's."""
    cond, extra = of_release(release)
    wanted = " OR ".join("rn = (? * n + 99) / 100" for _ in ps)
    sql = f"SELECT rn, n, value FROM ({_ranked('', cond)}) ranked WHERE {wanted}"
    rows = await store.fetch(sql, (name, r.start, r.end, *extra, *(int(p) for p in ps)))
    if not rows:
        return {f"p{p:g}": None for p in ps}
    by_rank, n = {int(rn): float(v) for rn, _, v in rows}, int(rows[0][1])
    return {f"p{p:g}": by_rank.get(max(1, (int(p) * n + 99) // 100)) for p in ps}


async def labelled_percentile(store: Store, name: str, r: TimeRange, p: int,
                              release: str | None = None) -> dict[str | None, float]:
    """label -> the nearest-rank p-th percentile of `name`'s values with that label (web_vitals: the
    metric), computed by the database as in value_percentiles."""
    cond, extra = of_release(release)
    sql = f"SELECT label, value FROM ({_ranked('PARTITION BY label ', cond)}) ranked WHERE rn = (? * n + 99) / 100"
    return {label: float(v) for label, v in await store.fetch(sql, (name, r.start, r.end, *extra, int(p)))}


async def labelled_outcome_counts(store: Store, name: str, r: TimeRange,
                                  release: str | None = None) -> dict[tuple[str | None, str | None], int]:
    """(label, outcome) -> events of `name` with a value in the range (web_vitals: metric, rating)."""
    cond, extra = of_release(release)
    sql = (f"SELECT label, outcome, count(*) FROM events WHERE name = ? AND ts >= ? AND ts < ? "
           f"AND value IS NOT NULL{cond} GROUP BY label, outcome")
    return {(label, outcome): int(n) for label, outcome, n in await store.fetch(sql, (name, r.start, r.end, *extra))}


async def server_errors(store: Store, r: TimeRange, release: str | None = None) -> int:
    """api_request events with a 5xx status: the status is stored as its 3-digit text (catalog: 100-599)."""
    cond, extra = of_release(release)
    sql = ("SELECT count(*) FROM events WHERE name = 'api_request' AND ts >= ? AND ts < ? "
           f"AND outcome >= '500' AND outcome <= '599'{cond}")
    return int((await store.fetch(sql, (r.start, r.end, *extra)))[0][0])


async def labelled_values(store: Store, name: str, r: TimeRange,
                          release: str | None = None) -> list[tuple[str | None, str | None, float | None]]:
    """(label, outcome, value) of every event of `name` in the range (web_vitals: metric, rating, value)."""
    cond, extra = of_release(release)
    sql = f"SELECT label, outcome, value FROM events WHERE name = ? AND ts >= ? AND ts < ?{cond}"
    return [(label, outcome, None if v is None else float(v))
            for label, outcome, v in await store.fetch(sql, (name, r.start, r.end, *extra))]


# --- users ---------------------------------------------------------------------------------------

STARTED = "coalesce(u.signed_up_at, u.first_seen)"        # when a user counts as new
ROLE = "CASE WHEN u.role IN ('coach', 'client') THEN u.role ELSE 'other' END"


def user_events(dialect: str, alias: str, release: str | None, since: bool = True) -> tuple[str, tuple[Any, ...]]:
    """`FROM` text (without the word) of the events `alias` of the user u.user_id in [?, ?) (before ? with
    `since` False), of the release if any, up to an open WHERE clause; and the parameters that follow the
    range's. Without a release the SQL needs only the user's (user_id, ts, id): events_by_user itself;
    with one, user_index.rows (the events' release column)."""
    ts = " AND {ts} >= ? AND {ts} < ?" if since else " AND {ts} < ?"
    if release is None:
        return f"events_by_user {alias} WHERE {alias}.user_id = u.user_id{ts.format(ts=f'{alias}.ts')}", ()
    return f"{user_index.rows(dialect, alias, '= u.user_id', ts)} AND {alias}.release = ?", (release,)


def _with_events(dialect: str, start: float | None, end: float,
                 release: str | None) -> tuple[str, tuple[Any, ...]]:
    """' AND EXISTS (an event of the user in [start, end) of the release)', or nothing without a release."""
    if release is None:
        return "", ()
    events, extra = user_events(dialect, "e", release, since=start is not None)
    return f" AND EXISTS (SELECT 1 FROM {events})", (*(() if start is None else (start,)), end, *extra)


def _by_role(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    found = {role: int(n) for role, n in rows}
    return {role: found.get(role, 0) for role in ROLES}


async def total_users(store: Store, end: float, release: str | None = None) -> int:
    """Users who started (signed up, else were first seen) before `end`."""
    cond, extra = _with_events(store.dialect, None, end, release)
    rows = await store.fetch(f"SELECT count(*) FROM users u WHERE {STARTED} < ?{cond}", (end, *extra))
    return int(rows[0][0])


async def new_users_by_role(store: Store, r: TimeRange, release: str | None = None) -> dict[str, int]:
    """coach / client / other -> users who started (signed up, else were first seen) in the range."""
    cond, extra = _with_events(store.dialect, r.start, r.end, release)
    sql = f"SELECT {ROLE}, count(*) FROM users u WHERE {STARTED} >= ? AND {STARTED} < ?{cond} GROUP BY 1"
    return _by_role(await store.fetch(sql, (r.start, r.end, *extra)))


async def new_users(store: Store, r: TimeRange, release: str | None = None) -> int:
    return sum((await new_users_by_role(store, r, release)).values())


async def active_users_by_role(store: Store, r: TimeRange, release: str | None = None) -> dict[str, int]:
    """coach / client / other -> users with at least one event in the range."""
    events, extra = user_events(store.dialect, "e", release)
    sql = (f"SELECT {ROLE}, count(*) FROM users u WHERE u.last_seen >= ? AND EXISTS (SELECT 1 FROM {events}) "
           "GROUP BY 1")
    return _by_role(await store.fetch(sql, (r.start, r.start, r.end, *extra)))


async def active_users(store: Store, r: TimeRange, release: str | None = None) -> int:
    """Users with at least one event in the range."""
    return sum((await active_users_by_role(store, r, release)).values())


async def retained_users(store: Store, previous: TimeRange, current: TimeRange,
                         release: str | None = None) -> tuple[int, int]:
    """(users active in `previous`, of those the ones also active in `current`)."""
    now, now_extra = user_events(store.dialect, "c", release)
    then, then_extra = user_events(store.dialect, "p", release)
    sql = (f"SELECT count(*), coalesce(sum(CASE WHEN EXISTS (SELECT 1 FROM {now}) THEN 1 ELSE 0 END), 0) "
           f"FROM users u WHERE u.last_seen >= ? AND u.first_seen < ? AND EXISTS (SELECT 1 FROM {then})")
    rows = await store.fetch(sql, (current.start, current.end, *now_extra, previous.start, previous.end,
                                   previous.start, previous.end, *then_extra))
    return int(rows[0][0]), int(rows[0][1])


async def mfa_adopters(store: Store, end: float, release: str | None = None) -> int:
    """Users whose latest mfa_enrolled / mfa_disabled event before `end` is an enrolment."""
    cond, extra = of_release(release)
    sql = ("SELECT count(*) FROM (SELECT user_id, "
           "max(CASE WHEN name = 'mfa_enrolled' THEN ts END) AS enrolled, "
           "max(CASE WHEN name = 'mfa_disabled' THEN ts END) AS disabled "
           f"FROM events WHERE name IN ('mfa_enrolled', 'mfa_disabled') AND ts < ? AND user_id IS NOT NULL{cond} "
           "GROUP BY user_id) latest WHERE enrolled IS NOT NULL AND (disabled IS NULL OR disabled < enrolled)")
    rows = await store.fetch(sql, (end, *extra))
    return int(rows[0][0])


# --- coaches and clients -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CoachSessions:
    coach: str
    completed: int
    booked: int
    cancelled: int
    clients: int                 # distinct users in the coach's session events
    rating: float | None         # mean session_rated rating


async def coach_sessions(store: Store, r: TimeRange, release: str | None = None) -> list[CoachSessions]:
    """Every coach (the label of session_* events) with events in the range."""
    cond, extra = of_release(release)
    sql = ("SELECT label, "
           "sum(CASE WHEN name = 'session_completed' THEN 1 ELSE 0 END), "
           "sum(CASE WHEN name = 'session_booked' THEN 1 ELSE 0 END), "
           "sum(CASE WHEN name = 'session_cancelled' THEN 1 ELSE 0 END), "
           "count(DISTINCT user_id), "
           "avg(CASE WHEN name = 'session_rated' THEN value END) "
           f"FROM events WHERE name IN {placeholders(len(SESSION_EVENTS))} AND ts >= ? AND ts < ? "
           f"AND label IS NOT NULL{cond} GROUP BY label")
    rows = await store.fetch(sql, (*SESSION_EVENTS, r.start, r.end, *extra))
    return [CoachSessions(coach, int(done), int(booked), int(cancelled), int(clients),
                          None if rating is None else float(rating))
            for coach, done, booked, cancelled, clients, rating in rows]


async def role_coaches(store: Store, r: TimeRange, release: str | None = None) -> list[str]:
    """Users whose role is coach (identify, onboarding_personalization) with an event in the range."""
    events, extra = user_events(store.dialect, "e", release)
    sql = ("SELECT u.user_id FROM users u WHERE u.role = 'coach' AND u.last_seen >= ? AND EXISTS "
           f"(SELECT 1 FROM {events}) ORDER BY u.user_id")
    return [user for (user,) in await store.fetch(sql, (r.start, r.start, r.end, *extra))]


async def per_user(store: Store, users: Sequence[str], names: Sequence[str], r: TimeRange,
                   release: str | None = None) -> dict[tuple[str, str], ValueStats]:
    """(user, name) -> events and values, for a short list of users."""
    if not users:
        return {}
    # by name (events_name_dims), never by user (events_by_user): the most active users have tens of
    # thousands of events a month, the few named events are fewer; coalesce() keeps planners off user_id
    # (PostgreSQL's events_user_ts; SQLite chose its old events_user_ts: 140 ms instead of 13 ms over 30
    # days of 1M events)
    cond, extra = of_release(release)
    sql = ("SELECT user_id, name, count(*), count(value), sum(value) FROM events "
           f"WHERE name IN {placeholders(len(names))} AND ts >= ? AND ts < ? "
           f"AND coalesce(user_id, '') IN {placeholders(len(users))}{cond} GROUP BY user_id, name")
    rows = await store.fetch(sql, (*names, r.start, r.end, *users, *extra))
    return {(user, name): ValueStats(int(n), int(nv), float(total or 0.0)) for user, name, n, nv, total in rows}


async def top_clients(store: Store, r: TimeRange, limit: int, release: str | None = None) -> list[tuple[str, int]]:
    """(user, events in the range) of the `limit` most active users who are not coaches: neither
    role 'coach' (onboarding_personalization) nor the coach of a session event in the range."""
    # users with no event in the range sort last and are dropped here: a `WHERE n > 0` in SQL would
    # make SQLite count each user's events twice
    events, e_extra = user_events(store.dialect, "e", release)
    c_cond, c_extra = of_release(release, "c")
    sql = ("SELECT u.user_id, "
           f"(SELECT count(*) FROM {events}) AS n "
           "FROM users u WHERE u.last_seen >= ? AND u.first_seen < ? "
           "AND (u.role IS NULL OR u.role <> 'coach') "
           "AND u.user_id NOT IN (SELECT c.label FROM events c WHERE "
           f"c.name IN {placeholders(len(SESSION_EVENTS))} AND c.ts >= ? AND c.ts < ? AND c.label IS NOT NULL{c_cond}) "
           "ORDER BY n DESC, u.user_id LIMIT ?")
    params = (r.start, r.end, *e_extra, r.start, r.end, *SESSION_EVENTS, r.start, r.end, *c_extra, limit)
    return [(user, int(n)) for user, n in await store.fetch(sql, params) if n]


# --- funnels and goals ---------------------------------------------------------------------------

async def signup_steps(store: Store, r: TimeRange,
                       release: str | None = None) -> list[tuple[str | None, int | None, int]]:
    """(step, its lowest step number, distinct visitors) of signup_step events in the range; a visitor
    is the user id, else the anonymous id (signup often happens before there is a user)."""
    cond, extra = of_release(release)
    sql = ("SELECT label, min(value), count(DISTINCT coalesce(user_id, anonymous_id)) FROM events "
           f"WHERE name = 'signup_step' AND ts >= ? AND ts < ?{cond} GROUP BY label")
    return [(step, None if number is None else int(number), int(n))
            for step, number, n in await store.fetch(sql, (r.start, r.end, *extra))]


async def onboarding_steps(store: Store, r: TimeRange,
                           release: str | None = None) -> list[tuple[str | None, int | None, str, int]]:
    """(step, its lowest step number, status, rows) of onboarding_funnel in the range. The table has no
    release: for one release, the same from that release's onboarding events (a step's number is then
    the lowest step_number of its onboarding_step_started events, the only ones whose value it is)."""
    if release is None:
        sql = ("SELECT step, min(step_number), status, count(*) FROM onboarding_funnel "
               "WHERE ts >= ? AND ts < ? GROUP BY step, status")
        params: tuple[Any, ...] = (r.start, r.end)
    else:
        sql = ("SELECT label, min(CASE WHEN name = 'onboarding_step_started' THEN value END), "
               "CASE name WHEN 'onboarding_step_started' THEN 'started' WHEN 'onboarding_step_completed' "
               "THEN 'completed' WHEN 'onboarding_abandoned' THEN 'abandoned' ELSE 'flow_completed' END AS status, "
               f"count(*) FROM events WHERE name IN {placeholders(len(ONBOARDING_EVENTS))} AND ts >= ? AND ts < ? "
               "AND release = ? GROUP BY label, status")
        params = (*ONBOARDING_EVENTS, r.start, r.end, release)
    return [(step, None if number is None else int(number), status, int(n))
            for step, number, status, n in await store.fetch(sql, params)]


async def goal_categories(store: Store, r: TimeRange,
                          release: str | None = None) -> dict[str | None, tuple[int, ValueStats]]:
    """goal category -> (goals created, completed goals with their days_to_complete)."""
    cond, extra = of_release(release)
    sql = ("SELECT label, name, count(*), count(value), sum(value) FROM events "
           f"WHERE name IN ('goal_created', 'goal_completed') AND ts >= ? AND ts < ?{cond} GROUP BY label, name")
    created: dict[str | None, int] = {}
    completed: dict[str | None, ValueStats] = {}
    for category, name, n, nv, total in await store.fetch(sql, (r.start, r.end, *extra)):
        if name == "goal_created":
            created[category] = int(n)
        else:
            completed[category] = ValueStats(int(n), int(nv), float(total or 0.0))
    return {c: (created.get(c, 0), completed.get(c, ValueStats())) for c in {*created, *completed}}


# --- probes --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Uptime:
    target: str
    probes: int
    successes: int
    duration_sum: float
    duration_max: float


def minutes(r: TimeRange) -> tuple[int, int]:
    """The probe_rollups minutes of the range: those that START in [start, end), as [first, past)."""
    # m * 60 >= start  <=>  m >= ceil(start / 60);  m * 60 < end  <=>  m < ceil(end / 60)
    return math.ceil(r.start / MINUTE), math.ceil(r.end / MINUTE)


_UPTIME_SQL = ("SELECT target, sum(probes), sum(successes), sum(duration_sum), max(duration_max) FROM {table} "
               "WHERE {period} >= ? AND {period} < ? GROUP BY target")
MINUTES_PER_HOUR = 60


async def probe_uptime(store: Store, r: TimeRange) -> list[Uptime]:
    """Per target, the probes that ended in the range's minutes: the whole hours inside the range from
    probe_rollups_hourly, the minutes at its edges from probe_rollups (the same sums either way)."""
    first, past = minutes(r)
    hour_first, hour_past = -(-first // MINUTES_PER_HOUR), past // MINUTES_PER_HOUR
    parts: list[tuple[str, str, int, int]] = []
    if hour_first < hour_past:
        parts += [("probe_rollups_hourly", "hour", hour_first, hour_past),
                  ("probe_rollups", "minute", first, hour_first * MINUTES_PER_HOUR),
                  ("probe_rollups", "minute", hour_past * MINUTES_PER_HOUR, past)]
    else:
        parts.append(("probe_rollups", "minute", first, past))
    totals: dict[str, list[float]] = {}
    for table, period, low, high in parts:
        if low >= high:
            continue
        for target, n, ok, total, peak in await store.fetch(_UPTIME_SQL.format(table=table, period=period),
                                                             (low, high)):
            row = totals.setdefault(target, [0, 0, 0.0, 0.0])
            row[0] += int(n)
            row[1] += int(ok)
            row[2] += float(total)
            row[3] = max(row[3], float(peak))
    return [Uptime(target, int(n), int(ok), total, peak) for target, (n, ok, total, peak) in sorted(totals.items())]
