"""Migration 13's part that is not DDL: the person bitmaps by label (agent/store/person_bits.py) of the
event names that became labelled with it (rollups.LABELLED_SINCE_13: page_load's page, so that the
insights' unique persons by page come from the bitmaps, agent/analytics/insight_persons.py).

Why a backfill of its own: migration 12 builds the (name, label) bitmaps of the names labelled when it
runs. A store that ran it before page_load was labelled has page_load's (name, '') bitmaps but none by
page; one that runs 12 and 13 together got them from 12 (then this finds them and does nothing). The
rebuild reads the name's identified events through events_name_ts (a cursor: no id paging, which would
sort the name's events per chunk), builds the (hour, day) x (name, label) bitmaps in memory with
person_bits.Backfill over the existing person indexes, and writes only the labelled rows: the (name, '')
and ('', '') bitmaps it does not rebuild stay as they are.
"""

from __future__ import annotations

from typing import Any

from agent.store import person_bits as pb
from agent.store.rollups import LABELLED_SINCE_13

MIGRATION = 13
CHUNK = 50_000
_NAMES = ", ".join(f"'{name}'" for name in LABELLED_SINCE_13)        # constants, not input
DONE_SQL = f"SELECT 1 FROM person_bits_day WHERE name IN ({_NAMES}) AND label <> '' LIMIT 1"
INDEX_SQL = (f"INSERT INTO person_index (person) SELECT DISTINCT user_id FROM events WHERE name IN ({_NAMES}) "
             "AND user_id IS NOT NULL ON CONFLICT (person) DO NOTHING")
INDEXES_SQL = "SELECT person, idx FROM person_index WHERE person IS NOT NULL"
EVENTS_SQL = f"SELECT 0, ts, name, label, user_id FROM events WHERE name IN ({_NAMES}) AND user_id IS NOT NULL"


def labelled_rows(fill: pb.Backfill) -> dict[str, list[tuple[Any, ...]]]:
    """The upserts of the rebuilt (name, label) bitmaps only."""
    return {table: [row for row in rows if row[2]] for table, rows in fill.bit_rows().items()}


def backfill_sqlite(conn: Any) -> None:
    """Inside migration 13's transaction (sqlite3.Connection)."""
    if conn.execute(DONE_SQL).fetchone() is not None:
        return
    conn.execute(INDEX_SQL)
    fill = pb.Backfill()
    fill.index = dict(conn.execute(INDEXES_SQL).fetchall())
    cursor = conn.execute(EVENTS_SQL)
    while rows := cursor.fetchmany(CHUNK):
        fill.add(rows)
    for table, rows in labelled_rows(fill).items():
        conn.executemany(pb.upsert(table), rows)


async def backfill_postgres(conn: Any) -> None:
    """Inside migration 13's transaction (asyncpg.Connection: its cursor needs one)."""
    if await conn.fetchval(DONE_SQL) is not None:
        return
    await conn.execute(INDEX_SQL)
    fill = pb.Backfill()
    fill.index = {person: int(idx) for person, idx in await conn.fetch(INDEXES_SQL)}
    chunk: list[tuple[Any, ...]] = []
    async for row in conn.cursor(EVENTS_SQL, prefetch=CHUNK):
        chunk.append(tuple(row))
        if len(chunk) == CHUNK:
            fill.add(chunk)
            chunk = []
    fill.add(chunk)
    for table, rows in labelled_rows(fill).items():
        await conn.executemany(_numbered(pb.upsert(table)), rows)


def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, ..."""
    parts = sql.split("?")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, 1))
