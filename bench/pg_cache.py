"""A filled PostgreSQL for the analytics benchmarks (bench/analytics.py and bench/insights.py --postgres),
kept in bench/out/pg-analytics-<events>/ between runs, so the fill happens once per size.

Why a copy of the cached SQLite store rather than a fill through write_events: the agent's ingest path
into PostgreSQL (one unnest INSERT per group commit, the rollups in the same transaction) takes about as
long as the SQLite fill (a quarter of an hour at 10M on this machine), and the SQLite store already holds
the same events AND their rollups, computed by the same code (agent/store/rollups.py). So: the schema
made by PostgresStore.open() (every migration, on an empty database), the months of the 90 days
partitioned ahead (agent/store/partitions.py ensure), then every table the two stores share copied row
for row with COPY (asyncpg copy_records_to_table, 50,000 rows a round), the identity sequences moved past
the copied ids, ANALYZE. The answers are then those of a PostgreSQL that ingested the same events.

The cluster is Debian's PostgreSQL 15 started as a plain process (tests/support/pg.py: fsync off,
shared_buffers 32MB), its data directory kept in bench/out/, stopped by its PID when the run ends; a
store filled by an older agent is migrated when opened, as a real one would be. `filled.json` in the
directory records the fill (when the events end, how long each table took); delete the directory to refill.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg

from agent.store import partitions
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from tests.support import pg  # starts PostgreSQL as a plain process (a temp dir, or a kept one)

OUT = Path(__file__).resolve().parent / "out"
DATABASE = "analytics"
CHUNK = 50_000
DAY = 86400.0
SKIP = {"schema_migrations"}          # each store keeps its own record of its migrations


def sqlite_path(events: int) -> Path:
    return OUT / f"analytics-{events}.db"


async def sqlite_end(path: Path, events: int) -> float:
    """When the events of the cached SQLite store end, after opening it once (which migrates it, so the
    copy has every current table); filled the way bench/analytics.py fills it when it is not cached."""
    from bench.analytics import fill  # bench/analytics.py imports this module

    meta = path.with_name(path.name + ".json")
    if path.exists() and not meta.exists():   # a fill that did not finish
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    store = SqliteStore(str(path), synchronous="normal")
    await store.open()
    try:
        if meta.exists():
            return float(json.loads(meta.read_text())["end"])
        end = time.time()
        timings = await fill(store, events, end)
        meta.write_text(json.dumps({"end": end, "events": events, "fill": timings}))
        return end
    finally:
        await store.close()


def _converter(pg_type: str) -> Callable[[Any], Any]:
    """SQLite hands back what it stored (a boolean as 0/1, a number in a text column as a number)."""
    if pg_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if pg_type in ("text", "character varying"):
        return lambda v: v if v is None or isinstance(v, str) else str(v)
    if pg_type in ("bigint", "integer", "smallint"):
        return lambda v: None if v is None else int(v)
    if pg_type in ("double precision", "real", "numeric"):
        return lambda v: None if v is None else float(v)
    return lambda v: v


async def copy_tables(source: Path, conn: asyncpg.Connection) -> dict[str, Any]:
    """Every table of the SQLite store at `source` that PostgreSQL has too, its shared columns, by COPY."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    copied: dict[str, Any] = {}
    try:
        tables = [row[0] for row in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in tables:
            if table in SKIP:
                continue
            types = {r["column_name"]: r["data_type"] for r in await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = $1", table)}
            if not types:
                copied[table] = "not in PostgreSQL"
                continue
            columns = [row[1] for row in src.execute(f"PRAGMA table_info({table})") if row[1] in types]
            converters = [_converter(types[c]) for c in columns]
            started = time.perf_counter()
            rows = 0
            cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table}")
            while chunk := cursor.fetchmany(CHUNK):
                records = [tuple(f(v) for f, v in zip(converters, row)) for row in chunk]
                await conn.copy_records_to_table(table, records=records, columns=columns)
                rows += len(chunk)
                if table == "events" and rows % 1_000_000 < CHUNK:
                    print(f"  events: {rows:,} copied, {time.perf_counter() - started:.0f} s", flush=True)
            for column in columns:            # identity / serial columns continue after the copied ids
                sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", table, column)
                if sequence and rows:
                    await conn.execute(f"SELECT setval('{sequence}', (SELECT max({column}) FROM {table}))")
            copied[table] = {"rows": rows, "seconds": round(time.perf_counter() - started, 1)}
        if "event_ids" not in copied:         # PostgreSQL's table of client event ids (partitions.py)
            await conn.execute("INSERT INTO event_ids (event_id, ts) SELECT event_id, ts FROM events "
                               "WHERE event_id IS NOT NULL ON CONFLICT (event_id) DO NOTHING")
    finally:
        src.close()
    return copied


async def fill(server: pg.PostgresServer, source: Path, end: float) -> dict[str, Any]:
    """A fresh database `DATABASE` on `server` with the schema and every table of the SQLite store."""
    started = time.perf_counter()
    server.psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    server.psql(f"CREATE DATABASE {DATABASE}")
    dsn = server.dsn(DATABASE)
    store = PostgresStore(dsn, pool_size=2)
    await store.open()                        # the schema: every migration on an empty database
    try:
        await partitions.ensure(store.fetch, store.execute, time.time(), since=end - 91 * DAY)
    finally:
        await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        tables = await copy_tables(source, conn)
        analyzed = time.perf_counter()
        await conn.execute("ANALYZE")
        analyze = time.perf_counter() - analyzed
    finally:
        await conn.close()
    return {"copy_seconds": round(time.perf_counter() - started, 1), "analyze_seconds": round(analyze, 1),
            "tables": tables}


@contextlib.asynccontextmanager
async def filled_postgres(events: int, source: Path | None = None,
                          pool_size: int = 4) -> AsyncIterator[tuple[PostgresStore, float, dict[str, Any]]]:
    """(an open PostgresStore, when its events end, the fill's timings) on the kept cluster of `events`
    events, filled from the SQLite store `source` (default: bench/analytics.py's cached one) when it has
    not been yet. The server is stopped by its PID when the block ends; its data directory stays."""
    source = source or sqlite_path(events)
    directory = OUT / f"pg-analytics-{events}"
    meta = directory / "filled.json"
    if directory.exists() and not meta.exists():  # a fill that did not finish
        shutil.rmtree(directory)
    end = await sqlite_end(source, events) if not meta.exists() else 0.0
    server = pg.PostgresServer(directory)
    server.start()
    try:
        if meta.exists():
            recorded = json.loads(meta.read_text())
            end, timings = recorded["end"], {**recorded["fill"], "reused": True}
        else:
            print(f"filling PostgreSQL in {directory} from {source} (once: kept for the next runs)", flush=True)
            timings = await fill(server, source, end)
            meta.write_text(json.dumps({"end": end, "events": events, "source": str(source), "fill": timings},
                                       indent=1))
            timings = {**timings, "reused": False}
        store = PostgresStore(server.dsn(DATABASE), pool_size=pool_size)
        opened = time.perf_counter()
        await store.open()                    # migrates a cluster filled by an older agent
        timings["open_seconds"] = round(time.perf_counter() - opened, 1)
        try:
            yield store, end, timings
        finally:
            await store.close()
    finally:
        server.stop()
