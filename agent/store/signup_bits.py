"""Signup visitors as Roaring bitmaps (migration 18, issue 17): the dashboard's signup funnel counts the
distinct visitors of each step (queries.signup_steps: a visitor is the user id, else the anonymous id)
from a few bitmaps per step and bucket, where the 31-day block rows it replaced (rollup_signup_blocks, one
row per step and visitor) grew with the anonymous visitors: at 10M bench events that UNION of distinct
(step, visitor) pairs cost ~24 ms of a 30-day dashboard (7 at 1M).

Tables (written with the person bitmaps, from person_bits.write_*; the same design as the
person bitmaps of agent/store/person_bits.py, with indexes of their own):
- visitor_index (idx, visitor)        a dense integer per signup visitor (only the visitors of signup_step
                                      events get one: the write cost stays with those events). `visitor`
                                      is NULL for a DEAD index (erased, or merged away by an alias merge);
                                      reads subtract the dead indexes, and a later event of the same id
                                      gets a new index.
- signup_bits_{hour,day} (bucket, step, bits)   the indexes of the visitors who reached the step
                                      (coalesce(label, '')) in the bucket (hour = ts // 3600, day = ts // 86400).
- signup_bits_extra (bucket, step, idx)   single bits per hour, added by SQL on an alias merge (the
                                      person's signup hours, its alias's among them); reads OR them in.

Maintenance: `write_postgres` in the group commit, `write_sqlite` in SQLite's fold (a read-modify-write
of the touched blobs; signup_step events are rare, so most groups skip it after one pass over the batch),
`backfill_*` at migration 18, `retention_statements` (whole buckets, with signup_step's class),
`erase_statements` (the visitors' indexes go dead), `merge_statements` (as person_bits.merge_statements).
Reading: agent/analytics/rollup_queries.signup_steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from pyroaring import BitMap

from agent.store import user_index
from agent.store.bitmap_sql import (
    ADVISORY_LOCK,
    chunks as _chunks,
    dollar as _dollar,
    indexes_postgres,
    locked as _locked,
    marks as _marks,
    write_backfill_postgres,
)

MIGRATION = 18
SIGNUP = "signup_step"
HOUR = 3600
DAY = 86400
CHUNK = 50_000
TABLES = ("visitor_index", "signup_bits_hour", "signup_bits_day", "signup_bits_extra")


Key = tuple[int, str]           # (bucket, step)

DEAD_SQL = "SELECT idx FROM visitor_index WHERE visitor IS NULL"
BACKFILL_SQL = "SELECT ts, label, user_id, anonymous_id FROM events WHERE name = 'signup_step' " \
               "AND (user_id IS NOT NULL OR anonymous_id IS NOT NULL)"
_VISITOR = "coalesce(user_id, anonymous_id)"
_HOUR_SQL = "CAST(floor(ts / 3600) AS INTEGER)"


def upsert(table: str) -> str:
    return (f"INSERT INTO {table} (bucket, step, bits) VALUES (?, ?, ?) "
            "ON CONFLICT (bucket, step) DO UPDATE SET bits = excluded.bits")


def fact_sets(facts: Iterable[tuple[Any, ...]]) -> dict[tuple[int, str], set[str]]:
    """`facts` from rollups.Fact tuples (name, ts, user_id, label, outcome, value, anonymous_id): what the
    SQLite fold has of the events it folds (agent/store/rollup_fold.py)."""
    out: dict[tuple[int, str], set[str]] = {}
    for name, ts, user, label, _, _, anonymous in facts:
        if name != SIGNUP:
            continue
        visitor = user if user is not None else anonymous
        if visitor is not None:
            out.setdefault((int(ts // HOUR), label or ""), set()).add(visitor)
    return out


def keyed(found: dict[tuple[int, str], set[str]], index: dict[str, int]) -> dict[tuple[str, Key], BitMap]:
    """(table, (bucket, step)) -> the visitor indexes to set, in the hour and the day table."""
    out: dict[tuple[str, Key], BitMap] = {}
    for (hour, step), visitors in found.items():
        bits = BitMap([index[v] for v in visitors])
        for table, bucket in (("signup_bits_hour", hour), ("signup_bits_day", hour // 24)):
            old = out.get((table, (bucket, step)))
            if old is None:
                out[(table, (bucket, step))] = BitMap(bits)
            else:
                old |= bits
    return out


def _merged(adds: dict[tuple[str, Key], BitMap], existing: dict[tuple[str, Key], bytes]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for (table, key), bits in sorted(adds.items()):
        old = existing.get((table, key))
        if old is not None:
            bits |= BitMap.deserialize(bytes(old))
        out.setdefault(table, []).append((*key, bits.serialize()))
    return out


def write_sqlite(conn: Any, facts: Iterable[tuple[Any, ...]]) -> None:
    """The signup bits of these events (rollups.Fact tuples), inside the writer's open transaction
    (sqlite3.Connection): the fold's (agent/store/rollup_fold.py)."""
    found = fact_sets(facts)
    if not found:
        return
    visitors = sorted(set().union(*found.values()))
    index: dict[str, int] = {}
    for chunk in _chunks(visitors):
        index.update(conn.execute(f"SELECT visitor, idx FROM visitor_index WHERE visitor IN {_marks(len(chunk))}",
                                  chunk).fetchall())
    missing = [v for v in visitors if v not in index]
    for chunk in _chunks(missing):
        index.update(conn.execute(f"INSERT INTO visitor_index (visitor) VALUES {', '.join('(?)' for _ in chunk)} "
                                  "RETURNING visitor, idx", chunk).fetchall())
    adds = keyed(found, index)
    existing: dict[tuple[str, Key], bytes] = {}
    for table in ("signup_bits_hour", "signup_bits_day"):
        keys = [key for t, key in adds if t == table]
        for chunk in _chunks(keys, 300):
            sql = (f"SELECT bucket, step, bits FROM {table} WHERE (bucket, step) IN "
                   f"(VALUES {', '.join('(?, ?)' for _ in chunk)})")
            for bucket, step, bits in conn.execute(sql, [v for key in chunk for v in key]):
                existing[(table, (bucket, step))] = bits
    for table, rows in _merged(adds, existing).items():
        conn.executemany(upsert(table), rows)


async def write_postgres(conn: Any, facts: Iterable[tuple[Any, ...]]) -> None:
    """The same inside the writer's open transaction (asyncpg.Connection), under person_bits' advisory
    lock (two agents never lose each other's bits, nor take the same visitor twice)."""
    found = fact_sets(facts)
    if not found:
        return
    visitors = sorted(set().union(*found.values()))
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK)
    index = await indexes_postgres(conn, "visitor_index", "visitor", visitors)
    adds = keyed(found, index)
    existing: dict[tuple[str, Key], bytes] = {}
    for table in ("signup_bits_hour", "signup_bits_day"):
        keys = [key for t, key in adds if t == table]
        rows = await conn.fetch(f"SELECT k.bucket, k.step, b.bits FROM unnest($1::int[], $2::text[]) "
                                f"AS k (bucket, step) JOIN {table} b USING (bucket, step)",
                                *(list(column) for column in zip(*keys)))
        existing.update(((table, (bucket, step)), bits) for bucket, step, bits in rows)
    for table, rows in _merged(adds, existing).items():
        await conn.executemany(_dollar(upsert(table)), rows)


class Backfill:
    """Migration 18's bitmaps built in memory from the signup_step events (indexes in order of first
    appearance): `add(rows)` per chunk of BACKFILL_SQL rows, then the index and bitmap rows."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.bits: dict[tuple[str, Key], BitMap] = {}

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        found: dict[tuple[int, str], set[str]] = {}
        index = self.index
        for ts, label, user, anonymous in rows:
            visitor = user if user is not None else anonymous
            found.setdefault((int(ts // HOUR), label or ""), set()).add(visitor)
            if visitor not in index:
                index[visitor] = len(index) + 1
        for k, bits in keyed(found, index).items():
            old = self.bits.get(k)
            if old is None:
                self.bits[k] = bits
            else:
                old |= bits

    def index_rows(self) -> list[tuple[int, str]]:
        return [(i, visitor) for visitor, i in self.index.items()]

    def bit_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        return _merged(self.bits, {})


def backfill_sqlite(conn: Any) -> None:
    """Inside migration 18's transaction (sqlite3.Connection)."""
    fill = Backfill()
    cursor = conn.execute(BACKFILL_SQL)
    while rows := cursor.fetchmany(CHUNK):
        fill.add(rows)
    conn.executemany("INSERT INTO visitor_index (idx, visitor) VALUES (?, ?)", fill.index_rows())
    for table, rows in fill.bit_rows().items():
        conn.executemany(upsert(table), rows)


async def backfill_postgres(conn: Any) -> None:
    """Inside migration 18's transaction (asyncpg.Connection: its cursor needs one)."""
    fill = Backfill()
    chunk: list[tuple[Any, ...]] = []
    async for row in conn.cursor(BACKFILL_SQL, prefetch=CHUNK):
        chunk.append(tuple(row))
        if len(chunk) == CHUNK:
            fill.add(chunk)
            chunk = []
    fill.add(chunk)
    await write_backfill_postgres(conn, "visitor_index", "visitor", fill.index_rows(), fill.bit_rows(), upsert)


# --- retention, erasure, merges (statements run by the callers' transactions) ----------------------

def retention_statements(cutoff: float, names: Sequence[str] | None) -> list[tuple[str, Sequence[Any]]]:
    """The buckets that END at or before `cutoff`, with signup_step's class (names holding it) or past the
    longest class (names empty); nothing for the per-person pass (names None)."""
    if names is None or (names and SIGNUP not in names):
        return []
    hour, day = math.floor(cutoff / HOUR), math.floor(cutoff / DAY)
    return [("DELETE FROM signup_bits_hour WHERE bucket < ?", (hour,)),
            ("DELETE FROM signup_bits_day WHERE bucket < ?", (day,)),
            ("DELETE FROM signup_bits_extra WHERE bucket < ?", (hour,))]


def erase_statements(visitors: Sequence[str], dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """The erased visitors' indexes go dead (their bits count for nobody from then on), their extra bits go."""
    out: list[tuple[str, Sequence[Any]]] = _locked(dialect) if visitors else []
    for chunk in _chunks(sorted(set(visitors))):
        marks = _marks(len(chunk))
        out += [(f"DELETE FROM signup_bits_extra WHERE idx IN (SELECT idx FROM visitor_index WHERE visitor IN {marks})",
                 list(chunk)),
                (f"UPDATE visitor_index SET visitor = NULL WHERE visitor IN {marks}", list(chunk))]
    return out


def merge_statements(alias: str, person: str, dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """After an alias merge rewrote the alias's events to `person` (its anonymous ones too): every signup
    hour and step of the person's events becomes an extra bit of the person's visitor index, and the
    alias's index goes dead (its bits were the alias's visits, now the person's)."""
    idx = "(SELECT idx FROM visitor_index WHERE visitor = ?)"
    own, mine = user_index.ids(dialect, "= ?", [person])      # the person's events (user_index.py)
    name = user_index.name(dialect)
    return [
        *_locked(dialect),
        (f"INSERT INTO visitor_index (visitor) SELECT ? WHERE EXISTS (SELECT 1 FROM events WHERE {name} = "
         f"'signup_step' AND {own}) ON CONFLICT (visitor) DO NOTHING", [person, *mine]),
        (f"INSERT INTO signup_bits_extra (bucket, step, idx) SELECT DISTINCT {_HOUR_SQL}, coalesce(label, ''), {idx} "
         f"FROM events WHERE {name} = 'signup_step' AND {own} ON CONFLICT (bucket, step, idx) DO NOTHING",
         [person, *mine]),
        ("DELETE FROM signup_bits_extra WHERE idx IN (SELECT idx FROM visitor_index WHERE visitor = ?)", [alias]),
        ("UPDATE visitor_index SET visitor = NULL WHERE visitor = ?", [alias]),
    ]
