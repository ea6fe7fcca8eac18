"""Release health and cron monitors from Sentry's `session`, `sessions` and `check_in` items
(agent/sentry/sessions.py, agent/sentry/crons.py): the parsers refuse hostile payloads with ItemError
(the route counts the item `rejected`, never a 500), the components count each session and user once
with bounded labels, and a check-in sets what the missed-run and failed-run alerts compare."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from agent.metrics.store import MetricStore
from agent.sentry import sessions as sessions_module
from agent.sentry.crons import CronMonitors, Schedule, parse_check_in, parse_schedule
from agent.sentry.items import ItemError
from agent.sentry.sessions import ReleaseHealth, parse_session, parse_sessions

RELEASE = "loom-web@2.3.1"


def session(**fields: Any) -> dict[str, Any]:
    return {"sid": "5f3c8a0b-7e2d-4c1a-9b6e-0d2f4a8c1e3b", "init": True, "started": "2026-01-01T00:00:00Z",
            "timestamp": "2026-01-01T00:01:00Z", "status": "exited",
            "attrs": {"release": RELEASE, "environment": "production", "ip_address": "203.0.113.9",
                      "user_agent": "Mozilla/5.0"}, **fields}


def series(metrics: MetricStore, name: str) -> dict[tuple[str, ...], float]:
    family = metrics.get(name)
    assert family is not None
    return {key: value for key, value in family.series.items() if value}


# --- parsing ------------------------------------------------------------------------------------------

def test_a_session_update_as_sentry_python_sends_it() -> None:
    update = parse_session(session(did="user-42", errors=2, duration=12.5))
    assert (update.release, update.environment, update.init, update.did) == (RELEASE, "production", True, "user-42")
    assert update.final_status() == "errored"                      # exited with errors: errored, once
    assert parse_session(session()).final_status() == "exited"
    assert parse_session(session(status="crashed", errors=1)).final_status() == "crashed"
    assert parse_session(session(status="abnormal")).final_status() == "abnormal"
    assert parse_session(session(status="errored")).final_status() == "errored"
    assert parse_session(session(status="unhandled", errors=1)).final_status() == "unhandled"   # @sentry/browser 10
    assert parse_session(session(status="ok", errors=3)).final_status() is None     # still running
    no_env = session()
    del no_env["attrs"]["environment"]
    assert parse_session(no_env).environment == "production"
    assert parse_session(session(did=42)).did == "42"


HOSTILE_SESSIONS: list[Any] = [
    [], "text", None, 1,
    session(status="running"), session(status=["ok"]), session(status=None),
    session(init="yes"), session(errors=-1), session(errors=1.5), session(errors=True), session(errors=2**40),
    session(sid=None), session(sid=""), session(sid="x" * 500), session(sid={"a": 1}),
    session(did=["a"]), session(did="d" * 1000), session(did="a\nb"),
    session(attrs=None), session(attrs=[]), session(attrs={}), session(attrs={"release": ""}),
    session(attrs={"release": "me@example.com"}), session(attrs={"release": RELEASE, "environment": 5}),
    session(attrs={"release": RELEASE, "environment": "e" * 100}),
]


@pytest.mark.parametrize("payload", HOSTILE_SESSIONS)
def test_a_hostile_session_is_an_item_error(payload: Any) -> None:
    with pytest.raises(ItemError):
        parse_session(payload)


def test_aggregates_as_sentry_python_sends_them_and_hostile_ones() -> None:
    payload = {"attrs": {"release": RELEASE, "environment": "staging"},
               "aggregates": [{"started": "2026-01-01T00:00:00Z", "exited": 7, "errored": 2},
                              {"started": "2026-01-01T00:01:00Z", "crashed": 1, "did": "u-1"}]}
    parsed = parse_sessions(payload)
    assert (parsed.release, parsed.environment) == (RELEASE, "staging")
    assert parsed.buckets == ((None, {"exited": 7, "errored": 2}), ("u-1", {"crashed": 1}))
    for bad in ({"attrs": {"release": RELEASE}}, {"attrs": {"release": RELEASE}, "aggregates": {}},
                {"attrs": {"release": RELEASE}, "aggregates": [1]},
                {"attrs": {"release": RELEASE}, "aggregates": [{"exited": -1}]},
                {"attrs": {"release": RELEASE}, "aggregates": [{"crashed": "1"}]},
                {"attrs": {"release": RELEASE}, "aggregates": [{}] * 10_001},
                {"aggregates": [{"exited": 1}]}, [payload]):
        with pytest.raises(ItemError):
            parse_sessions(bad)


# --- release health -----------------------------------------------------------------------------------

def test_each_session_starts_once_and_ends_once_with_one_final_status() -> None:
    metrics = MetricStore()
    health = ReleaseHealth(metrics)
    # the JavaScript SDKs' sequence: init ok, an error while running, then the end
    health.record_session(parse_session(session(sid="a", status="ok", did="u1")))
    health.record_session(parse_session(session(sid="a", init=False, status="ok", errors=1, did="u1")))
    health.record_session(parse_session(session(sid="a", init=False, status="exited", errors=1, did="u1")))
    health.record_session(parse_session(session(sid="a", init=False, status="exited", errors=1, did="u1")))  # again
    # sentry-python: one update at the end, init true
    health.record_session(parse_session(session(sid="b", did="u2")))
    health.record_session(parse_session(session(sid="c", status="crashed", errors=1, did="u2")))
    health.record_session(parse_session(session(sid="d", status="ok")))             # a browser tab: never ends
    # @sentry/browser: an uncaught error ends the session `unhandled` (sent twice: counted once)
    for init in (True, False):
        health.record_session(parse_session(session(sid="e", init=init, status="unhandled", errors=1)))
    key = (RELEASE, "production")
    assert series(metrics, "loom_sessions_started") == {key: 5}
    assert series(metrics, "loom_sessions") == {(*key, "errored"): 1, (*key, "exited"): 1, (*key, "crashed"): 1,
                                                (*key, "unhandled"): 1}
    assert series(metrics, "loom_session_users") == {(*key, "all"): 2, (*key, "errored"): 2, (*key, "crashed"): 1}


def test_aggregates_count_their_sessions_as_the_sdk_classified_them() -> None:
    metrics = MetricStore()
    health = ReleaseHealth(metrics)
    health.record_aggregates(parse_sessions({"attrs": {"release": RELEASE}, "aggregates": [
        {"started": "2026-01-01T00:00:00Z", "exited": 90, "errored": 5, "abnormal": 1, "crashed": 4}]}))
    key = (RELEASE, "production")
    assert series(metrics, "loom_sessions_started") == {key: 100}
    assert series(metrics, "loom_sessions") == {(*key, "exited"): 90, (*key, "errored"): 5, (*key, "abnormal"): 1,
                                                (*key, "crashed"): 4}


def test_releases_are_bounded_by_the_series_limit_and_users_by_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = MetricStore()
    health = ReleaseHealth(metrics)
    for n in range(sessions_module.SERIES_LIMIT + 50):
        health.record_session(parse_session(session(sid=f"s{n}", attrs={"release": f"web@1.0.{n}"})))
    started = series(metrics, "loom_sessions_started")
    assert len(started) <= sessions_module.SERIES_LIMIT + 1 and started[("other", "other")] == 50
    monkeypatch.setattr(sessions_module, "USERS_PER_RELEASE", 3)
    clock = [0.0]
    users = ReleaseHealth(MetricStore(), clock=lambda: clock[0])
    for n in range(5):
        users.record_session(parse_session(session(sid=f"u{n}", did=f"user-{n}")))
    assert users.users.series[(RELEASE, "production", "all")] == 3
    assert users.users_overflow.series[()] == 2
    clock[0] += sessions_module.USER_WINDOW_SECONDS                  # a new hour: every user counts again
    users.record_session(parse_session(session(sid="later", did="user-0")))
    assert users.users.series[(RELEASE, "production", "all")] == 4


def test_user_digests_are_bounded_in_all_not_only_per_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client naming a new release (or environment) per session grew a digest set per name for the hour."""
    monkeypatch.setattr(sessions_module, "USER_SETS", 6)
    monkeypatch.setattr(sessions_module, "USERS_TOTAL", 8)
    clock = [0.0]
    health = ReleaseHealth(MetricStore(), clock=lambda: clock[0])
    for n in range(100):
        health.record_session(parse_session(session(sid=f"s{n}", did=f"user-{n}", status="crashed",
                                                    attrs={"release": f"web@1.0.{n}"})))
    users = health._users
    assert len(users.seen) <= 6 and sum(len(s) for s in users.seen.values()) <= 8
    assert health.users_overflow.series[()] == 3 * 100 - sum(health.users.series.values())
    clock[0] += sessions_module.USER_WINDOW_SECONDS                  # a new hour: room again
    health.record_session(parse_session(session(sid="later", did="user-0", attrs={"release": "web@2.0.0"})))
    assert health.users.series[("web@2.0.0", "production", "all")] == 1


# --- cron monitors ------------------------------------------------------------------------------------

def check_in(**fields: Any) -> dict[str, Any]:
    return {"type": "check_in", "check_in_id": "a" * 32, "monitor_slug": "nightly-export", "status": "ok",
            "duration": 42.0, "environment": "production", "release": RELEASE, **fields}


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_schedules_give_the_next_expected_run() -> None:
    hourly = parse_schedule({"schedule": {"type": "crontab", "value": "0 * * * *"}})
    assert (hourly.margin_seconds, hourly.max_runtime_seconds) == (60, 1800)
    assert hourly.next_after(at("2026-01-01T10:00:05+00:00")) == at("2026-01-01T11:00:00+00:00")
    vienna = parse_schedule({"schedule": {"type": "crontab", "value": "0 3 * * *"}, "timezone": "Europe/Vienna",
                             "checkin_margin": 5, "max_runtime": 90})
    assert (vienna.margin_seconds, vienna.max_runtime_seconds) == (300, 5400)
    assert vienna.next_after(at("2026-07-01T12:00:00+00:00")) == at("2026-07-02T03:00:00+02:00")
    assert parse_schedule({"schedule": {"type": "crontab", "value": "@daily"}}).next_after(
        at("2026-01-01T10:00:00+00:00")) == at("2026-01-02T00:00:00+00:00")
    interval = parse_schedule({"schedule": {"type": "interval", "value": 2, "unit": "hour"}})
    assert interval.next_after(1000.0) == 1000.0 + 7200
    assert parse_schedule({"schedule": {"type": "crontab", "value": "0 0 30 2 *"}}).next_after(0.0) is None


HOSTILE_CHECK_INS: list[Any] = [
    [], None, "x", check_in(status="missed"), check_in(status=None), check_in(monitor_slug=None),
    check_in(monitor_slug=""), check_in(monitor_slug="a b"), check_in(monitor_slug="x" * 65),
    check_in(monitor_slug=["a"]), check_in(duration=-1), check_in(duration="1"), check_in(duration=float("nan")),
    check_in(monitor_config=[]), check_in(monitor_config={}), check_in(monitor_config={"schedule": "0 * * * *"}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "61 * * * *"}}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "* * * * * *"}}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "@reboot"}}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": 5}}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "x" * 1000}}),
    check_in(monitor_config={"schedule": {"type": "interval", "value": 0, "unit": "hour"}}),
    check_in(monitor_config={"schedule": {"type": "interval", "value": 1, "unit": "fortnight"}}),
    check_in(monitor_config={"schedule": {"type": "interval", "value": True, "unit": "hour"}}),
    check_in(monitor_config={"schedule": {"type": "weekly"}}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "0 * * * *"}, "timezone": "Mars/Olympus"}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "0 * * * *"}, "timezone": "../../etc/passwd"}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": -5}),
    check_in(monitor_config={"schedule": {"type": "crontab", "value": "0 * * * *"}, "max_runtime": "1h"}),
]


@pytest.mark.parametrize("payload", HOSTILE_CHECK_INS)
def test_a_hostile_check_in_is_an_item_error(payload: Any) -> None:
    with pytest.raises(ItemError):
        parse_check_in(payload)


def test_a_check_in_sets_its_last_time_counts_and_next_expected_run() -> None:
    metrics = MetricStore()
    clock = [at("2026-01-01T10:00:05+00:00")]
    monitors = CronMonitors(metrics, clock=lambda: clock[0])
    config = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 2}
    monitors.record(parse_check_in(check_in(status="in_progress", duration=None, monitor_config=config)))
    clock[0] += 30
    monitors.record(parse_check_in(check_in(status="ok", duration=30.0, monitor_config=config)))
    assert series(metrics, "loom_cron_checkins") == {
        ("nightly-export", "in_progress"): 1, ("nightly-export", "ok"): 1}
    assert metrics.get("loom_cron_last_checkin_timestamp_seconds").series[("nightly-export", "ok")] == clock[0]
    assert metrics.get("loom_cron_next_expected_timestamp_seconds").series[("nightly-export",)] == \
        at("2026-01-01T11:00:00+00:00")
    assert metrics.get("loom_cron_checkin_margin_seconds").series[("nightly-export",)] == 120
    assert metrics.get("loom_cron_max_runtime_seconds").series[("nightly-export",)] == 1800
    assert metrics.get("loom_cron_run_duration_seconds").series[("nightly-export",)][-1] == 30.0   # the sum
    # a later check-in without monitor_config keeps the schedule it declared
    clock[0] = at("2026-01-01T11:00:01+00:00")
    monitors.record(parse_check_in(check_in(status="error")))
    assert metrics.get("loom_cron_next_expected_timestamp_seconds").series[("nightly-export",)] == \
        at("2026-01-01T12:00:00+00:00")


def test_monitors_are_bounded_and_declared_ones_win() -> None:
    metrics = MetricStore()
    declared = {"declared-job": Schedule("interval", interval_seconds=600)}
    monitors = CronMonitors(metrics, declared, max_monitors=2, clock=lambda: 1000.0)
    for slug in ("a", "b"):
        monitors.record(parse_check_in(check_in(monitor_slug=slug)))
    with pytest.raises(ItemError, match="more than 2 cron monitors"):
        monitors.record(parse_check_in(check_in(monitor_slug="c")))
    monitors.record(parse_check_in(check_in(monitor_slug="a")))                       # a known one: still fine
    monitors.record(parse_check_in(check_in(monitor_slug="declared-job", monitor_config={
        "schedule": {"type": "interval", "value": 1, "unit": "day"}})))              # the config's schedule wins
    assert metrics.get("loom_cron_next_expected_timestamp_seconds").series == {("declared-job",): 1600.0}
    assert {key[0] for key in metrics.get("loom_cron_checkins").series} == {"a", "b", "declared-job"}
    assert parse_check_in(check_in(monitor_slug="Nightly-Export")).monitor == "nightly-export"
