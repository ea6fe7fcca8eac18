"""The person bitmaps (agent/store/person_bits.py, read by agent/analytics/person_sets.py) against the events,
on SQLite and PostgreSQL.

1. Over random events at random instants (some retried with the same client ids), `persons_active` over
   ranges starting and ending at arbitrary instants is exactly the distinct user ids of the events in
   the range: of any event, of each name, of each (name, label) of the labelled names.
2. The backfill at migration 12 gives the same person sets as ingest maintained.
3. Erasure: the person is in no set afterwards; an event of the same id later counts again (a new index).
4. An alias merge: the alias's anonymous events count for the person, a merged-away user counts once.
5. Retention drops whole buckets: the any-event bitmaps with the analytics class, a name's with its class.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyroaring import BitMap

from agent.analytics import person_sets as ps
from agent.analytics.timerange import TimeRange
from agent.events.model import Event
from agent.store import person_bits as pb
from agent.store.base import Store
from agent.store.config import RetentionConfig, StoreConfig
from agent.store.gdpr import erase_user
from agent.store.open import open_store
from agent.store.people import merge_statements
from agent.store.retention import run_cleanup_once
from agent.store.rows import event_rows
from tests.support.store_fixtures import Run
from tests.test_rollups import COACHES, NAMES, SPAN, T0, D, H, events, load, ranges

pytest_plugins = ["tests.support.store_fixtures"]


async def expected(store: Store, r: TimeRange, name: str | None = None, label: str | None = None) -> set[str]:
    where, params = "ts >= ? AND ts < ? AND user_id IS NOT NULL", [r.start, r.end]
    if name is not None:
        where, params = where + " AND name = ?", [*params, name]
    if label is not None:
        where, params = where + " AND label = ?", [*params, label]
    return {user for (user,) in await store.fetch(f"SELECT DISTINCT user_id FROM events WHERE {where}", params)}


async def persons(store: Store, r: TimeRange, name: str | None = None, label: str | None = None) -> set[str]:
    bits = await ps.persons_active(store, r.start, r.end, name, label)
    found = await ps.persons_of(store, bits)
    assert len(found) == len(bits)          # every index of a set maps to a live person
    return set(found.values())


KEYS: list[tuple[str | None, str | None]] = [(None, None), *((n, None) for n in NAMES),
                                             *(("session_booked", c) for c in COACHES),
                                             ("goal_created", "career"), ("web_vitals", "LCP")]


def test_persons_active_is_the_distinct_users_of_the_events_over_arbitrary_ranges(store: Store, run: Run) -> None:
    batch = events(1500, seed=21)
    run(load(store, batch))
    run(load(store, batch[:300] + batch[900:1000], size=50))        # retries: nothing new
    for r in ranges(seed=22, n=8):
        for name, label in KEYS:
            assert run(persons(store, r, name, label)) == run(expected(store, r, name, label)), (r, name, label)


def test_a_label_of_a_name_without_label_bitmaps_is_refused(sqlite_store: Store, run: Run) -> None:
    with pytest.raises(ValueError):
        run(ps.persons_active(sqlite_store, T0, T0 + D, "feature_used", "chat"))
    with pytest.raises(ValueError):
        run(ps.persons_active(sqlite_store, T0, T0 + D, None, "chat"))


async def decoded(store: Store) -> dict[tuple[Any, ...], set[str]]:
    """(table, bucket, name, label) -> persons, whatever the indexes (ingest and backfill number them apart)."""
    names = {int(i): p for i, p in await store.fetch("SELECT idx, person FROM person_index")}
    out = {}
    for table in ("person_bits_hour", "person_bits_day"):
        for bucket, name, label, bits in await store.fetch(f"SELECT bucket, name, label, bits FROM {table}"):
            out[(table, bucket, name, label)] = {names[i] for i in BitMap.deserialize(bytes(bits))}
    return out


def test_the_backfill_gives_what_ingest_maintained(store_config: StoreConfig, store: Store, run: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run(load(store, events(900, seed=23)))
    maintained = run(decoded(store))
    assert maintained
    monkeypatch.setattr(pb, "CHUNK", 128)       # several chunks
    run(store.execute([*((f"DROP TABLE {t}", ()) for t in ("person_index", "person_bits_hour", "person_bits_day",
                                                            "person_bits_extra")),
                       ("DELETE FROM schema_migrations WHERE version = ?", (pb.MIGRATION,))]))
    run(store.close())
    reopened = run(open_store(store_config))
    assert reopened is not None
    try:
        assert run(decoded(reopened)) == maintained
        r = TimeRange(T0 + 0.5 * H, T0 + SPAN - 0.5 * H)
        assert run(persons(reopened, r)) == run(expected(reopened, r))
        # a person new after the backfill gets an index of their own
        run(reopened.write_events([event_rows(Event("feature_used", "engagement", T0 + H, T0 + H, {"feature": "x"},
                                                    user_id="newcomer", event_id="n1"))]))
        assert "newcomer" in run(persons(reopened, r))
        assert len({i for (i,) in run(reopened.fetch("SELECT idx FROM person_index"))}) == \
            len(run(reopened.fetch("SELECT person FROM person_index")))
    finally:
        run(reopened.close())


def test_erasure_takes_the_person_out_of_every_set(store: Store, run: Run) -> None:
    run(load(store, events(900, seed=24)))
    r = TimeRange(T0 - H, T0 + SPAN + H)
    assert "user_3" in run(persons(store, r))
    run(erase_user(store, ["user_3"]))
    for name, label in KEYS:
        got = run(persons(store, r, name, label))
        assert "user_3" not in got and got == run(expected(store, r, name, label)), (name, label)
    assert run(store.fetch("SELECT count(*) FROM person_index WHERE person = 'user_3'")) == [(0,)]
    run(store.write_events([event_rows(Event("feature_used", "engagement", T0 + D, T0 + D, {"feature": "x"},
                                             user_id="user_3", event_id="again"))]))
    assert "user_3" in run(persons(store, r, "feature_used"))


def test_an_alias_merge_counts_the_alias_activity_for_the_person(store: Store, run: Run) -> None:
    day = (T0 // D + 1) * D
    run(store.write_events([event_rows(Event("feature_used", "engagement", day + 10, day + 10, {"feature": "chat"},
                                             anonymous_id="anon_x", event_id="a1")),
                            event_rows(Event("task_created", "engagement", day + 2 * D, day + 2 * D, {},
                                             user_id="user_a", event_id="ua")),
                            event_rows(Event("feature_used", "engagement", day + 3 * D, day + 3 * D,
                                             {"feature": "chat"}, user_id="person_p", event_id="p1"))]))
    whole = TimeRange(day - D, day + 5 * D)
    assert run(persons(store, whole)) == {"user_a", "person_p"}
    run(store.execute(merge_statements(store.dialect, "anon_x", "person_p", day + 4 * D)))
    run(store.execute(merge_statements(store.dialect, "user_a", "person_p", day + 4 * D)))
    for r, name in ((TimeRange(day, day + D), None), (TimeRange(day, day + D), "feature_used"),
                    (TimeRange(day + 2 * D, day + 2 * D + 5), None), (TimeRange(day + 2 * D, day + 3 * D), "task_created"),
                    (whole, None)):
        assert run(persons(store, r, name)) == run(expected(store, r, name)) == {"person_p"}, (r, name)
    assert len(run(ps.persons_active(store, whole.start, whole.end))) == 1


def test_retention_drops_whole_buckets(store: Store, run: Run) -> None:
    now = T0 + 200 * D
    written = [("api_request", 40), ("feature_used", 100), ("api_request", 10), ("feature_used", 60)]
    run(store.write_events([event_rows(Event(name, "performance" if name == "api_request" else "engagement",
                                             now - k * D, now - k * D,
                                             {"duration_ms": 5.0, "status": 200} if name == "api_request" else {},
                                             user_id="u", event_id=f"{name}{k}")) for name, k in written]))
    run(store.fetch("SELECT count(*) FROM person_bits_day"))  # SQLite writes the bits in its fold: folded now
    run(run_cleanup_once(store, RetentionConfig(), now))      # analytics 90 days, performance 30 days
    kept = run(store.fetch("SELECT name, bucket FROM person_bits_day ORDER BY bucket, name"))
    days = {k: int((now - k * D) // D) for _, k in written}
    assert kept == [("", days[60]), ("feature_used", days[60]), ("", days[40]), ("", days[10]),
                    ("api_request", days[10])]
    hours = run(store.fetch("SELECT name, bucket FROM person_bits_hour ORDER BY bucket, name"))
    assert [name for name, _ in hours] == ["", "feature_used", "", "", "api_request"]


def test_a_merges_extra_bits_go_with_their_names_retention_class(store: Store, run: Run) -> None:
    """A merge turns the person's hours into extra bits per name: those of a performance name must go when
    that name's events and bitmaps go (30 days), not with the analytics class (90 days), or the person
    still counts for api_request where no api_request event is left."""
    now = T0 + 200 * D
    old = (now - 50 * D) // D * D + H                  # 50 days ago: past performance's 30, within analytics' 90
    run(store.write_events([event_rows(Event("api_request", "performance", ts, ts, {"duration_ms": 5.0, "status": 200},
                                             user_id=user, event_id=eid))
                            for ts, user, eid in ((old + 10, "user_a", "a1"), (old + 20, "person_p", "p1"))]))
    run(store.execute(merge_statements(store.dialect, "user_a", "person_p", old + 100)))
    run(run_cleanup_once(store, RetentionConfig(), now))      # analytics 90 days, performance 30 days
    r = TimeRange(old - H, old + 2 * H)
    assert run(expected(store, r, "api_request")) == set()
    assert run(persons(store, r, "api_request")) == set()
    assert run(store.fetch("SELECT count(*) FROM person_bits_extra WHERE name = 'api_request'")) == [(0,)]


@pytest.mark.slow
def test_a_merge_beside_a_group_writing_the_persons_first_bits_fails_neither(pg_dsn: str, run: Run) -> None:
    """PostgreSQL, two connections: an alias merge's transaction (holding, not yet committed) and a group
    commit carrying the person's first identified event. The merge takes the writers' advisory lock before
    it touches person_index, so the group waits for it and then finds the person's index: without the lock
    the group's INSERT into person_index failed on the unique person once the merge committed, and every
    request of the group was refused."""
    import asyncio

    import asyncpg

    from agent.store.postgres import to_dollar

    async def go() -> set[str]:
        store = await open_store(StoreConfig(driver="postgres", dsn=pg_dsn, pool_size=2))
        assert store is not None
        conn = await asyncpg.connect(pg_dsn)
        try:
            merge = conn.transaction()
            await merge.start()
            for sql, params in merge_statements("postgres", "anon_new", "person_new", T0):
                await conn.execute(to_dollar(sql), *params)
            write = asyncio.ensure_future(store.write_events([event_rows(Event(
                "feature_used", "engagement", T0, T0, {"feature": "x"}, user_id="person_new", event_id="e1"))]))
            await asyncio.sleep(0.5)
            assert not write.done()            # waits for the merge's lock
            await merge.commit()
            await asyncio.wait_for(write, 10)
            return await persons(store, TimeRange(T0 - H, T0 + H))
        finally:
            await conn.close()
            await store.close()

    assert run(go()) == {"person_new"}


def test_the_writers_cache_of_the_current_hours_stays_exact_with_two_writers(tmp_path, run: Run) -> None:
    """Live events (this hour): the SQLite writer keeps this hour's bitmaps and writes only new bits; a
    second store writing the same file in between (another agent) is seen (PRAGMA data_version) and
    the first re-reads: no bit of either is lost."""
    import time

    config = StoreConfig(driver="sqlite", path=str(tmp_path / "shared.db"))
    first, second = run(open_store(config)), run(open_store(config))
    assert first is not None and second is not None
    try:
        now = time.time()
        for i in range(6):
            writer = (first, second)[i % 2]
            run(writer.write_events([event_rows(Event("feature_used", "engagement", now - j, now, {"feature": "x"},
                                                      user_id=f"live_{i}_{j % 3}", event_id=f"live{i}_{j}"))
                                     for j in range(5)]))
            run(writer.write_events([event_rows(Event("feature_used", "engagement", now, now, {"feature": "x"},
                                                      user_id=f"live_{i}_0", event_id=f"again{i}"))]))
        r = TimeRange(now - 2 * H, now + H)
        for store in (first, second):
            assert run(persons(store, r)) == run(expected(store, r)) == {f"live_{i}_{k}" for i in range(6)
                                                                          for k in range(3)}
            assert run(persons(store, r, "feature_used")) == run(expected(store, r, "feature_used"))
    finally:
        run(first.close())
        run(second.close())
