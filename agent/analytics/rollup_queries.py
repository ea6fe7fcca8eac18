"""The analytics figures from the rollups (agent/store/rollups.py), with the same signatures, definitions and
results as agent/analytics/queries.py, which they replace when no release is asked for (the rollups are
not kept per release: `release=` reads the events as before).

A range [start, end) of arbitrary instants is cut in three (`pieces`): its whole UTC days from the day
tables, the whole hours left at its two edges from the hour tables, and the partial hours left at its
two ends from the events themselves, so every count stays exact while a request reads at most ~2 hours
of events. Persons active over many days come from the 31-day blocks (one row per person and block,
the days a bitmask), so "active in 30 days" costs persons, not active days or events. Percentiles come
from the value sketches: within rollups.RELATIVE_ERROR (0.99 %) of the exact nearest-rank value.

The persons active in a range are a Roaring bitmap from the person bitmaps (agent/analytics/person_sets.py,
migration 12), read once per request and range (`persons`, cached within a request opened by
`request_cache()`: the dashboard asks for them twice, business metrics for the same 30 days as MAU and as
the retained users' current range); roles by AND with the role bitmaps. At 10M bench events this took
business metrics from 287 to 134-150 ms of CPU over 30 days (dashboard 228 -> 146-160), same answers.

Read API for other modules (the insights' unfiltered trends): `pieces`, `tally` (events, values and
their sum per name, label and outcome over any range) and `active_persons` (the SQL selecting the persons
active in a range).
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyroaring import BitMap

from agent.analytics import person_sets as ps, queries as q
from agent.analytics.pieces import HOURS_PER_DAY, Pieces, pieces
from agent.analytics.queries import CoachSessions, ValueStats, placeholders
from agent.analytics.timerange import TimeRange
from agent.store import rollup_fold, rollups as ru, signup_bits as sb
from agent.store.base import Store


def _buckets(column: str, ranges: Sequence[tuple[float, float]]) -> tuple[str, list[Any]]:
    """'(col >= ? AND col < ?) OR ...' over the ranges."""
    return (" OR ".join(f"({column} >= ? AND {column} < ?)" for _ in ranges),
            [v for pair in ranges for v in pair])


# --- counts and values ---------------------------------------------------------------------------

def _weeks_and_days(days: tuple[int, int]) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """[first, past) day buckets as their whole 7-day blocks ([first, past) week buckets, None without one)
    and the day ranges before and after them."""
    first, past = days
    week_first, week_past = -(-first // ru.WEEK_DAYS), past // ru.WEEK_DAYS
    if week_first >= week_past:
        return None, [days]
    return (week_first, week_past), [(a, b) for a, b in ((first, week_first * ru.WEEK_DAYS),
                                                         (week_past * ru.WEEK_DAYS, past)) if a < b]


def _spans(p: Pieces, kind: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """(table, bucket ranges) of the count or sketch rollups (kind 'rollup_counts' or 'rollup_values')
    covering the range's whole days and edge hours: its whole 7-day blocks from the week table (migration
    14), the days before and after them from the day table, the edge hours' whole 6-hour blocks from the 6h
    table (migration 16), the other edge hours from the hour table. At 10M
    bench events a 30-day range read ~22,000 count rows and ~40,000 sketch bins from 30 day buckets; ~4
    weeks and the edge days read about a third of that, and the week rows do not grow with the events."""
    out: list[tuple[str, list[tuple[int, int]]]] = []
    if p.days:
        weeks, days = _weeks_and_days(p.days)
        if weeks:
            out.append((f"{kind}_week", [weeks]))
        if days:
            out.append((f"{kind}_day", days))
    hours: list[tuple[int, int]] = []
    blocks: list[tuple[int, int]] = []
    for first, past in p.hours:          # up to 23 hours at each edge: their 6-hour blocks and <= 5 single hours
        block_first, block_past = -(-first // ru.SIX_HOURS), past // ru.SIX_HOURS
        if block_first < block_past:
            blocks.append((block_first, block_past))
            hours += [(a, b) for a, b in ((first, block_first * ru.SIX_HOURS), (block_past * ru.SIX_HOURS, past))
                      if a < b]
        else:
            hours.append((first, past))
    if blocks:
        out.append((f"{kind}_6h", blocks))
    if hours:
        out.append((f"{kind}_hour", hours))
    return out


Tally = dict[tuple[str, str, str], list[Any]]       # (name, label, outcome) -> [events, values, sum]

_SNAPPED: contextvars.ContextVar[dict[tuple[int, float, float], TimeRange] | None] = \
    contextvars.ContextVar("snapped_cache", default=None)
HOUR_NAMES_SQL = "SELECT DISTINCT name FROM rollup_counts_hour WHERE bucket >= ? AND bucket < ?"
# an event of those names in [start, end) received before the request asked (events_name_ts, in ts order: the
# first one ends it; under live ingest the ones after `end` are those that arrived since, a request's worth)
STORED_SQL = "SELECT 1 FROM events WHERE name IN {marks} AND ts >= ? AND ts < ? AND received_at < ? LIMIT 1"


async def snapped(store: Store, r: TimeRange) -> TimeRange:
    """The range with its end moved to the end of its hour, or of its day, when no stored event lies
    between (a range ending now, as the dashboards' do by default, or when the events end): the same
    events, so the same figures, read from the hour or day rollups instead of the events of the end's
    partial hour and the hour rows of its partial day. At 10M bench events those were ~4,700 events
    (the range ends 17 s before an hour) and 17 edge hours, read by every figure: ~20 ms of a 30-day
    dashboard. Only the end moves (retention deletes the oldest events, whose buckets may then still
    count them: the start stays exact).

    "Stored" means received before the request asked (`r.asked`, its "now"; when snapped runs for a range
    without one): under live ingest, events stamped at or after a range ending now keep arriving while the
    request runs, and the soak (`bench/soak.py`, 8,306 events/s in one hour) found every request then read
    the current hour's piece from the events: up to 5 million of them, 25 s a 7-day dashboard, its long
    read holding the WAL past its bound. Those arrivals are counted or not, as any event acknowledged while
    a request runs (rollup_fold.settled_once); an event received before, stamped after the end (a client
    clock ahead, up to events.max_future_skew), still keeps the end where it is. Per check: the names of
    the hours' count rows, then one index seek per name (events_name_ts)."""
    cache = _SNAPPED.get()
    key = (id(store), r.start, r.end)
    if cache is not None and key in cache:
        return cache[key]
    found = await _snap(store, r)
    if cache is not None:
        cache[key] = found
    return found


async def _snap(store: Store, r: TimeRange) -> TimeRange:
    asked = time.time() if r.asked is None else r.asked
    hour = math.floor(r.end / ru.HOUR)
    if r.end > hour * ru.HOUR:                  # the end's hour: any event at or after the end?
        if await _stored(store, hour, hour + 1, r.end, asked):
            return r
        hour += 1
    day_end = math.ceil(hour / HOURS_PER_DAY) * HOURS_PER_DAY
    if hour < day_end and await _stored(store, hour, day_end, hour * float(ru.HOUR), asked):
        return TimeRange(r.start, hour * float(ru.HOUR), r.asked)
    return TimeRange(r.start, day_end * float(ru.HOUR), r.asked)


async def trend_range(store: Store, r: TimeRange, interval: str) -> TimeRange:
    """`snapped` for a trend (agent/analytics/trends_rollups.py, insight_persons.py): the end moves within
    the bucket that holds it (a day for day, week and month buckets, whose bounds are days; its hour for
    hourly ones, the next hour being the next bucket)."""
    found = await snapped(store, r)
    if interval == "hour":
        return TimeRange(r.start, min(found.end, math.ceil(r.end / ru.HOUR) * float(ru.HOUR)), r.asked)
    return found


async def _stored(store: Store, first_hour: int, past_hour: int, start: float, asked: float) -> bool:
    """Whether an event received before `asked` lies in [start, the end of hour past_hour)."""
    names = [name for (name,) in await store.fetch(HOUR_NAMES_SQL, (first_hour, past_hour))]
    return bool(names) and bool(await store.fetch(STORED_SQL.format(marks=placeholders(len(names))),
                                                  (*names, start, past_hour * float(ru.HOUR), asked)))


# any count row in [?, ?) day buckets: every stored event has one, the fold having run before a rollup read
DAYS_USED_SQL = "SELECT 1 FROM rollup_counts_day WHERE bucket >= ? AND bucket < ? LIMIT 1"
_WEEK_ENDS: contextvars.ContextVar[dict[tuple[int, int], bool] | None] = \
    contextvars.ContextVar("week_ends_cache", default=None)


async def week_pieces(store: Store, r: TimeRange) -> Pieces:
    """`pieces` of the snapped range, its whole days run on to the end of their last week when the range
    ends with them and the week's later days hold no count row (no stored event: a range ending now, or
    when the events end): the week row then equals those days, and the counts, sketches and per-person
    work read it instead of the day rows. The bench's 30-day range ends 2 days into a week: at 10M
    bench events those 2 days read ~1,400 count rows, ~2,700 sketch bins and the top persons' 2 days,
    ~4 ms of a 30-day dashboard (~1 at 1M). One index seek per request and end (`request_cache`)."""
    p = pieces(await snapped(store, r))
    if not p.days or p.days[1] % ru.WEEK_DAYS == 0:
        return p
    past = p.days[1]
    if any(b > past * HOURS_PER_DAY for _, b in p.hours) or any(b > past * float(ru.DAY) for _, b in p.raw):
        return p                                # the range ends inside a day
    week_end = (past // ru.WEEK_DAYS + 1) * ru.WEEK_DAYS
    cache = _WEEK_ENDS.get()
    key = (id(store), past)
    if cache is not None and key in cache:
        used = cache[key]
    else:
        used = bool(await store.fetch(DAYS_USED_SQL, (past, week_end)))
        if cache is not None:
            cache[key] = used
    return p if used else dataclasses.replace(p, days=(p.days[0], week_end))


async def tally(store: Store, names: Sequence[str], r: TimeRange) -> Tally:
    """(name, label, outcome) -> [events, values, sum of values] of the names in the range, exact; label
    and outcome are '' but for the names that keep them (rollups.LABELLED, rollups.OUTCOMES)."""
    p = await week_pieces(store, r)
    marks = placeholders(len(names))
    out: Tally = {}

    def add(name: str, label: Any, outcome: Any, n: Any, nv: Any, total: Any) -> None:
        entry = out.setdefault((name, label, outcome), [0, 0, 0.0])
        entry[0] += int(n)
        entry[1] += int(nv)
        entry[2] += float(total or 0.0)

    for table, ranges in _spans(p, "rollup_counts"):
        for row in await _rolled(store, COUNTS_SQL, table, ranges, names):
            add(*row)
    for start, end in p.raw:
        sql = (f"SELECT name, label, outcome, count(*), count(value), sum(value) FROM events WHERE name IN {marks} "
               "AND ts >= ? AND ts < ? GROUP BY name, label, outcome")
        for name, label, outcome, n, nv, total in await store.fetch(sql, (*names, start, end)):
            add(name, *ru.dims(name, label, outcome), n, nv, total)
    return out


COUNTS_SQL = "SELECT name, label, outcome, sum(events), sum(nvalues), sum(vsum) FROM {t} WHERE {m}({w}) " \
             "GROUP BY name, label, outcome"
SKETCH_SQL = "SELECT metric, bin, sum(count) FROM {t} WHERE {m}({w}) GROUP BY metric, bin"
# every name's rows at once (a request's cache): the labels only the insights read (page_load's page, as many
# as the application has pages) folded into one row per name and outcome, which is all the documents read
def _counts_all(folded: Iterable[str]) -> str:
    names = ", ".join(f"'{name}'" for name in sorted(folded))          # constants, not input
    return f"SELECT name, CASE WHEN name IN ({names}) THEN '' ELSE label END AS l, outcome, sum(events), " \
           "sum(nvalues), sum(vsum) FROM {t} WHERE {m}({w}) GROUP BY name, l, outcome"


COUNTS_ALL_SQL = _counts_all(ru.LABELLED_SINCE_13)
# a request that reads no label but these (request_cache(labels=...)): the others folded as well (business
# metrics reads web_vitals' only; the sessions' coaches and goals' categories made most of the rows of a
# read of every name: in-process CPU of its 4 reads at 10M bench events 8.0 -> 5.1 ms, of the 30-day
# request 36.5 -> 31.9 ms; 4.7 -> 3.2 and 28.4 -> 24.5 at 1M)
_COUNTS_ALL: contextvars.ContextVar[str] = contextvars.ContextVar("counts_all_sql", default=COUNTS_ALL_SQL)
_ROLLED: contextvars.ContextVar[dict[tuple[Any, ...], list[tuple[Any, ...]]] | None] = \
    contextvars.ContextVar("rolled_cache", default=None)


async def _rolled(store: Store, sql: str, table: str, ranges: Sequence[tuple[Any, Any]],
                  names: Sequence[str] | tuple[str, str]) -> list[tuple[Any, ...]]:
    """The grouped rows of a count (names: a list, column `name`) or sketch (names: (low, high) of column
    `metric`) rollup table over bucket ranges. Within a request_cache() the rows of EVERY name are read
    once per table and ranges and filtered here: the tables are keyed by bucket first, so a read for a
    few names scans every row of the buckets anyway (at 10M bench events 739 count rows and 1,333 sketch
    bins a day); business metrics asked for them six and three times."""
    where, params = _buckets("bucket", ranges)
    sketch = table.startswith("rollup_values")
    cache = _ROLLED.get()
    if cache is None:
        if sketch:
            return await store.fetch(sql.format(t=table, m="metric >= ? AND metric <= ? AND ", w=where),
                                     (*names, *params))
        return await store.fetch(sql.format(t=table, m=f"name IN {placeholders(len(names))} AND ", w=where),
                                 (*names, *params))
    key = (id(store), sql, table, *params)
    rows = cache.get(key)
    if rows is None:
        everything = sql if sketch else _COUNTS_ALL.get()
        rows = cache[key] = await store.fetch(everything.format(t=table, m="", w=where), params)
    if sketch:
        low, high = names
        return [row for row in rows if low <= row[0] <= high]
    wanted = set(names)
    return [row for row in rows if row[0] in wanted]


def _stats(t: Tally, name: str) -> ValueStats:
    n = nv = 0
    total = 0.0
    for (found, _, _), (e, v, s) in t.items():
        if found == name:
            n, nv, total = n + e, nv + v, total + s
    return ValueStats(n, nv, total)


async def counts(store: Store, names: Sequence[str], r: TimeRange, release: str | None = None) -> dict[str, int]:
    if release is not None:
        return await q.counts(store, names, r, release)
    t = await tally(store, names, r)
    return {name: _stats(t, name).events for name in names}


async def value_stats(store: Store, names: Sequence[str], r: TimeRange,
                      release: str | None = None) -> dict[str, ValueStats]:
    if release is not None:
        return await q.value_stats(store, names, r, release)
    t = await tally(store, names, r)
    return {name: _stats(t, name) for name in names}


async def outcome_counts(store: Store, name: str, r: TimeRange, release: str | None = None) -> dict[str | None, int]:
    if release is not None:
        return await q.outcome_counts(store, name, r, release)
    out: dict[str | None, int] = {}
    for (_, _, outcome), (n, _, _) in (await tally(store, (name,), r)).items():
        key = outcome or None
        out[key] = out.get(key, 0) + n
    return out


async def server_errors(store: Store, r: TimeRange, release: str | None = None) -> int:
    if release is not None:
        return await q.server_errors(store, r, release)
    return sum(n for (_, _, outcome), (n, _, _) in (await tally(store, ("api_request",), r)).items()
               if "500" <= outcome <= "599")


async def labelled_outcome_counts(store: Store, name: str, r: TimeRange,
                                  release: str | None = None) -> dict[tuple[str | None, str | None], int]:
    if release is not None:
        return await q.labelled_outcome_counts(store, name, r, release)
    out: dict[tuple[str | None, str | None], int] = {}
    for (_, label, outcome), (_, nv, _) in (await tally(store, (name,), r)).items():
        if nv:
            key = (label or None, outcome or None)
            out[key] = out.get(key, 0) + nv
    return out


async def goal_categories(store: Store, r: TimeRange,
                          release: str | None = None) -> dict[str | None, tuple[int, ValueStats]]:
    if release is not None:
        return await q.goal_categories(store, r, release)
    created: dict[str | None, int] = {}
    completed: dict[str | None, ValueStats] = {}
    for (name, label, _), (n, nv, total) in (await tally(store, ("goal_created", "goal_completed"), r)).items():
        category = label or None
        if name == "goal_created":
            created[category] = created.get(category, 0) + n
        else:
            old = completed.get(category, ValueStats())
            completed[category] = ValueStats(old.events + n, old.values + nv, old.total + total)
    return {c: (created.get(c, 0), completed.get(c, ValueStats())) for c in {*created, *completed}}


# --- percentiles ---------------------------------------------------------------------------------

# rollups.value_bin in SQL (ln and ceil: PostgreSQL, and SQLite 3.35+ built with its math functions, as
# Debian's and Python's are): the raw edges come back as a few bins, never as every value
BIN_SQL = (f"CASE WHEN value > 0 THEN CAST(ceil(ln(value) / ?) AS INTEGER) WHEN value = 0 THEN {ru.ZERO_BIN} "
           f"ELSE {ru.NEGATIVE_BASE} - CAST(ceil(ln(-value) / ?) AS INTEGER) END")


async def _sketches(store: Store, low: str, high: str, name: str, r: TimeRange) -> dict[str, dict[int, int]]:
    """metric -> bin -> count, for the metrics in [low, high] over the range (the raw edges binned here)."""
    p = await week_pieces(store, r)
    out: dict[str, dict[int, int]] = {}
    for table, ranges in _spans(p, "rollup_values"):
        for m, b, n in await _rolled(store, SKETCH_SQL, table, ranges, (low, high)):
            bins = out.setdefault(m, {})
            bins[int(b)] = bins.get(int(b), 0) + int(n)
    for start, end in p.raw:
        sql = (f"SELECT label, {BIN_SQL} AS b, count(*) FROM events WHERE name = ? AND ts >= ? AND ts < ? "
               "AND value IS NOT NULL GROUP BY label, b")
        for label, b, n in await store.fetch(sql, (ru.LOG_GAMMA, ru.LOG_GAMMA, name, start, end)):
            bins = out.setdefault(ru.metric(name, label), {})
            bins[int(b)] = bins.get(int(b), 0) + int(n)
    return out


def sketch_percentiles(bins: dict[int, int], ps: Sequence[int]) -> dict[str, float | None]:
    """Nearest-rank percentiles of a sketch: the value of the bin holding rank ceil(p * n / 100)."""
    n = sum(bins.values())
    if not n:
        return {f"p{p:g}": None for p in ps}
    ordered = sorted(bins.items())
    out: dict[str, float | None] = {}
    for p in ps:
        rank, seen = max(1, (int(p) * n + 99) // 100), 0
        for b, count in ordered:
            seen += count
            if seen >= rank:
                out[f"p{p:g}"] = ru.bin_value(b)
                break
    return out


async def value_percentiles(store: Store, name: str, r: TimeRange, ps: Sequence[int],
                            release: str | None = None) -> dict[str, float | None]:
    if release is not None or name not in ru.SKETCHED:
        return await q.value_percentiles(store, name, r, ps, release)
    return sketch_percentiles((await _sketches(store, name, name, name, r)).get(name, {}), ps)


async def labelled_percentile(store: Store, name: str, r: TimeRange, p: int,
                              release: str | None = None) -> dict[str | None, float]:
    if release is not None or name != "web_vitals":
        return await q.labelled_percentile(store, name, r, p, release)
    out: dict[str | None, float] = {}
    for m, bins in (await _sketches(store, "web_vitals:", "web_vitals;", name, r)).items():
        value = sketch_percentiles(bins, (p,))[f"p{p:g}"]
        if value is not None:
            out[m.removeprefix("web_vitals:") or None] = value
    return out


# --- persons -------------------------------------------------------------------------------------

def _hour_masks(hours: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(day, mask of the hours of the [first, past) ranges in it) for each day the hours touch."""
    out: dict[int, int] = {}
    for first, past in hours:
        for hour in range(first, past):
            out[hour // HOURS_PER_DAY] = out.get(hour // HOURS_PER_DAY, 0) | 1 << (hour % HOURS_PER_DAY)
    return sorted(out.items())


def _block_masks(days: tuple[int, int]) -> list[tuple[int, int]]:
    """(block, mask of the days of [first, past) in it) for each block the days touch."""
    first, past = days
    out = []
    for block in range(first // ru.BLOCK_DAYS, (past - 1) // ru.BLOCK_DAYS + 1):
        low = max(first, block * ru.BLOCK_DAYS) - block * ru.BLOCK_DAYS
        high = min(past, (block + 1) * ru.BLOCK_DAYS) - block * ru.BLOCK_DAYS
        out.append((block, ((1 << high) - 1) ^ ((1 << low) - 1)))
    return out


def _mask_reads(select: str, p: Pieces, blocks: str, hourmasks: str | None = None) -> tuple[list[str], list[Any]]:
    """The SQL parts selecting `select` for the whole days of `p` from the 31-day block rows of `blocks`
    (their day masks) and, given `hourmasks`, for its edge hours from the per-day hour-mask rows (the edge
    days' rows only, not those of the days between), and their parameters: bounded reads, whatever the
    events in those days. The raw partial hours are the caller's."""
    parts: list[str] = []
    params: list[Any] = []
    if p.days:
        masks = _block_masks(p.days)
        case = " ".join("WHEN ? THEN ?" for _ in masks)
        parts.append(f"SELECT {select} FROM {blocks} WHERE bucket >= ? AND bucket <= ? "
                     f"AND (days & (CASE bucket {case} ELSE 0 END)) <> 0")
        params += [masks[0][0], masks[-1][0], *(v for pair in masks for v in pair)]
    if p.hours and hourmasks is not None:
        masks = _hour_masks(p.hours)
        case = " ".join("WHEN ? THEN ?" for _ in masks)
        parts.append(f"SELECT {select} FROM {hourmasks} WHERE bucket IN {placeholders(len(masks))} "
                     f"AND (hours & (CASE bucket {case} ELSE 0 END)) <> 0")
        params += [*(day for day, _ in masks), *(v for pair in masks for v in pair)]
    return parts, params

async def _raw_names(store: Store, raw: Sequence[tuple[float, float]]) -> list[str]:
    """The event names of the hours the raw edges lie in (so the edge reads go through events_name_dims)."""
    hours = sorted({int(a // ru.HOUR) for a, _ in raw} | {int((b - 1e-6) // ru.HOUR) for _, b in raw})
    rows = await store.fetch(f"SELECT DISTINCT name FROM rollup_counts_hour WHERE bucket IN {placeholders(len(hours))}",
                             hours)
    return sorted(name for (name,) in rows)


async def active_persons(store: Store, r: TimeRange) -> tuple[str, list[Any]]:
    """SQL selecting (column `person`) the user ids with an event in the range, and its parameters."""
    p = pieces(r)
    parts, params = _mask_reads("person", p, "rollup_person_blocks", "rollup_person_hourmasks")
    names = await _raw_names(store, p.raw) if p.raw else []
    for start, end in p.raw if names else ():
        parts.append(f"SELECT user_id AS person FROM events WHERE name IN {placeholders(len(names))} "
                     "AND ts >= ? AND ts < ? AND user_id IS NOT NULL")
        params += [*names, start, end]
    if not parts:
        return "SELECT person FROM rollup_person_blocks WHERE 1 = 0", []
    return " UNION ".join(parts), params


_CACHE: contextvars.ContextVar[dict[tuple[int, float, float], BitMap] | None] = \
    contextvars.ContextVar("persons_cache", default=None)


_SESSIONS: contextvars.ContextVar[dict[tuple[int, float, float], list[CoachSessions]] | None] = \
    contextvars.ContextVar("coach_sessions_cache", default=None)


@contextmanager
def request_cache(labels: Sequence[str] | None = None) -> Iterator[None]:
    """Within it, the persons of one store and range are read once, and the dead indexes and role bitmaps
    once (one request: the store does not change under it in a way the request could tell apart, as its
    reads are not one snapshot anyway). `labels`: the only names whose labels the request reads (None: any
    but page_load's pages); the others' counts come summed over their labels."""
    token, sessions, rolled, snaps = _CACHE.set({}), _SESSIONS.set({}), _ROLLED.set({}), _SNAPPED.set({})
    week_ends = _WEEK_ENDS.set({})
    counts_all = _COUNTS_ALL.set(COUNTS_ALL_SQL if labels is None else _counts_all(ru.LABELLED - set(labels)))
    try:
        with ps.request_cache(), rollup_fold.settled_once():
            yield
    finally:
        _CACHE.reset(token)
        _SESSIONS.reset(sessions)
        _ROLLED.reset(rolled)
        _SNAPPED.reset(snaps)
        _WEEK_ENDS.reset(week_ends)
        _COUNTS_ALL.reset(counts_all)


async def persons(store: Store, r: TimeRange) -> BitMap:
    """The person indexes of the users with an event in the range (person_sets.persons_active)."""
    cache = _CACHE.get()
    key = (id(store), r.start, r.end)
    if cache is not None and key in cache:
        return cache[key]
    at = await snapped(store, r)
    found = await ps.persons_active(store, at.start, at.end)
    if cache is not None:
        cache[key] = found
    return found


async def active_users_by_role(store: Store, r: TimeRange, release: str | None = None) -> dict[str, int]:
    if release is not None:
        return await q.active_users_by_role(store, r, release)
    active, roles = await persons(store, r), await ps.role_bits(store)
    coach, client = active.intersection_cardinality(roles["coach"]), active.intersection_cardinality(roles["client"])
    return {"coach": coach, "client": client, "other": len(active) - coach - client}


async def active_users(store: Store, r: TimeRange, release: str | None = None) -> int:
    if release is not None:
        return await q.active_users(store, r, release)
    return len(await persons(store, r))


async def retained_users(store: Store, previous: TimeRange, current: TimeRange,
                         release: str | None = None) -> tuple[int, int]:
    if release is not None:
        return await q.retained_users(store, previous, current, release)
    then, now = await persons(store, previous), await persons(store, current)
    return len(then), then.intersection_cardinality(now)


async def role_coaches(store: Store, r: TimeRange, release: str | None = None) -> list[str]:
    if release is not None:
        return await q.role_coaches(store, r, release)
    coaches, names = await persons(store, r) & (await ps.role_bits(store))["coach"], await ps.coach_names(store)
    return sorted(names[i] for i in coaches)


async def coach_sessions(store: Store, r: TimeRange, release: str | None = None,
                         clients: bool = True) -> list[CoachSessions]:
    """As queries.coach_sessions; within a request_cache() once per range (the dashboard's coaches, and the
    coaches its top clients leave out). `clients` False: every coach's `clients` is 0, not counted (the
    dashboard counts them for its top coaches only, `coach_clients`; the top clients need the names)."""
    if release is not None:
        return await q.coach_sessions(store, r, release)
    cache = _SESSIONS.get()
    key = (id(store), r.start, r.end)
    if cache is not None and key in cache:
        found = cache[key]
    else:
        found = await _coach_sessions(store, r)
        if cache is not None:
            cache[key] = found
    if not clients:
        return list(found)
    counted = await coach_clients(store, r)
    return [dataclasses.replace(c, clients=counted.get(c.coach, 0)) for c in found]


async def _coach_sessions(store: Store, r: TimeRange) -> list[CoachSessions]:
    per: dict[str, dict[str, list[Any]]] = {}
    for (name, coach, _), entry in (await tally(store, ru.SESSION_NAMES, r)).items():
        if coach:
            per.setdefault(coach, {})[name] = entry
    out = []
    for coach, by_name in per.items():
        rated = by_name.get("session_rated", [0, 0, 0.0])
        out.append(CoachSessions(coach, by_name.get("session_completed", [0])[0], by_name.get("session_booked", [0])[0],
                                 by_name.get("session_cancelled", [0])[0], 0,
                                 rated[2] / rated[1] if rated[1] else None))
    return out


async def coach_clients(store: Store, r: TimeRange, coaches: Sequence[str] | None = None) -> dict[str, int]:
    """coach -> distinct users of the session events naming them in the range: the whole days from the
    (coach, client) blocks, the rest of the range from the session events themselves; of the `coaches`
    given only (the dashboard's top 50: at 10M bench events every coach's pairs cost ~10 ms, 3 at 1M, the
    pairs growing with the clients' activity), else of every coach."""
    if coaches is not None and not coaches:
        return {}
    p = pieces(await snapped(store, r))
    only, only_params = "", []
    if coaches is not None:
        only, only_params = f" AND coach IN {placeholders(len(coaches))}", list(coaches)
    parts: list[str] = []
    params: list[Any] = []
    if p.days:          # (bucket, coach) seeks: a bucket range would read every coach's pairs of the blocks
        masks = _block_masks(p.days)
        case = " ".join("WHEN ? THEN ?" for _ in masks)
        parts.append(f"SELECT coach, person FROM rollup_coach_blocks WHERE bucket IN {placeholders(len(masks))}"
                     f"{only} AND (days & (CASE bucket {case} ELSE 0 END)) <> 0")
        params += [*(block for block, _ in masks), *only_params, *(v for pair in masks for v in pair)]
    for start, end in p.partial_days:
        parts.append(f"SELECT label AS coach, user_id AS person FROM events WHERE name IN "
                     f"{placeholders(len(ru.SESSION_NAMES))} AND ts >= ? AND ts < ? AND label IS NOT NULL "
                     f"AND user_id IS NOT NULL{only.replace('coach', 'label')}")
        params += [*ru.SESSION_NAMES, start, end, *only_params]
    if not parts:
        return {}
    sql = f"SELECT coach, count(DISTINCT person) FROM ({' UNION ALL '.join(parts)}) pairs GROUP BY coach"
    return {coach: int(n) for coach, n in await store.fetch(sql, params)}


def _person_name_spans(days: tuple[int, int] | None) -> list[tuple[str, tuple[int, int]]]:
    """(table, [first, past) buckets) of the per-person work rollups covering whole days: the whole 7-day
    blocks from the week rows (migration 20), the days before and after them from the day rows. A 30-day
    range's top persons, active every day at 10M bench events, read ~4 week rows and ~2 day rows per
    person and name instead of ~30 day rows (per_user's two reads: ~7 -> ~1.5 ms of CPU). The edge hours
    come from the hour rows (migration 20): the bench range's 7 start hours were ~4,600 events of the
    clients' names at 10M (1.7 ms), ~1,400 hour rows (0.8 ms)."""
    if not days:
        return []
    weeks, rest = _weeks_and_days(days)
    return [*((("rollup_person_names_week", weeks),) if weeks else ()), *(("rollup_person_names_day", d) for d in rest)]


async def per_user(store: Store, users: Sequence[str], names: Sequence[str], r: TimeRange,
                   release: str | None = None) -> dict[tuple[str, str], ValueStats]:
    if release is not None or not set(names) <= ru.PERSON_NAMES:
        return await q.per_user(store, users, names, r, release)
    if not users:
        return {}
    p = await week_pieces(store, r)
    totals: dict[tuple[str, str], list[Any]] = {}

    def add(user: str, name: str, n: Any, nv: Any, total: Any) -> None:
        entry = totals.setdefault((user, name), [0, 0, 0.0])
        entry[0] += int(n)
        entry[1] += int(nv)
        entry[2] += float(total or 0.0)

    u_marks, n_marks = placeholders(len(users)), placeholders(len(names))
    for table, (first, past) in [*_person_name_spans(p.days), *(("rollup_person_names_hour", h) for h in p.hours)]:
        sql = (f"SELECT person, name, sum(events), sum(nvalues), sum(vsum) FROM {table} "
               f"WHERE person IN {u_marks} AND bucket >= ? AND bucket < ? AND name IN {n_marks} GROUP BY person, name")
        for row in await store.fetch(sql, (*users, first, past, *names)):
            add(*row)
    for start, end in p.raw:
        sql = ("SELECT user_id, name, count(*), count(value), sum(value) FROM events "
               f"WHERE name IN {n_marks} AND ts >= ? AND ts < ? AND coalesce(user_id, '') IN {u_marks} "
               "GROUP BY user_id, name")
        for row in await store.fetch(sql, (*names, start, end, *users)):
            add(*row)
    return {key: ValueStats(n, nv, total) for key, (n, nv, total) in totals.items()}


async def _exact_events(store: Store, users: Sequence[str], r: TimeRange) -> dict[str, int]:
    """user -> events in the range, for a short list of users."""
    p = pieces(await snapped(store, r))
    marks = placeholders(len(users))
    out: dict[str, int] = {}
    reads: list[tuple[str, list[Any]]] = []
    if p.days:
        reads.append((f"SELECT person, sum(events) FROM rollup_persons_day WHERE person IN {marks} "
                      "AND bucket >= ? AND bucket < ? GROUP BY person", [*users, *p.days]))
    for first, past in p.hours:
        reads.append((f"SELECT person, sum(events) FROM rollup_persons_hour WHERE person IN {marks} "
                      "AND bucket >= ? AND bucket < ? GROUP BY person", [*users, first, past]))
    for start, end in p.raw:
        reads.append((f"SELECT user_id, count(*) FROM events_by_user WHERE user_id IN {marks} AND ts >= ? "
                      "AND ts < ? GROUP BY user_id", [*users, start, end]))
    for sql, params in reads:
        for user, n in await store.fetch(sql, params):
            out[user] = out.get(user, 0) + int(n)
    return out


CANDIDATES = 100        # users counted exactly per round
BOUNDS_PAGE = 2000      # upper bounds fetched per query (the GROUP BY runs once per page, not per round)


TOP_PAGE = 500         # persons read per block by their events (rollup_person_blocks_events) before a full read


async def _top_bounds(store: Store, first: int, last: int) -> tuple[list[tuple[int, str]], bool]:
    """The persons' events over blocks [first, last] (their bounds), in descending order, as far as the
    index on (bucket, events) proves it without reading every person (Fagin's threshold algorithm): each
    block's TOP_PAGE busiest persons, their sums over every block; a person seen in no block's page has
    at most the sum of the pages' last values, so every bound above that is complete and in order. True
    when that is every person's bound (each block had fewer than TOP_PAGE rows)."""
    seen: set[str] = set()
    threshold, complete = 0, True
    for block in range(first, last + 1):
        rows = await store.fetch("SELECT person, events FROM rollup_person_blocks WHERE bucket = ? "
                                 "ORDER BY events DESC LIMIT ?", (block, TOP_PAGE))
        seen.update(person for person, _ in rows)
        if len(rows) == TOP_PAGE:
            threshold += int(rows[-1][1])
            complete = False
    if not seen:
        return [], True
    people = sorted(seen)
    sums: dict[str, int] = {}
    for block in range(first, last + 1):         # primary key seeks, block by block
        for chunk in (people[i:i + 900] for i in range(0, len(people), 900)):
            sql = ("SELECT person, events FROM rollup_person_blocks WHERE bucket = ? "
                   f"AND person IN {placeholders(len(chunk))}")
            for person, n in await store.fetch(sql, (block, *chunk)):
                sums[person] = sums.get(person, 0) + int(n)
    ordered = sorted(((n, person) for person, n in sums.items() if complete or n > threshold),
                     key=lambda x: (-x[0], x[1]))
    return ordered, complete


async def top_clients(store: Store, r: TimeRange, limit: int, release: str | None = None) -> list[tuple[str, int]]:
    """As queries.top_clients. Each user's events in the 31-day blocks the range touches bound its events
    in the range from above; users are counted exactly in that order, CANDIDATES at a time, until the
    next bound is below the limit-th count found (a few rounds: activity is very skewed). The bounds come
    from the busiest persons of each block first (`_top_bounds`, by index: at 10M bench events the GROUP
    BY over every person of the blocks cost ~39 ms of a 30-day dashboard), every person's only when the
    rounds get past them."""
    if release is not None:
        return await q.top_clients(store, r, limit, release)
    first, last = int(r.start // ru.DAY) // ru.BLOCK_DAYS, int(math.ceil(r.end / ru.DAY) - 1) // ru.BLOCK_DAYS
    bounds_sql = ("SELECT person, sum(events) AS n FROM rollup_person_blocks WHERE bucket >= ? AND bucket <= ? "
                  "GROUP BY person ORDER BY n DESC, person LIMIT ? OFFSET ?")
    coaches = {c.coach for c in await coach_sessions(store, r, clients=False)}
    users_sql = ("SELECT user_id FROM users u WHERE u.user_id IN {marks} AND u.last_seen >= ? AND u.first_seen < ? "
                 "AND (u.role IS NULL OR u.role <> 'coach')")
    found: list[tuple[int, str]] = []
    bounds, complete = await _top_bounds(store, first, last)
    emitted = {user for _, user in bounds}
    exhausted, fetched, i = complete, 0, 0
    while True:
        while i >= len(bounds) and not exhausted:       # every person's bound, below the ones above
            page = [(int(n), user) for user, n in await store.fetch(bounds_sql, (first, last, BOUNDS_PAGE, fetched))]
            fetched += BOUNDS_PAGE
            bounds += [(n, user) for n, user in page if user not in emitted]
            exhausted = len(page) < BOUNDS_PAGE
        if i >= len(bounds):
            break
        if len(found) >= limit and bounds[i][0] < found[limit - 1][0]:
            break
        batch = bounds[i:i + CANDIDATES]
        chunk = [user for _, user in batch if user not in coaches]
        i += len(batch)
        if chunk:
            valid = {user for (user,) in await store.fetch(users_sql.format(marks=placeholders(len(chunk))),
                                                            (*chunk, r.start, r.end))}
            exact = await _exact_events(store, [user for user in chunk if user in valid], r) if valid else {}
            found += [(n, user) for user, n in exact.items() if n]
            found.sort(key=lambda x: (-x[0], x[1]))
    return [(user, n) for n, user in found[:limit]]


# --- MFA adoption --------------------------------------------------------------------------------

MFA_USERS_AFTER = ("SELECT DISTINCT user_id FROM events WHERE name IN ('mfa_enrolled', 'mfa_disabled') AND ts >= ? "
                   "AND user_id IS NOT NULL")
MFA_OLDEST = "SELECT min(ts) FROM events WHERE name = ?"
MFA_EXACT = 200         # users with MFA events at or after `end` counted from their events; more: all from the events


async def mfa_adopters(store: Store, end: float, release: str | None = None) -> int:
    """As queries.mfa_adopters, from rollup_mfa (each user's latest enrolment and removal). The users with
    an MFA event at or after `end` (none when `end` is now) are counted from their events before `end`;
    a stored time older than the oldest event of its name left is read as none (retention deleted its
    events, oldest first; erasure deletes the row). ~30 ms of CPU -> ~3 at 10M bench events."""
    if release is not None:
        return await q.mfa_adopters(store, end, release)
    later = [user for (user,) in await store.fetch(MFA_USERS_AFTER, (end,))]
    if len(later) > MFA_EXACT:
        return await q.mfa_adopters(store, end)
    (oldest_enrolled,), = await store.fetch(MFA_OLDEST, ("mfa_enrolled",))
    if oldest_enrolled is None:
        return 0
    (oldest_disabled,), = await store.fetch(MFA_OLDEST, ("mfa_disabled",))
    live_disabled = "disabled IS NULL OR disabled < enrolled" + ("" if oldest_disabled is None else " OR disabled < ?")
    sql = f"SELECT count(*) FROM rollup_mfa WHERE enrolled >= ? AND ({live_disabled})"
    params: list[Any] = [oldest_enrolled, *(() if oldest_disabled is None else (oldest_disabled,))]
    if later:
        sql += f" AND person NOT IN {placeholders(len(later))}"
        params += later
    (n,), = await store.fetch(sql, params)
    if later:
        marks = placeholders(len(later))
        # by name (events_name_dims), not by user (events_by_user): the MFA events before `end` are few, the
        # later users' events many (1M bench events, a week before their end, 154 users: 1 ms against 850)
        (m,), = await store.fetch(
            "SELECT count(*) FROM (SELECT user_id, max(CASE WHEN name = 'mfa_enrolled' THEN ts END) AS enrolled, "
            "max(CASE WHEN name = 'mfa_disabled' THEN ts END) AS disabled FROM events "
            f"WHERE name IN ('mfa_enrolled', 'mfa_disabled') AND ts < ? AND user_id IN {marks} GROUP BY user_id) x "
            "WHERE enrolled IS NOT NULL AND (disabled IS NULL OR disabled < enrolled)", (end, *later))
        n += m
    return int(n)


# --- funnels -------------------------------------------------------------------------------------

async def _funnel_steps(store: Store, funnel: str, p: Pieces) -> dict[tuple[str, str], list[Any]]:
    """(step, status) -> [rows, lowest number] of the funnel's step rollups over the whole days and hours."""
    out: dict[tuple[str, str], list[Any]] = {}
    for table, ranges in (("rollup_funnel_steps_day", [p.days] if p.days else []),
                          ("rollup_funnel_steps_hour", p.hours)):
        if not ranges:
            continue
        where, params = _buckets("bucket", ranges)
        sql = f"SELECT step, status, sum(total), min(number) FROM {table} WHERE funnel = ? AND ({where}) " \
              "GROUP BY step, status"
        for step, status, n, number in await store.fetch(sql, (funnel, *params)):
            _merge(out, (step, status), n, number)
    return out


def _merge(out: dict[tuple[Any, Any], list[Any]], key: tuple[Any, Any], n: Any, number: Any) -> None:
    entry = out.setdefault(key, [0, None])
    entry[0] += int(n)
    if number is not None and (entry[1] is None or number < entry[1]):
        entry[1] = number


async def signup_steps(store: Store, r: TimeRange,
                       release: str | None = None) -> list[tuple[str | None, int | None, int]]:
    """As queries.signup_steps: the steps and their lowest numbers from rollup_funnel_steps, the distinct
    visitors per step from the signup bitmaps (`signup_visitors`)."""
    if release is not None:
        return await q.signup_steps(store, r, release)
    r = await snapped(store, r)
    p = pieces(r)
    steps = await _funnel_steps(store, "signup", p)
    for start, end in p.raw:
        sql = ("SELECT coalesce(label, ''), count(*), min(value) FROM events WHERE name = 'signup_step' "
               "AND ts >= ? AND ts < ? GROUP BY 1")
        for step, n, number in await store.fetch(sql, (start, end)):
            _merge(steps, (step, ""), n, number)
    if not steps:
        return []
    visitors = await signup_visitors(store, r)
    return [(step or None, None if number is None else int(number), len(visitors.get(step, ())))
            for (step, _), (_, number) in steps.items()]


async def signup_visitors(store: Store, r: TimeRange) -> dict[str, BitMap]:
    """step ('' for none) -> the visitor indexes (agent/store/signup_bits.py, migration 18) of the step's
    signup_step events in the range: the whole days' and edge hours' bitmaps ORed, the raw partial hours'
    events mapped to their indexes, an alias merge's extra bits in, the dead indexes out. At 10M bench
    events the block rows' UNION of (step, visitor) pairs this replaces cost ~24 ms of CPU (7 at 1M)."""
    r = await snapped(store, r)
    p = pieces(r)
    reads: list[tuple[str, list[Any]]] = []
    if p.days:
        reads.append(("SELECT step, bits FROM signup_bits_day WHERE bucket >= ? AND bucket < ?", list(p.days)))
    if p.hours:
        where, params = _buckets("bucket", p.hours)
        reads.append((f"SELECT step, bits FROM signup_bits_hour WHERE {where}", params))
    out: dict[str, BitMap] = {}
    for sql, params in reads:
        for step, blob in await store.fetch(sql, params):
            bits = out.get(step)
            if bits is None:
                out[step] = BitMap.deserialize(bytes(blob))
            else:
                bits |= BitMap.deserialize(bytes(blob))
    pairs: list[tuple[Any, ...]] = []
    for start, end in p.raw:
        pairs += await store.fetch(
            "SELECT coalesce(e.label, ''), v.idx FROM events e JOIN visitor_index v ON v.visitor = "
            "coalesce(e.user_id, e.anonymous_id) WHERE e.name = 'signup_step' AND e.ts >= ? AND e.ts < ?", (start, end))
    first_hour, past_hour = math.ceil(r.start / ru.HOUR), math.floor(r.end / ru.HOUR)
    if first_hour < past_hour:
        pairs += await store.fetch("SELECT step, idx FROM signup_bits_extra WHERE bucket >= ? AND bucket < ?",
                                   (first_hour, past_hour))
    for step, idx in pairs:
        out.setdefault(step, BitMap()).add(int(idx))
    if out:
        dead = BitMap(int(i) for (i,) in await store.fetch(sb.DEAD_SQL, ()))
        for bits in out.values():
            bits -= dead
    return out


async def onboarding_steps(store: Store, r: TimeRange,
                           release: str | None = None) -> list[tuple[str | None, int | None, str, int]]:
    """As queries.onboarding_steps: the whole days and hours from rollup_funnel_steps, the raw partial
    hours from onboarding_funnel."""
    if release is not None:
        return await q.onboarding_steps(store, r, release)
    p = pieces(await snapped(store, r))
    steps = await _funnel_steps(store, "onboarding", p)
    for start, end in p.raw:
        sql = ("SELECT coalesce(step, ''), status, count(*), min(step_number) FROM onboarding_funnel "
               "WHERE ts >= ? AND ts < ? GROUP BY 1, 2")
        for step, status, n, number in await store.fetch(sql, (start, end)):
            _merge(steps, (step, status), n, number)
    return [(step or None, None if number is None else int(number), status, n)
            for (step, status), (n, number) in steps.items()]
