"""Person bitmaps (migration 12): who was active in each hour and day, as Roaring bitmaps of person indexes,
so a range's person set costs persons, not events (issue 17: the block and hour-mask rows it replaces
read one row per person, ~39k block rows + 14k edge-day rows at 10M bench events, per person set).

Tables (written as agent/store/rollups.py's are: in the events' transaction on PostgreSQL, folded on SQLite):
- person_index (idx, person)          a dense integer per person key (events.user_id, the key of the
                                      per-person rollups, after alias merges). `person` is NULL for a
                                      DEAD index: erased (GDPR) or merged away (alias); every read
                                      subtracts the dead indexes (`DEAD_SQL`), so a dead index counts
                                      for nobody and a later event of the same id gets a new index.
- person_bits_{hour,day} (bucket, name, label, bits)
                                      a Roaring bitmap (pyroaring's portable serialization; SQLite BLOB,
                                      PostgreSQL BYTEA) of the indexes of the persons with an event in
                                      the bucket (hour = ts // 3600, day = ts // 86400), per key:
                                      name '' and label '' = any event; (name, '') = events of that name;
                                      (name, label) for the names of rollups.LABELLED (sessions by
                                      coach, goals by category, web vitals by metric).
- person_bits_extra (bucket, name, label, idx)
                                      single bits, per hour, added by SQL where a read-modify-write of
                                      a blob cannot run (an alias merge: the person's hours, rewritten
                                      from the alias's events); reads OR them in. Few rows (merges).

Maintenance: `write_postgres` in the group commit, `write_sqlite` in SQLite's fold of the rollups, about
once a second (agent/store/rollup_fold.py; a read of a bitmap table folds first, as one of a rollup table
does) (a read-modify-write of the touched blobs: the hour and day per key; PostgreSQL takes a transaction
advisory lock around it, so two agents never lose each other's bits), `backfill_*` at migration 12 (the
events in id order, CHUNK at a time, bitmaps built in memory), `retention_statements` (whole buckets
dropped), `erase_statements` (the person's index goes dead, its extra bits go), `merge_statements` (after
an alias merge rewrote the alias's events to the person: the alias's index goes dead, the person's
events' hours become extra bits of the person's index).

Reading (agent/analytics/person_sets.py): `persons_active(store, start, end, name=None, label=None)`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pyroaring import BitMap

from agent.store import signup_bits, user_index
from agent.store.bitmap_sql import (
    ADVISORY_LOCK,
    chunks as _chunks,
    dollar as _dollar,
    indexes_postgres,
    locked,
    marks as _marks,
    write_backfill_postgres,
)
from agent.store.rollups import LABELLED

MIGRATION = 12
HOUR = 3600
DAY = 86400
CHUNK = 100_000          # events per backfill read

# (bucket, name, label): the key of one bitmap row
Key = tuple[int, str, str]

INDEX_INSERT = "INSERT INTO person_index (person) VALUES (?) ON CONFLICT (person) DO NOTHING"
DEAD_SQL = "SELECT idx FROM person_index WHERE person IS NULL"
BACKFILL_SQL = "SELECT id, ts, name, label, user_id FROM events WHERE id > ? ORDER BY id LIMIT ?"


def upsert(table: str) -> str:
    return (f"INSERT INTO {table} (bucket, name, label, bits) VALUES (?, ?, ?, ?) "
            f"ON CONFLICT (bucket, name, label) DO UPDATE SET bits = excluded.bits")


def fact_sets(facts: Iterable[tuple[Any, ...]]) -> dict[tuple[int, str, str], set[str]]:
    """`facts` from rollups.Fact tuples (name, ts, user_id, label, outcome, value, anonymous_id): what the
    SQLite fold has of the events it folds (agent/store/rollup_fold.py)."""
    out: dict[tuple[int, str, str], set[str]] = {}
    for name, ts, user, label, _, _, _ in facts:
        if user is not None:
            key = (int(ts // HOUR), name, (label or "") if name in LABELLED else "")
            found = out.get(key)
            if found is None:
                out[key] = {user}
            else:
                found.add(user)
    return out


def persons_in(found: dict[tuple[int, str, str], set[str]]) -> list[str]:
    return sorted(set().union(*found.values()))


def keyed(found: dict[tuple[int, str, str], set[str]], index: dict[str, int]) -> dict[tuple[str, Key], BitMap]:
    """(table, key) -> the person indexes to set, in the hour and day tables, for every key of each
    (hour, name, label): (name, label), (name, '') and ('', '')."""
    out: dict[tuple[str, Key], BitMap] = {}
    for (hour, name, label), users in found.items():
        bits = BitMap([index[user] for user in users])
        day = hour // 24
        for key in ((hour, "", ""), (hour, name, ""), *(((hour, name, label),) if label else ())):
            for table, bucket in (("person_bits_hour", hour), ("person_bits_day", day)):
                k = (table, (bucket, key[1], key[2]))
                old = out.get(k)
                if old is None:
                    out[k] = BitMap(bits)
                else:
                    old |= bits
    return out
def _merged(adds: dict[tuple[str, Key], BitMap],
            existing: dict[tuple[str, Key], bytes]) -> dict[str, list[tuple[Any, ...]]]:
    """table -> upsert rows: each touched bitmap, its stored bits OR the new ones."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for (table, key), bits in adds.items():
        old = existing.get((table, key))
        if old is not None:
            bits |= BitMap.deserialize(old)
        out.setdefault(table, []).append((*key, bits.serialize()))
    return out


# --- the drivers' part ----------------------------------------------------------------------------

class WriterCache:
    """The SQLite writer's copy of the bitmaps of the current hours and days (wall clock: the hour before,
    this one and the next; yesterday and today), as it last wrote them: a group commit then sets only the
    bits that are NEW (a person's first event of the hour under a key), and writes a blob only when it has
    some, with no read. In a live stream most events come from persons already counted in the hour:
    most keys of a group need no write at all.
    Valid while no other connection writes the database (PRAGMA data_version unchanged since the last
    group; another agent on the same file, say) and every group committed: the driver clears it when a
    transaction fails. Erasures and merges never touch the blobs (dead indexes), retention only
    buckets older than these."""

    def __init__(self) -> None:
        self.bits: dict[tuple[str, Key], BitMap] = {}
        self.version: Any = None
        self.hour = -1

    def clear(self) -> None:
        self.bits.clear()
        self.version = None

    def _window(self, now: float) -> tuple[int, int]:
        hour = int(now // HOUR)
        if hour != self.hour:
            self.hour = hour
            self.bits = {k: v for k, v in self.bits.items() if self.keeps(k)}
        return hour, hour // 24

    def keeps(self, key: tuple[str, Key]) -> bool:
        table, (bucket, _, _) = key
        if table == "person_bits_hour":
            return self.hour - 1 <= bucket <= self.hour + 1
        return self.hour // 24 - 1 <= bucket <= self.hour // 24


def write_sqlite(conn: Any, facts: Sequence[tuple[Any, ...]], cache: WriterCache | None = None) -> None:
    """The bits of these events (rollups.Fact tuples), inside the writer's open transaction
    (sqlite3.Connection); the signup visitors' bits too (agent/store/signup_bits.py). SQLite writes them
    in the fold, about once a second (agent/store/rollup_fold.py), PostgreSQL in every group commit."""
    signup_bits.write_sqlite(conn, facts)
    found = fact_sets(facts)
    if not found:
        return
    if cache is not None:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != cache.version:
            cache.clear()
            cache.version = version
        cache._window(time.time())
    persons = persons_in(found)
    index: dict[str, int] = {}
    for chunk in _chunks(persons):
        index.update(conn.execute(f"SELECT person, idx FROM person_index WHERE person IN {_marks(len(chunk))}",
                                  chunk).fetchall())
    missing = [person for person in persons if person not in index]
    for chunk in _chunks(missing):  # new persons only: an index is never taken by a conflicting insert
        values = ", ".join("(?)" for _ in chunk)
        index.update(conn.execute(f"INSERT INTO person_index (person) VALUES {values} RETURNING person, idx",
                                  chunk).fetchall())
    adds = keyed(found, index)
    writes: dict[str, list[tuple[Any, ...]]] = {}
    missed: dict[tuple[str, Key], BitMap] = {}
    for k, bits in adds.items():
        cached = cache.bits.get(k) if cache is not None else None
        if cached is None:
            missed[k] = bits
        elif not bits.issubset(cached):
            cached |= bits
            writes.setdefault(k[0], []).append((*k[1], cached.serialize()))
    existing: dict[tuple[str, Key], bytes] = {}
    for table in ("person_bits_hour", "person_bits_day"):
        keys = [key for t, key in missed if t == table]
        for chunk in _chunks(keys, 300):
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            sql = f"SELECT bucket, name, label, bits FROM {table} WHERE (name, label, bucket) IN (VALUES {values})"
            for bucket, name, label, bits in conn.execute(sql, [v for b, n, lab in chunk for v in (n, lab, b)]):
                existing[(table, (bucket, name, label))] = bits
    for k, bits in missed.items():
        old = existing.get(k)
        if old is not None:
            bits |= BitMap.deserialize(old)
        writes.setdefault(k[0], []).append((*k[1], bits.serialize()))
        if cache is not None and cache.keeps(k):
            cache.bits[k] = bits
    for table, rows in writes.items():
        conn.executemany(upsert(table), rows)


async def write_postgres(conn: Any, facts: Sequence[tuple[Any, ...]]) -> None:
    """The group's bits (rollups.Fact tuples), inside the writer's open transaction (asyncpg.Connection); the
    advisory lock serializes the read-modify-write across agents sharing the database. The signup visitors'
    bits too."""
    await signup_bits.write_postgres(conn, facts)
    found = fact_sets(facts)
    if not found:
        return
    persons = persons_in(found)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK)
    index = await indexes_postgres(conn, "person_index", "person", persons)
    adds = keyed(found, index)
    existing: dict[tuple[str, Key], bytes] = {}
    for table in ("person_bits_hour", "person_bits_day"):
        keys = [key for t, key in adds if t == table]
        rows = await conn.fetch(f"SELECT k.bucket, k.name, k.label, b.bits FROM unnest($1::int[], $2::text[], "
                                f"$3::text[]) AS k (bucket, name, label) JOIN {table} b USING (bucket, name, label)",
                                *(list(column) for column in zip(*keys)))
        existing.update(((table, (bucket, name, label)), bits) for bucket, name, label, bits in rows)
    for table, rows in _merged(adds, existing).items():
        await conn.executemany(_dollar(upsert(table)), rows)


class Backfill:
    """Migration 12's bitmaps built in memory from the events (read CHUNK at a time by the driver):
    `add(rows)` per chunk of BACKFILL_SQL rows, then `rows()` the upserts. Indexes are given in order
    of first appearance (the events' id order). Memory: the bitmaps themselves (~2 bytes a distinct
    (hour, key, person)), never the events."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.bits: dict[tuple[str, Key], BitMap] = {}

    def add(self, rows: Iterable[Sequence[Any]]) -> int:
        """Adds a chunk of (id, ts, name, label, user_id); returns the last id."""
        last = 0
        found: dict[tuple[int, str, str], set[str]] = {}
        index = self.index
        for row_id, ts, name, label, user in rows:
            last = row_id
            if user is not None:
                key = (int(ts // HOUR), name, (label or "") if name in LABELLED else "")
                found.setdefault(key, set()).add(user)
                if user not in index:
                    index[user] = len(index) + 1
        for k, bits in keyed(found, index).items():
            old = self.bits.get(k)
            if old is None:
                self.bits[k] = bits
            else:
                old |= bits
        return last

    def index_rows(self) -> list[tuple[int, str]]:
        return [(i, person) for person, i in self.index.items()]

    def bit_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        out: dict[str, list[tuple[Any, ...]]] = {}
        for (table, key), bits in sorted(self.bits.items()):
            out.setdefault(table, []).append((*key, bits.serialize()))
        return out


INDEX_BACKFILL = "INSERT INTO person_index (idx, person) VALUES (?, ?)"


def backfill_sqlite(conn: Any) -> None:
    fill = Backfill()
    last = 0
    while rows := conn.execute(BACKFILL_SQL, (last, CHUNK)).fetchall():
        last = fill.add(rows)
    conn.executemany(INDEX_BACKFILL, fill.index_rows())
    for table, rows in fill.bit_rows().items():
        conn.executemany(upsert(table), rows)


async def backfill_postgres(conn: Any) -> None:
    fill = Backfill()
    last = 0
    while rows := await conn.fetch(_dollar(BACKFILL_SQL), last, CHUNK):
        last = fill.add(tuple(row) for row in rows)
    await write_backfill_postgres(conn, "person_index", "person", fill.index_rows(), fill.bit_rows(), upsert)


# --- retention, erasure, merges (statements run by the callers' transactions) ----------------------

def retention_statements(cutoff: float, names: Sequence[str] | None) -> list[tuple[str, Sequence[Any]]]:
    """DELETEs of the buckets that END at or before `cutoff` (as rollups.retention_statements): the
    any-event bitmaps and extra bits with the analytics class (names None: activity is analytics data),
    a name's bitmaps and extra bits with its class (names given), every one past the longest class
    (names empty)."""
    hour, day = math.floor(cutoff / HOUR), math.floor(cutoff / DAY)
    if names is None:
        return [("DELETE FROM person_bits_hour WHERE name = '' AND bucket < ?", (hour,)),
                ("DELETE FROM person_bits_day WHERE name = '' AND bucket < ?", (day,)),
                ("DELETE FROM person_bits_extra WHERE name = '' AND bucket < ?", (hour,))]
    if not names:
        return [("DELETE FROM person_bits_hour WHERE bucket < ?", (hour,)),
                ("DELETE FROM person_bits_day WHERE bucket < ?", (day,)),
                ("DELETE FROM person_bits_extra WHERE bucket < ?", (hour,))]
    out: list[tuple[str, Sequence[Any]]] = []
    for chunk in _chunks(list(names)):       # a merge's extra bits of a name go with the name's own bitmaps
        marks = _marks(len(chunk))
        out += [(f"DELETE FROM person_bits_hour WHERE name IN {marks} AND bucket < ?", (*chunk, hour)),
                (f"DELETE FROM person_bits_day WHERE name IN {marks} AND bucket < ?", (*chunk, day)),
                (f"DELETE FROM person_bits_extra WHERE name IN {marks} AND bucket < ?", (*chunk, hour))]
    return out


def _locked(dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """On PostgreSQL, the group-commit writer's advisory lock (write_postgres) first: a merge or erasure
    that changed person_index beside a group writing the same person's first bits made the group's INSERT
    fail on the unique person (every request of the group refused), or left new events under an index the
    erasure had just marked dead. SQLite's writer is one connection: nothing to take."""
    return locked(dialect)


def erase_statements(ids: Sequence[str], dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """The persons' indexes go dead (counted by no read from then on) and their extra bits go."""
    out: list[tuple[str, Sequence[Any]]] = _locked(dialect)
    for chunk in _chunks(list(ids)):
        marks = _marks(len(chunk))
        out += [(f"DELETE FROM person_bits_extra WHERE idx IN (SELECT idx FROM person_index WHERE person IN {marks})",
                 list(chunk)),
                (f"UPDATE person_index SET person = NULL WHERE person IN {marks}", list(chunk))]
    return out


_HOUR_SQL = "CAST(floor(ts / 3600) AS INTEGER)"
_LABELLED_MARKS = _marks(len(LABELLED))


def merge_statements(alias: str, person: str, dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """After an alias merge rewrote the alias's events to `person`: every hour and key of the person's
    events becomes an extra bit of the person's index (the alias's hours among them), and the alias's
    index goes dead (its bits were the alias's, now the person's)."""
    idx = "(SELECT idx FROM person_index WHERE person = ?)"
    own, mine = user_index.ids(dialect, "= ?", [person])      # the person's events (user_index.py)
    keys = (f"SELECT {_HOUR_SQL} AS h, '' AS n, '' AS l FROM events WHERE {own} "
            f"UNION SELECT {_HOUR_SQL}, name, '' FROM events WHERE {own} "
            f"UNION SELECT {_HOUR_SQL}, name, label FROM events WHERE {own} AND {user_index.name(dialect)} "
            f"IN {_LABELLED_MARKS} "
            "AND label IS NOT NULL AND label <> ''")
    labelled = sorted(LABELLED)
    return [
        *_locked(dialect),
        (INDEX_INSERT, [person]),
        (f"INSERT INTO person_bits_extra (bucket, name, label, idx) SELECT h, n, l, {idx} FROM ({keys}) k "
         "WHERE true ON CONFLICT (bucket, name, label, idx) DO NOTHING", [person, *mine, *mine, *mine, *labelled]),
        ("DELETE FROM person_bits_extra WHERE idx IN (SELECT idx FROM person_index WHERE person = ?)", [alias]),
        ("UPDATE person_index SET person = NULL WHERE person = ?", [alias]),
    ]
