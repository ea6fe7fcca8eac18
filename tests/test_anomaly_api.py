"""GET /api/anomalies on the real app (tests/support/agent_app.py) with a fake clock: admin auth,
the documentation's JSON shape, per-request overrides, every bad parameter a 400 naming it, and the
evaluation timer that keeps loom_anomaly_active fresh."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.api.keys import ANOMALIES
from agent.app.root import Clocks
from agent.rules.windows import EventWindows
from tests.support.agent_app import agent_app, served
from tests.test_anomaly_detectors import MINUTE, NOW, Clock, gauge, login

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Harness:
    def __init__(self, interval: float = 3600.0):
        self.clock = Clock(NOW)
        self.registry = CollectorRegistry()
        self.app = agent_app(admin_token=TOKEN, clocks=Clocks(wall=self.clock), registry=self.registry)
        self.app[ANOMALIES].interval = interval
        self.windows: EventWindows = self.app[ANOMALIES].windows

    def requests(self, *queries: tuple[dict[str, str], dict[str, str] | None]) -> list[tuple[int, Any]]:
        """(status, JSON body) of one GET per (query, headers) against one run of the app, in order;
        headers None: the admin token."""
        async def scenario() -> list[tuple[int, Any]]:
            answers = []
            async with served(self.app) as agent:
                for query, headers in queries:
                    answer = await agent.fetch("GET", "/api/anomalies", params=query,
                                               headers=AUTH if headers is None else headers)
                    answers.append((answer.status, answer.body))
            return answers
        return asyncio.run(scenario())


def get(harness: Harness, query: dict[str, str] | None = None, headers: dict[str, str] | None = None
        ) -> tuple[int, Any]:
    return harness.requests((query or {}, headers))[0]


def test_no_token_is_401_and_a_wrong_token_403():
    (status, body), (wrong, _), (right, _) = Harness().requests(
        ({}, {}), ({}, {"Authorization": "Bearer not-the-token-at-all"}), ({}, None))
    assert status == 401 and "admin token" in body["error"]
    assert (wrong, right) == (403, 200)


def test_quiet_agent_reports_no_anomalies():
    status, body = get(Harness())
    assert status == 200
    assert body == {"anomalies": [], "evaluatedAt": "2026-11-24T13:00:30.000Z"}


def test_anomalies_in_the_documentations_shape_and_the_gauge_follows():
    harness = Harness()
    login(harness.windows, 25, "failure")
    status, body = get(harness)
    assert status == 200
    assert body["anomalies"] == [{
        "detector": "auth_failure_spike", "metricName": "login_failures", "severity": "critical",
        "currentValue": 25, "expectedValue": 10, "windowMinutes": 15,
        "message": "25 failed logins in the last 15 min (threshold 10, critical at 20)",
        "detectedAt": "2026-11-24T13:00:30.000Z"}]
    assert gauge(harness.registry, "auth_failure_spike", "critical") == 1.0


def test_detector_parameter_runs_one_detection():
    harness = Harness()
    login(harness.windows, 25, "failure")
    (status, mfa), (_, auth) = harness.requests(({"detector": "mfa_anomalies"}, None),
                                                 ({"detector": "auth_failure_spike"}, None))
    assert (status, mfa["anomalies"]) == (200, [])
    assert [a["detector"] for a in auth["anomalies"]] == ["auth_failure_spike"]


def test_overrides_apply_to_this_request_only():
    harness = Harness()
    login(harness.windows, 25, "failure")
    login(harness.windows, 30, "failure", at=NOW - 20 * MINUTE)
    (status, raised), (_, body) = harness.requests(
        ({"spikeThreshold": "26"}, None),
        ({"detector": "auth_failure_spike", "windowMinutes": "30", "spikeThreshold": "30"}, None))
    assert (status, raised["anomalies"]) == (200, [])
    assert [(a["severity"], a["currentValue"], a["windowMinutes"]) for a in body["anomalies"]] == [
        ("warning", 55, 30)]
    # the gauge keeps the configured thresholds' answer (25 >= 2 x 10), not the override's warning
    assert (gauge(harness.registry, "auth_failure_spike", "critical"),
            gauge(harness.registry, "auth_failure_spike", "warning")) == (1.0, 0.0)


@pytest.mark.parametrize(("query", "field", "words"), [
    ({"detector": "bogus"}, "detector", "unknown detector"),
    ({"windowMinutes": "0"}, "windowMinutes", "greater than 0"),
    ({"windowMinutes": "ten"}, "windowMinutes", "an integer"),
    ({"windowMinutes": "61"}, "windowMinutes", "at most 60"),
    ({"spikeThreshold": "2.5"}, "spikeThreshold", "an integer"),
    ({"dropThresholdPercent": "101"}, "dropThresholdPercent", "at most 100"),
    ({"failureRatePercent": "nan"}, "failureRatePercent", "greater than 0"),
    ({"slowRequestMs": "1234"}, "slowRequestMs", "bucket bound"),
    ({"slowPercent": "-5"}, "slowPercent", "greater than 0"),
    ({"threshold": "5"}, "threshold", "unknown parameter"),
    ({"detector": "auth_failure_spike", "dropThresholdPercent": "10"}, "dropThresholdPercent",
     "not a setting of auth_failure_spike"),
])
def test_bad_parameters_are_400_naming_the_parameter(query, field, words):
    status, body = get(Harness(), query)
    assert status == 400
    assert [e["field"] for e in body["errors"]] == [field]
    assert words in body["errors"][0]["message"]
    assert body["error"].startswith(f"{field}: ")


def test_the_evaluation_timer_refreshes_the_gauge():
    harness = Harness(interval=0.02)

    async def scenario() -> list[float | None]:
        seen = []
        async with served(harness.app):
            seen.append(gauge(harness.registry, "auth_failure_spike", "warning"))
            login(harness.windows, 12, "failure")
            for _ in range(500):                    # up to 10 s; the timer ticks every 20 ms
                await asyncio.sleep(0.02)
                if gauge(harness.registry, "auth_failure_spike", "warning") == 1.0:
                    break
            seen.append(gauge(harness.registry, "auth_failure_spike", "warning"))
        return seen

    assert asyncio.run(scenario()) == [0.0, 1.0]
