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

Cost: one query reading the steps' events in the range (events_name_dims), held in memory as one (time, id,
person, step bits, breakdown value) row per matching event, then one pass per person in Python: about 2 us
of CPU at 10M (SQL included; 4 at 1M) and 230 bytes per matching event (bench/insights.py). Strict reads
the same rows (and each event's own user or anonymous id) and then asks the database whether another event
of the person lies between two of their step events only where that can change the answer (_candidates,
_strict_attempts): one index look-up per such pair and user id of the person (events_by_user (user_id, ts,
id), agent/store/user_index.py: their own and each alias's), batched as JSON arrays, after reading once the
events in the range of the anonymous ids their step events carry without a user id (events_anonymous_id).
So its cost grows with the step events, not with every event of the persons: at 10M events the bench's
30-day funnel has 464,666 step events, 89,463 pairs that could continue an attempt, 28,448 of them looked
up (4 rounds), ~1.5 s of CPU against ~0.9 for ordered (it was 19.7 s reading the 5601 persons' every event
in the range, past the 10 s limit). The ids looked at are the person's user id, their aliases' and the
anonymous ids their step events in the range carry without a user id: an anonymous id of theirs with only
other events in the range (another device, anonymous after its login) is not seen. events_anonymous_id
holds no time: reading an anonymous id's events in the range reads all of its events (few for a visitor
before login; all of the person's when an SDK keeps sending it after login); an index (anonymous_id, ts)
WHERE user_id IS NULL would read only those in the range.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import compress, count, islice, repeat
from operator import and_, itemgetter, lshift
from typing import Any

import orjson

from agent.analytics.insight_query import FunnelQuery
from agent.analytics.insight_sql import filters_sql, person_rows, prop_text
from agent.analytics.stats import nearest_rank, percent
from agent.store.base import Store

Event = tuple[float, int, str | None]                   # time, step bits, breakdown value
Attempt = tuple[tuple[float, ...], str | None]          # step times, breakdown value
Ids = tuple[list[str], list[tuple[float, int]]]         # a person's user ids, their anonymous events


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
    return _strict_walk(events, steps, window)[0]


def _strict_walk(events: Sequence[Event], steps: int, window: float) -> tuple[Attempt | None, int]:
    """strict()'s attempt and the index of the event that completed it (-1 without one)."""
    current: list[Attempt | None] = [None] * steps
    best: Attempt | None = None
    at = -1
    for k, (ts, mask, value) in enumerate(events):
        following: list[Attempt | None] = [None] * steps
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
                    best, at = attempt, k
                break
    return best, at


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
    masks = list(map(itemgetter(3), rows))     # C loops: most pairs are no candidates (464,666 rows at 10M)
    follows = compress(count(1), map(and_, map(lshift, masks, repeat(1)), islice(masks, 1, None)))
    return [k for k in follows if rows[k][0] - rows[k - 1][0] <= window]


def _json_rows(dialect: str, columns: Sequence[tuple[str, str]]) -> str:
    """FROM-able rows of a JSON array of arrays given as one parameter: (name, SQL type) by position."""
    if dialect == "postgres":
        picks = ", ".join(f"CAST(j ->> {i} AS {kind}) AS {name}" for i, (name, kind) in enumerate(columns))
        return f"(SELECT {picks} FROM json_array_elements(CAST(? AS json)) AS g(j))"
    picks = ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, (name, _) in enumerate(columns))
    return f"(SELECT {picks} FROM json_each(?))"            # not ->>: SQLite 3.38+ only


REAL = "DOUBLE PRECISION"
# a strict funnel's pairs looked up per query: bounds the statement's JSON (~70 bytes a row)
GAPS_PER_QUERY = 20_000


def _lookup_sql(dialect: str) -> str:
    """The step events (their ids, i2) of the JSON rows [user id, ts and id before, ts and id, own events]
    that an event of that user id lies between, in (ts, id) order, through events_by_user (user_id, ts, id):
    on SQLite a WITHOUT ROWID table whose key holds the id, so each look-up is one seek. On PostgreSQL a
    view over the events whose index events_user_ts (user_id, ts) holds no id: an event strictly
    inside the times is looked for index-only, and the ids are read (from the table) only when the user id
    has more events from the one time to the other than its own step events there (g.own; a range, not
    `IN (t1, t2)`, which the planner did not take as an index condition): 10 -> 2 us a look-up at 10M
    events, where each of the endpoints was a row fetched from the table."""
    source = _json_rows(dialect, [("who", "TEXT"), ("t1", REAL), ("i1", "BIGINT"), ("t2", REAL), ("i2", "BIGINT"),
                                  ("own", "INTEGER")])
    exact = "x.ts >= g.t1 AND x.ts <= g.t2 AND (x.ts > g.t1 OR x.id > g.i1) AND (x.ts < g.t2 OR x.id < g.i2)"
    own = "x.user_id = g.who"
    if dialect == "sqlite":
        found = f"EXISTS (SELECT 1 FROM events_by_user x WHERE {own} AND {exact})"
    else:
        found = (f"(EXISTS (SELECT 1 FROM events_by_user x WHERE {own} AND x.ts > g.t1 AND x.ts < g.t2) OR "
                 f"((SELECT count(*) FROM events_by_user x WHERE {own} AND x.ts >= g.t1 AND x.ts <= g.t2) > g.own "
                 f"AND EXISTS (SELECT 1 FROM events_by_user x WHERE {own} AND {exact})))")
    return f"SELECT DISTINCT g.i2 FROM {source} g WHERE {found}"


def _anonymous_sql(dialect: str) -> str:
    """(anonymous id, ts, id) of the anonymous events in [?, ?) of the JSON rows [anonymous id]."""
    # by the anonymous ids (events_anonymous_id), not the partial index events_anonymous_name (name, ts)
    # WHERE user_id IS NULL, which SQLite could pick for `user_id IS NULL`: all the anonymous events
    plus = "+" if dialect == "sqlite" else ""
    return (f"SELECT x.anonymous_id, x.ts, x.id FROM events x WHERE x.anonymous_id IN (SELECT j.a FROM "
            f"{_json_rows(dialect, [('a', 'TEXT')])} j) AND {plus}x.user_id IS NULL AND x.ts >= ? AND x.ts < ?")


async def _ids(store: Store, by_person: dict[str, list[tuple[Any, ...]]], persons: Iterable[str],
               start: float, end: float) -> dict[str, Ids]:
    """Each person's ids whose events are theirs: their user id and their aliases' (person_aliases), and the
    (ts, id) of the anonymous events in the range of the anonymous ids their step events carry without a
    user id, sorted. Those are read once per id here (events_anonymous_id: the index has no time, so a
    look-up per pair would read the id's events once per pair; an SDK that keeps sending the anonymous id
    after login puts it on every event of the person). Rows are (ts, id, person, step bits[, breakdown
    value], the alias an identified event is stored under or None, the anonymous id of an anonymous event
    or None): insight_sql.person_rows(anonymous=True)."""
    persons = list(persons)
    found = await store.fetch(f"SELECT pa.person_id, pa.alias_id FROM person_aliases pa WHERE pa.person_id IN "
                              f"(SELECT j.p FROM {_json_rows(store.dialect, [('p', 'TEXT')])} j)",
                              [orjson.dumps([[p] for p in persons]).decode()])
    aliases: dict[str, list[str]] = defaultdict(list)
    for person, alias in found:
        aliases[person].append(alias)
    anonymous: dict[str, set[str]] = {}
    for person in persons:
        seen = set(map(itemgetter(-1), by_person[person]))
        seen.discard(None)
        if seen:
            anonymous[person] = seen
    events: dict[str, list[tuple[float, int]]] = defaultdict(list)
    if anonymous:
        wanted = sorted(set().union(*anonymous.values()))
        for who, ts, id_ in await store.fetch(_anonymous_sql(store.dialect),
                                              [orjson.dumps([[a] for a in wanted]).decode(), start, end]):
            events[who].append((ts, id_))
    out = {}
    for person in persons:
        mine = sorted(e for who in anonymous.get(person, ()) for e in events.get(who, ()))
        out[person] = ([person, *aliases.get(person, ())], mine)
    return out


async def _broken(store: Store, by_person: dict[str, list[tuple[Any, ...]]], ids: dict[str, Ids],
                  candidates: dict[str, list[int]]) -> set[int]:
    """The ids of the candidate step events (_candidates) that another event of their person (in the range,
    whatever its name) comes just before, in (ts, id) order after the step event before it: of one of
    their anonymous ids, found in the events _ids read; else of a user id of theirs, one index look-up per
    pair and user id (_lookup_sql)."""
    broken: set[int] = set()
    gaps: list[list[Any]] = []      # [user id, ts and id before, ts and id, own step events of the two]
    for person, positions in candidates.items():
        rows = by_person[person]
        users, anonymous = ids[person]
        for k in positions:
            before, row = rows[k - 1], rows[k]
            if anonymous:
                at = bisect_right(anonymous, (before[0], before[1]))
                if at < len(anonymous) and anonymous[at] < (row[0], row[1]):
                    broken.add(row[1])
                    continue
            owners = [r[-2] or (person if r[-1] is None else None) for r in (before, row)]     # their user ids
            for user in users:
                gaps.append([user, before[0], before[1], row[0], row[1], owners.count(user)])
    sql = _lookup_sql(store.dialect)
    for at in range(0, len(gaps), GAPS_PER_QUERY):
        rows = await store.fetch(sql, [orjson.dumps(gaps[at:at + GAPS_PER_QUERY]).decode()])
        broken.update(int(r[0]) for r in rows)
    return broken


def _runs(positions: list[int]) -> list[list[int]]:
    """Consecutive positions together: [1, 2, 5] -> [[1, 2], [5]]."""
    runs = [[positions[0]]]
    for k in positions[1:]:
        if k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


def _best(rows: list[tuple[Any, ...]], links: list[int], steps: int, window: float, value_at: int | None,
          best: tuple[Attempt, int] | None) -> tuple[Attempt, int] | None:
    """The person's first attempt that got furthest, and the position of the event that completed it, over
    the runs of `links` (sorted positions whose step event continues the one before: nothing of the person
    between them), after `best` (earlier). Elsewhere an event starts afresh: it continues nothing. The runs
    are walked in time order, so a later attempt replaces only a shorter one."""
    for run in _runs(links) if links else ():
        start = run[0] - 1
        events = [(r[0], r[3], None if value_at is None else r[value_at]) for r in rows[start:run[-1] + 1]]
        attempt, at = _strict_walk(events, steps, window)
        if attempt is not None and (best is None or len(attempt[0]) > len(best[0][0])):
            best = attempt, start + at
    return best


# a strict funnel's pairs of one step-1 and one step-2 event (alone: nothing before or after could continue)
# looked up per person in the first round, then twice as many each round while they may still matter
FIRST_PAIRS = 4


async def _strict_attempts(store: Store, by_person: dict[str, list[tuple[Any, ...]]], q: FunnelQuery) -> list[Attempt]:
    """strict()'s attempt of each person from their step events and the look-ups of _broken: a person's
    furthest attempt is their first step-1 event unless a run of step events continuing one another
    (_candidates: a pair, or several in a row) has nothing of the person between them. Every pair of the
    runs of several pairs is looked up. A pair alone gets an attempt of 2 steps at most, and only from a
    step-1 event to a step-2 one: those are looked up in time order, a few per person per round, while no
    attempt of 2 steps or more is known before them (the first that got furthest is kept), so a person
    whose runs reached 3 steps, or who converted to step 2 early, costs no more look-ups. At 10M events
    (the 4-step bench funnel): 89,463 candidate pairs, 74,398 of them alone."""
    steps, window = len(q.steps), q.window
    value_at = 4 if q.breakdown is not None else None
    several: dict[str, list[int]] = {}              # pairs in runs of several: all looked up
    alone: dict[str, list[int]] = {}                # pairs alone from a step-1 to a step-2 event, in time order
    for person, rows in by_person.items():
        rows.sort()                                 # by (ts, id): ids are unique
        positions = _candidates(rows, window)
        for run in _runs(positions) if positions else ():
            if len(run) > 1:
                several.setdefault(person, []).extend(run)
            elif rows[run[0] - 1][3] & 1 and rows[run[0]][3] & 2:
                alone.setdefault(person, []).append(run[0])
    todo = {person: list(positions) for person, positions in several.items()}
    looked = {person: positions[:FIRST_PAIRS] for person, positions in alone.items()}
    for person, positions in looked.items():
        todo.setdefault(person, []).extend(positions)
    ids = await _ids(store, by_person, todo, q.range.start, q.range.end) if todo else {}
    broken = await _broken(store, by_person, ids, todo) if todo else set()
    linked = {person: [k for k in positions if by_person[person][k][1] not in broken]
              for person, positions in several.items()}
    batch = FIRST_PAIRS
    while True:
        batch *= 2
        todo = {}
        for person, seen in looked.items():
            rows = by_person[person]
            if len(seen) == len(alone[person]) or any(rows[k][1] not in broken for k in seen):
                continue                            # looked at all, or the earliest one alone that converts
            found = _best(rows, linked.get(person, []), steps, window, value_at, None)
            if found is not None and len(found[0][0]) >= 3:
                continue
            known = found[1] if found is not None and len(found[0][0]) == 2 else len(rows)
            more = [k for k in alone[person][len(seen):len(seen) + batch] if k < known]
            if more:
                todo[person] = more
                seen.extend(more)
        if not todo:
            break
        broken |= await _broken(store, by_person, ids, todo)
    attempts: list[Attempt] = []
    for person, rows in by_person.items():
        best: tuple[Attempt, int] | None = None
        for k, r in enumerate(rows):
            if r[3] & 1:
                best = ((r[0],), None if value_at is None else r[value_at]), k
                break
        links = sorted([*linked.get(person, ()), *(k for k in looked.get(person, ()) if rows[k][1] not in broken)])
        best = _best(rows, links, steps, window, value_at, best)
        if best is not None:
            attempts.append(best[0])
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
        attempts = await _strict_attempts(store, by_person, q)
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
