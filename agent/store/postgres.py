"""The shared store: PostgreSQL through an asyncpg pool, for several agents writing one database.

A group commit is one transaction of a few round trips whatever its size: the events go in as one
INSERT ... SELECT FROM unnest(<one array per column>), whose ON CONFLICT on the partial unique index of
client event ids skips events already stored (by this agent or another) and whose RETURNING tells which
were; each audit table and the users upsert are one more unnest statement. Migrations run on a
dedicated connection holding an advisory lock, so agents starting together apply each one once.

A write (write_events, execute) that gets no answer within `write_timeout` (default: twice
`connect_timeout`) has its connection closed under it: a hung or frozen server, or a network that drops
packets without a reset, must end in StoreUnavailable (503) rather than hold every ingest request that
waits on the group commit. Closing the socket, not cancelling the coroutine: a cancelled query would
still await its ROLLBACK from the same silent server.

Reads have their own pool, whose connections carry `statement_timeout` = store.query_timeout: a slow
query is cancelled by the server (57014 -> StoreTimeout, 503). A server that does not answer at all
(frozen, or a network dropping packets) cannot cancel anything, so a read also has a watchdog that
closes its connection READ_GRACE seconds after the limit; the pool then replaces it, and every pooled
connection is expired, so reads recover once the server answers again. Writes keep their own pool and
write_timeout: a long read never holds a connection an ingest commit is waiting for.

Queries arrive written once with `?` placeholders (agent/store/base.py); `to_dollar` rewrites them to
PostgreSQL's `$1, $2, ...`. numeric results (sum/avg of integers) are decoded as float, so fetch()
returns the same Python types as SQLite's driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import urllib.parse
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import asyncpg

from agent.store import label_bits, person_bits, rollups, signup_bits
from agent.store.batch import EVENT_ID, repeated_in_batch, user_activity
from agent.store.errors import StoreError, StoreFull, StoreTimeout, StoreUnavailable
from agent.store.migrate import APPLIED_SQL, RECORD_SQL, pending
from agent.store.partitions import PARTITIONED_SQL, Execute, Fetch, ensure, upgrade
from agent.store.rows import EVENT_COLUMNS, TABLE_COLUMNS, EventRows
from agent.store.schema import MIGRATIONS, Migration, migrations_table, statements

MIGRATION_LOCK = 0x6C6F6F6D        # pg_advisory_lock key shared by every loom-agent ("loom")
READ_GRACE = 0.5                   # seconds past store.query_timeout before a read's connection is closed
QUERY_CANCELED = "57014"           # statement_timeout (or a cancel request) ended the query
# column -> PostgreSQL array element type for unnest; every other column is text
_COLUMN_TYPES = {"ts": "float8", "received_at": "float8", "value": "float8", "time_spent_seconds": "float8",
                 "bytes": "float8", "step_number": "int4", "properties": "jsonb", "context": "jsonb"}
_FULL_STATES = {"53100": "disk full", "53200": "out of memory"}
# connection failures, shutdown, resource limits, read-only standby, lock/serialisation conflicts,
# missing database, authentication: all retryable from the client's side
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_UNAVAILABLE_STATES = {"25006", "40001", "40P01", "55P03", "3D000", "28000", "28P01"}


@functools.lru_cache(maxsize=1024)
def to_dollar(sql: str) -> str:
    """`?` placeholders -> `$1, $2, ...`, leaving any `?` inside '...' literals or "..." identifiers.
    (Doubled quotes inside a literal close and reopen it, which keeps the state right. Not handled:
    E'\\'' escapes, comments, and PostgreSQL's jsonb `?` operators: use jsonb_exists() instead.)"""
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def _unnest_insert(table: str, columns: Sequence[str], suffix: str = "") -> str:
    arrays = ", ".join(f"${i}::{'text' if _COLUMN_TYPES.get(c) == 'jsonb' else _COLUMN_TYPES.get(c, 'text')}[]"
                       for i, c in enumerate(columns, 1))
    select = ", ".join(f"t.{c}::jsonb" if _COLUMN_TYPES.get(c) == "jsonb" else f"t.{c}" for c in columns)
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) SELECT {select} FROM unnest({arrays}) AS t({names}){suffix}"


INSERT_EVENTS_UNPARTITIONED = _unnest_insert(      # before migration 9: the unique index of events dedupes
    "events", EVENT_COLUMNS, " ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING RETURNING event_id")


def _insert_deduplicated(columns: Sequence[str]) -> str:
    """Migration 9 on: the batch's ids into event_ids first; only the events whose id went in (or that
    have none) into the partitioned events table (agent/store/partitions.py says why)."""
    arrays = ", ".join(f"${i}::{'text' if _COLUMN_TYPES.get(c) == 'jsonb' else _COLUMN_TYPES.get(c, 'text')}[]"
                       for i, c in enumerate(columns, 1))
    select = ", ".join(f"t.{c}::jsonb AS {c}" if _COLUMN_TYPES.get(c) == "jsonb" else f"t.{c}" for c in columns)
    names = ", ".join(columns)
    return (f"WITH t AS (SELECT {select} FROM unnest({arrays}) AS t({names})), "
            "ids AS (INSERT INTO event_ids (event_id, ts) SELECT event_id, ts FROM t WHERE event_id IS NOT NULL "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
            f"INSERT INTO events ({names}) SELECT {names} FROM t "
            "WHERE t.event_id IS NULL OR t.event_id IN (SELECT event_id FROM ids) RETURNING event_id")


INSERT_EVENTS = _insert_deduplicated(EVENT_COLUMNS)
INSERT_TABLES = {table: _unnest_insert(table, columns) for table, columns in TABLE_COLUMNS.items()}
UPSERT_USERS = """INSERT INTO users (user_id, first_seen, last_seen, role)
    SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[])
    ON CONFLICT (user_id) DO UPDATE SET first_seen = LEAST(users.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(users.last_seen, EXCLUDED.last_seen), role = COALESCE(EXCLUDED.role, users.role)"""


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _columns(rows: Sequence[tuple[Any, ...]], columns: Sequence[str]) -> list[list[Any]]:
    """Row tuples -> one list per column (unnest's arrays); int4 columns get integers or NULL."""
    arrays = [list(values) for values in zip(*rows)]
    for i, column in enumerate(columns):
        if _COLUMN_TYPES.get(column) == "int4":
            arrays[i] = [_int(v) for v in arrays[i]]
    return arrays


async def _backfill(conn: asyncpg.Connection) -> None:
    """The rollups of the events already stored, rollups.CHUNK events at a time (bounded memory)."""
    last = 0
    while rows := await conn.fetch(to_dollar(rollups.BACKFILL_SQL), last, rollups.CHUNK):
        last = rows[-1][0]
        for sql, aggregated in rollups.backfill_aggregate(tuple(row)[1:] for row in rows):
            await conn.executemany(to_dollar(sql), aggregated)


def _runners(conn: asyncpg.Connection) -> tuple[Fetch, Execute]:
    """fetch / execute (each list one transaction) on one connection, `?` placeholders, as a Store's."""
    async def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await conn.fetch(to_dollar(sql), *params)]

    async def execute(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        async with conn.transaction():
            return [_rowcount(await conn.execute(to_dollar(sql), *params)) for sql, params in statements]

    return fetch, execute


async def _partition(conn: asyncpg.Connection) -> bool:
    """Migration 9's part that is not DDL, on the migration connection (under its lock): an upgraded
    store's events copied in chunks, the months ahead created. False before migration 9."""
    if not await conn.fetchval(PARTITIONED_SQL):
        return False
    fetch, execute = _runners(conn)
    await upgrade(fetch, execute, time.time())
    await ensure(fetch, execute, time.time())
    return True


def describe(dsn: str) -> str:
    """host:port/database of a DSN, without the user or password (for messages and logs)."""
    parts = urllib.parse.urlsplit(dsn)
    return f"PostgreSQL {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def store_error(exc: BaseException, where: str) -> StoreError | None:
    """The StoreError an asyncpg/OS failure means, or None for errors that are bugs (bad SQL)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OSError):        # refused, reset, unreachable; TimeoutError is an OSError too
        return StoreUnavailable(f"{where} is unreachable: {exc.strerror or type(exc).__name__}")
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state == QUERY_CANCELED:
            return StoreTimeout(f"{where}: the query was cancelled (statement_timeout): {exc}")
        if state in _FULL_STATES:
            return StoreFull(f"{where}: {_FULL_STATES[state]} ({state}): {exc}")
        if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES:
            return StoreUnavailable(f"{where} is unavailable ({state}): {exc}")
        return None
    # a connection or pool closed, closing, or left mid-operation by a server that went away (seen as a
    # 500 in 3 of 392 requests when PostgreSQL stopped mid-load: tests/test_faults_store.py)
    if isinstance(exc, (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.InterfaceError,
                        asyncpg.exceptions.InternalClientError)):
        return StoreUnavailable(f"{where}: connection lost: {exc}")
    return None


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("numeric", encoder=str, decoder=float, schema="pg_catalog", format="text")


def _rowcount(status: str) -> int:
    """asyncpg's command status ("DELETE 12", "INSERT 0 3") -> the row count; -1 when it has none."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PostgresStore:
    dialect: ClassVar[str] = "postgres"

    fold_failures = 0           # no fold: the rollups are kept in every commit (Store.fold_failures)

    def __init__(self, dsn: str, pool_size: int = 4, connect_timeout: float = 5.0,
                 migrations: tuple[Migration, ...] = MIGRATIONS, write_timeout: float | None = None,
                 query_timeout: float = 10.0):
        self.dsn = dsn
        self.where = describe(dsn)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout if write_timeout is not None else 2 * connect_timeout
        self.migrations = migrations
        self.query_timeout = query_timeout
        self._pool: asyncpg.Pool | None = None
        self._read_pool: asyncpg.Pool | None = None
        self.partitioned = False        # migration 9 applied (agent/store/partitions.py)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where})"

    def _map(self, exc: BaseException) -> StoreError | None:
        return store_error(exc, self.where)

    async def open(self) -> None:
        try:
            await self._migrate()
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                                   timeout=self.connect_timeout, init=_init_connection)
            self._read_pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout, init=_init_connection,
                server_settings={"statement_timeout": str(max(1, int(self.query_timeout * 1000)))})
        except Exception as exc:
            await self.close()
            mapped = self._map(exc) or StoreUnavailable(f"{self.where}: cannot open: {exc}")
            raise mapped from exc

    async def _migrate(self) -> None:
        """On a connection of its own: closing it releases the advisory lock whatever happened."""
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            await conn.execute(migrations_table(self.dialect))
            applied = [row[0] for row in await conn.fetch(APPLIED_SQL)]
            for migration in pending(applied, self.migrations):
                async with conn.transaction():
                    for sql in statements(migration, self.dialect):
                        await conn.execute(sql)
                    if migration.version == rollups.MIGRATION:
                        await _backfill(conn)
                    elif migration.version == person_bits.MIGRATION:
                        await person_bits.backfill_postgres(conn)
                    elif migration.version == label_bits.MIGRATION:
                        await label_bits.backfill_postgres(conn)
                    elif migration.version == signup_bits.MIGRATION:
                        await signup_bits.backfill_postgres(conn)
                    await conn.execute(to_dollar(RECORD_SQL), migration.version, migration.description,
                                       time.time())
            self.partitioned = await _partition(conn)
        finally:
            await conn.close(timeout=self.connect_timeout)

    async def close(self) -> None:
        pools = (self._pool, self._read_pool)
        self._pool = self._read_pool = None
        for pool in pools:
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), self.connect_timeout)
                except Exception:
                    pool.terminate()

    @contextlib.asynccontextmanager
    async def _connection(self, reading: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (of the read pool when `reading`); failures leave as StoreErrors. After a
        connection failure every pooled connection is replaced, so the store recovers at the first
        write or read after the server is back."""
        pool = self._read_pool if reading else self._pool
        if pool is None:
            raise StoreUnavailable(f"{self.where}: the store is not open")
        timeout = min(self.connect_timeout, self.query_timeout) if reading else self.connect_timeout
        try:
            async with pool.acquire(timeout=timeout) as conn:
                yield conn
        except Exception as exc:
            mapped = self._map(exc)
            if mapped is None:
                raise
            if isinstance(mapped, StoreUnavailable) and not isinstance(mapped, StoreTimeout):
                await pool.expire_connections()
            raise mapped from exc

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for one write transaction, closed under it after `write_timeout` seconds."""
        async with self._connection() as conn:
            expired: list[bool] = []

            def expire() -> None:
                expired.append(True)
                conn.terminate()

            watchdog = asyncio.get_running_loop().call_later(self.write_timeout, expire)
            try:
                async with conn.transaction():
                    yield conn
            except Exception as exc:
                if expired:
                    raise StoreUnavailable(f"{self.where}: no answer within {self.write_timeout:g}s "
                                           "(twice store.connect_timeout); connection closed") from exc
                raise
            finally:
                watchdog.cancel()

    async def write_events(self, batch: Sequence[EventRows]) -> frozenset[int]:
        if not batch:
            return frozenset()
        repeats = repeated_in_batch(batch)
        first = [rows for position, rows in enumerate(batch) if position not in repeats]
        async with self._writing() as conn:
            insert = INSERT_EVENTS if self.partitioned else INSERT_EVENTS_UNPARTITIONED
            returned = await conn.fetch(insert, *_columns([r.event for r in first], EVENT_COLUMNS))
            inserted = {row[0] for row in returned}
            duplicates = repeats | {position for position, rows in enumerate(batch)
                                    if position not in repeats and rows.event[EVENT_ID] is not None
                                    and rows.event[EVENT_ID] not in inserted}
            keep = [rows for position, rows in enumerate(batch) if position not in duplicates]
            by_table: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            for rows in keep:
                for table, row in rows.tables:
                    by_table[table].append(row)
            for table, table_rows in by_table.items():
                await conn.execute(INSERT_TABLES[table], *_columns(table_rows, TABLE_COLUMNS[table]))
            users = sorted(user_activity(keep))     # one lock order for every agent: no deadlocks
            if users:
                await conn.execute(UPSERT_USERS, *_columns(users, ("user_id", "first_seen", "last_seen", "role")))
            for sql, aggregated in rollups.ingest_aggregate(keep):     # the same transaction
                await conn.executemany(to_dollar(sql), aggregated)
            await person_bits.write_postgres(conn, rollups.facts(keep))
        return frozenset(duplicates)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._connection(reading=True) as conn:
            expired: list[bool] = []

            def expire() -> None:
                expired.append(True)
                conn.terminate()

            watchdog = asyncio.get_running_loop().call_later(self.query_timeout + READ_GRACE, expire)
            try:
                return [tuple(row) for row in await conn.fetch(to_dollar(sql), *params)]
            except Exception as exc:
                if expired:
                    if self._read_pool is not None:
                        await self._read_pool.expire_connections()
                    raise StoreTimeout(f"{self.where}: no answer to a read within {self.query_timeout:g}s "
                                       "(store.query_timeout); connection closed") from exc
                raise
            finally:
                watchdog.cancel()

    async def execute(self, statements: Sequence[tuple[str, Sequence[Any]]], *,
                      rollups_current: bool = True) -> list[int]:
        async with self._writing() as conn:     # the rollups are current: kept in every commit
            return [_rowcount(await conn.execute(to_dollar(sql), *params)) for sql, params in statements]
