"""The analytics' per-user reads go through events_by_user (agent/store/user_index.py): on SQLite, where the
index events_user_ts is gone (migration 21), each one seeks the table's key (user_id, ts, id), joined to the
events by id only when it needs their other columns; never a scan of the events. One family of statements
at a time, each seen at least once (a family that stops going through events_by_user, or is no longer
run, fails); and the identified persons of every event (no name) read from events_by_user give the rows the
events give, on both databases.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.analytics import person_sets as ps, queries as q
from agent.analytics.business import business_metrics
from agent.analytics.dashboard import dashboard
from agent.analytics.insight_sql import bucket_sql, person_rows
from agent.analytics.timerange import TimeRange
from agent.store.sqlite import SqliteStore
from tests.support.analytics_fixture import T0, T1, load_fixture
from tests.support.insights_fixture import T0 as I0, D, load_insights_fixture

pytest_plugins = ["tests.support.store_fixtures"]

H = 3600.0
RELEASE = "9.9.9"           # no fixture event has it: the SQL with a release is the one planned


class RecordingStore:
    """The real SQLite store, remembering every SQL text it was asked to fetch."""

    def __init__(self, inner: SqliteStore):
        self.inner, self.dialect, self.sql = inner, inner.dialect, list[tuple[str, tuple[Any, ...]]]()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.sql.append((sql, tuple(params)))
        return await self.inner.fetch(sql, params)


READS_EVENTS = re.compile(r"\bevents(_by_user)?\b")
# the per-user statements of each family, by their text
FAMILIES: dict[str, Callable[[str], bool]] = {
    # queries.py: EXISTS / count(*) correlated on u.user_id (no release: events_by_user; a release: joined)
    "user's events": lambda sql: "= u.user_id" in sql and bool(READS_EVENTS.search(sql)) and "release" not in sql,
    "user's events of a release": lambda sql: "= u.user_id" in sql and bool(READS_EVENTS.search(sql))
    and "release" in sql,
    # rollup_queries._exact_events: the raw pieces' counts of the candidate users
    "users' counts": lambda sql: sql.startswith("SELECT user_id, count(*) FROM events_by_user"),
    # person_sets._by_rest: the persons of the rest of an hour, looked up in the piece
    "rest of the hour": lambda sql: sql.startswith("SELECT DISTINCT e.user_id FROM events_by_user e WHERE"),
}
# a scan of the events (or of events_by_user) under a name or an alias the SQL gives it
SCAN = re.compile(r"\bSCAN (events|events_by_user|e|p|c|e_by|p_by|c_by)\b")
SEEK = re.compile(r"SEARCH (events_by_user|\w+_by|e|p|c) USING PRIMARY KEY \(user_id=\?")


def test_the_per_user_analytics_reads_seek_events_by_user(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def scenario() -> list[tuple[str, tuple[Any, ...]]]:
        inner = SqliteStore(str(path))
        await inner.open()
        try:
            await load_fixture(inner)
            store = RecordingStore(inner)
            ragged = TimeRange(T0 + 1000.5, T1 - 17)        # raw pieces at both ends
            for r, release in ((TimeRange(T0, T1), None), (ragged, None), (TimeRange(T0, T1), RELEASE)):
                await dashboard(store, r, release)
                await business_metrics(store, r, release)
            # the rollups answer these without a release: the events' SQL they fall back on
            await q.active_users_by_role(store, ragged)
            await q.retained_users(store, TimeRange(T0 - 7 * 86400, T0), ragged)
            await q.role_coaches(store, ragged)
            await q.top_clients(store, ragged, 5)
            # more than half an hour just after alice's page_load at 61 h (page_load before the hour: the
            # hour's bitmap is whole): the persons of the rest of the hour are looked up in the piece
            start = T0 + 61 * H + 1
            assert not await ps.persons_active(store, start, T0 + 62 * H)
            return store.sql
        finally:
            await inner.close()

    statements = asyncio.run(scenario())
    seen = dict.fromkeys(FAMILIES, 0)
    conn = sqlite3.connect(path)
    try:
        for sql, params in statements:
            family = next((name for name, match in FAMILIES.items() if match(sql)), None)
            if family is None:
                continue
            seen[family] += 1
            plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "events_by_user" in sql, f"{family}: {sql}"
            assert SEEK.search(plan) and not SCAN.search(plan), f"{family}: {sql}\n{plan}"
    finally:
        conn.close()
    assert all(seen.values()), seen


def test_the_persons_of_every_event_read_from_events_by_user_are_those_of_the_events(store, run) -> None:
    """person_rows without an event name reads the identified events' (ts, id, user) from events_by_user (a
    narrow table on SQLite, a view over the events on PostgreSQL): the same rows as from the events,
    aliases, anonymous ids linked by their first identified event and all. With a name, or a column other
    than ts, id and user_id, it reads the events (events_name_dims)."""
    run(load_insights_fixture(store))
    week = [bucket_sql(store.dialect, "week", "e.")]
    every = person_rows(store.dialect, week, [], "e.ts >= ? AND e.ts < ?", [I0 - 7 * D, I0 + 7 * D])
    named = person_rows(store.dialect, week, [], "e.name = ? AND e.ts >= ?", ["$pageview", I0])
    labelled = person_rows(store.dialect, ["e.label"], [], "e.ts >= ?", [I0])
    assert "FROM events_by_user e" in every[0]
    assert "events_by_user" not in named[0] + labelled[0]
    plain = every[0].replace("FROM events_by_user e", "FROM events e")
    got = sorted(run(store.fetch(every[0], every[1])), key=repr)
    expected = sorted(run(store.fetch(plain, every[1])), key=repr)
    assert got == expected
    persons = {row[2] for row in got}
    assert {"u_ann", "u_dan", "a_cat"} <= persons and "u_dan_old" not in persons and "a_ben" not in persons
