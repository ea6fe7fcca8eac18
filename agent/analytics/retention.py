"""PostHog's retention insight: persons grouped into cohorts by the period (UTC day, or week starting on
Monday) of their cohort event, and for each cohort how many of them did the returning event in each
following period: the triangle table, counts and percentages of the cohort (one decimal).

- `type: first_time` (default): a person's cohort is the period of the first cohort event they ever did
  (matching its filters; before the periods too: someone who did it before is in no cohort). With
  `cohort.event: null` this is "first seen": the person's `first_seen` in the users table (identified
  persons: anonymous visitors have no users row).
- `type: recurring`: a person is in the cohort of every period in which they did the cohort event
  (`null`: any event).
- the returning event (`null`: any event) counts in a period after the cohort's: column k of cohort c
  counts its persons with a returning event in period c + k. Column 0 is the cohort itself (100%).
The periods are the `periods` whole periods ending with the one holding `to` (default now): the last
cohort is the current, partial period, and every cohort has one column fewer than the one before.
A person is their anonymous and identified ids together (agent/analytics/insight_sql.py person_rows).

Cost, from the person bitmaps (agent/analytics/insight_persons.py) when they cover the query (named
cohort and returning events without property filters): the day bitmaps of the two events over the
periods (first time: and the cohort event's over the store's history before them), ORed per period and
intersected, plus the anonymous events of the two names; it grows with the persons, not the events.
Otherwise (filters, any event, first seen), from the events: one query per event: the cohort event's
(first_time: all of its events before the end, as the first ever is wanted) and the returning event's in
the periods, each grouped in SQL into distinct (person, period) pairs, so what Python holds is bounded
by persons x periods, never by events. "Any event" reads every event of the periods (events_name_dims
has no time-first order): for a store of millions of events, name the event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pyroaring import BitMap

from agent.analytics.insight_persons import retention_sets
from agent.analytics.insight_query import EventSpec, RetentionQuery, period_start
from agent.analytics.insight_sql import bucket_sql, filters_sql, person_rows
from agent.analytics.stats import percent
from agent.analytics.timerange import iso_time
from agent.store.base import Store


def _event_where(store: Store, spec: EventSpec, start: float | None, end: float) -> tuple[str, list[Any]]:
    cond, params = filters_sql(store.dialect, spec.event, spec.filters, "e.")
    where, out = "e.ts < ?", list[Any]([end])
    if start is not None:
        where, out = "e.ts >= ? AND e.ts < ?", [start, end]
    if spec.event is not None:
        where, out = f"e.name = ? AND {where}", [spec.event, *out]
    return where + cond, [*out, *params]


async def _person_periods(store: Store, q: RetentionQuery, spec: EventSpec) -> list[tuple[str, int]]:
    """Distinct (person, period) of `spec`'s events in the periods."""
    r = q.range
    where, params = _event_where(store, spec, r.start, r.end)
    inner, inner_params = person_rows(store.dialect, [bucket_sql(store.dialect, q.period, "e.")], [], where, params)
    rows = await store.fetch(f"SELECT person, c0 FROM ({inner}) p GROUP BY person, c0", inner_params)
    return [(person, int(period)) for person, period in rows]


async def _first_times(store: Store, q: RetentionQuery) -> list[tuple[str, int]]:
    """(person, period) of each person whose first cohort event (or first seen) is in the periods."""
    r = q.range
    period = bucket_sql(store.dialect, q.period, "f.")
    if q.cohort.event is None:
        sql = (f"SELECT person, {period} FROM (SELECT coalesce(pa.person_id, u.user_id) AS person, "
               "min(u.first_seen) AS ts FROM users u LEFT JOIN person_aliases pa ON pa.alias_id = u.user_id "
               "WHERE u.first_seen < ? GROUP BY coalesce(pa.person_id, u.user_id)) f WHERE f.ts >= ?")
        rows = await store.fetch(sql, (r.end, r.start))
    else:
        where, params = _event_where(store, q.cohort, None, r.end)
        inner, inner_params = person_rows(store.dialect, [], [], where, params)
        sql = (f"SELECT person, {period} FROM (SELECT person, min(ts) AS ts FROM ({inner}) p GROUP BY person) f "
               "WHERE f.ts >= ?")
        rows = await store.fetch(sql, (*inner_params, r.start))
    return [(person, int(p)) for person, p in rows]


async def _from_events(store: Store, q: RetentionQuery) -> Callable[[int, int], int]:
    """(cohort period, column) -> persons, from the events (what the person bitmaps do not cover)."""
    if q.type == "first_time":
        entries = await _first_times(store, q)
    else:
        entries = await _person_periods(store, q, q.cohort)
    cohorts: dict[int, set[str]] = defaultdict(set)
    for person, p in entries:
        cohorts[p].add(person)
    returned: dict[str, set[int]] = defaultdict(set)
    for person, p in await _person_periods(store, q, q.returning):
        returned[person].add(p)

    def count(c: int, k: int) -> int:
        members = cohorts.get(c, set())
        if k == 0:
            return len(members)
        return sum(1 for person in members if c + k in returned.get(person, ()))
    return count


async def _from_bitmaps(store: Store, q: RetentionQuery) -> Callable[[int, int], int] | None:
    """The same from the person bitmaps (agent/analytics/insight_persons.py), or None when they do not
    cover the query: popcounts of cohort AND returning."""
    sets = await retention_sets(store, q)
    if sets is None:
        return None
    cohorts, returned = sets
    empty = BitMap()

    def count(c: int, k: int) -> int:
        members = cohorts.get(c, empty)
        return len(members) if k == 0 else members.intersection_cardinality(returned.get(c + k, empty))
    return count


async def retention(store: Store, q: RetentionQuery) -> dict[str, Any]:
    count = await _from_bitmaps(store, q) or await _from_events(store, q)
    table = []
    for c in range(q.first, q.first + q.periods):
        size = count(c, 0)
        values = [{"persons": size, "percentage": 100.0 if size else 0.0}]
        for k in range(1, q.first + q.periods - c):
            n = count(c, k)
            values.append({"persons": n, "percentage": percent(n, size)})
        table.append({"date": iso_time(period_start(q.period, c)), "persons": size, "values": values})
    return {"period": q.period, "periods": q.periods, "type": q.type, "timezone": "UTC", "week_start": "monday",
            "range": q.range.to_json(), "cohort": {"event": q.cohort.event},
            "returning": {"event": q.returning.event}, "cohorts": table}
