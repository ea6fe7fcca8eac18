"""The signup visitors' bitmaps (agent/store/signup_bits.py, migration 18, read by
rollup_queries.signup_visitors) against the events, on SQLite and PostgreSQL.

1. Over random events at random instants (half the signup steps anonymous, some retried with the same
   client ids), the visitors of each step over ranges starting and ending at arbitrary instants are
   exactly the distinct coalesce(user_id, anonymous_id) of the step's events in the range.
2. The backfill at migration 18 gives the same visitor sets as ingest maintained.
3. Erasure: the visitor is in no step afterwards; a later signup event of the same id counts again.
4. An alias merge: the alias's anonymous signup steps count for the person, once.
5. Retention drops whole buckets with signup_step's class.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyroaring import BitMap

from agent.analytics import queries as q, rollup_queries as rq
from agent.analytics.timerange import TimeRange
from agent.events.model import Event
from agent.store import person_bits as pb, signup_bits as sb
from agent.store.base import Store
from agent.store.config import RetentionConfig, StoreConfig
from agent.store.gdpr import erase_user
from agent.store.open import open_store
from agent.store.people import merge_statements
from agent.store.retention import run_cleanup_once
from agent.store.rows import event_rows
from tests.support.store_fixtures import Run
from tests.test_rollups import SPAN, T0, D, H, events, load, ranges

pytest_plugins = ["tests.support.store_fixtures"]


async def expected(store: Store, r: TimeRange) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for step, visitor in await store.fetch(
            "SELECT DISTINCT coalesce(label, ''), coalesce(user_id, anonymous_id) FROM events "
            "WHERE name = 'signup_step' AND ts >= ? AND ts < ? AND coalesce(user_id, anonymous_id) IS NOT NULL",
            (r.start, r.end)):
        out.setdefault(step, set()).add(visitor)
    return out


async def visitors(store: Store, r: TimeRange) -> dict[str, set[str]]:
    live = await store.fetch("SELECT idx, visitor FROM visitor_index WHERE visitor IS NOT NULL")
    names = {int(i): v for i, v in live}
    out = {}
    for step, bits in (await rq.signup_visitors(store, r)).items():
        assert all(i in names for i in bits)        # every index of a set is a live visitor
        if bits:
            out[step] = {names[i] for i in bits}
    return out


def signup(ts: float, step: str, event_id: str, **who: Any) -> Event:
    return Event("signup_step", "onboarding", ts, ts, {"step": step, "step_number": 1}, event_id=event_id, **who)


def test_the_visitors_of_each_step_are_the_events_over_arbitrary_ranges(store: Store, run: Run) -> None:
    batch = events(1500, seed=31)
    run(load(store, batch))
    run(load(store, batch[:300] + batch[900:1000], size=50))        # retries: nothing new
    assert run(store.fetch("SELECT count(*) FROM signup_bits_day")) != [(0,)]
    for r in ranges(seed=32, n=10):
        assert run(visitors(store, r)) == run(expected(store, r)), r
        assert sorted(run(rq.signup_steps(store, r))) == sorted(run(q.signup_steps(store, r))), r


async def decoded(store: Store) -> dict[tuple[Any, ...], set[str]]:
    """(table, bucket, step) -> visitors, whatever the indexes (ingest and backfill number them apart)."""
    names = {int(i): v for i, v in await store.fetch("SELECT idx, visitor FROM visitor_index")}
    out = {}
    for table in ("signup_bits_hour", "signup_bits_day"):
        for bucket, step, bits in await store.fetch(f"SELECT bucket, step, bits FROM {table}"):
            out[(table, bucket, step)] = {names[i] for i in BitMap.deserialize(bytes(bits))}
    return out


def test_the_backfill_gives_what_ingest_maintained(store_config: StoreConfig, store: Store, run: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run(load(store, events(900, seed=33)))
    maintained = run(decoded(store))
    assert maintained
    monkeypatch.setattr(sb, "CHUNK", 16)       # several chunks
    run(store.execute([*((f"DROP TABLE {t}", ()) for t in sb.TABLES),
                       ("DELETE FROM schema_migrations WHERE version = ?", (sb.MIGRATION,))]))
    run(store.close())
    reopened = run(open_store(store_config))
    assert reopened is not None
    try:
        assert run(decoded(reopened)) == maintained
        r = TimeRange(T0 + 0.5 * H, T0 + SPAN - 0.5 * H)
        assert run(visitors(reopened, r)) == run(expected(reopened, r))
        # a visitor new after the backfill gets an index of their own
        run(reopened.write_events([event_rows(signup(T0 + H, "email", "n1", anonymous_id="newcomer"))]))
        assert "newcomer" in run(visitors(reopened, r))["email"]
        assert len({i for (i,) in run(reopened.fetch("SELECT idx FROM visitor_index"))}) == \
            len(run(reopened.fetch("SELECT visitor FROM visitor_index")))
    finally:
        run(reopened.close())


def test_erasure_takes_the_visitor_out_of_every_step(store: Store, run: Run) -> None:
    day = (T0 // D + 1) * D
    run(store.write_events([event_rows(e) for e in (
        signup(day + 10, "email", "s1", user_id="user_3"), signup(day + D + 10, "plan", "s2", user_id="user_3"),
        signup(day + 20, "email", "s3", anonymous_id="anon_1"), signup(day + 30, "email", "s4", user_id="user_4"))]))
    r = TimeRange(day - H, day + 3 * D)
    assert run(visitors(store, r)) == {"email": {"user_3", "anon_1", "user_4"}, "plan": {"user_3"}}
    run(erase_user(store, ["user_3", "anon_1"]))
    for piece in (r, TimeRange(day, day + 25), TimeRange(day + 5, day + D + 15)):
        assert run(visitors(store, piece)) == run(expected(store, piece)), piece
    assert run(visitors(store, r)) == {"email": {"user_4"}}
    assert run(store.fetch("SELECT count(*) FROM visitor_index WHERE visitor IN ('user_3', 'anon_1')")) == [(0,)]
    run(store.write_events([event_rows(signup(day + 2 * D, "email", "again", user_id="user_3"))]))
    assert run(visitors(store, r)) == {"email": {"user_4", "user_3"}}


def test_an_alias_merge_counts_the_alias_steps_for_the_person_once(store: Store, run: Run) -> None:
    day = (T0 // D + 1) * D
    run(store.write_events([event_rows(e) for e in (
        signup(day + 10, "email", "a1", anonymous_id="anon_x"),
        signup(day + 2 * D + 50, "profile", "u1", user_id="user_a"),
        signup(day + 3 * D, "email", "p1", user_id="person_p"))]))
    whole = TimeRange(day - D, day + 5 * D)
    assert run(visitors(store, whole)) == {"email": {"anon_x", "person_p"}, "profile": {"user_a"}}
    run(store.execute(merge_statements(store.dialect, "anon_x", "person_p", day + 4 * D)))
    run(store.execute(merge_statements(store.dialect, "user_a", "person_p", day + 4 * D)))
    for r in (whole, TimeRange(day, day + D), TimeRange(day + 5, day + 15), TimeRange(day + 2 * D, day + 2 * D + H),
              TimeRange(day + 2 * D + 40, day + 3 * D + 1)):
        assert run(visitors(store, r)) == run(expected(store, r)), r
        assert sorted(run(rq.signup_steps(store, r))) == sorted(run(q.signup_steps(store, r))), r
    assert run(visitors(store, whole)) == {"email": {"person_p"}, "profile": {"person_p"}}


def test_retention_drops_whole_buckets_with_the_signup_class(store: Store, run: Run) -> None:
    now = T0 + 200 * D
    run(store.write_events([event_rows(signup(now - k * D, "email", f"s{k}", anonymous_id="a")) for k in (100, 60)]))
    run(store.execute(merge_statements(store.dialect, "a", "person_p", now - 50 * D)))       # extra bits, both
    run(run_cleanup_once(store, RetentionConfig(), now))      # signup_step: analytics, 90 days
    young_day = int((now - 60 * D) // D)
    assert run(store.fetch("SELECT bucket FROM signup_bits_day")) == [(young_day,)]
    assert run(store.fetch("SELECT bucket FROM signup_bits_hour")) == [(int((now - 60 * D) // H),)]
    assert run(store.fetch("SELECT bucket FROM signup_bits_extra")) == [(int((now - 60 * D) // H),)]
    r = TimeRange(now - 120 * D, now)
    assert run(visitors(store, r)) == run(expected(store, r)) == {"email": {"person_p"}}


def test_one_advisory_lock_for_every_bitmap_section() -> None:
    assert sb.ADVISORY_LOCK == pb.ADVISORY_LOCK
