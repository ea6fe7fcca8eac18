"""The SQL pieces the Roaring-bitmap sections share: the person bitmaps (person_bits.py, migration 12) and the
signup visitors' (signup_bits.py, migration 18) are one design over two index tables, so they take one
PostgreSQL advisory lock, chunk their IN lists alike and write a backfill's index and bitmap rows alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

ID_CHUNK = 500          # ids per IN (...)
# 'loombits': every bitmap section's writers, merges and erasures on PostgreSQL (two agents never lose each
# other's bits, nor take the same person or visitor twice)
ADVISORY_LOCK = 0x6C6F6F6D_62697473 & 0x7FFFFFFFFFFFFFFF


def chunks(items: Sequence[Any], n: int = ID_CHUNK) -> Iterable[Sequence[Any]]:
    return (items[i:i + n] for i in range(0, len(items), n))


def marks(n: int) -> str:
    return f"({', '.join('?' * n)})"


def dollar(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, ..."""
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def locked(dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """The statement taking the bitmaps' advisory lock first, on PostgreSQL (none on SQLite: one writer)."""
    return [("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK,))] if dialect == "postgres" else []


async def indexes_postgres(conn: Any, index_table: str, column: str, ids: list[str]) -> dict[str, int]:
    """The dense index of each id, new ids given one (asyncpg, under the advisory lock: no conflicting insert,
    so no identity value is burnt by ON CONFLICT)."""
    index = {v: i for v, i in await conn.fetch(
        f"SELECT {column}, idx FROM {index_table} WHERE {column} = ANY($1::text[])", ids)}
    missing = [v for v in ids if v not in index]
    if missing:
        index.update((v, i) for v, i in await conn.fetch(
            f"INSERT INTO {index_table} ({column}) SELECT unnest($1::text[]) RETURNING {column}, idx", missing))
    return index


async def write_backfill_postgres(conn: Any, index_table: str, column: str, index_rows: list[tuple[int, str]],
                                  bit_rows: dict[str, list[tuple[Any, ...]]], upsert: Any) -> None:
    """A backfill's dense indexes (their identity continuing after them) and bitmap rows (asyncpg)."""
    await conn.executemany(f"INSERT INTO {index_table} (idx, {column}) OVERRIDING SYSTEM VALUE VALUES ($1, $2)",
                           index_rows)
    if index_rows:
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('{index_table}', 'idx'), $1)", len(index_rows))
    for table, rows in bit_rows.items():
        await conn.executemany(dollar(upsert(table)), rows)
