"""`session`, `sessions` and `check_in` items through the envelope route (agent/api/sentry.py): hand-made
envelopes on the real app, hostile items `rejected` beside accepted siblings (never a 4xx or 500), the
`sentry.monitors` block, and the real sentry-sdk from PyPI against a real agent process, its sessions and
check-ins read back from /metrics."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api.keys import METRICS
from agent.config.load import parse_config
from agent.config.node import ConfigError
from tests.support.procs import AgentProcess
from tests.test_sentry_api import AUTH, CONFIG, ENVELOPE, EVENT_ID, KEY, RELEASE, envelope, sentry_event

pytest_plugins = ["tests.support.store_fixtures"]


def series(agent: Any, family: str) -> dict[tuple[str, ...], float]:
    return {key: value for key, value in agent.app[METRICS].get(family).series.items() if value}


def session(sid: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"sid": sid, "init": True, "started": "2026-01-01T00:00:00Z", "status": status,
            "attrs": {"release": RELEASE, "environment": "production"}, **fields}


def test_sessions_aggregates_and_check_ins_beside_an_event_and_hostile_items(agent_server: Any,
                                                                             sqlite_store: Any) -> None:
    agent = agent_server(CONFIG, store=sqlite_store)
    aggregates = {"attrs": {"release": RELEASE, "environment": "production"},
                  "aggregates": [{"started": "2026-01-01T00:00:00Z", "exited": 8, "crashed": 1}]}
    check_in = {"check_in_id": uuid.uuid4().hex, "monitor_slug": "nightly-export", "status": "ok", "duration": 3.5,
                "monitor_config": {"schedule": {"type": "interval", "value": 1, "unit": "day"}, "checkin_margin": 10}}
    hostile = [("session", session("x", "exploded")), ("session", b"{not json"), ("sessions", {"aggregates": []}),
               ("check_in", {"monitor_slug": "a b", "status": "ok"}), ("check_in", [1]),
               ("check_in", {**check_in, "monitor_config": {"schedule": {"type": "crontab", "value": "99 * * * *"}}})]
    body = envelope(("event", sentry_event()), ("session", session("s1", "exited", errors=1, did="u1")),
                    ("session", session("s2", "crashed", did="u2")), ("sessions", aggregates), ("check_in", check_in),
                    *hostile)
    before = time.time()
    status, answer, _ = agent.post(ENVELOPE, data=body, headers=AUTH)
    assert (status, answer) == (200, {"id": EVENT_ID})
    items = series(agent, "loom_agent_sentry_items")
    assert items == {("event", "accepted"): 1, ("session", "accepted"): 2, ("sessions", "accepted"): 1,
                     ("check_in", "accepted"): 1, ("session", "rejected"): 2, ("sessions", "rejected"): 1,
                     ("check_in", "rejected"): 3}
    assert series(agent, "loom_sessions_started") == {(RELEASE, "production"): 11}
    assert series(agent, "loom_sessions") == {(RELEASE, "production", "errored"): 1,
                                              (RELEASE, "production", "crashed"): 2,
                                              (RELEASE, "production", "exited"): 8}
    assert series(agent, "loom_session_users") == {(RELEASE, "production", "all"): 2,
                                                   (RELEASE, "production", "errored"): 2,
                                                   (RELEASE, "production", "crashed"): 1}
    last = series(agent, "loom_cron_last_checkin_timestamp_seconds")[("nightly-export", "ok")]
    assert before <= last <= time.time()
    assert series(agent, "loom_cron_next_expected_timestamp_seconds") == {("nightly-export",): last + 86400}
    assert series(agent, "loom_cron_checkin_margin_seconds") == {("nightly-export",): 600}


def test_the_monitors_block_declares_schedules_and_names_mistakes_by_path(agent_server: Any) -> None:
    config = {"sentry": {**CONFIG["sentry"], "max_monitors": 0, "monitors": {
        "nightly-export": {"schedule": {"type": "crontab", "value": "0 3 * * *"}, "timezone": "Europe/Vienna",
                           "checkin_margin": 5}}}}
    parsed = parse_config(yaml.safe_dump(config), environ={})
    schedule = dict(parsed.sentry.monitors)["nightly-export"]
    assert (schedule.crontab, schedule.timezone, schedule.margin_seconds) == ("0 3 * * *", "Europe/Vienna", 300)
    agent = agent_server(config)
    body = envelope(("check_in", {"monitor_slug": "nightly-export", "status": "in_progress"}),
                    ("check_in", {"monitor_slug": "not-declared", "status": "ok"}))      # max_monitors: 0
    assert agent.post(ENVELOPE, data=body, headers=AUTH).status == 200
    assert series(agent, "loom_agent_sentry_items") == {("check_in", "accepted"): 1, ("check_in", "rejected"): 1}
    assert set(series(agent, "loom_cron_next_expected_timestamp_seconds")) == {("nightly-export",)}
    bad = {"sentry": {"monitors": {"job": {"schedule": {"type": "crontab", "value": "0 25 * * *"}},
                                   "other": {"schedule": {"type": "interval", "value": 1, "unit": "hour"},
                                             "timezone": "Nowhere/City", "retries": 3},
                                   "Bad Slug": {"schedule": {"type": "interval", "value": 1, "unit": "day"}}},
                      "max_monitors": -1}}
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(bad), environ={})
    text = "\n".join(caught.value.errors)
    assert "sentry.monitors.job.schedule.value: '0 25 * * *' is not a valid crontab" in text, text
    assert "sentry.monitors.other: unknown key retries" in text, text
    assert "sentry.monitors.Bad Slug: monitor_slug: must be" in text, text
    assert "sentry.max_monitors" in text, text


# --- the real SDK ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_real_sdk_sends_sessions_and_check_ins_that_arrive_at_metrics(tmp_path: Path) -> None:
    sentry_sdk = pytest.importorskip("sentry_sdk")
    from sentry_sdk.crons import capture_checkin, monitor
    from sentry_sdk.utils import event_from_exception

    config = {"targets": [], "retention": {"interval": 0}, **CONFIG}
    agent = AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})
    hourly = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 5, "max_runtime": 20}
    try:
        sentry_sdk.init(dsn=f"http://{KEY}@127.0.0.1:{agent.port}/1", release=RELEASE, environment="staging",
                        auto_enabling_integrations=False, auto_session_tracking=True)
        try:
            scope = sentry_sdk.get_isolation_scope()
            scope.set_user({"id": "user-1"})
            scope.start_session()                          # a healthy session: exited
            scope.end_session()
            scope.start_session()                          # a handled error: errored
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                sentry_sdk.capture_exception()
            scope.end_session()
            scope.set_user({"id": "user-2"})
            scope.start_session()                          # an unhandled one: crashed
            try:
                raise RuntimeError("worker died")
            except RuntimeError as exc:
                event, hint = event_from_exception(exc, mechanism={"type": "test", "handled": False})
                sentry_sdk.capture_event(event, hint=hint)
            scope.end_session()
            for _ in range(3):                             # request mode: aggregated into a `sessions` item
                scope.start_session(session_mode="request")
                scope.end_session()

            check_in_id = capture_checkin(monitor_slug="nightly-export", status="in_progress", monitor_config=hourly)
            capture_checkin(monitor_slug="nightly-export", check_in_id=check_in_id, status="ok", duration=1.5,
                            monitor_config=hourly)

            @monitor(monitor_slug="billing-sync", monitor_config={
                "schedule": {"type": "interval", "value": 10, "unit": "minute"}})
            def billing_sync() -> None:
                raise ValueError("upstream refused")

            with pytest.raises(ValueError):
                billing_sync()
            sentry_sdk.flush(timeout=10)
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.init()

        wanted = [
            f'loom_sessions_started_total{{release="{RELEASE}",environment="staging"}} 6.0',
            f'loom_sessions_total{{release="{RELEASE}",environment="staging",status="exited"}} 4.0',
            f'loom_sessions_total{{release="{RELEASE}",environment="staging",status="errored"}} 1.0',
            f'loom_sessions_total{{release="{RELEASE}",environment="staging",status="crashed"}} 1.0',
            f'loom_session_users_total{{release="{RELEASE}",environment="staging",status="all"}} 2.0',
            f'loom_session_users_total{{release="{RELEASE}",environment="staging",status="crashed"}} 1.0',
            'loom_cron_checkins_total{monitor="nightly-export",status="in_progress"} 1.0',
            'loom_cron_checkins_total{monitor="nightly-export",status="ok"} 1.0',
            'loom_cron_checkins_total{monitor="billing-sync",status="error"} 1.0',
            'loom_cron_checkin_margin_seconds{monitor="nightly-export"} 300.0',
            'loom_cron_max_runtime_seconds{monitor="nightly-export"} 1200.0',
            'loom_cron_run_duration_seconds_sum{monitor="nightly-export"} 1.5',
        ]
        deadline = time.monotonic() + 10
        metrics = agent.metrics()
        while time.monotonic() < deadline and not all(line in metrics for line in wanted):
            time.sleep(0.2)
            metrics = agent.metrics()
        for line in wanted:
            assert line in metrics, (line, [m for m in metrics.splitlines() if "loom_cron" in m or "items_total" in m])
        expected = [line for line in metrics.splitlines()
                    if line.startswith('loom_cron_next_expected_timestamp_seconds{monitor="nightly-export"}')]
        assert len(expected) == 1 and float(expected[0].split()[-1]) % 3600 == 0      # on the hour
        assert 'loom_cron_next_expected_timestamp_seconds{monitor="billing-sync"}' in metrics
        assert 'loom_agent_sentry_items_total{type="session",outcome="rejected"}' not in metrics
        assert 'loom_agent_sentry_items_total{type="check_in",outcome="rejected"}' not in metrics
    finally:
        assert agent.stop() == 0
