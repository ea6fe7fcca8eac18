"""The analytics rollups (agent/store/rollups.py) against the events they summarise, on SQLite and PostgreSQL.

1. Over random events at random instants (some sent twice with the same client ids, as a retry would),
   every figure read from the rollups (agent/analytics/rollup_queries.py) equals the same figure read
   from the events (agent/analytics/queries.py) over ranges that start and end at arbitrary instants
   (whole days, edge hours and raw partial hours all in play), the percentiles within the sketch's
   relative error.
2. A retried batch (same client event ids) leaves every rollup table unchanged.
3. The backfill at migration 8 gives exactly the rollups that ingest maintained.
4. GDPR erasure: the person's rollup rows go and the counts lose their events; the rollups then equal a
   backfill of the remaining events. An alias merge moves the alias's activity to the person.
5. Retention deletes the buckets older than each class's period, and keeps younger ones.
6. Over day-aligned ranges the dashboard and business metrics read the events table only for the rare
   names they still read there (MFA state): every other figure comes from the rollups; and
   over any range every read is an index search (SQLite's plans), never a scan of events or a rollup.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.analytics import queries as q, rollup_queries as rq
from agent.analytics.business import business_metrics
from agent.analytics.dashboard import dashboard
from agent.analytics.timerange import TimeRange
from agent.events.catalog import CATALOG
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

pytest_plugins = ["tests.support.store_fixtures"]

T0 = 1740787200.0 + 7 * 3600 + 17 * 60 + 23.5        # 2025-03-01T07:17:23.5Z: not on any bucket edge
H, D = 3600.0, 86400.0
SPAN = 5 * D
USERS = [f"user_{i}" for i in range(12)] + ["coach_1", "coach_2"]
COACHES = ("coach_1", "coach_2")


def _props(rng: random.Random, name: str) -> dict[str, Any]:
    coach = rng.choice(COACHES)
    return {
        "session_booked": {"coach_id": coach}, "session_completed": {"coach_id": coach},
        "session_cancelled": {"coach_id": coach}, "session_rated": {"coach_id": coach, "rating": rng.choice((3, 4, 5))},
        "goal_created": {"goal_category": rng.choice(("career", "health"))},
        "goal_completed": {"goal_category": rng.choice(("career", "health")), "days_to_complete": rng.randrange(1, 30)},
        "api_request": {"route": "/x", "status": rng.choice((200, 201, 404, 500, 503)),
                        "duration_ms": round(rng.lognormvariate(4, 0.8), 1)},
        "page_load": {"page": "/", "load_time_ms": float(rng.randrange(100, 5000))},
        "web_vitals": {"name": rng.choice(("LCP", "INP", "CLS")), "value": float(rng.randrange(0, 4000)),
                       "rating": rng.choice(("good", "poor"))},
        "login_attempt": {"result": rng.choice(("success", "failure"))},
        "logout": {"session_duration_seconds": rng.randrange(60, 4000)},
        "resource_viewed": {"resource_type": "pdf", "view_duration_seconds": rng.randrange(5, 600)},
        "resource_engagement_score": {"score": float(rng.randrange(10, 100))},
        "resource_created": {"resource_type": "pdf"},
        "task_created": {"priority": "medium"},
        "task_completed": {"days_to_complete": rng.randrange(0, 9)},
        "file_uploaded": {"bytes": rng.randrange(1000, 10**6), "file_type": "pdf"},
        "feature_used": {"feature": "chat"},
        "signup_step": {"step": (step := rng.choice(("email", "profile", "plan"))), "status": "completed",
                        "step_number": {"email": 1, "profile": 2, "plan": 3}[step] + rng.choice((0, 0, 0, 5))},
        **{onboarding: {"flow_id": "f1", "step": rng.choice(("welcome", "goals", None)),
                        "step_number": rng.choice((1, 2, 3, None))}
           for onboarding in q.ONBOARDING_EVENTS},
    }.get(name, {})


NAMES = ("session_booked", "session_completed", "session_cancelled", "session_rated", "goal_created",
         "goal_completed", "api_request", "page_load", "web_vitals", "login_attempt", "logout", "resource_viewed",
         "resource_engagement_score", "resource_created", "task_created", "task_completed", "file_uploaded",
         "feature_used", "signup_step", *q.ONBOARDING_EVENTS)


def events(n: int, seed: int = 5, span: float = SPAN) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = rng.choice(NAMES)
        ts = T0 + rng.random() * span
        anonymous = 0.5 if name == "signup_step" else 0.05        # signup often happens before there is a user
        who = {"anonymous_id": f"anon_{rng.randrange(5)}"} if rng.random() < anonymous else \
              {"user_id": rng.choice(USERS)}
        out.append(Event(name, CATALOG[name].category, ts, ts, _props(rng, name), event_id=f"e{seed}_{i}", **who))
    for coach in COACHES:
        out.append(Event("onboarding_personalization", "onboarding", T0 - D, T0 - D, {"role": "coach"},
                         user_id=coach, event_id=f"role_{coach}"))
    return out


async def load(store: Store, batch: list[Event], size: int = 97) -> None:
    for start in range(0, len(batch), size):
        await store.write_events([event_rows(e) for e in batch[start:start + size]])


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup table's rows (zero rows left out), sorted; sums rounded (float addition order)."""
    out = {}
    for table in ru.TABLES:
        rows = await store.fetch(f"SELECT * FROM {table}")
        count = -1 if "values" in table else 4           # the column that is 0 in a row nothing counts in
        out[table] = sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows
                            if not (table.startswith(("rollup_counts", "rollup_values")) and row[count] == 0))
    return out


def ranges(seed: int = 9, n: int = 12) -> list[TimeRange]:
    rng = random.Random(seed)
    out = [TimeRange(T0 - 0.5 * H, T0 + SPAN + H),                      # everything
           TimeRange(T0 + 20 * 60, T0 + 50 * 60),                        # inside one hour
           TimeRange(T0 + 0.3 * H, T0 + 5.7 * H)]                        # hours, no whole day
    for _ in range(n):
        a, b = sorted(T0 + rng.random() * SPAN for _ in range(2))
        out.append(TimeRange(a, b))
    return out


async def both(store: Store, r: TimeRange) -> list[tuple[str, Any, Any]]:
    """(figure, from the rollups, from the events) for every figure the rollups answer."""
    names = NAMES
    pairs: list[tuple[str, Any, Any]] = []
    for label, fn in (("counts", lambda m: m.counts(store, names, r)),
                      ("outcomes", lambda m: m.outcome_counts(store, "login_attempt", r)),
                      ("server_errors", lambda m: m.server_errors(store, r)),
                      ("vital counts", lambda m: m.labelled_outcome_counts(store, "web_vitals", r)),
                      ("active by role", lambda m: m.active_users_by_role(store, r)),
                      ("retained", lambda m: m.retained_users(store, TimeRange(r.start - r.length, r.start), r)),
                      ("role coaches", lambda m: m.role_coaches(store, r)),
                      ("top clients", lambda m: m.top_clients(store, r, 5)),
                      ("coach sessions", lambda m: m.coach_sessions(store, r)),
                      ("signup steps", lambda m: m.signup_steps(store, r)),
                      ("onboarding steps", lambda m: m.onboarding_steps(store, r))):
        got, want = await fn(rq), await fn(q)
        if label.endswith("steps"):         # rows in no particular order
            got, want = sorted(got, key=repr), sorted(want, key=repr)
        pairs.append((label, got, want))
    stats_r, stats_q = await rq.value_stats(store, names, r), await q.value_stats(store, names, r)
    pairs.append(("value stats", {k: (v.events, v.values, round(v.total, 6)) for k, v in stats_r.items()},
                  {k: (v.events, v.values, round(v.total, 6)) for k, v in stats_q.items()}))
    goals_r, goals_q = await rq.goal_categories(store, r), await q.goal_categories(store, r)
    pairs.append(("goals", {k: (n, v.events, v.values, round(v.total, 6)) for k, (n, v) in goals_r.items()},
                  {k: (n, v.events, v.values, round(v.total, 6)) for k, (n, v) in goals_q.items()}))
    work = ["user_1", "user_2", "coach_1", "nobody"]
    names_w = ("resource_created", "task_created", "resource_viewed", "task_completed", "resource_engagement_score")
    per_r, per_q = await rq.per_user(store, work, names_w, r), await q.per_user(store, work, names_w, r)
    pairs.append(("per user", {k: (v.events, v.values, round(v.total, 6)) for k, v in per_r.items()},
                  {k: (v.events, v.values, round(v.total, 6)) for k, v in per_q.items()}))
    return pairs


def sessions_key(rows: list[q.CoachSessions]) -> list[tuple[Any, ...]]:
    return sorted((c.coach, c.completed, c.booked, c.cancelled, c.clients,
                   None if c.rating is None else round(c.rating, 9)) for c in rows)


def close(got: float | None, want: float | None) -> bool:
    if got is None or want is None:
        return got is want
    return abs(got - want) <= ru.RELATIVE_ERROR * abs(want) + 1e-9


def assert_same_figures(store: Store, run: Run, r: TimeRange) -> None:
    """Every figure of both documents, and the percentiles, from the rollups as from the events over `r`."""
    for label, got, want in run(both(store, r)):
        if label == "coach sessions":
            got, want = sessions_key(got), sessions_key(want)
        assert got == want, (label, r)
    for name, ps in (("api_request", (50, 95, 99)), ("page_load", (50, 75, 95))):
        got, want = run(rq.value_percentiles(store, name, r, ps)), run(q.value_percentiles(store, name, r, ps))
        assert all(close(got[k], want[k]) for k in want), (name, r, got, want)


def test_every_figure_from_the_rollups_equals_the_events_over_arbitrary_ranges(store: Store, run: Run) -> None:
    batch = events(1500)
    run(load(store, batch))
    run(load(store, batch[:300] + batch[700:800], size=50))        # retries: nothing doubles
    assert run(store.fetch("SELECT count(*) FROM events")) == [(len(batch),)]
    for r in ranges():
        assert_same_figures(store, run, r)
        got, want = run(rq.labelled_percentile(store, "web_vitals", r, 75)), \
            run(q.labelled_percentile(store, "web_vitals", r, 75))
        assert got.keys() == want.keys() and all(close(got[k], want[k]) for k in want), (r, got, want)


def test_a_retried_batch_leaves_every_rollup_unchanged(store: Store, run: Run) -> None:
    batch = events(400, seed=6)
    run(load(store, batch))
    before = run(snapshot(store))
    assert sum(row[4] for row in before["rollup_counts_day"]) == len(batch)
    run(load(store, batch, size=400))           # the whole batch again, one commit
    run(load(store, batch[::3], size=31))       # and a third of it, in other groups
    assert run(snapshot(store)) == before


async def _rebackfill(config: StoreConfig, store: Store) -> Store:
    """Drop every rollup table, forget migrations 8 and 10, reopen: they and their backfills run again."""
    await store.execute([*((f"DROP TABLE {table}", ()) for table in ru.TABLES),
                         *(("DELETE FROM schema_migrations WHERE version = ?", (version,)) for version in ru.MIGRATIONS)])
    await store.close()
    reopened = await open_store(config)
    assert reopened is not None
    return reopened


def test_the_backfill_gives_what_ingest_maintained(store_config: StoreConfig, store: Store, run: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run(load(store, events(900, seed=7)))
    maintained = run(snapshot(store))
    monkeypatch.setattr(ru, "CHUNK", 128)       # several chunks
    reopened = run(_rebackfill(store_config, store))
    try:
        assert run(snapshot(reopened)) == maintained
    finally:
        run(reopened.close())


def test_erasure_takes_the_person_out_of_every_rollup(store_config: StoreConfig, store: Store, run: Run) -> None:
    run(load(store, events(900, seed=8)))
    r = TimeRange(T0, T0 + SPAN)
    active_before = run(rq.active_users(store, r))
    api_before = run(rq.counts(store, ("api_request",), r))["api_request"]
    (mine,), = run(store.fetch("SELECT count(*) FROM events WHERE user_id = 'user_3' AND name = 'api_request'"))
    assert mine > 0
    run(erase_user(store, ["user_3"]))
    for table, column in ru.PERSON_TABLES:
        assert run(store.fetch(f"SELECT count(*) FROM {table} WHERE {column} = 'user_3'")) == [(0,)]
    assert run(rq.active_users(store, r)) == active_before - 1
    assert run(rq.counts(store, ("api_request",), r))["api_request"] == api_before - mine
    after = run(snapshot(store))
    reopened = run(_rebackfill(store_config, store))
    try:
        assert run(snapshot(reopened)) == after
    finally:
        run(reopened.close())


def test_an_alias_merge_moves_the_alias_activity_to_the_person(store: Store, run: Run) -> None:
    day = T0 + D
    run(store.write_events([event_rows(Event("feature_used", "engagement", day + 10, day + 10, {"feature": "chat"},
                                             anonymous_id="anon_x", event_id="a1")),
                            event_rows(Event("feature_used", "engagement", day + 3 * D, day + 3 * D,
                                             {"feature": "chat"}, user_id="person_p", event_id="p1"))]))
    run(store.write_events([event_rows(Event("signup_step", "onboarding", day + 20, day + 20,
                                             {"step": "email", "step_number": 1}, anonymous_id="anon_x",
                                             event_id="s1"))]))
    run(store.execute(merge_statements(store.dialect, "anon_x", "person_p", day + 4 * D)))
    assert run(store.fetch("SELECT visitor FROM rollup_signup_blocks")) == [("person_p",)]
    assert run(store.fetch("SELECT visitor FROM rollup_signup_hourmasks")) == [("person_p",)]
    rows = run(store.fetch("SELECT bucket, events FROM rollup_persons_day WHERE person = 'person_p' ORDER BY bucket"))
    assert rows == [(int((day + 10) // D), 2), (int((day + 3 * D) // D), 1)]
    first = TimeRange(day, day + D)
    assert run(rq.active_users(store, first)) == run(q.active_users(store, first)) == 1


def test_retention_deletes_the_buckets_older_than_the_class_period(store: Store, run: Run) -> None:
    now = T0 + 200 * D
    old = [Event("api_request", "performance", now - 40 * D, now - 40 * D, {"duration_ms": 5.0, "status": 200},
                 user_id="u", event_id="old_api"),
           Event("feature_used", "engagement", now - 100 * D, now - 100 * D, {"feature": "x"}, user_id="u",
                 event_id="old_feature"),
           Event("signup_step", "onboarding", now - 100 * D, now - 100 * D, {"step": "email", "step_number": 1},
                 anonymous_id="a", event_id="old_signup"),
           Event("onboarding_step_started", "onboarding", now - 100 * D, now - 100 * D,
                 {"step": "welcome", "step_number": 1}, user_id="u", event_id="old_onboarding")]
    young = [Event("api_request", "performance", now - 10 * D, now - 10 * D, {"duration_ms": 5.0, "status": 200},
                   user_id="u", event_id="young_api"),
             Event("feature_used", "engagement", now - 60 * D, now - 60 * D, {"feature": "x"}, user_id="u",
                   event_id="young_feature"),
             Event("signup_step", "onboarding", now - 60 * D, now - 60 * D, {"step": "email", "step_number": 1},
                   anonymous_id="a", event_id="young_signup"),
             Event("onboarding_step_started", "onboarding", now - 60 * D, now - 60 * D,
                   {"step": "welcome", "step_number": 1}, user_id="u", event_id="young_onboarding")]
    run(store.write_events([event_rows(e) for e in old + young]))
    run(store.fetch("SELECT count(*) FROM rollup_counts_day"))     # SQLite: the rollups folded first
    run(run_cleanup_once(store, RetentionConfig(), now))      # analytics 90 days, performance 30 days
    kept = run(store.fetch("SELECT name, bucket FROM rollup_counts_day ORDER BY bucket, name"))
    young_day = int((now - 60 * D) // D)
    assert kept == [("feature_used", young_day), ("onboarding_step_started", young_day), ("signup_step", young_day),
                    ("api_request", int((now - 10 * D) // D))]
    for size, seconds in (("day", D), ("hour", H)):
        assert run(store.fetch(f"SELECT funnel, bucket FROM rollup_funnel_steps_{size} ORDER BY funnel")) == \
            [("onboarding", int((now - 60 * D) // seconds)), ("signup", int((now - 60 * D) // seconds))]
    assert run(store.fetch("SELECT bucket FROM rollup_signup_hourmasks")) == [(young_day,)]
    cut_block = int((now - 90 * D) // D) // ru.BLOCK_DAYS         # a block straddling the cutoff is kept
    assert run(store.fetch("SELECT bucket FROM rollup_signup_blocks ORDER BY bucket")) == \
        [(b,) for b in sorted({int((now - k * D) // D) // ru.BLOCK_DAYS for k in (100, 60)}) if b >= cut_block]
    # activity is analytics data: kept 90 days, whichever event made it
    assert run(store.fetch("SELECT bucket FROM rollup_persons_day ORDER BY bucket")) == \
        [(int((now - k * D) // D),) for k in (60, 40, 10)]
    assert run(store.fetch("SELECT bucket FROM rollup_person_hourmasks ORDER BY bucket")) == \
        [(int((now - k * D) // D),) for k in (60, 40, 10)]
    performance_cut = int((now - 30 * D) // D)
    assert run(store.fetch("SELECT count(*) FROM rollup_values_day WHERE bucket < ?", (performance_cut,))) == [(0,)]


async def weeks_and_days(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the week and 6-hour block rows, the day and hour rows summed per block) of the count and sketch
    rollups, zero rows left out."""
    blocks: list[tuple[Any, ...]] = []
    summed: list[tuple[Any, ...]] = []
    for coarse, fine, size in (("week", "day", ru.WEEK_DAYS), ("6h", "hour", ru.SIX_HOURS)):
        for out, sql in ((blocks, f"SELECT bucket, name, label, outcome, events, nvalues, vsum FROM rollup_counts_{coarse} "
                                  "WHERE events <> 0"),
                         (summed, f"SELECT bucket / {size}, name, label, outcome, sum(events), sum(nvalues), sum(vsum) "
                                  f"FROM rollup_counts_{fine} GROUP BY 1, 2, 3, 4 HAVING sum(events) <> 0")):
            out += sorted((coarse, *row[:6], round(float(row[6]), 6)) for row in await store.fetch(sql))
        for out, sql in ((blocks, f"SELECT bucket, metric, bin, count FROM rollup_values_{coarse} WHERE count <> 0"),
                         (summed, f"SELECT bucket / {size}, metric, bin, sum(count) FROM rollup_values_{fine} "
                                  "GROUP BY 1, 2, 3 HAVING sum(count) <> 0")):
            out += sorted((coarse, *row) for row in await store.fetch(sql))
    return blocks, summed


def test_week_rollups_hold_their_days_through_ingest_erasure_and_retention(store: Store, run: Run) -> None:
    """Migrations 14 and 16: a range's whole 7-day blocks are read from the week tables, its edge hours'
    whole 6-hour blocks from the 6h tables, so each block must equal the sum of its days (hours) however
    they change; and the figures over ranges with whole weeks and blocks stay the events' own."""
    batch = events(1500, seed=21, span=45 * D)
    run(load(store, batch))
    weeks, days = run(weeks_and_days(store))
    assert len({row[1] for row in weeks if row[0] == "week"}) >= 6 and weeks == days
    rng = random.Random(4)
    for r in [TimeRange(T0 - H, T0 + 46 * D), TimeRange(T0 + 3.3 * H, T0 + 30 * D + 0.7 * H),
              *(TimeRange(a, a + rng.uniform(8, 40) * D) for a in (T0 + rng.uniform(0, 5) * D for _ in range(4)))]:
        assert_same_figures(store, run, r)
    run(erase_user(store, ["user_3"]))
    weeks, days = run(weeks_and_days(store))
    assert weeks == days
    # a cut in the middle of a week and of a 6-hour block: its earlier days (hours) go, the block is
    # recounted from what is left
    now = T0 + 22.5 * D + 2 * H + 90 * D
    assert int((now - 90 * D) // H) % ru.SIX_HOURS not in (0, 1)
    assert int((now - 90 * D) // D) % ru.WEEK_DAYS not in (0, 1)
    run(run_cleanup_once(store, RetentionConfig(), now))      # analytics 90 days, performance 30 days
    weeks, days = run(weeks_and_days(store))
    assert weeks == days and days
    assert run(store.fetch("SELECT min(bucket) FROM rollup_counts_week")) == [(int((now - 90 * D) // D) // 7,)]
    assert run(store.fetch("SELECT min(bucket) FROM rollup_counts_6h")) == [(int((now - 90 * D) // H) // 6,)]


def test_top_clients_from_the_busiest_persons_of_each_block_equal_the_events(store: Store, run: Run,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 17: the top clients' bounds from each 31-day block's busiest persons (the threshold
    algorithm), then every person's when the rounds get past them: the same clients as the events say,
    with pages and rounds small enough that every path runs."""
    run(load(store, events(1500, seed=31, span=70 * D)))
    rng = random.Random(8)
    spans = [TimeRange(T0 - H, T0 + 71 * D), TimeRange(T0 + 20 * D + 0.4 * H, T0 + 50 * D + 3.3 * H),
             *(TimeRange(a, a + rng.uniform(2, 45) * D) for a in (T0 + rng.uniform(0, 30) * D for _ in range(4)))]
    monkeypatch.setattr(rq, "BOUNDS_PAGE", 4)
    for page, candidates in ((1, 1), (2, 3), (3, 2), (500, 100)):
        monkeypatch.setattr(rq, "TOP_PAGE", page)
        monkeypatch.setattr(rq, "CANDIDATES", candidates)
        for r in spans:
            for limit in (1, 3, 5, 20):
                assert run(rq.top_clients(store, r, limit)) == run(q.top_clients(store, r, limit)), (page, r, limit)


def test_mfa_adoption_from_the_rollup_equals_the_events(store_config: StoreConfig, store: Store, run: Run) -> None:
    """Migration 15: each user's latest enrolment and removal; adopters as of any instant (users with MFA
    events after it counted from their events), through an erasure, an alias merge, a retention pass and a
    rebuild of the rollups."""
    rng = random.Random(17)
    batch = []
    for i in range(400):
        ts = T0 + rng.random() * 40 * D
        who = {"user_id": f"user_{rng.randrange(30)}"} if rng.random() < 0.9 else {"anonymous_id": "anon_m"}
        if rng.random() < 0.6:
            batch.append(Event("mfa_enrolled", "mfa", ts, ts, {"method": "totp"}, event_id=f"m{i}", **who))
        else:
            batch.append(Event("mfa_disabled", "mfa", ts, ts, {"method": "totp"}, event_id=f"m{i}", **who))
    run(load(store, batch, size=37))

    def same(at: list[float], s: Store = store) -> None:
        for end in at:
            assert run(rq.mfa_adopters(s, end)) == run(q.mfa_adopters(s, end)), end

    ends = [T0 + k * D + 0.37 * H for k in (-1, 2, 10, 25, 39, 39.9, 41)]
    assert run(q.mfa_adopters(store, ends[-1])) > 3
    same(ends)
    run(erase_user(store, ["user_4"]))
    run(store.execute(merge_statements(store.dialect, "user_5", "user_6", T0 + 50 * D)))
    same(ends)
    (klass,), = run(store.fetch("SELECT DISTINCT retention_class FROM events WHERE name = 'mfa_enrolled'"))
    period = RetentionConfig().periods()[klass]
    now = T0 + 20.5 * D + period            # about half the MFA events older than their class's period
    run(run_cleanup_once(store, RetentionConfig(), now))
    assert run(store.fetch("SELECT min(ts) FROM events WHERE name = 'mfa_enrolled'"))[0][0] >= now - period
    same(ends)
    reopened = run(_rebackfill(store_config, store))      # the times retention left behind are gone now
    try:
        same(ends, reopened)
    finally:
        run(reopened.close())


class RecordingStore:
    def __init__(self, store: Store):
        self.store, self.dialect = store, store.dialect
        self.sql: list[str] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.sql.append(sql)
        self.calls.append((sql, tuple(params)))
        return await self.store.fetch(sql, params)


def test_day_aligned_documents_read_the_events_only_for_mfa(store: Store, run: Run) -> None:
    run(load(store, events(600, seed=10)))
    recording = RecordingStore(store)
    r = TimeRange(T0 - T0 % D, T0 - T0 % D + 4 * D)
    run(dashboard(recording, r))     # type: ignore[arg-type]
    run(business_metrics(recording, r))      # type: ignore[arg-type]
    from_events = [sql for sql in recording.sql if "FROM events" in sql]
    # MFA adoption's bounds only (users with MFA events after the end, the oldest MFA times): index seeks
    assert from_events and set(from_events) <= {rq.MFA_USERS_AFTER, rq.MFA_OLDEST}, from_events
    assert not any("FROM onboarding_funnel" in sql for sql in recording.sql)
    assert any("rollup_person_blocks" in sql for sql in recording.sql)


def test_every_read_of_the_documents_searches_an_index(sqlite_store: Store, run: Run) -> None:
    """SQLite's plans for a 30-day request ending at an arbitrary instant: no table is scanned but `users`
    (one row per user) and the queries' own small subqueries; rollups and events are read by index ranges."""
    run(load(sqlite_store, events(600, seed=11)))
    recording = RecordingStore(sqlite_store)
    r = TimeRange(T0 + 4 * D + 1234.5 - 30 * D, T0 + 4 * D + 1234.5)
    run(dashboard(recording, r))     # type: ignore[arg-type]
    run(business_metrics(recording, r))      # type: ignore[arg-type]
    assert any("FROM events WHERE name IN" in sql for sql in recording.sql)     # the raw partial hours
    for sql, params in recording.calls:
        plan = [row[3] for row in run(sqlite_store.fetch("EXPLAIN QUERY PLAN " + sql, params))]
        small = ("u", "pairs", "latest", "hour_names")
        scans = [step for step in plan if step.startswith("SCAN") and step.split()[1] not in small]
        assert not scans, (sql, plan)
        assert not any(step.startswith(("SCAN events", "SCAN rollup")) for step in plan), (sql, plan)


def test_the_edge_hours_persons_come_from_the_hour_masks(store: Store, run: Run) -> None:
    """A person active at 03:xx and 20:xx of one day: one mask row (bits 3 and 20); a range whose edge
    hours hold either hour finds them, one whose edge hours hold neither does not, as the events say."""
    day = (T0 // D + 2) * D
    run(store.write_events([event_rows(Event("feature_used", "engagement", day + h * H + 5, day + h * H + 5,
                                             {"feature": "x"}, user_id="edge_u", event_id=f"e{h}")) for h in (3, 20)]))
    assert run(store.fetch("SELECT bucket, hours FROM rollup_person_hourmasks WHERE person = 'edge_u'")) == \
        [(int(day // D), 1 << 3 | 1 << 20)]
    cases = [(TimeRange(day + 2.5 * H, day + 3 * D), True),        # 03:xx among the first edge hours
             (TimeRange(day - D, day + 20.5 * H), True),           # 20:xx among the last edge hours
             (TimeRange(day + 4 * H, day + 19.5 * H), False),      # hours only, neither
             (TimeRange(day + 21 * H, day + 3 * D), False),
             (TimeRange(day + 20 * H + 10, day + 2 * D), False)]   # 20:00:05 falls in the raw partial hour before
    for r, active in cases:
        recording = RecordingStore(store)
        got = run(rq.active_users(recording, r))        # type: ignore[arg-type]
        assert got == run(q.active_users(store, r)) == int(active), r
        assert not any("rollup_persons_hour" in sql for sql in recording.sql)


def test_a_request_reads_the_persons_of_each_range_once(store: Store, run: Run) -> None:
    """The dashboard asks for the range's persons for its coaches and its active users, business metrics
    for MAU and the retained users' current range (the same 30 days): one read per distinct range; the
    count and sketch rollups of the range are read once for all the names either asks for."""
    run(load(store, events(600, seed=12)))
    end = T0 + 4 * D + 1234.5
    r = TimeRange(end - 30 * D, end)
    for document, distinct_ranges in ((dashboard, 1), (business_metrics, 4)):   # previous, 30 d = current, 7 d, 1 d
        recording = RecordingStore(store)
        run(document(recording, r))      # type: ignore[operator]
        reads = [sql for sql in recording.sql if "FROM person_bits_extra" in sql       # one per person set (not
                 and "bucket >= ?" in sql]                      # those of one raw hour, person_sets._by_rest)
        assert len(reads) == distinct_ranges, (document, reads)
        assert len([sql for sql in recording.sql if "FROM users u JOIN person_index" in sql]) <= 1   # the roles
        # the count and sketch rollups of the range: one read each, whatever the names asked for
        for table in ("rollup_counts_day", "rollup_counts_hour", "rollup_values_day", "rollup_values_hour"):
            assert len([sql for sql in recording.sql if f"FROM {table} " in sql and "sum(" in sql]) <= 1, \
                (document, table)


def test_a_requests_read_of_every_names_counts_folds_the_pages_of_page_load(sqlite_store: Store, run: Run) -> None:
    """page_load is counted by page since migration 13 (for the insights), as many rows a bucket as the
    application has pages. A dashboard or business-metrics request reads every name's rows of its range at
    once: those come folded into one row (page_load has no outcome), with the same totals as the per-name read."""
    store = sqlite_store
    start = (T0 // 3600 + 1) * 3600
    run(store.write_events([event_rows(Event("page_load", "performance", start + i, start + i,
                                             {"page": f"/orders/{i}", "load_time_ms": 100.0 + i},
                                             user_id=f"u{i % 7}", event_id=f"pl{i}")) for i in range(300)]))
    stored = run(store.fetch("SELECT count(*) FROM rollup_counts_hour WHERE name = 'page_load'"))[0][0]
    assert stored == 300                       # one row a page in the table itself
    r = TimeRange(start - 3 * 3600, start + 3 * 3600)
    alone = run(rq.tally(store, ("page_load",), r))

    async def cached() -> Any:
        with rq.request_cache():
            return await rq.tally(store, ("page_load",), r)
    folded = run(cached())
    assert len(alone) == 300 and list(folded) == [("page_load", "", "")]
    assert list(folded[("page_load", "", "")]) == [300, 300, sum(100.0 + i for i in range(300))] == \
        [sum(v[i] for v in alone.values()) for i in range(3)]


def test_numbers_past_the_value_bound_never_fail_a_commit(store: Store, run: Run) -> None:
    """Two events of 1.7e308 in one bucket, in two commits: PostgreSQL refused the rollups' sum past the
    double range (value out of range), and with it every event of the group. Past rows.MAX_VALUE a number
    stays in the properties and out of events.value."""
    for n in range(2):
        run(store.write_events([event_rows(Event("web_vitals", "performance", T0 + n, T0 + n,
                                                 {"name": "LCP", "value": 1.7e308, "rating": "poor"},
                                                 user_id="u", event_id=f"huge_{n}"))]))
    assert run(store.fetch("SELECT count(*), count(value) FROM events")) == [(2, 0)]
    assert run(store.fetch("SELECT sum(events), sum(nvalues) FROM rollup_counts_hour")) == [(2, 0)]
