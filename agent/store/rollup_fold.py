"""SQLite's rollups folded in bulk (migration 19): the group commits store the events, and their rollups
(agent/store/rollups.py) are added about once a second, for all the events committed since, in a
transaction that also moves a watermark. Reads never see the difference: a read of a rollup table first
folds what is committed and not yet folded (`SqliteStore.fetch`), and so does a write transaction that
touches the events or the rollups (erasure, alias merges, retention), before its own statements.

Why: an upsert of the rollups dirties the same pages (the current hour's, day's, week's rows and the
active persons' rows) whichever number of events it adds, and each commit writes its dirty pages to the
WAL. On the ingest bench's mix (`python3 bench/ingest.py`; in-process, CPU µs an event of the group
commit), the rollups cost ~11 µs an event at groups of 400 events (what 8 connections of 100-event
batches make) and ~3 at 8,000: folding ~1 s of events at once pays the second figure, whatever the
commits' size.

Exactly as durable, and never counted twice: the fold reads the events back from the table (the rows with
an id above the watermark, and the onboarding rows above theirs), so what it adds is what was committed, and
the watermark moves in the same transaction as the rows it adds. After a crash, the events committed since
the last fold are still above the watermark: the store folds them when it opens. A deletion moves the
watermark down to the highest id left (SQLite gives a new row the highest id plus one, which must land
above the watermark to be folded).

When nothing is committed for FOLD_SECONDS, a timer folds the last commits (an idle store does not keep
them waiting for a read). A process sharing the file sees another's events too: a rollup read first checks
the watermark against the highest id (BEHIND_SQL) and folds what is above it, whoever committed it.

A full store (store.max_size_mb, or the disk): a fold needs new pages, and fails. Then the group commit
keeps its events (the fold is undone alone, in a savepoint; if SQLite rolled the whole transaction back,
the group is written again without it, and no commit folds for FOLD_SECONDS), an open or a read goes on
with the rollups as they are (logged; `SqliteStore.fold_failures`), and retention does not fold first
(`execute(..., rollups_current=False)`: its DELETEs and recounts are right whether the events above the
watermark were folded or not, as a later fold adds to every table alike), so it frees room and the next
fold catches up. Erasure and alias merges do fold first (they subtract or recount what the rollups hold):
they wait for room, as ingest does.

PostgreSQL keeps the rollups in every commit (agent/store/postgres.py): several agents may share its
database, and each one's reads must see the others' events.

The fold writes the person and signup bitmaps too (agent/store/person_bits.py, signup_bits.py), from the
same facts: a read of a bitmap table or index folds first (`reads_folded`), like a read of a rollup. Why:
per group commit they cost ~1.6 CPU µs an event (the group's persons looked up, its keys' bitmaps merged
with the writer's cache), folded ~0.5 (in-process, groups of 400 into a store of 300,000 bench events,
median of 5 interleaved: the group commit 17.5 -> 16.0 µs an event). A bit set twice is set (an OR), so
the events an older agent committed above the watermark, bits already written, fold as well.

The writer keeps the facts of what it committed since the last fold (`Tail`), and the fold aggregates them
instead of reading the events back when they are exactly the rows above the watermark: the tail starts at
the watermark, ends at the highest id, and no other connection committed since it began (PRAGMA
data_version). SQLite gives a group's rows the ids after the highest one, in order: read in the group's
transaction before its INSERT. Anything else drops the tail and the next fold reads the events back, as
before: a statement of `SqliteStore.execute` on the events (retention does not fold first), another
process's commit, a failed transaction, a tail past TAIL_EVENTS. Why: reading ~20,000 events back was ~1.3
of the fold's ~3.4 CPU µs an event. In-process on the ingest bench's mix (groups of 400 events into a store
of 300,000, median of 5 interleaved with the code before): the fold 3.4 -> 2.1 µs an event,
the whole group commit 17.9 -> 16.4 (the facts of a group cost ~0.2 to keep).
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.store import person_bits, rollups, user_index

MIGRATION = 19
FOLD_EVENTS = 20_000        # committed and not folded: folded in the next group commit past this ...
FOLD_SECONDS = 1.0          # ... or this long after the first of them was committed
CHUNK = rollups.CHUNK       # events read back per query (bounded memory after a long crash loop)

WATERMARK_SQL = "SELECT events, onboarding FROM rollup_folded"
EVENTS_SQL = f"SELECT id, {rollups.FACT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"
ONBOARDING_SQL = "SELECT id, ts, step, status, step_number FROM onboarding_funnel WHERE id > ? ORDER BY id LIMIT ?"
MOVE_SQL = "UPDATE rollup_folded SET events = ?, onboarding = ?"
# after a deletion: at most the highest ids left (SQLite's next id is the highest plus one: it must land
# above the watermark); events not folded yet keep it where it is, being above it
LOWER_SQL = ("UPDATE rollup_folded SET events = min(events, (SELECT coalesce(max(id), 0) FROM events)), "
             "onboarding = min(onboarding, (SELECT coalesce(max(id), 0) FROM onboarding_funnel))")
BEHIND_SQL = ("SELECT (SELECT events FROM rollup_folded) < (SELECT coalesce(max(id), 0) FROM events) "
              "OR (SELECT onboarding FROM rollup_folded) < (SELECT coalesce(max(id), 0) FROM onboarding_funnel)")

# a write statement that needs the rollups current first: it changes the events, the onboarding rows or
# the rollups themselves (security_events and the like are other tables: no word boundary before "events")
_FOLDS_FIRST = re.compile(r"\b(?:events|events_by_user|onboarding_funnel)\b|\brollup_(?!folded\b)", re.IGNORECASE)
_DELETES = re.compile(r"^\s*DELETE\s+FROM\s+(?:events|onboarding_funnel)\b", re.IGNORECASE)


# a read that needs the fold first: the rollups, the person and signup bitmaps and their indexes, and the
# events by user (agent/store/user_index.py)
_READS_FOLDED = re.compile(r"\brollup_|\b(?:person|signup)_bits_|\b(?:person|visitor)_index\b|\bevents_by_user\b",
                           re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def reads_folded(sql: str) -> bool:
    return bool(_READS_FOLDED.search(sql))


@functools.lru_cache(maxsize=1024)
def folds_first(sql: str) -> bool:
    return bool(_FOLDS_FIRST.search(sql))


@functools.lru_cache(maxsize=1024)
def deletes_folded(sql: str) -> bool:
    return bool(_DELETES.search(sql))


TAIL_EVENTS = 5 * FOLD_EVENTS     # facts kept at most (a fold postponed by a full store): then read back
HIGHEST_SQL = "SELECT coalesce(max(id), 0) FROM events"
VERSION_SQL = "PRAGMA data_version"     # changes when ANOTHER connection commits to the file


class Tail:
    """The facts (rollups.Fact) of the events with ids in (start, end], in id order, as this writer
    committed them (`start` None: none kept), valid while no other connection committed (data_version)."""

    def __init__(self) -> None:
        self.start: int | None = None
        self.end = 0
        self.version: Any = None
        self.facts: list[rollups.Fact] = []

    def drop(self) -> None:
        self.start = None
        self.facts = []

    def extend(self, conn: Any, facts: list[rollups.Fact]) -> None:
        """In a group's open transaction, BEFORE its INSERT: its rows take the ids after the highest one.
        The caller drops the tail if the transaction does not commit."""
        (highest,), = conn.execute(HIGHEST_SQL).fetchall()
        (version,), = conn.execute(VERSION_SQL).fetchall()
        if (self.start is None or highest != self.end or version != self.version
                or len(self.facts) + len(facts) > TAIL_EVENTS):
            self.start, self.facts, self.version = highest, [], version
        self.facts += facts
        self.end = highest + len(facts)

    def folded(self) -> None:
        """The fold that took the tail (or read the events back up to its end) committed."""
        self.start = self.end
        self.facts = []

    def holds(self, conn: Any, watermark: int) -> bool:
        """Exactly the events above the watermark: from it to the highest id, nobody else's commit since."""
        return (self.start == watermark and bool(self.facts)
                and conn.execute(VERSION_SQL).fetchone()[0] == self.version
                and conn.execute(HIGHEST_SQL).fetchone()[0] == self.end)


def fold(conn: Any, tail: Tail | None = None, bits: person_bits.WriterCache | None = None,
         by_user: bool = False) -> int:
    """Inside the writer's open transaction (sqlite3.Connection): add the rollups and the person and signup
    bitmaps of every event and onboarding row above the watermark, and with `by_user` (migration 23) their
    entries of events_by_user (agent/store/user_index.py); move it past them; the events folded.
    `tail`: the facts of the events above the watermark, aggregated instead of reading them back when it
    holds exactly them. `bits`: the writer's cache of the current bitmaps (the caller clears it when the
    transaction or the fold's savepoint is rolled back)."""
    (events, onboarding), = conn.execute(WATERMARK_SQL).fetchall()
    start = (events, onboarding)
    folded = 0
    if tail is not None and tail.holds(conn, events):
        _add(conn, tail.facts, bits)
        folded, events = len(tail.facts), tail.end
    while rows := conn.execute(EVENTS_SQL, (events, CHUNK)).fetchall():
        events = rows[-1][0]
        folded += len(rows)
        _add(conn, [row[1:] for row in rows], bits)
    if by_user:         # from its own watermark (user_index.py): an older agent's folds wrote no entries
        (mark,), = conn.execute(user_index.MARK_SQL).fetchall()
        if mark < events:
            conn.execute(user_index.FOLD_SQL, (mark, events))
            conn.execute(user_index.MOVE_SQL, (events,))
    while rows := conn.execute(ONBOARDING_SQL, (onboarding, CHUNK)).fetchall():
        onboarding = rows[-1][0]
        for sql, aggregated in rollups.steps_aggregate(("onboarding", ts, step, status, number)
                                                       for _, ts, step, status, number in rows):
            conn.executemany(sql, aggregated)
    if (events, onboarding) != start:       # nothing new: no write (an open, a read of a folded store)
        conn.execute(MOVE_SQL, (events, onboarding))
    return folded


def _add(conn: Any, facts: list[Any], bits: person_bits.WriterCache | None) -> None:
    for sql, aggregated in rollups.aggregate(facts):
        conn.executemany(sql, aggregated)
    person_bits.write_sqlite(conn, facts, bits)


# --- reads: once per request -------------------------------------------------------------------------

_SETTLED: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar("rollups_settled", default=None)


@contextmanager
def settled_once() -> Iterator[None]:
    """Within it (one analytics request), a store folds for the first read of its rollups only: the events
    acknowledged before the request began are in; those acknowledged while it runs may be or not, as with
    any read that is not one snapshot. Outside it, every read of the rollups folds first when anything is
    unfolded (a dashboard's ~25 reads during ingest would otherwise each wait for a commit and a fold)."""
    token = _SETTLED.set(set())
    try:
        yield
    finally:
        _SETTLED.reset(token)


def needs_settling(store_id: int) -> bool:
    """False when this request's reads of the store already folded (see settled_once); marks it done."""
    done = _SETTLED.get()
    if done is None:
        return True
    if store_id in done:
        return False
    done.add(store_id)
    return True
