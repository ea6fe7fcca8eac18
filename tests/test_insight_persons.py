"""The insights' persons from the person bitmaps (agent/analytics/insight_persons.py) against the same
insights answered from the events (the SQL path, forced by taking the bitmaps out), on SQLite and on a
real PostgreSQL: unique-person trends (every interval, with and without a breakdown by a label the
rollups keep, ranges starting and ending at arbitrary instants) and retention tables (first time and
recurring, days and weeks), over random events with anonymous visitors (some linked to a user by an event
carrying both ids), an alias whose events are still stored under it, and an erased person. Each covered
query must also have been answered from the bitmaps (the spies count it), and the uncovered ones not."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pyroaring import BitMap

from agent.analytics import insight_persons, retention, trends
from agent.analytics.insight_query import retention_query, trends_query
from agent.events.model import Event
from agent.store import gdpr
from agent.store.open import open_store
from agent.store.rows import event_rows

pytest_plugins = ["tests.support.store_fixtures"]

T0 = 1740960000.0          # 2025-03-03T00:00:00Z, a Monday
H, D = 3600.0, 86400.0
USERS = [f"u{i}" for i in range(40)]
ANONYMOUS = [f"a{i}" for i in range(15)]
COACHES = ("c1", "c2", "c3", "c4")


def random_events(seed: int = 5, count: int = 1500) -> list[Event]:
    """Five weeks of app_open, signup_completed (named, unlabelled), session_booked (its coach the lifted
    label) and page_load (its page), a quarter of app_open and signup_completed anonymous; a0..a4 later
    carry a user id too (linking them); u_old's events stay under it (an alias of u1, added after)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name = rng.choice(("app_open", "app_open", "signup_completed", "session_booked", "page_load"))
        ts = T0 - 7 * D + rng.random() * 35 * D
        user: str | None = rng.choice(USERS + ["u_old"])
        anonymous = None
        props: dict[str, Any] = {}
        if name in ("app_open", "signup_completed") and rng.random() < 0.25:
            user, anonymous = None, rng.choice(ANONYMOUS)
        if name == "session_booked":
            props = {"coach_id": rng.choice(COACHES), "session_type": "coaching", "duration_minutes": 30.0}
        if name == "page_load":
            props = {"page": rng.choice(("/a", "/b", "/c")), "load_time_ms": 100.0}
        known = name in ("session_booked", "page_load")
        category = {"session_booked": "session", "page_load": "performance"}.get(name, "custom")
        out.append(Event(name, category, ts, ts, props, user_id=user, anonymous_id=anonymous,
                         event_id=f"p-{seed}-{i}", known=known))
    for i, anonymous in enumerate(ANONYMOUS[:5]):      # the links: an event with both ids
        ts = T0 + i * 5 * D + 1234.5
        out.append(Event("app_open", "custom", ts, ts, {}, user_id=USERS[i + 10], anonymous_id=anonymous,
                         event_id=f"link-{seed}-{i}", known=False))
    return out


@pytest.fixture
def loaded(store, run):
    events = [event_rows(e) for e in random_events()]
    for start in range(0, len(events), 97):
        run(store.write_events(events[start:start + 97]))
    run(store.execute([("INSERT INTO person_aliases (alias_id, person_id, ts) VALUES (?, ?, ?)",
                        ("u_old", "u1", T0))]))
    run(gdpr.erase_user(store, ["u7"]))
    return store


@pytest.fixture
def spies(monkeypatch):
    """Counts the queries the bitmaps answered; `events_only()` takes them out (the SQL path)."""
    answered = {"trends": 0, "retention": 0}
    real_trend, real_retention = insight_persons.trend_persons, insight_persons.retention_sets

    async def trend(*args: Any) -> Any:
        found = await real_trend(*args)
        answered["trends"] += found is not None
        return found

    async def sets(*args: Any) -> Any:
        found = await real_retention(*args)
        answered["retention"] += found is not None
        return found

    async def none(*args: Any) -> None:
        return None

    monkeypatch.setattr(trends, "trend_persons", trend)
    monkeypatch.setattr(retention, "retention_sets", sets)

    def events_only() -> None:
        monkeypatch.setattr(trends, "trend_persons", none)
        monkeypatch.setattr(retention, "retention_sets", none)
    return answered, events_only


TRENDS = [
    ({"series": [{"event": "app_open", "math": "unique_persons"}], "interval": "day"}, True),
    ({"series": [{"event": "app_open", "math": "unique_persons"}], "interval": "hour"}, True),
    ({"series": [{"event": "signup_completed", "math": "unique_persons"}], "interval": "week"}, True),
    ({"series": [{"event": "app_open", "math": "unique_persons"}], "interval": "month"}, True),
    ({"series": [{"event": "session_booked", "math": "unique_persons"}], "breakdown": "coach_id",
      "interval": "day"}, True),
    ({"series": [{"event": "session_booked", "math": "unique_persons"}], "breakdown": "coach_id",
      "breakdown_limit": 2, "interval": "week"}, True),
    ({"series": [{"event": "page_load", "math": "unique_persons"}], "breakdown": "page", "interval": "day"}, True),
    # not covered: a property filter, a breakdown the rollups do not keep
    ({"series": [{"event": "session_booked", "math": "unique_persons",
                  "properties": [{"key": "coach_id", "value": "c1"}]}], "interval": "day"}, False),
    ({"series": [{"event": "session_booked", "math": "unique_persons"}], "breakdown": "session_type",
      "interval": "day"}, False),
]
RANGES = [(T0 - 3 * D + 1234.5, T0 + 20 * D + 777.25), (T0, T0 + 7 * D), (T0 + 3 * H + 10, T0 + 29 * H + 5),
          (T0 - 7 * D, T0 + 28 * D)]


@pytest.mark.parametrize("body, covered", TRENDS)
def test_unique_person_trends_from_the_bitmaps_equal_the_events(loaded, run, spies, body, covered):
    answered, events_only = spies
    ranges = RANGES[2:3] if body["interval"] == "hour" else RANGES
    # asked after every event was received (a request asked earlier would not count the later arrivals:
    # rollup_queries.snapped)
    queries = [trends_query({**body, "from": start, "to": end}, T0 + 60 * D) for start, end in ranges]
    from_bits = [run(trends.trends(loaded, q)) for q in queries]
    assert answered["trends"] == (len(queries) if covered else 0)
    events_only()
    from_events = [run(trends.trends(loaded, q)) for q in queries]
    assert from_bits == from_events
    assert any(sum(r["data"]) for doc in from_events for r in doc["results"])     # they found persons


RETENTION = [
    ({"cohort": {"event": "signup_completed"}, "returning": {"event": "app_open"}, "period": "week",
      "periods": 4, "to": T0 + 25 * D}, True),
    ({"cohort": {"event": "signup_completed"}, "returning": {"event": "app_open"}, "type": "recurring",
      "period": "week", "periods": 5, "to": T0 + 25 * D}, True),
    ({"cohort": {"event": "app_open"}, "returning": {"event": "session_booked"}, "period": "day",
      "periods": 12, "to": T0 + 9 * D + 5}, True),
    ({"cohort": {"event": "page_load"}, "returning": {"event": "app_open"}, "type": "recurring",
      "period": "day", "periods": 9, "to": T0 + 2 * D}, True),
    # not covered: first seen, a filter, any event
    ({"cohort": {"event": None}, "returning": {"event": "app_open"}, "period": "week", "periods": 6,
      "to": T0 + 25 * D}, False),
    ({"cohort": {"event": "session_booked", "properties": [{"key": "coach_id", "value": "c2"}]},
      "returning": {"event": "app_open"}, "period": "week", "periods": 4, "to": T0 + 25 * D}, False),
    ({"cohort": {"event": "app_open"}, "returning": {"event": None}, "type": "recurring", "period": "week",
      "periods": 4, "to": T0 + 25 * D}, False),
]


@pytest.mark.parametrize("body, covered", RETENTION)
def test_retention_from_the_bitmaps_equals_the_events(loaded, run, spies, body, covered):
    answered, events_only = spies
    q = retention_query(body, T0)
    from_bits = run(retention.retention(loaded, q))
    assert answered["retention"] == (1 if covered else 0)
    events_only()
    from_events = run(retention.retention(loaded, q))
    assert from_bits == from_events
    assert any(v["persons"] for c in from_events["cohorts"] for v in c["values"][1:])    # some came back


def test_an_unlabelled_event_keeps_the_breakdown_on_the_events(store, run, spies):
    """A page_load without a page: the unset value's persons are not in any label's bitmap."""
    answered, _ = spies
    events = [Event("page_load", "performance", T0 + i * H, T0 + i * H, {"page": "/a"} if i % 3 else {},
                    user_id=f"u{i % 4}", event_id=f"u-{i}") for i in range(30)]
    run(store.write_events([event_rows(e) for e in events]))
    q = trends_query({"series": [{"event": "page_load", "math": "unique_persons"}], "breakdown": "page",
                      "from": T0, "to": T0 + 2 * D}, T0)
    from_events = run(trends.trends(store, q))
    assert answered["trends"] == 0
    assert [r["breakdown_value"] for r in from_events["results"]] == ["/a", None]


BITS_SQL = ("SELECT bucket, label, bits FROM person_bits_{size} WHERE name = 'page_load' AND label <> '' "
            "ORDER BY bucket, label")


def _labelled_bits(store: Any, run: Any) -> dict[str, list[tuple[int, str, list[int]]]]:
    return {size: [(int(b), label, list(BitMap.deserialize(bytes(bits))))
                   for b, label, bits in run(store.fetch(BITS_SQL.format(size=size)))] for size in ("hour", "day")}


def test_migration_13_rebuilds_page_load_by_page_for_a_store_that_ran_12_without(store_config, store, run):
    """A store whose migration 12 ran before page_load was labelled: its page_load bitmaps by page are
    built by migration 13 (agent/store/label_bits.py), the same as ingest made them; its rollup counts by
    page too."""
    events = [e for e in random_events(seed=11, count=600) if e.name == "page_load"]
    run(store.write_events([event_rows(e) for e in events]))
    built = _labelled_bits(store, run)
    counts = run(store.fetch("SELECT bucket, label, events FROM rollup_counts_day WHERE name = 'page_load' "
                             "ORDER BY bucket, label"))
    assert built["day"] and {label for _, label, _ in built["day"]} == {"/a", "/b", "/c"}
    run(store.execute([("DELETE FROM person_bits_hour WHERE name = 'page_load' AND label <> ''", ()),
                       ("DELETE FROM person_bits_day WHERE name = 'page_load' AND label <> ''", ()),
                       ("UPDATE rollup_counts_day SET label = '' WHERE name = 'page_load' AND label = '/a'", ()),
                       ("DROP INDEX events_anonymous_name", ()),
                       ("DELETE FROM schema_migrations WHERE version = 13", ())]))
    run(store.close())
    reopened = run(open_store(store_config))
    try:
        assert _labelled_bits(reopened, run) == built
        assert run(reopened.fetch("SELECT bucket, label, events FROM rollup_counts_day WHERE name = 'page_load' "
                                  "ORDER BY bucket, label")) == counts
    finally:
        run(reopened.close())
