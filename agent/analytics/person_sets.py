"""Person sets from the person bitmaps (agent/store/person_bits.py): who had an event in a range, exact to
the second, as a Roaring bitmap of person indexes (pyroaring.BitMap) whose cost grows with the persons,
not with the events.

Interface (for the dashboard, business metrics, retention and unique-person trends):
- `persons_active(store, start, end, name=None, label=None) -> BitMap`
      the indexes of the persons (events.user_id, after alias merges) with an event in [start, end):
      any event (name None), events of `name`, or of `name` with `label` (names of rollups.LABELLED
      only: ValueError otherwise). The range is cut as rollup_queries.pieces cuts it: the whole days
      OR the day bitmaps, the edge hours the hour bitmaps, the raw partial hours (at most 2) the
      events' persons mapped to their indexes; then the extra bits of an alias merge are ORed in and
      the dead indexes (erased, merged away) taken out. |result| = the distinct persons.
- `dead(store) -> BitMap`          the dead indexes (persons_active already subtracts them).
- `persons_of(store, bits) -> dict[int, str]`   index -> person, for the indexes given (chunked reads).
- `indexes_of(store, persons) -> dict[str, int]`  person -> index, for the persons that have one.
- `role_bits(store) -> dict[str, BitMap]`  'coach' / 'client' -> the indexes of the users with that
      role now (users.role; the rest count as 'other'), as the role groups of queries.ROLE;
      `coach_names(store) -> dict[int, str]` the coaches' indexes -> user ids (read with them).
Within `request_cache()` (rollup_queries.request_cache enters it), `dead` and `role_bits` are read once.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyroaring import BitMap

from agent.analytics.pieces import pieces
from agent.analytics.queries import placeholders
from agent.analytics.timerange import TimeRange
from agent.store import person_bits as pb, rollups as ru, user_index
from agent.store.base import Store

ID_CHUNK = 500

_CACHE: contextvars.ContextVar[dict[tuple[Any, ...], Any] | None] = contextvars.ContextVar("person_sets_cache",
                                                                                          default=None)


@contextmanager
def request_cache() -> Iterator[None]:
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _key(name: str | None, label: str | None) -> tuple[str, str]:
    if name is None:
        if label is not None:
            raise ValueError("a label needs an event name")
        return "", ""
    if label is not None and name not in ru.LABELLED:
        raise ValueError(f"event {name!r} keeps no label bitmaps (rollups.LABELLED)")
    return name, label or ""


def _or(blobs: Iterable[tuple[Any, ...]]) -> BitMap:
    out = BitMap()
    for (blob,) in blobs:
        out |= BitMap.deserialize(bytes(blob))
    return out


async def persons_active(store: Store, start: float, end: float, name: str | None = None,
                         label: str | None = None) -> BitMap:
    key_name, key_label = _key(name, label)
    p = pieces(TimeRange(start, end))
    out = BitMap()
    if p.days:
        out |= _or(await store.fetch("SELECT bits FROM person_bits_day WHERE name = ? AND label = ? "
                                     "AND bucket >= ? AND bucket < ?", (key_name, key_label, *p.days)))
    for first, past in p.hours:
        out |= _or(await store.fetch("SELECT bits FROM person_bits_hour WHERE name = ? AND label = ? "
                                     "AND bucket >= ? AND bucket < ?", (key_name, key_label, first, past)))
    for a, b in p.raw:
        out |= await _raw(store, a, b, name, label)
    first_hour, past_hour = math.ceil(start / pb.HOUR), math.floor(end / pb.HOUR)
    if first_hour < past_hour:
        out.update(int(i) for (i,) in await store.fetch(
            "SELECT idx FROM person_bits_extra WHERE name = ? AND label = ? AND bucket >= ? AND bucket < ?",
            (key_name, key_label, first_hour, past_hour)))
    if out:
        out -= await dead(store)
    return out


async def _raw(store: Store, start: float, end: float, name: str | None, label: str | None) -> BitMap:
    """The indexes of the persons with an event in [start, end) (within an hour): from the events, through
    events_name_dims (the names of those hours, from the hourly counts, when no name is given). Within a
    request once per piece: business metrics' DAU, WAU, MAU and current range share their last one."""
    cache = _CACHE.get()
    key = ("person_sets.raw", id(store), start, end, name, label)
    if cache is not None and key in cache:
        cached: BitMap = cache[key]
        return cached
    found = await _raw_read(store, start, end, name, label)
    if cache is not None:
        cache[key] = found
    return found


async def _raw_read(store: Store, start: float, end: float, name: str | None, label: str | None) -> BitMap:
    """The persons of [start, end) (within an hour): from its events, or, when it is more than half its
    hour, from the rest of the hour's (`_by_rest`)."""
    hour = math.floor(start / pb.HOUR)
    if end - start > pb.HOUR / 2 and end <= (hour + 1) * pb.HOUR and await _hour_whole(store, hour, name):
        return await _by_rest(store, start, end, name, label, hour)
    return await _events_read(store, start, end, name, label)


# the names of the hour (or the one asked for) of which no event older than the hour is stored
_CUT_NAMES = ("SELECT count(*) FROM (SELECT DISTINCT name FROM rollup_counts_hour WHERE bucket = ?) hour_names "
              "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.name = hour_names.name AND e.ts < ?)")
_CUT_NAME = "SELECT count(*) WHERE NOT EXISTS (SELECT 1 FROM events WHERE name = ? AND ts < ?)"


async def _hour_whole(store: Store, hour: int, name: str | None) -> bool:
    """Whether retention left the hour's events whole: its bitmap then holds only persons with an event
    in it still stored (erasure aside: dead indexes). Retention deletes each name's oldest events first,
    so an event of every name of the hour stored before the hour proves it; else the hour may straddle a
    cutoff (the bitmap is kept while the events before the cut are gone) and `_by_rest` would count
    their persons, never subtracted: the piece is read from its events."""
    sql, params = (_CUT_NAMES, (hour, hour * float(pb.HOUR))) if name is None else \
        (_CUT_NAME, (name, hour * float(pb.HOUR)))
    (cut,), = await store.fetch(sql, params)
    return not cut


async def _by_rest(store: Store, start: float, end: float, name: str | None, label: str | None,
                   hour: int) -> BitMap:
    """The hour's bitmap (and extra bits) less the persons of the rest of the hour who have no event in
    [start, end): the events of the shorter part of the hour are read, and the few persons of it looked
    up in the piece. At 10M bench events the previous period's end in business metrics (a range ending 17 s
    before an hour) read ~1,400 persons of 3,583 s of events: ~3 ms of CPU (~1 at 1M); now those of 17 s.
    The look-up: without a name, by user (events_by_user; with a label, user_index.rows), as no index of
    the events leads with the time (1M bench events, an hour's 231 users: 0.3 ms of CPU, 191 reading
    events_name_dims whole); with a name, that name's events in the piece (events_name_dims: 42 users,
    0.04 ms, 0.15 by user)."""
    key_name, key_label = _key(name, label)
    out = _or(await store.fetch("SELECT bits FROM person_bits_hour WHERE name = ? AND label = ? AND bucket = ?",
                                (key_name, key_label, hour)))
    out.update(int(i) for (i,) in await store.fetch(
        "SELECT idx FROM person_bits_extra WHERE name = ? AND label = ? AND bucket = ?", (key_name, key_label, hour)))
    rest = BitMap()
    for a, b in ((hour * float(pb.HOUR), start), (end, (hour + 1) * float(pb.HOUR))):
        if a < b:
            rest |= await _events_read(store, a, b, name, label)
    rest &= out
    if not rest:
        return out
    persons = await persons_of(store, rest)
    users = sorted(set(persons.values()))
    label_cond = " AND e.label = ?" if label is not None else ""
    present: set[str] = set()
    for i in range(0, len(users), ID_CHUNK):
        chunk = users[i:i + ID_CHUNK]
        marks = f"IN {placeholders(len(chunk))}"
        if name is not None:
            events = f"events e WHERE e.name = ? AND e.ts >= ? AND e.ts < ?{label_cond} AND e.user_id {marks}"
            params = [name, start, end, *(() if label is None else (label,)), *chunk]
        else:
            events = (user_index.rows(store.dialect, "e", marks, " AND {ts} >= ? AND {ts} < ?") + label_cond
                      if label is not None else f"events_by_user e WHERE e.user_id {marks} AND e.ts >= ? AND e.ts < ?")
            params = [*chunk, start, end, *(() if label is None else (label,))]
        present.update(user for (user,) in await store.fetch(f"SELECT DISTINCT e.user_id FROM {events}", params))
    out -= BitMap(idx for idx, person in persons.items() if person not in present)
    return out


async def _events_read(store: Store, start: float, end: float, name: str | None, label: str | None) -> BitMap:
    if name is not None:
        names = [name]
    else:
        hours = sorted({int(start // ru.HOUR), int((end - 1e-6) // ru.HOUR)})
        names = [n for (n,) in await store.fetch(
            f"SELECT DISTINCT name FROM rollup_counts_hour WHERE bucket IN {placeholders(len(hours))}", hours)]
        if not names:
            return BitMap()
    where = "" if label is None else " AND e.label = ?"
    sql = (f"SELECT DISTINCT p.idx FROM events e JOIN person_index p ON p.person = e.user_id "
           f"WHERE e.name IN {placeholders(len(names))} AND e.ts >= ? AND e.ts < ?{where}")
    params = [*names, start, end, *([] if label is None else [label])]
    return BitMap(int(i) for (i,) in await store.fetch(sql, params))


async def dead(store: Store) -> BitMap:
    cache = _CACHE.get()
    key = ("person_sets.dead", id(store))
    if cache is not None and key in cache:
        found: BitMap = cache[key]
        return found
    found = BitMap(int(i) for (i,) in await store.fetch(pb.DEAD_SQL, ()))
    if cache is not None:
        cache[key] = found
    return found


async def persons_of(store: Store, bits: Iterable[int]) -> dict[int, str]:
    idxs = list(bits)
    out: dict[int, str] = {}
    for i in range(0, len(idxs), ID_CHUNK):
        chunk = idxs[i:i + ID_CHUNK]
        out.update((int(idx), person) for idx, person in await store.fetch(
            f"SELECT idx, person FROM person_index WHERE idx IN {placeholders(len(chunk))} AND person IS NOT NULL",
            chunk))
    return out


async def indexes_of(store: Store, persons: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(persons), ID_CHUNK):
        chunk = list(persons[i:i + ID_CHUNK])
        out.update((person, int(idx)) for person, idx in await store.fetch(
            f"SELECT person, idx FROM person_index WHERE person IN {placeholders(len(chunk))}", chunk))
    return out


async def role_bits(store: Store) -> dict[str, BitMap]:
    """'coach' / 'client' -> the indexes of the users of that role (the users with a role are read, not
    every user: most have none)."""
    return (await _roles(store))[0]


async def coach_names(store: Store) -> dict[int, str]:
    """index -> user id of the users of role coach (a few hundred), read with role_bits."""
    return (await _roles(store))[1]


async def _roles(store: Store) -> tuple[dict[str, BitMap], dict[int, str]]:
    cache = _CACHE.get()
    key = ("person_sets.roles", id(store))
    if cache is not None and key in cache:
        found: tuple[dict[str, BitMap], dict[int, str]] = cache[key]
        return found
    bits = {"coach": BitMap(), "client": BitMap()}
    coaches: dict[int, str] = {}
    rows = await store.fetch("SELECT u.role, p.idx, u.user_id FROM users u JOIN person_index p "
                             "ON p.person = u.user_id WHERE u.role IN ('coach', 'client')", ())
    for role, idx, user in rows:
        bits[role].add(int(idx))
        if role == "coach":
            coaches[int(idx)] = user
    found = (bits, coaches)
    if cache is not None:
        cache[key] = found
    return found
