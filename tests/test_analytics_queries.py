"""The analytics documents against hand-computed fixtures (tests/support/analytics_fixture.py), on SQLite and on a
real PostgreSQL; probe rollups' additive upsert; and the rule that no query scans the events table."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.analytics.business import business_metrics
from agent.analytics.dashboard import dashboard
from agent.analytics.stats import nearest_rank, percent
from agent.analytics.timerange import TimeRange
from agent.store.errors import StoreError
from agent.store.probe_rollups import ProbeRollups
from agent.store.sqlite import SqliteStore
from tests.support.analytics_fixture import (EXPECTED_BUSINESS, EXPECTED_DASHBOARD, T0, T1, load_fixture,
                                             within_sketch)

pytest_plugins = ["tests.support.store_fixtures"]

RANGE = TimeRange(T0, T1)


def test_dashboard_matches_the_hand_computed_fixture(store, run):
    run(load_fixture(store))
    assert run(dashboard(store, RANGE)) == EXPECTED_DASHBOARD


def test_business_metrics_match_the_hand_computed_fixture(store, run):
    run(load_fixture(store))
    assert within_sketch(run(business_metrics(store, RANGE)), EXPECTED_BUSINESS) == EXPECTED_BUSINESS


def test_a_range_ending_earlier_moves_every_window(store, run):
    """[T0, T0 + 1 day): only the first day's events; DAU/WAU/MAU end at the new `to`."""
    run(load_fixture(store))
    day = TimeRange(T0, T0 + 86400)
    doc = run(business_metrics(store, day))
    # day 1: alice bob erin coach_7 coach_9 grace all have events before 24h (alice 0h, bob 1h, erin 0h, 3h,
    # 6h, 5.5h); the week and month add carol; new: erin and grace (dave and frank sign up on days 3 and 4)
    assert doc["userEngagement"] == {"dau": 6, "wau": 7, "mau": 7, "newUsers": 2,
                                     "newUsersByRole": {"coach": 1, "client": 1, "other": 0},
                                     "averageSessionDurationSeconds": 1200.0,
                                     # the day before: bob (-24h, mfa_disabled at exactly -24h) and coach_7 (-1h)
                                     "retentionRate": 100.0}
    assert doc["sessions"] == {"bookings": 3, "completions": 0, "cancellations": 0, "averageRating": None}
    summary = run(dashboard(store, day))["summary"]
    # total: everyone who started before the day's end but dave and frank (signed up on days 3 and 4)
    assert (summary["totalUsers"], summary["activeUsers"], summary["newUsers"]) == (7, 6, 2)


NO_ROLES = {"coach": 0, "client": 0, "other": 0}
EMPTY_SUMMARY = {"totalUsers": 0, "activeUsers": 0, "newUsers": 0, "activeUsersByRole": NO_ROLES,
                 "newUsersByRole": NO_ROLES, "totalSessions": 0, "completedSessions": 0,
                 "sessionCompletionRate": 0.0, "cancelledSessions": 0,
                 "goals": {"total": 0, "completed": 0, "active": 0, "completionRate": 0.0},
                 "engagement": {"averageEngagementScore": None, "taskCompletionRate": 0.0},
                 "coaches": {"activeCoaches": 0, "averageSessionsPerCoach": None}}


def test_an_empty_store_gives_zeros_and_nulls(store, run):
    doc = run(dashboard(store, RANGE))
    assert doc["summary"] == EMPTY_SUMMARY
    assert doc["funnelMetrics"] == [{"funnel": "signup", "steps": []},
                                    {"funnel": "onboarding", "steps": [], "flowsCompleted": 0}]
    assert [doc[k] for k in ("coachProductivity", "clientEngagement", "goalCompletion", "serviceUptime")] == [[]] * 4
    business = run(business_metrics(store, RANGE))
    assert business["performance"]["uptime"] is None
    assert business["performance"]["pageLoadMs"] == {"p50": None, "p75": None, "p95": None}
    assert business["authentication"] == {"loginAttempts": 0, "successfulLogins": 0, "successRate": 0.0,
                                          "mfaAdoptionRate": 0.0}


# --- probe rollups -------------------------------------------------------------------------------

def rollup_rows(store, run) -> list[tuple[Any, ...]]:
    rows = run(store.fetch("SELECT target, minute, probes, successes, duration_sum, duration_max "
                           "FROM probe_rollups ORDER BY target, minute"))
    return [(t, int(m), int(n), int(ok), round(float(total), 9), float(peak)) for t, m, n, ok, total, peak in rows]


def test_rollup_flushes_add_to_the_stored_minute(store, run):
    rollups = ProbeRollups()
    rollups.observe("api", True, 0.5, 120.0)
    rollups.observe("api", False, 2.0, 179.9)           # same minute (2)
    rollups.observe("api", True, 0.25, 180.0)           # minute 3
    assert run(rollups.flush(store)) == 2
    assert len(rollups) == 0
    rollups.observe("api", True, 1.0, 150.0)            # minute 2 again, in a later flush
    rollups.observe("api", True, 3.0, 121.0)
    rollups.observe("db", True, 0.1, 125.0)
    assert run(rollups.flush(store)) == 2
    assert rollup_rows(store, run) == [("api", 2, 4, 3, 6.5, 3.0), ("api", 3, 1, 1, 0.25, 0.25),
                                       ("db", 2, 1, 1, 0.1, 0.1)]


def test_uptime_over_hours_reads_whole_hours_and_edge_minutes_alike(store, run):
    """probe_uptime sums whole hours from probe_rollups_hourly and the edges from probe_rollups: for
    ranges cutting hours anywhere it must equal the sum over the minutes alone."""
    from agent.analytics.queries import probe_uptime
    rollups = ProbeRollups()
    base = 1_700_000_000 // 3600 * 3600                 # a whole hour
    for i in range(0, 5 * 3600, 50):                     # five hours, a probe every 50 s, two targets
        rollups.observe("api", i % 7 != 0, 0.001 * (i % 13), base + i)
        rollups.observe("db", i % 5 != 0, 0.002 * (i % 11), base + i + 1)
    run(rollups.flush(store))
    hours = run(store.fetch("SELECT count(*) FROM probe_rollups_hourly"))[0][0]
    assert hours == 10
    for start, end in ((base + 1, base + 5 * 3600), (base + 1799, base + 3 * 3600 + 61), (base, base + 3600),
                       (base + 60, base + 3540), (base - 3600, base + 10 * 3600)):
        first, past = -(-start // 60), -(-end // 60)
        expected = run(store.fetch(
            "SELECT target, sum(probes), sum(successes), sum(duration_sum), max(duration_max) FROM probe_rollups "
            "WHERE minute >= ? AND minute < ? GROUP BY target ORDER BY target", (first, past)))
        got = run(probe_uptime(store, TimeRange(start, end)))
        assert [(u.target, u.probes, u.successes, round(u.duration_sum, 9), u.duration_max) for u in got] == \
            [(t, int(n), int(ok), round(float(total), 9), float(peak)) for t, n, ok, total, peak in expected]


def test_a_failed_flush_keeps_its_rows_for_the_next(tmp_path: Path):
    async def scenario() -> list[tuple[Any, ...]]:
        path = str(tmp_path / "store.db")
        down = SqliteStore(path)          # never opened: every call raises StoreUnavailable
        rollups = ProbeRollups()
        rollups.observe("api", True, 1.0, 60.0)
        with pytest.raises(StoreError):
            await rollups.flush(down)
        rollups.observe("api", False, 3.0, 70.0)         # observed while the store was down: merged
        assert len(rollups) == 1
        up = SqliteStore(path)
        await up.open()
        try:
            assert await rollups.flush(up) == 1
            return await up.fetch("SELECT target, minute, probes, successes, duration_sum, duration_max "
                                  "FROM probe_rollups")
        finally:
            await up.close()
    assert asyncio.run(scenario()) == [("api", 1, 2, 1, 4.0, 3.0)]


def test_pending_rollups_are_bounded_oldest_first():
    rollups = ProbeRollups(max_pending=3)
    for minute in range(5):
        rollups.observe("api", True, 0.1, minute * 60.0)
    assert len(rollups) == 3 and rollups.dropped == 2
    assert [key[1] for key in rollups._pending] == [2, 3, 4]


def test_the_run_loop_flushes_once_more_when_cancelled(store, run):
    async def scenario() -> None:
        rollups = ProbeRollups()
        task = asyncio.create_task(rollups.run(store, every=3600))
        await asyncio.sleep(0)
        rollups.observe("api", True, 0.2, 600.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run(scenario())
    assert rollup_rows(store, run) == [("api", 10, 1, 1, 0.2, 0.2)]


# --- every query on an index ---------------------------------------------------------------------

class RecordingStore:
    """The real SQLite store, remembering every SQL text it was asked to fetch."""

    def __init__(self, inner: SqliteStore):
        self.inner, self.dialect, self.sql = inner, inner.dialect, []

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.sql.append((sql, tuple(params)))
        return await self.inner.fetch(sql, params)


# a full scan of `events`, under its name or one of the aliases the analytics SQL gives it
EVENTS_SCAN = re.compile(r"\bSCAN (events|e|p|c)\b")


def test_no_analytics_query_scans_the_events_table(tmp_path: Path):
    async def scenario() -> list[tuple[str, tuple[Any, ...]]]:
        inner = SqliteStore(str(tmp_path / "store.db"))
        await inner.open()
        try:
            await load_fixture(inner)
            recording = RecordingStore(inner)
            await dashboard(recording, RANGE)
            await business_metrics(recording, RANGE)
            return recording.sql
        finally:
            await inner.close()
    statements = asyncio.run(scenario())
    assert len(statements) >= 20
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        for sql, params in statements:
            plan = "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert not EVENTS_SCAN.search(plan), f"{sql}\n{plan}"
            assert "events" not in sql or "USING" in plan, f"{sql}\n{plan}"
    finally:
        conn.close()


# --- the arithmetic ------------------------------------------------------------------------------

def test_nearest_rank_percentiles():
    values = [15.0, 20.0, 35.0, 40.0, 50.0]           # the textbook example
    assert [nearest_rank(values, p) for p in (5, 30, 40, 50, 100)] == [15.0, 20.0, 20.0, 35.0, 50.0]
    assert nearest_rank([], 50) is None
    assert nearest_rank([7.0], 99) == 7.0


def test_percent_rounds_to_one_decimal_and_is_zero_without_a_whole():
    assert percent(2, 3) == 66.7
    assert percent(1, 0) == 0.0
