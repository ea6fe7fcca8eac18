"""The persons of the insights (trends' `unique_persons`, retention) from the person bitmaps
(agent/store/person_bits.py, agent/analytics/person_sets.py), so that their cost grows with the persons
and the anonymous events, not with the identified events.

Why: the SQL path (agent/analytics/insight_sql.py person_rows) reads every event of the series, resolves
its person and groups distinct (person, bucket) pairs: at 10M bench events a 30-day unique-persons trend
read 342,000 events (528 ms of CPU) and an 8-week retention table every login_attempt ever and every
feature_used of the periods (580-720 ms). Here a bucket's persons are the OR of its day bitmaps (its edge
hours' bitmaps, the identified events of its partial hours at the range's two ends) and a count is a
popcount; retention is bitmap algebra: cohort c = the persons of period c (first time: minus the OR of
every earlier bitmap of the cohort event, over the store's whole history), column k = |cohort c AND the
returning event's persons of period c + k|.

The persons are the SQL path's, exactly (the insights tests run both paths over the same fixtures):
- an identified event's person is its user_id: the bitmaps' index, dead indexes (erased, merged away)
  taken out;
- an event still stored under an alias (person_aliases) counts for its person: a live index of an alias
  is replaced by its person's index in every bitmap (the aliases that have a live index: few, as a merge
  rewrites the alias's events);
- an anonymous event (no user_id; the bitmaps hold none) is read from the events through the partial
  index events_anonymous_name (name, ts) WHERE user_id IS NULL (migration 13): its person is the user
  its anonymous id was first seen with, else the anonymous id, then mapped to that person's index, or to
  an index of this request's own (from 2^31) when the person has none. This part costs the anonymous
  events of the series, which the SDKs send before a login.

What the bitmaps do not cover keeps the SQL path (`None` from here): property filters, "any event"
(`event: null`), first-seen retention (the users table), and a breakdown other than by the lifted label
of an event whose label the rollups keep (rollups.LABELLED: page_load's page, the coach of session events,
the goal category, the web vital), or when some of the series' events in the range have no label (an
unset breakdown value: the bitmaps keep no "unset" set). A breakdown's top values are ranked by events
from the rollups' counts (agent/analytics/trends_rollups.py rollup_sums), as the SQL path ranks them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyroaring import BitMap

from agent.analytics.insight_query import EventSpec, RetentionQuery, Series, TrendsQuery, period_index
from agent.analytics.insight_sql import bucket_sql, lifted
from agent.analytics.person_sets import dead, indexes_of
from agent.analytics.pieces import Pieces, pieces
from agent.analytics.rollup_queries import trend_range
from agent.analytics.timerange import TimeRange
from agent.analytics.trends_rollups import rollup_sums
from agent.store import rollups as ru
from agent.store.base import Store

FIRST_OWN_INDEX = 1 << 31            # this request's indexes of persons the store has none for
Bits = dict[tuple[int, str], BitMap]  # (bucket, label or '') -> persons


@dataclass
class Persons:
    """One request's person -> index mapping: the store's live indexes, its own beyond them."""
    store: Store
    own: dict[str, int] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    aliases: list[tuple[int, int]] | None = None      # (live index of an alias, index of its person)
    dead: BitMap | None = None

    async def indexes(self, given: Iterable[str]) -> dict[str, int]:
        persons = set(given)
        wanted = sorted(p for p in persons if p not in self.known and p not in self.own)
        if wanted:
            self.known.update(await indexes_of(self.store, wanted))
        for p in wanted:
            if p not in self.known:
                self.own[p] = FIRST_OWN_INDEX + len(self.own)
        return {p: self.known.get(p, self.own.get(p, 0)) for p in persons}

    async def fixups(self) -> tuple[BitMap, list[tuple[int, int]]]:
        """(dead indexes, (alias index, person index) pairs), read once per request."""
        if self.dead is None:
            self.dead = await dead(self.store)
        if self.aliases is None:
            rows = await self.store.fetch("SELECT a.idx, pa.person_id FROM person_aliases pa "
                                          "JOIN person_index a ON a.person = pa.alias_id", ())
            index = await self.indexes(person for _, person in rows)
            self.aliases = [(int(a), index[person]) for a, person in rows]
        return self.dead, self.aliases


def _cut(r: TimeRange, hourly: bool) -> Pieces:
    """The range's pieces (agent/analytics/pieces.py), without whole days for an hourly trend (a day row
    would span 24 of its buckets)."""
    if not hourly:
        return pieces(r)
    first, past = math.ceil(r.start / ru.HOUR), math.floor(r.end / ru.HOUR)
    if first >= past:
        return Pieces(None, [], [(r.start, r.end)])
    raw = [(a, b) for a, b in ((r.start, first * float(ru.HOUR)), (past * float(ru.HOUR), r.end)) if a < b]
    return Pieces(None, [(first, past)], raw)


async def persons_by_bucket(store: Store, persons: Persons, name: str, by_label: bool, r: TimeRange,
                            interval: str, bucket_of: Callable[[float], int]) -> Bits:
    """(bucket, label) -> the persons with an event `name` in the bucket's part of [r.start, r.end), exact to
    the second; label '' unless `by_label` (then each label of the name's events, which the caller has
    checked are all labelled). `bucket_of` maps a unix time to its bucket; every piece of the range lies
    in one bucket (days for day / week / month buckets, hours for hourly ones)."""
    out: Bits = {}

    def add(bucket: int, label: str, bits: BitMap) -> None:
        key = (bucket, label if by_label else "")
        if key in out:
            out[key] |= bits
        else:
            out[key] = bits

    cond = "label <> ''" if by_label else "label = ''"
    r = await trend_range(store, r, interval)       # a range ending now: its hour from the bitmaps
    p = _cut(r, interval == "hour")
    blobs = []
    if p.days:
        blobs += [(row, ru.DAY) for row in await store.fetch(
            f"SELECT bucket, label, bits FROM person_bits_day WHERE name = ? AND {cond} AND bucket >= ? "
            "AND bucket < ?", (name, *p.days))]
    for first, past in p.hours:
        blobs += [(row, ru.HOUR) for row in await store.fetch(
            f"SELECT bucket, label, bits FROM person_bits_hour WHERE name = ? AND {cond} AND bucket >= ? "
            "AND bucket < ?", (name, first, past))]
    for (bucket, label, blob), size in blobs:
        add(bucket_of(float(bucket) * size), label, BitMap.deserialize(bytes(blob)))
    first_hour, past_hour = math.ceil(r.start / ru.HOUR), math.floor(r.end / ru.HOUR)
    if first_hour < past_hour:
        for bucket, label, idx in await store.fetch(
                f"SELECT bucket, label, idx FROM person_bits_extra WHERE name = ? AND {cond} AND bucket >= ? "
                "AND bucket < ?", (name, first_hour, past_hour)):
            add(bucket_of(float(bucket) * ru.HOUR), label, BitMap([int(idx)]))
    for start, end in p.raw:
        found: dict[str, BitMap] = {}
        for label, idx in await store.fetch(
                "SELECT DISTINCT e.label, p.idx FROM events e JOIN person_index p ON p.person = e.user_id "
                "WHERE e.name = ? AND e.ts >= ? AND e.ts < ?", (name, start, end)):
            found.setdefault(label or "", BitMap()).add(int(idx))
        for label, bits in found.items():
            add(bucket_of(start), label, bits)
    gone, aliases = await persons.fixups()
    for bits in out.values():
        bits -= gone
        for alias, person in aliases:
            if alias in bits:
                bits.discard(alias)
                bits.add(person)
    await _anonymous(store, persons, name, by_label, r, interval, add)
    return out


async def _anonymous(store: Store, persons: Persons, name: str, by_label: bool, r: TimeRange, interval: str,
                     add: Callable[[int, str, BitMap], None]) -> None:
    """The persons of the anonymous events of `name` in the range (person_rows' anonymous branch: the
    user the anonymous id was first seen with, else the anonymous id; then person_aliases), by bucket."""
    bucket = bucket_sql(store.dialect, interval, "e.")
    label = "e.label" if by_label else "''"
    sql = (f"WITH anon AS (SELECT DISTINCT e.anonymous_id AS who, {bucket} AS b, {label} AS l FROM events e "
           "WHERE e.name = ? AND e.ts >= ? AND e.ts < ? AND e.user_id IS NULL AND e.anonymous_id IS NOT NULL), "
           "links AS (SELECT anonymous_id, user_id FROM (SELECT l.anonymous_id, l.user_id, row_number() OVER "
           "(PARTITION BY l.anonymous_id ORDER BY l.ts, l.id) AS rn FROM events l WHERE l.anonymous_id IS NOT NULL "
           "AND l.user_id IS NOT NULL AND l.anonymous_id IN (SELECT who FROM anon)) first_link WHERE rn = 1) "
           "SELECT DISTINCT a.b, a.l, coalesce(pa.person_id, k.user_id, a.who) FROM anon a "
           "LEFT JOIN links k ON k.anonymous_id = a.who "
           "LEFT JOIN person_aliases pa ON pa.alias_id = coalesce(k.user_id, a.who)")
    rows = await store.fetch(sql, (name, r.start, r.end))
    if not rows:
        return
    index = await persons.indexes(person for _, _, person in rows)
    grouped: dict[tuple[int, str], BitMap] = {}
    for b, lab, person in rows:
        grouped.setdefault((int(b), lab or ""), BitMap()).add(index[person])
    for (b, lab), bits in grouped.items():
        add(b, lab, bits)


def _covered(spec: EventSpec) -> bool:
    return spec.event is not None and not spec.filters


# --- trends --------------------------------------------------------------------------------------

async def trend_persons(store: Store, q: TrendsQuery, series: Series, bucket_of: Callable[[float], int]
                        ) -> tuple[dict[tuple[int, int], float], list[tuple[str | None, bool]]] | None:
    """A `unique_persons` series as trends.py's (bucket, group) -> persons and groups, or None when the
    bitmaps do not cover it (the module docstring says when)."""
    name = series.spec.event
    if name is None or not _covered(series.spec):
        return None
    persons = Persons(store)
    if q.breakdown is None:
        bits = await persons_by_bucket(store, persons, name, False, q.range, q.interval, bucket_of)
        return {(b, 0): float(len(v)) for (b, _), v in bits.items() if v}, [(None, False)]
    if lifted(name, q.breakdown.key) != "label" or name not in ru.LABELLED:
        return None
    events: dict[str, int] = {}
    for (_, label), (n, _, _) in (await rollup_sums(store, q, series, "label", bucket_of)).items():
        events[label] = events.get(label, 0) + int(n)
    if events.get("", 0):                  # some events have no label: the unset value's persons
        return None
    ranked = sorted((v for v in events if events[v]), key=lambda v: (-events[v], v))
    top = ranked[:q.breakdown.limit]
    group_of = {v: i for i, v in enumerate(top)}
    groups: list[tuple[str | None, bool]] = [(v, False) for v in top]
    if len(ranked) > len(top):
        groups.append((None, True))
    merged: dict[tuple[int, int], BitMap] = {}
    for (b, label), v in (await persons_by_bucket(store, persons, name, True, q.range, q.interval,
                                                  bucket_of)).items():
        key = (b, group_of.get(label, len(top)))
        merged[key] = merged[key] | v if key in merged else v
    return {key: float(len(v)) for key, v in merged.items() if v}, groups


# --- retention -----------------------------------------------------------------------------------

async def retention_sets(store: Store, q: RetentionQuery) -> tuple[dict[int, BitMap], dict[int, BitMap]] | None:
    """(period -> cohort persons, period -> returning persons) of a retention query, or None when the
    bitmaps do not cover it. First time: a person is in the cohort of the first period they did the
    cohort event in, when no earlier bitmap of it (since the store's oldest) holds them."""
    if not _covered(q.cohort) or not _covered(q.returning):
        return None
    assert q.cohort.event is not None and q.returning.event is not None

    def period(ts: float) -> int:
        return period_index(q.period, ts)

    persons = Persons(store)
    cohorts = _flat(await persons_by_bucket(store, persons, q.cohort.event, False, q.range, q.period, period))
    returning = _flat(await persons_by_bucket(store, persons, q.returning.event, False, q.range, q.period,
                                              period))
    if q.type == "first_time":
        before = TimeRange(0.0, q.range.start)
        seen = BitMap()
        for bits in (await persons_by_bucket(store, persons, q.cohort.event, False, before, q.period,
                                             period)).values():
            seen |= bits
        for c in sorted(cohorts):
            first = cohorts[c] - seen
            seen |= cohorts[c]
            cohorts[c] = first
    return cohorts, returning


def _flat(bits: Bits) -> dict[int, BitMap]:
    return {b: v for (b, _), v in bits.items()}

