"""PostgreSQL's events table partitioned by month (migration 9, agent/store/partitions.py), on a real server:
rows land in their month (out-of-range times in the default partition), client event ids still dedupe
(a retry with another ts, two agents racing on the same ids), an existing store is upgraded with every
row and id kept, creating a month moves its rows out of the default partition, retention drops whole
expired months and deletes rows of partly expired ones, and agents create months idempotently."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from agent.store import partitions, person_bits, rollups
from agent.store.config import RetentionConfig
from agent.store.postgres import PostgresStore
from agent.store.retention import run_cleanup_once
from agent.store.schema import MIGRATIONS
from tests.support.store_fixtures import example_rows

pytest_plugins = ["tests.support.store_fixtures"]
pytestmark = pytest.mark.slow       # a real PostgreSQL

DAY = 86400.0


def rows(n: int, ts: float, prefix: str = "e", name: str = "page_load", step: float = 1.0) -> list:
    return [example_rows(name, event_id=f"{prefix}{i}", user=f"u{i % 7}", ts=ts + i * step) for i in range(n)]


async def where_rows_are(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r[0]: r[1] for r in await conn.fetch(
            "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1")}
    finally:
        await conn.close()


async def tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    finally:
        await conn.close()


def test_fresh_store_is_partitioned_months_ahead_and_rows_land_in_their_month(pg_dsn: str, run) -> None:
    store = PostgresStore(pg_dsn, pool_size=2)
    run(store.open())
    try:
        now = time.time()
        here = partitions.month(now)
        made = run(partitions.months(store.fetch))
        assert here in made and len([m for m in made if m > here]) == partitions.MONTHS_AHEAD
        old = now - 3 * 365 * DAY
        run(store.write_events(rows(5, now - 60, "now") + rows(3, old, "old")))
        placed = run(where_rows_are(pg_dsn))
        assert placed == {partitions.table(here): 5, "events_default": 3}, placed
        # the analytics read the parent as before
        assert run(store.fetch("SELECT count(*) FROM events WHERE ts >= ?", (now - 3600,))) == [(5,)]
    finally:
        run(store.close())


def test_event_ids_still_dedupe_across_batches_other_times_and_two_agents(pg_dsn: str, run) -> None:
    first, second = PostgresStore(pg_dsn, pool_size=2), PostgresStore(pg_dsn, pool_size=2)
    run(first.open())
    run(second.open())
    try:
        now = time.time()
        assert run(first.write_events(rows(4, now - 100))) == frozenset()
        # the same ids again, sent without a timestamp later: another ts, still duplicates
        assert run(first.write_events(rows(4, now - 10))) == frozenset(range(4))
        # two agents racing on 200 ids, half shared
        a = rows(200, now - 50, "race", step=0.01)
        b = rows(100, now - 40, "race", step=0.01) + rows(100, now - 40, "solo", step=0.01)

        async def race() -> tuple[frozenset[int], frozenset[int]]:
            return await asyncio.gather(first.write_events(a), second.write_events(b))

        dup_a, dup_b = run(race())
        assert len(dup_a) + len(dup_b) == 100
        ids = run(first.fetch("SELECT event_id, count(*) FROM events GROUP BY event_id HAVING count(*) > 1"))
        assert ids == []
        assert run(first.fetch("SELECT count(*) FROM events")) == [(4 + 300,)]
        assert run(first.fetch("SELECT count(*) FROM event_ids")) == [(4 + 300,)]
    finally:
        run(first.close())
        run(second.close())


async def _no_bits(_conn: object, _rows: object) -> None:
    return None


def test_an_existing_store_is_upgraded_in_chunks_keeping_every_row_and_id(pg_dsn: str, run, monkeypatch) -> None:
    monkeypatch.setattr(partitions, "COPY_CHUNK", 7)
    before = tuple(m for m in MIGRATIONS if m.version < 9)
    old = PostgresStore(pg_dsn, pool_size=2, migrations=before)
    run(old.open())
    now = time.time()
    try:
        # today's write path also keeps the rollup tables of migrations after 9, which a store stopped before 9
        # has not got: the old store writes its events without rollups (migrations 10 and 11 backfill them)
        with monkeypatch.context() as patch:
            patch.setattr(rollups, "ingest_aggregate", lambda _rows: [])
            patch.setattr(person_bits, "write_postgres", _no_bits)      # migration 12's tables: not there either
            run(old.write_events(rows(20, now - 40 * DAY, "a", step=3 * DAY) + rows(3, now - 20 * 365 * DAY, "ancient")))
        kept = run(old.fetch("SELECT id, event_id, ts, name FROM events ORDER BY id"))
    finally:
        run(old.close())
    assert run(where_rows_are(pg_dsn)) == {"events": 23}
    new = PostgresStore(pg_dsn, pool_size=2)
    run(new.open())
    try:
        assert new.partitioned
        assert run(new.fetch("SELECT id, event_id, ts, name FROM events ORDER BY id")) == kept
        assert "events_unpartitioned" not in run(tables(pg_dsn))
        placed = run(where_rows_are(pg_dsn))
        assert placed["events_default"] == 3 and sum(placed.values()) == 23
        assert len(placed) >= 3            # the 60 days of "a" span at least two months
        # an old id is still a duplicate; a new event is numbered after every old one
        assert run(new.write_events(rows(1, now, "a"))) == frozenset({0})
        run(new.write_events(rows(1, now, "fresh")))
        (newest,), = run(new.fetch("SELECT id FROM events WHERE event_id = 'fresh0'"))
        assert newest > max(r[0] for r in kept)
    finally:
        run(new.close())


def test_creating_a_month_moves_its_rows_out_of_the_default_partition_and_is_idempotent(pg_dsn: str, run) -> None:
    store = PostgresStore(pg_dsn, pool_size=2)
    run(store.open())
    try:
        later = time.time() + 300 * DAY                 # beyond the months created ahead
        run(store.write_events(rows(6, later, "future")))
        assert run(where_rows_are(pg_dsn)) == {"events_default": 6}

        async def two_agents() -> None:
            await asyncio.gather(*(partitions.ensure(store.fetch, store.execute, later) for _ in range(3)))

        run(two_agents())
        assert run(where_rows_are(pg_dsn)) == {partitions.table(partitions.month(later)): 6}
        assert run(store.fetch("SELECT count(*) FROM events WHERE event_id LIKE 'future%'")) == [(6,)]
    finally:
        run(store.close())


def test_retention_drops_expired_months_and_deletes_rows_of_partly_expired_ones(pg_dsn: str, run) -> None:
    store = PostgresStore(pg_dsn, pool_size=2)
    run(store.open())
    try:
        now = time.time()
        run(partitions.ensure(store.fetch, store.execute, now, since=now - 200 * DAY))
        old = partitions.bounds(partitions.month(now - 150 * DAY))[0] + DAY     # a month wholly past 90 days
        edge = now - 95 * DAY                                                    # its month straddles the cut
        analytics = "feature_used"          # page_load is a performance event (30 days)
        run(store.write_events(rows(40, old, "old", analytics, step=60) + rows(5, edge, "edge", analytics, step=60)
                               + rows(5, now - 85 * DAY, "kept", analytics, step=60)
                               + rows(4, now - 45 * DAY, "perf", "page_load", step=60)))
        months_before = run(partitions.months(store.fetch))
        deleted = run(run_cleanup_once(store, RetentionConfig(), now))
        assert deleted["performance"] == 4, deleted
        assert deleted["analytics"] >= 45, deleted      # and the users seen only then (the users table)
        gone = partitions.table(partitions.month(old))
        assert gone not in run(tables(pg_dsn))
        # a month goes once every event it holds is past its class's period (an empty one at once, past the
        # shortest): here the months older than 30 days but those holding analytics events younger than 90
        config = RetentionConfig()
        young = {partitions.month(t) for t in (edge, edge + 240, now - 85 * DAY, now - 85 * DAY + 240)}
        kept_months = [m for m in months_before if partitions.bounds(m)[1] > now - config.performance_metrics
                       or (m in young and partitions.bounds(m)[1] > now - config.analytics_events)]
        assert run(partitions.months(store.fetch)) == kept_months
        left = run(store.fetch("SELECT event_id FROM events ORDER BY event_id"))
        assert [r[0] for r in left] == [f"kept{i}" for i in range(5)]
        # the ids of the dropped month went with the analytics period; the kept ones stay
        assert run(store.fetch("SELECT count(*) FROM event_ids WHERE event_id LIKE 'old%'")) == [(0,)]
        assert run(store.fetch("SELECT count(*) FROM event_ids WHERE event_id LIKE 'kept%'")) == [(5,)]
    finally:
        run(store.close())
