"""Releases: the `release` of an event (validation, storage on SQLite and a real PostgreSQL),
loom_release_info{release} (bounded, the most recently seen kept), and the `release=` filter of the
analytics documents against the hand-computed fixture (tests/support/analytics_fixture.py)."""

from __future__ import annotations

import asyncio
import copy
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from agent.analytics.business import business_metrics
from agent.analytics.dashboard import dashboard
from agent.analytics.timerange import TimeRange
from agent.events.config import EventsConfig
from agent.events.identify import parse_identifies
from agent.events.limits import Limits
from agent.events.pipeline import EventPipeline
from agent.events.properties import FieldError
from agent.events.validate import EventError, parse_event, parse_release
from agent.metrics.exposition import render
from agent.metrics.releases import ReleaseTracker
from agent.metrics.store import MetricStore
from agent.store.base import Store
from agent.store.rows import event_rows
from agent.store.sqlite import SqliteStore
from agent.store.traits import store_identifies
from tests.support.analytics_fixture import (
    EXPECTED_BUSINESS,
    EXPECTED_DASHBOARD,
    T0,
    T1,
    fixture_events,
    identify_bodies,
    load_fixture,
)
from tests.support.procs import AgentProcess
from tests.support.agent_app import agent_app, get_all
from tests.test_openapi import documented, errors_of

pytest_plugins = ["tests.support.store_fixtures"]

NOW = 1_795_514_405.0
H, D = 3600.0, 86400.0
RANGE = TimeRange(T0, T1)
GOOD = {"event": "cta_click", "userId": "u1", "properties": {"ctaId": "hero"}}


# --- the envelope field -----------------------------------------------------------------------------

@pytest.mark.parametrize("release", ["loom-web@2.3.1", "2025.11.14", "4f2a9c1", "web@1.0.0-rc.1+build.5",
                                     "api:v12", "app_2~beta", "web@1.2.3", "r" * 128])
def test_releases_are_kept_as_sent(release: str):
    assert parse_event({**GOOD, "release": release}, now=NOW).release == release


BAD_RELEASES = [
    (3, "must be a string, got integer"),
    ("", "1 to 128 characters"),
    ("r" * 129, "1 to 128 characters"),
    ("web 2.0", "only letters, digits"),
    ("-web", "start with a letter or digit"),
    ("web/2.0", "only letters, digits"),
    ("ada@example.com", "not an e-mail address"),
    ("web@ada.lovelace@mail.example.org", "not an e-mail address"),
]


@pytest.mark.parametrize("release, words", BAD_RELEASES)
def test_bad_releases_are_400s_naming_the_field(release: Any, words: str):
    with pytest.raises(EventError) as caught:
        parse_event({**GOOD, "release": release}, now=NOW)
    assert caught.value.field == "release" and words in caught.value.message
    with pytest.raises(FieldError) as caught_again:          # what errors and metrics call, with their field
        parse_release(release, "errors[2].release")
    assert caught_again.value.field == "errors[2].release"


def test_an_event_without_a_release_has_none():
    assert parse_event(GOOD, now=NOW).release is None
    assert parse_event({**GOOD, "release": None}, now=NOW).release is None


def test_the_release_is_stored_on_the_event(store, run):
    events = [parse_event({**GOOD, "release": "web@2.0.1", "timestamp": NOW - 10}, now=NOW),
              parse_event({**GOOD, "timestamp": NOW - 5}, now=NOW)]
    run(store.write_events([event_rows(e) for e in events]))
    assert run(store.fetch("SELECT release FROM events ORDER BY ts")) == [("web@2.0.1",), (None,)]


# --- loom_release_info ------------------------------------------------------------------------------

def release_lines(store: MetricStore) -> list[str]:
    text = render(store, None, openmetrics=False).decode()
    return [line for line in text.splitlines() if line.startswith("loom_release_info")]


def test_release_info_marks_the_releases_seen_and_keeps_the_most_recent():
    store = MetricStore()
    tracker = ReleaseTracker(store, max_releases=3)
    for release in ("r1", "r2", None, "r3", "r1", "r4"):         # r1 seen again: r2 is the oldest when r4 comes
        tracker.seen(release)
    assert tracker.releases() == ["r3", "r1", "r4"]
    assert sorted(release_lines(store)) == ['loom_release_info{release="r1"} 1.0', 'loom_release_info{release="r3"} 1.0',
                                            'loom_release_info{release="r4"} 1.0']
    for n in range(100):                                          # never more than 3 series, never "other"
        tracker.seen(f"x{n}")
    assert sorted(release_lines(store)) == [f'loom_release_info{{release="x{n}"}} 1.0' for n in (97, 98, 99)]
    assert store.overflow == {}
    tracker.seen("y" * 200)                                       # longer than a label: kept as its label, 128
    tracker.seen("z")
    tracker.seen("w")
    tracker.seen("v")                                             # the long one goes, series and all
    assert sorted(release_lines(store)) == [f'loom_release_info{{release="{r}"}} 1.0' for r in "vwz"]
    with pytest.raises(ValueError):
        ReleaseTracker(MetricStore(), max_releases=0)


def test_committed_events_feed_release_info_through_the_pipeline_observer():
    store = MetricStore()
    tracker = ReleaseTracker(store)
    pipeline = EventPipeline(EventsConfig(), store, None)
    pipeline.observers.append(tracker.observe)
    events = [parse_event({**GOOD, "release": release}, now=NOW) for release in ("a@1", "a@1", "b@2", None, "a@1")]
    asyncio.run(pipeline.ingest(events, "events"))
    assert tracker.releases() == ["b@2", "a@1"]           # a@1 seen last
    assert len(release_lines(store)) == 2


@pytest.mark.slow
def test_a_running_agent_exposes_release_info(tmp_path: Path):
    agent = AgentProcess(tmp_path, {"store": {"driver": "none"}})
    try:
        body = orjson.dumps([{**GOOD, "release": "loom-web@2.3.1"}, {**GOOD, "release": "loom-web@2.4.0"}])
        assert aiohttp_post(agent.url + "/v1/events/batch", body) == 200
        metrics = agent.metrics()
    finally:
        agent.stop()
    assert 'loom_release_info{release="loom-web@2.3.1"} 1.0' in metrics
    assert 'loom_release_info{release="loom-web@2.4.0"} 1.0' in metrics


def aiohttp_post(url: str, body: bytes) -> int:
    async def send() -> int:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                return resp.status
    return asyncio.run(send())


# --- the release= filter ----------------------------------------------------------------------------

RELEASE, OTHER = "loom-web@1.4.0", "loom-web@1.5.0"

# another release's events: alice, bob and a new user zed touch every section once more
NOISE = [
    ("session_booked", "alice", 5, {"coachId": "coach_7"}),
    ("session_completed", "zed", 6, {"coachId": "coach_7"}),
    ("goal_created", "alice", 7, {"goalCategory": "career"}),
    ("login_attempt", "zed", 8, {"result": "failure"}),
    ("api_request", "bob", 9, {"route": "/api/x", "method": "GET", "status": 500, "durationMs": 9000}),
    ("page_load", "bob", 10, {"page": "/x", "loadTimeMs": 9000}),
    ("web_vitals", "bob", 11, {"name": "FID", "value": 30, "rating": "good"}),
    ("signup_step", "anon:v9", 12, {"step": "email", "stepNumber": 1}),
    ("onboarding_step_started", "zed", 13, {"step": "profile_setup", "stepNumber": 1, "flowId": "f9"}),
    ("mfa_enrolled", "zed", 14, {"method": "totp"}),
    ("logout", "zed", 15, {"sessionDurationSeconds": 60}),
    ("file_uploaded", "zed", 16, {"bytes": 5}),
    ("resource_engagement_score", "zed", 17, {"resourceId": "r_9", "score": 1}),
]


async def load_two_releases(store: Store) -> None:
    """The fixture, every event of RELEASE; its identifies; then NOISE, of OTHER."""
    events = fixture_events()
    for event in events:
        event.release = RELEASE
    limits = Limits(max_past_age=400 * D)
    for name, user, hours, props in NOISE:
        body: dict[str, Any] = {"event": name, "timestamp": T0 + hours * H, "properties": props, "release": OTHER}
        body["anonymousId" if user.startswith("anon:") else "userId"] = user.removeprefix("anon:")
        events.append(parse_event(body, now=T1 + H, limits=limits))
    await store.write_events([event_rows(event) for event in events])
    await store_identifies(store, parse_identifies(identify_bodies(), now=T1 + H, limits=limits))


def expected_for_the_release() -> tuple[dict[str, Any], dict[str, Any]]:
    """The hand-computed documents, less the users without an event of the release: dave (his only event is
    at `to`) and frank (none) are neither total nor new users of it."""
    dash, business = copy.deepcopy(EXPECTED_DASHBOARD), copy.deepcopy(EXPECTED_BUSINESS)
    new_by_role = {"coach": 1, "client": 1, "other": 0}                   # grace; erin
    dash["summary"].update(totalUsers=7, newUsers=2, newUsersByRole=new_by_role)
    business["userEngagement"].update(newUsers=2, newUsersByRole=new_by_role)
    business["authentication"]["mfaAdoptionRate"] = 28.6                   # alice, erin of 7
    return dash, business


def test_filtered_by_its_release_the_fixture_gives_the_hand_computed_documents(store, run):
    run(load_two_releases(store))
    # probe rollups are not in load_two_releases: the uptime sections stay empty
    dash, business = expected_for_the_release()
    dash["serviceUptime"], business["performance"]["uptime"] = [], None
    assert run(dashboard(store, RANGE, RELEASE)) == dash
    assert run(business_metrics(store, RANGE, RELEASE)) == business
    # unfiltered, the other release shows (a sanity check that the noise is there)
    unfiltered = run(dashboard(store, RANGE))
    assert unfiltered["summary"]["totalSessions"] == 5 and unfiltered["summary"]["activeUsers"] == 7


def test_the_other_release_alone(store, run):
    run(load_two_releases(store))
    summary = run(dashboard(store, RANGE, OTHER))["summary"]
    # zed is new (first seen in the range) and other; alice bob zed are active
    assert (summary["totalUsers"], summary["activeUsers"], summary["newUsers"]) == (3, 3, 1)
    assert summary["activeUsersByRole"] == {"coach": 0, "client": 1, "other": 2}
    assert (summary["totalSessions"], summary["completedSessions"]) == (1, 1)
    business = run(business_metrics(store, RANGE, OTHER))
    assert business["performance"]["errorRate"] == 100.0 and business["performance"]["apiResponseMs"]["p50"] == 9000.0
    assert business["authentication"] == {"loginAttempts": 1, "successfulLogins": 0, "successRate": 0.0,
                                          "mfaAdoptionRate": 33.3}            # zed of alice bob zed


def test_a_release_without_events_gives_zeros_but_keeps_the_probes(store, run):
    run(load_fixture(store))
    dash = run(dashboard(store, RANGE, "never@0"))
    assert dash["summary"]["totalUsers"] == 0 and dash["summary"]["activeUsers"] == 0
    assert dash["coachProductivity"] == [] and dash["funnelMetrics"][1]["steps"] == []
    assert dash["serviceUptime"] == EXPECTED_DASHBOARD["serviceUptime"]


EVENTS_SCAN = re.compile(r"\bSCAN (events|e|p|c)\b")


class RecordingStore:
    def __init__(self, inner: SqliteStore):
        self.inner, self.dialect, self.sql = inner, inner.dialect, []

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.sql.append((sql, tuple(params)))
        return await self.inner.fetch(sql, params)


def test_no_filtered_query_scans_the_events_table(tmp_path: Path):
    async def scenario() -> list[tuple[str, tuple[Any, ...]]]:
        inner = SqliteStore(str(tmp_path / "store.db"))
        await inner.open()
        try:
            await load_two_releases(inner)
            recording = RecordingStore(inner)
            await dashboard(recording, RANGE, RELEASE)
            await business_metrics(recording, RANGE, RELEASE)
            return recording.sql
        finally:
            await inner.close()
    statements = asyncio.run(scenario())
    assert sum(RELEASE in params for _, params in statements) >= 20
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        for sql, params in statements:
            plan = "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert not EVENTS_SCAN.search(plan), f"{sql}\n{plan}"
    finally:
        conn.close()


# --- release= over HTTP -----------------------------------------------------------------------------

TOKEN = "admin-token-for-the-release-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def serve(store: Store, calls: list[tuple[str, str]]) -> list[tuple[int, Any]]:
    app = agent_app(store, "api: {rate_limit: 1000}", admin_token=TOKEN)
    return [(status, body) for status, body, _ in await get_all(app, [(path, query, AUTH) for path, query in calls])]


def test_the_release_parameter_over_http(tmp_path: Path):
    base = "from=2025-03-01T00:00:00Z&to=2025-03-08T00:00:00Z"
    calls = [("/api/analytics/dashboard", f"{base}&release=loom-web%401.4.0"),
             ("/api/monitoring/business-metrics", f"{base}&release=loom-web%401.4.0"),
             ("/api/analytics/dashboard", f"{base}&release="),
             ("/api/analytics/dashboard", f"{base}&release=a%20b"),
             ("/api/monitoring/business-metrics", f"{base}&release=me%40example.com"),
             ("/api/analytics/dashboard", f"{base}&release=a&release=b")]

    async def scenario() -> list[tuple[int, Any]]:
        store = SqliteStore(str(tmp_path / "store.db"))
        await store.open()
        try:
            await load_two_releases(store)
            return await serve(store, calls)
        finally:
            await store.close()
    answers = asyncio.run(scenario())
    dash, business = expected_for_the_release()
    dash["serviceUptime"], business["performance"]["uptime"] = [], None
    assert answers[0] == (200, dash) and answers[1] == (200, business)
    for status, body in answers[2:]:
        assert status == 400 and body["errors"][0]["field"] == "release" and body["error"].startswith("release: ")
    for (path, _), (status, body) in zip(calls, answers):        # as agent/api/openapi.json documents them
        assert errors_of(documented(path, "GET", status, "application/json"), body) == [], (path, status, body)
    assert "more than once" in answers[5][1]["error"] and "e-mail" in answers[4][1]["error"]
