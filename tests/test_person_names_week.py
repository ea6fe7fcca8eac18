"""rollup_person_names_{week,hour} (migration 20): the per-person work counts per 7-day block and per hour,
which the dashboard's top coaches and clients read over a range's whole weeks and edge hours
(rollup_queries.per_user). Each week row must equal the sum of its day rows, and each day row the sum of
its hour rows, however they change (ingest, erasure, an alias merge, retention with a cut in the middle
of a week), the migration's backfill must give what ingest maintained, and per_user over ranges holding
whole weeks and edge hours must equal the events' own figures. SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from agent.analytics import queries as q, rollup_queries as rq
from agent.analytics.timerange import TimeRange
from agent.events.model import Event
from agent.store import rollups as ru
from agent.store.base import Store
from agent.store.config import RetentionConfig, StoreConfig
from agent.store.gdpr import erase_user
from agent.store.open import open_store
from agent.store.people import merge_statements
from agent.store.retention import run_cleanup_once
from agent.store.rows import event_rows
from tests.support.store_fixtures import Run
from tests.test_rollups import T0, USERS, D, H, events, load

pytest_plugins = ["tests.support.store_fixtures"]

WORK = tuple(sorted(ru.PERSON_NAMES))
WEEKS_SQL = "SELECT person, bucket, name, events, nvalues, vsum FROM rollup_person_names_week WHERE events <> 0"
HOURS_SQL = "SELECT person, bucket, name, events, nvalues, vsum FROM rollup_person_names_hour WHERE events <> 0"


def _summed(fine: str, size: int) -> str:
    return (f"SELECT person, bucket / {size}, name, sum(events), sum(nvalues), sum(vsum) "
            f"FROM rollup_person_names_{fine} GROUP BY 1, 2, 3 HAVING sum(events) <> 0")


def key(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows sorted, sums rounded (float addition order)."""
    return sorted((*row[:5], round(float(row[5]), 6)) for row in rows)


async def weeks_and_days(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the week rows and the day rows, the day rows summed per week and the hour rows summed per day)."""
    weeks, days = key(await store.fetch(WEEKS_SQL)), key(await store.fetch(_summed("day", 1)))
    return [("week", *row) for row in weeks] + [("day", *row) for row in days], \
        [("week", *row) for row in key(await store.fetch(_summed("day", ru.WEEK_DAYS)))] + \
        [("day", *row) for row in key(await store.fetch(_summed("hour", 24)))]


def assert_per_user_is_the_events(store: Store, run: Run, r: TimeRange) -> None:
    users = [*USERS, "person_p", "nobody"]
    got, want = run(rq.per_user(store, users, WORK, r)), run(q.per_user(store, users, WORK, r))
    assert {k: (v.events, v.values, round(v.total, 6)) for k, v in got.items()} == \
        {k: (v.events, v.values, round(v.total, 6)) for k, v in want.items()}, r
    assert got, r


def test_week_rows_hold_their_days_through_ingest_erasure_merges_and_retention(store: Store, run: Run) -> None:
    batch = events(1500, seed=31, span=45 * D)
    run(load(store, batch))
    weeks, days = run(weeks_and_days(store))
    assert len({row[2] for row in weeks if row[0] == "week"}) >= 6 and weeks == days
    # ranges with whole weeks, edge days and edge hours on both sides, one with its whole days inside a
    # single week, one inside a day
    for r in (TimeRange(T0 - H, T0 + 46 * D), TimeRange(T0 + 3.3 * H, T0 + 30 * D + 0.7 * H),
              TimeRange(T0 + 9.1 * D, T0 + 23.4 * D), TimeRange(T0 + 1.5 * D, T0 + 4.2 * D),
              TimeRange(T0 + 2.2 * D, T0 + 2.9 * D)):
        assert_per_user_is_the_events(store, run, r)

    run(erase_user(store, ["user_3"]))
    weeks, days = run(weeks_and_days(store))
    assert weeks == days and not any(row[1] == "user_3" for row in weeks)

    # an alias merge rewrites the alias's work to the person: the person's weeks are recomputed
    when = T0 + 10 * D + 5 * H
    run(store.write_events([event_rows(Event("task_created", "engagement", when, when, {"priority": "high"},
                                             anonymous_id="anon_w", event_id="w1")),
                            event_rows(Event("task_created", "engagement", when + 2 * D, when + 2 * D,
                                             {"priority": "high"}, user_id="person_p", event_id="w2"))]))
    run(store.execute(merge_statements(store.dialect, "anon_w", "person_p", when + 3 * D)))
    weeks, days = run(weeks_and_days(store))
    assert weeks == days
    assert sum(row[4] for row in weeks if row[:2] == ("week", "person_p")) == 2
    assert_per_user_is_the_events(store, run, TimeRange(T0 + 0.2 * D, T0 + 40.7 * D))

    # a retention cut in the middle of a week: its earlier days go, the week is recounted from the rest
    now = T0 + 22.5 * D + 90 * D
    cut_day = int((now - 90 * D) // D)
    assert cut_day % ru.WEEK_DAYS not in (0, 1)
    run(run_cleanup_once(store, RetentionConfig(), now))      # analytics 90 days
    weeks, days = run(weeks_and_days(store))
    # the cut's day keeps its day rows (a bucket straddling the cut is kept) and loses its earlier hours
    assert [row for row in weeks if row[:3:2] != ("day", cut_day)] == \
        [row for row in days if row[:3:2] != ("day", cut_day)] and weeks
    assert min(row[2] for row in weeks if row[0] == "week") == cut_day // ru.WEEK_DAYS
    (first_hour,), = run(store.fetch("SELECT min(bucket) FROM rollup_person_names_hour"))
    assert first_hour >= int((now - 90 * D) // H)
    assert_per_user_is_the_events(store, run, TimeRange(now - 90 * D, T0 + 46 * D))


def test_the_migration_backfills_what_ingest_maintained(store_config: StoreConfig, store: Store, run: Run) -> None:
    run(load(store, events(900, seed=32, span=30 * D)))
    maintained = key(run(store.fetch(WEEKS_SQL))), key(run(store.fetch(HOURS_SQL)))
    assert all(maintained)
    run(store.execute([("DROP TABLE rollup_person_names_week", ()), ("DROP TABLE rollup_person_names_hour", ()),
                       ("DELETE FROM schema_migrations WHERE version = ?", (ru.NAMES_WEEK_MIGRATION,))]))
    run(store.close())
    reopened = run(open_store(store_config))
    assert reopened is not None
    try:
        assert (key(run(reopened.fetch(WEEKS_SQL))), key(run(reopened.fetch(HOURS_SQL)))) == maintained
    finally:
        run(reopened.close())


def test_the_migration_leaves_the_unfolded_events_to_the_fold(store_config: StoreConfig, store: Store,
                                                              run: Run) -> None:
    """SQLite: events committed after the last fold (a crash before it) are in no rollup yet; the open folds
    them after the migrations, into the new tables too, so the backfill must not count them as well."""
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps the rollups in every commit: nothing is left unfolded")
    run(load(store, events(600, seed=34, span=10 * D)))
    run(store.execute([("DROP TABLE rollup_person_names_week", ()), ("DROP TABLE rollup_person_names_hour", ()),
                       ("DELETE FROM schema_migrations WHERE version = ?", (ru.NAMES_WEEK_MIGRATION,))]))
    run(store.close())
    conn = sqlite3.connect(store_config.path)
    with conn:                          # committed, never folded: copies of work events, above the watermark
        conn.execute("INSERT INTO events (name, category, ts, received_at, user_id, label, outcome, value, "
                     "retention_class, properties, context) SELECT name, category, ts + 1, received_at, user_id, "
                     "label, outcome, value, retention_class, properties, context FROM events WHERE name IN "
                     f"({', '.join('?' * len(WORK))}) AND user_id IS NOT NULL ORDER BY id LIMIT 60", WORK)
        (above,), = conn.execute("SELECT count(*) FROM events WHERE id > (SELECT events FROM rollup_folded)")
    conn.close()
    assert above == 60
    reopened = run(open_store(store_config))
    assert reopened is not None
    try:
        from_events = key(run(reopened.fetch(
            "SELECT user_id, CAST(floor(ts / 3600) AS INTEGER), name, count(*), count(value), "
            f"coalesce(sum(value), 0) FROM events WHERE name IN ({', '.join('?' * len(WORK))}) "
            "AND user_id IS NOT NULL GROUP BY 1, 2, 3", WORK)))
        assert key(run(reopened.fetch(HOURS_SQL))) == from_events
        held, summed = run(weeks_and_days(reopened))
        assert held == summed
    finally:
        run(reopened.close())
