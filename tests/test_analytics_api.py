"""GET /api/analytics/dashboard and /api/monitoring/business-metrics over real HTTP (127.0.0.1, port 0):
the hand-computed documents on both databases, admin auth, time-range parameters, and the store's 503s."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.store.base import Store
from tests.support.analytics_fixture import (
    EXPECTED_BUSINESS,
    EXPECTED_DASHBOARD,
    FIXTURE,
    IDENTIFIES,
    QUERY,
    T0,
    T1,
    fixture_bodies,
    identify_bodies,
    load_fixture,
    within_sketch,
)
from tests.support.procs import AgentProcess
from tests.support.agent_app import Call, agent_app, get_all
from tests.support.agent_app import run_on_sqlite as support_run_on_sqlite

pytest_plugins = ["tests.support.store_fixtures"]

TOKEN = "admin-token-for-the-analytics-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD, BUSINESS = "/api/analytics/dashboard", "/api/monitoring/business-metrics"
ENDPOINTS = (DASHBOARD, BUSINESS)


def make_app(store: Store | None) -> web.Application:
    return agent_app(store, "api: {rate_limit: 1000}", admin_token=TOKEN)


def test_both_documents_over_http_match_the_hand_computed_fixture(store, run):
    run(load_fixture(store))
    unix = {"from": str(int(T0)), "to": f"{T1:.1f}"}            # the same range in unix seconds
    answers = run(get_all(make_app(store), [(DASHBOARD, QUERY, AUTH), (BUSINESS, QUERY, AUTH),
                                          (DASHBOARD, unix, AUTH), (BUSINESS, unix, AUTH)]))
    assert [status for status, _, _ in answers] == [200] * 4
    assert answers[0][1] == EXPECTED_DASHBOARD
    assert within_sketch(answers[1][1], EXPECTED_BUSINESS) == EXPECTED_BUSINESS
    assert answers[2][1] == EXPECTED_DASHBOARD
    assert within_sketch(answers[3][1], EXPECTED_BUSINESS) == EXPECTED_BUSINESS
    assert answers[0][2]["Content-Type"].startswith("application/json")


def test_the_documentation_example_keys_are_all_there(store, run):
    status, body, _ = run(get_all(make_app(store), [(DASHBOARD, None, AUTH)]))[0]
    assert status == 200
    assert {"summary", "funnelMetrics", "coachProductivity", "clientEngagement", "goalCompletion",
            "serviceUptime"} <= set(body)
    assert {"totalUsers", "activeUsers", "newUsers", "totalSessions", "completedSessions",
            "sessionCompletionRate"} <= set(body["summary"])


def parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_default_range_is_the_last_30_days_and_range_counts_back_from_to(tmp_path: Path):
    calls = [(DASHBOARD, None, AUTH), (BUSINESS, {"range": "24h", "to": "2025-03-08T00:00:00Z"}, AUTH),
             (DASHBOARD, {"range": "7d"}, AUTH)]
    before = time.time()
    answers = run_on_sqlite(tmp_path, calls)
    after = time.time()
    assert [status for status, _, _ in answers] == [200] * 3
    default = answers[0][1]["range"]
    end = parse_rfc3339(default["to"])
    assert before - 1 <= end <= after + 1
    assert end - parse_rfc3339(default["from"]) == pytest.approx(30 * 86400, abs=0.002)
    assert answers[1][1]["range"] == {"from": "2025-03-07T00:00:00Z", "to": "2025-03-08T00:00:00Z"}
    week = answers[2][1]["range"]
    assert parse_rfc3339(week["to"]) - parse_rfc3339(week["from"]) == pytest.approx(7 * 86400, abs=0.002)


def run_on_sqlite(tmp_path: Path, calls: Sequence[Call], *, close_first: bool = False) -> list[tuple[int, Any, Any]]:
    return support_run_on_sqlite(str(tmp_path / "store.db"), make_app, calls, close_first=close_first)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_admin_token_required_401_then_403(endpoint: str, tmp_path: Path):
    answers = run_on_sqlite(tmp_path, [(endpoint, None, {}), (endpoint, None, {"Authorization": "Bearer wrong"}),
                                       (endpoint, {"from": "nonsense"}, {})])
    assert [status for status, _, _ in answers] == [401, 403, 401]         # auth before parameters
    assert answers[0][2]["WWW-Authenticate"].startswith("Bearer")
    assert "admin token" in answers[0][1]["error"] and "admin token" in answers[1][1]["error"]


BAD_QUERIES = [
    ({"from": "yesterday"}, "from", "RFC 3339"),
    ({"from": "2025-03-01T00:00:00Z", "to": "2025-13-01T00:00:00Z"}, "to", "RFC 3339"),
    ({"to": "1740787200000"}, "to", "milliseconds"),
    ({"from": "-5"}, "from", "before 1970"),
    ({"range": "7 days"}, "range", "duration"),
    ({"range": "0s"}, "range", "longer than 0"),
    ({"range": "401d"}, "range", "400 days"),
    ({"from": "2024-01-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from", "400 days"),
    ({"from": "2025-03-08T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from", "before to"),
    ({"from": "2025-03-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from", "before to"),
    ({"from": "2025-03-01T00:00:00Z", "range": "7d"}, "range", "not both"),
    ({"since": "7d"}, "since", "unknown parameter"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bad_parameters_are_400_naming_the_parameter(endpoint: str, tmp_path: Path):
    calls = [(endpoint, query, AUTH) for query, _, _ in BAD_QUERIES]
    calls.append((endpoint + "?to=2025-03-08T00:00:00Z&to=2025-03-09T00:00:00Z", None, AUTH))
    answers = run_on_sqlite(tmp_path, calls)
    expected = [(field, words) for _, field, words in BAD_QUERIES] + [("to", "more than once")]
    for (status, body, _), (field, words), call in zip(answers, expected, calls):
        assert status == 400, call
        assert body["error"].startswith(f"{field}: "), (call, body)
        assert words in body["error"], (call, body)
        assert body["errors"][0]["field"] == field


def test_a_disabled_store_is_503():
    answers = asyncio.run(get_all(make_app(None), [(DASHBOARD, None, AUTH), (BUSINESS, None, AUTH)]))
    for status, body, _ in answers:
        assert status == 503
        assert body == {"error": "the event store is disabled"}


def test_a_failing_store_is_503_with_retry_after_never_500(tmp_path: Path):
    """A real SQLite store, closed under the app: every query raises StoreUnavailable."""
    answers = run_on_sqlite(tmp_path, [(DASHBOARD, None, AUTH), (BUSINESS, None, AUTH)], close_first=True)
    for status, body, headers in answers:
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert body["error"] == "the event store is unavailable; retry after 5 s"
        assert "store.db" not in body["error"]          # the database's name stays in the log


# --- through a running agent: the real ingest path (validation, privacy, group commit) ---------------

HMAC_KEY = "analytics-test-hmac-key-0123456789abcdef"
COACH_EMAIL = "Coach.Seven@example.com"          # coach_7, as an e-mail: pseudonymized in ids and labels alike


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def with_coach(document: dict[str, Any], coach: str) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(document).replace(b'"coach_7"', orjson.dumps(coach)))


@pytest.mark.slow
def test_events_ingested_by_a_running_agent_give_the_hand_computed_documents(store_config, tmp_path: Path):
    store = ({"driver": "sqlite", "path": store_config.path} if store_config.driver == "sqlite"
             else {"driver": "postgres", "dsn": store_config.dsn})
    config = {"store": store, "api": {"admin_tokens": [TOKEN]}, "events": {"max_past_age": "3650d"},
              "retention": {"interval": 0}}          # the fixture is older than every retention period
    bodies = orjson.loads(orjson.dumps(fixture_bodies()).replace(b'"coach_7"', orjson.dumps(COACH_EMAIL)))
    agent = AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": HMAC_KEY})
    try:
        status, accepted = http_json("POST", agent.url + "/v1/events/batch", {"events": bodies})
        assert status == 200 and accepted["stored"] == len(FIXTURE), accepted
        status, accepted = http_json("POST", agent.url + "/v1/identify", identify_bodies())
        assert status == 200 and accepted["stored"] == len(IDENTIFIES), accepted
        query = "?" + urllib.parse.urlencode(QUERY)
        dash_status, dash = http_json("GET", agent.url + DASHBOARD + query, headers=AUTH)
        business_status, business = http_json("GET", agent.url + BUSINESS + query, headers=AUTH)
    finally:
        agent.stop()
    assert (dash_status, business_status) == (200, 200)
    coach = Privacy(PrivacyConfig(), HMAC_KEY.encode()).pseudonymize(COACH_EMAIL)
    assert coach.startswith("email:") and COACH_EMAIL.lower() not in orjson.dumps(dash).decode().lower()
    # no probe ran in March 2025: no uptime; everything else as computed by hand
    assert dash == {**with_coach(EXPECTED_DASHBOARD, coach), "serviceUptime": []}
    expected_business = orjson.loads(orjson.dumps(EXPECTED_BUSINESS))
    expected_business["performance"]["uptime"] = None
    assert within_sketch(business, expected_business) == expected_business
