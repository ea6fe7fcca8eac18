"""PostHog's funnels insight: how many persons did step 1, then step 2, ... (2 to 10 steps, each an event
and its property filters), each step within the conversion window of the person's step 1, all inside
the time range; per step the persons, the conversion from the first and from the previous step (percent,
one decimal) and the median and 90th percentile (nearest-rank) of the seconds from the previous step.

Orders, as PostHog defines them:
- ordered (default): the steps in order, any other events between them;
- strict: the steps as consecutive events of the person: any other event of theirs in between (in the
  range, whatever its name) breaks the attempt;
- unordered: the steps in any order; row i counts the persons who did any i of the steps within the
  window after the first of them (an event matching several steps counts for each).
A person may try many times: each step-1 event starts an attempt, and the person counts at the furthest
step any attempt reached. The times reported are those of the attempt kept: for ordered, the one that
started latest among those that got furthest (the latest start is the one with the most window left,
which is what makes one pass enough); for strict and unordered, the first that got furthest.
A person is their anonymous and identified ids together (agent/analytics/insight_sql.py person_rows).

Breakdown: by a property of the step-1 event that started the kept attempt (PostHog's first-touch
attribution); the top N values by persons entering the funnel, the rest as "other", each a funnel of
its own with the same shape.

Cost: one query reading the steps' events in the range (events_name_dims; strict reads every event in
the range of the persons who did step 1, through events_user_ts and events_anonymous_id, and the database
marks which step event follows another event of the person), held in memory as one (time, id, person,
step bits, breakdown value) row per matching event, then one pass per person in Python: about 4 us of CPU
(SQL included) and 230 bytes per matching event (bench/insights.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from agent.analytics.insight_query import FunnelQuery
from agent.analytics.insight_sql import filters_sql, person_rows, prop_text
from agent.analytics.stats import nearest_rank, percent
from agent.store.base import Store

Event = tuple[float, int, str | None]                   # time, step bits, breakdown value
Attempt = tuple[tuple[float, ...], str | None]          # step times, breakdown value


def ordered(events: Sequence[Event], steps: int, window: float) -> Attempt | None:
    chain: list[Attempt | None] = [None] * steps
    for ts, mask, value in events:
        if not mask & (mask - 1):               # one step (most events): no loop over the steps
            i = mask.bit_length() - 1
            if i == 0:
                chain[0] = ((ts,), value)
            elif i > 0:
                before = chain[i - 1]
                if before is not None and ts - before[0][0] <= window:
                    current = chain[i]
                    if current is None or before[0][0] > current[0][0]:
                        chain[i] = (before[0] + (ts,), before[1])
            continue
        for i in range(steps - 1, 0, -1):       # higher steps first: one event never does two steps
            before = chain[i - 1]
            if mask >> i & 1 and before is not None and ts - before[0][0] <= window:
                current = chain[i]
                if current is None or before[0][0] > current[0][0]:
                    chain[i] = (before[0] + (ts,), before[1])
        if mask & 1:
            chain[0] = ((ts,), value)
    for attempt in reversed(chain):
        if attempt is not None:
            return attempt
    return None


def strict(events: Sequence[Event], steps: int, window: float) -> Attempt | None:
    current: list[Attempt | None] = [None] * steps
    best: Attempt | None = None
    for ts, mask, value in events:
        following: list[Attempt | None] = [None] * steps
        if not mask & (mask - 1):               # one step or none (most events): no loop over the steps
            i = mask.bit_length() - 1
            if i < 0:
                current = following             # another event of the person: the attempts end
                continue
            before = current[i - 1] if i else None
            if i == 0:
                attempt: Attempt | None = ((ts,), value)
            elif before is not None and ts - before[0][0] <= window:
                attempt = (before[0] + (ts,), before[1])
            else:
                attempt = None
            following[i] = attempt
            current = following
            if attempt is not None and (best is None or len(attempt[0]) > len(best[0])):
                best = attempt
            continue
        if mask & 1:
            following[0] = ((ts,), value)
        for i in range(1, steps):
            before = current[i - 1]
            if mask >> i & 1 and before is not None and ts - before[0][0] <= window:
                following[i] = (before[0] + (ts,), before[1])
        current = following
        for attempt in reversed(following):
            if attempt is not None:
                if best is None or len(attempt[0]) > len(best[0]):
                    best = attempt
                break
    return best


def unordered(events: Sequence[Event], steps: int, window: float) -> Attempt | None:
    times: list[list[float]] = [[] for _ in range(steps)]
    for ts, mask, _ in events:
        for i in range(steps):
            if mask >> i & 1:
                times[i].append(ts)
    best: Attempt | None = None
    for ts, mask, value in events:
        if not mask:
            continue
        firsts = []
        for step_times in times:
            at = bisect_left(step_times, ts)
            if at < len(step_times) and step_times[at] - ts <= window:
                firsts.append(step_times[at])
        if best is None or len(firsts) > len(best[0]):
            best = (tuple(sorted(firsts)), value if mask & 1 else None)
            if len(firsts) == steps:
                break
    return best


ORDERS = {"ordered": ordered, "strict": strict, "unordered": unordered}


def _step_condition(store: Store, q: FunnelQuery, i: int) -> tuple[str, list[Any]]:
    spec = q.steps[i]
    cond, params = filters_sql(store.dialect, spec.event, spec.filters, "e.")
    return f"e.name = ?{cond}", [spec.event, *params]


def _query(store: Store, q: FunnelQuery) -> tuple[str, list[Any]]:
    cases, case_params = [], list[Any]()
    for i in range(len(q.steps)):
        cond, step_params = _step_condition(store, q, i)
        cases.append(f"CASE WHEN {cond} THEN {1 << i} ELSE 0 END")
        case_params += step_params
    columns, column_params = [" + ".join(cases)], case_params
    if q.breakdown is not None:
        cond, step_params = _step_condition(store, q, 0)
        columns.append(f"CASE WHEN {cond} THEN {prop_text(store.dialect, q.steps[0].event, q.breakdown.key, 'e.')} END")
        column_params = [*column_params, *step_params]
    names = sorted({str(step.event) for step in q.steps})
    marks = ", ".join("?" * len(names))
    where = f"e.name IN ({marks}) AND e.ts >= ? AND e.ts < ?"
    params = [*names, q.range.start, q.range.end]
    return person_rows(store.dialect, columns, column_params, where, params, anonymous=q.order == "strict")


def _candidates(rows: list[tuple[Any, ...]], window: float) -> list[int]:
    """The positions k of a person's step events (sorted) that may continue an attempt from the one before
    (it matches step i, the event k - 1 step i + 1, within the window). Anywhere else another event of the
    person in between changes nothing: the event could continue nothing anyway."""
    return [k for k in range(1, len(rows))
            if (rows[k - 1][3] << 1) & rows[k][3] and rows[k][0] - rows[k - 1][0] <= window]


def _json_rows(dialect: str, columns: Sequence[tuple[str, str]]) -> str:
    """FROM-able rows of a JSON array of arrays given as one parameter: (name, SQL type) by position."""
    if dialect == "postgres":
        picks = ", ".join(f"CAST(j ->> {i} AS {kind}) AS {name}" for i, (name, kind) in enumerate(columns))
        return f"(SELECT {picks} FROM json_array_elements(CAST(? AS json)) AS g(j))"
    picks = ", ".join(f"value ->> {i} AS {name}" for i, (name, _) in enumerate(columns))
    return f"(SELECT {picks} FROM json_each(?))"


REAL = "DOUBLE PRECISION"
# a strict funnel's pairs looked up per query: bounds the statement's JSON (~70 bytes a row)
GAPS_PER_QUERY = 20_000


async def _broken(store: Store, by_person: dict[str, list[tuple[Any, ...]]],
                  candidates: dict[str, list[int]]) -> set[int]:
    """The ids of the candidate step events (_candidates) that another event of their person (in the range,
    whatever its name) comes just before: for each, one index seek per id of the person after the step event
    before it, up to it in (ts, id) order: events_user_ts (user_id, ts) for the person's user id and their
    aliases' (person_aliases), events_anonymous_id for the anonymous ids of their step events."""
    found = await store.fetch(f"SELECT pa.person_id, pa.alias_id FROM person_aliases pa WHERE pa.person_id IN "
                              f"(SELECT j.p FROM {_json_rows(store.dialect, [('p', 'TEXT')])} j)",
                              [orjson.dumps([[p] for p in candidates]).decode()])
    aliases: dict[str, list[str]] = defaultdict(list)
    for person, alias in found:
        aliases[person].append(alias)
    gaps: list[list[Any]] = []          # [event id, who, kind (0 user, 1 anonymous), ts and id before, ts, id]
    for person, positions in candidates.items():
        rows = by_person[person]
        ids = [(person, 0), *((alias, 0) for alias in aliases.get(person, ())),
               *((anonymous, 1) for anonymous in sorted({r[-1] for r in rows if r[-1] is not None}))]
        for k in positions:
            before, row = rows[k - 1], rows[k]
            gaps += ([row[1], who, kind, before[0], before[1], row[0], row[1]] for who, kind in ids)
    plus = "+" if store.dialect == "sqlite" else ""
    between = "x.ts >= g.t1 AND x.ts <= g.t2 AND (x.ts > g.t1 OR x.id > g.i1) AND (x.ts < g.t2 OR x.id < g.i2)"
    source = _json_rows(store.dialect, [("n", "BIGINT"), ("who", "TEXT"), ("kind", "INTEGER"), ("t1", REAL),
                                        ("i1", "BIGINT"), ("t2", REAL), ("i2", "BIGINT")])
    sql = (f"SELECT DISTINCT g.n FROM {source} g WHERE CASE WHEN g.kind = 0 "
           f"THEN EXISTS (SELECT 1 FROM events x WHERE x.user_id = g.who AND {between}) "
           f"ELSE EXISTS (SELECT 1 FROM events x WHERE x.anonymous_id = g.who AND {plus}x.user_id IS NULL "
           f"AND {between}) END")
    broken: set[int] = set()
    for at in range(0, len(gaps), GAPS_PER_QUERY):
        rows = await store.fetch(sql, [orjson.dumps(gaps[at:at + GAPS_PER_QUERY]).decode()])
        broken.update(int(r[0]) for r in rows)
    return broken


async def _strict_attempts(store: Store, by_person: dict[str, list[tuple[Any, ...]]], steps: int, window: float,
                           with_breakdown: bool) -> list[Attempt]:
    """strict() over each person's step events, walking only the runs of events that continue one another
    with nothing of the person between them (the links): elsewhere an event starts afresh, so outside the
    runs a person's furthest attempt is their first step-1 event, and strict() keeps the first attempt that
    got furthest, which this keeps too (runs are taken in time order, a longer attempt replaces)."""
    candidates: dict[str, list[int]] = {}
    for person, rows in by_person.items():
        rows.sort()                             # by (ts, id): ids are unique
        positions = _candidates(rows, window)
        if positions:
            candidates[person] = positions
    broken = await _broken(store, by_person, candidates) if candidates else set()
    attempts: list[Attempt] = []
    for person, rows in by_person.items():
        best: Attempt | None = None
        for r in rows:
            if r[3] & 1:
                best = ((r[0],), r[4] if with_breakdown else None)
                break
        links = [k for k in candidates.get(person, ()) if rows[k][1] not in broken]
        at = 0
        while at < len(links):
            end = at
            while end + 1 < len(links) and links[end + 1] == links[end] + 1:
                end += 1
            run = rows[links[at] - 1:links[end] + 1]
            attempt = strict([(r[0], r[3], r[4] if with_breakdown else None) for r in run], steps, window)
            if attempt is not None and (best is None or len(attempt[0]) > len(best[0])):
                best = attempt
            at = end + 1
        if best is not None:
            attempts.append(best)
    return attempts


def _stats(attempts: list[Attempt], steps: int) -> list[dict[str, Any]]:
    reached = [0] * steps
    durations: list[list[float]] = [[] for _ in range(steps)]
    for times, _ in attempts:
        for i in range(len(times)):
            reached[i] += 1
            if i:
                durations[i].append(times[i] - times[i - 1])
    out = []
    for i in range(steps):
        spent = sorted(durations[i])
        out.append({"step": i + 1, "persons": reached[i],
                    "conversion_from_first": percent(reached[i], reached[0]),
                    "conversion_from_previous": percent(reached[i], reached[i - 1] if i else reached[0]),
                    "median_seconds_from_previous": _seconds(nearest_rank(spent, 50)) if i else None,
                    "p90_seconds_from_previous": _seconds(nearest_rank(spent, 90)) if i else None})
    return out


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def funnel(store: Store, q: FunnelQuery) -> dict[str, Any]:
    sql, params = _query(store, q)
    # rows as the driver gives them: (ts, id, person, step bits[, breakdown value]), grouped by person
    by_person: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in await store.fetch(sql, params):
        by_person[row[2]].append(row)
    walk = ORDERS[q.order]
    steps = len(q.steps)
    with_breakdown = q.breakdown is not None
    if q.order == "strict":
        attempts = await _strict_attempts(store, by_person, steps, q.window, with_breakdown)
    else:
        attempts = []
        for rows in by_person.values():
            rows.sort()                         # by (ts, id): ids are unique
            attempt = walk([(r[0], r[3], r[4] if with_breakdown else None) for r in rows], steps, q.window)
            if attempt is not None:
                attempts.append(attempt)
    by_person.clear()
    names = [{"event": step.event} for step in q.steps]
    document: dict[str, Any] = {"order": q.order, "window_seconds": q.window, "range": q.range.to_json(),
                                "steps": [{**names[i], **s} for i, s in enumerate(_stats(attempts, steps))]}
    if q.breakdown is not None:
        groups: dict[str | None, list[Attempt]] = defaultdict(list)
        for attempt in attempts:
            groups[attempt[1]].append(attempt)
        ranked = sorted(groups, key=lambda v: (-len(groups[v]), v is None, v or ""))
        top, rest = ranked[:q.breakdown.limit], ranked[q.breakdown.limit:]
        breakdown = [{"breakdown_value": v, "is_other": False,
                      "steps": [{**names[i], **s} for i, s in enumerate(_stats(groups[v], steps))]} for v in top]
        if rest:
            others = [a for v in rest for a in groups[v]]
            breakdown.append({"breakdown_value": None, "is_other": True,
                              "steps": [{**names[i], **s} for i, s in enumerate(_stats(others, steps))]})
        document["breakdown"] = breakdown
    return document
