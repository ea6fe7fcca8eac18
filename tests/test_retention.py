"""Retention on both databases: each class loses exactly the rows older than its period (a row at or
just inside the cut-off stays), in batches of `batch_size`, with metrics, a log line, the schedule and
the `cleanup` command; and the `retention:` block's parsing and errors."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.api.keys import RETENTION
from agent.app.root import Clocks
from agent.config.node import Node
from agent.metrics.retention import RetentionMetrics
from agent.store.cleanup import cleanup_command, main_cleanup
from agent.store.config import CLASSES, DAY, RetentionConfig, parse_retention
from agent.store.errors import StoreUnavailable
from agent.store.retention import RetentionSchedule, run_cleanup_once
from tests.support.store_fixtures import example_rows
from tests.support.agent_app import agent_app

pytest_plugins = ["tests.support.store_fixtures"]

NOW = 1_800_000_030.0            # not on a whole minute: the probe_rollups cut-off rounds
CONFIG = RetentionConfig(batch_size=2)
CUT = {name: NOW - period for name, period in CONFIG.periods().items()}
BAD_CONFIGS = sorted((Path(__file__).parent / "fixtures" / "bad_configs").glob("retention_*.yaml"))


# --- the retention: block ----------------------------------------------------------------------

def parse(data: Any) -> tuple[RetentionConfig, list[str]]:
    errors: list[str] = []
    config = parse_retention(Node(data, "retention", errors))
    return config, errors


def test_defaults_are_the_documentation_periods():
    config, errors = parse(None)
    assert errors == []
    assert config.periods() == {"analytics": 90 * DAY, "performance": 30 * DAY, "audit": 365 * DAY,
                                "security": 730 * DAY, "recordings": 30 * DAY}
    assert (config.interval, config.batch_size) == (3600.0, 5000)


def test_every_key_is_configurable_and_interval_zero_disables_the_schedule():
    config, errors = parse({"analytics_events": "30d", "audit_logs": "400d", "security_events": "1000d",
                            "performance_metrics": "7d", "session_recordings": "14d", "interval": 0,
                            "batch_size": 100})
    assert errors == []
    assert config.periods() == {"analytics": 30 * DAY, "performance": 7 * DAY, "audit": 400 * DAY,
                                "security": 1000 * DAY, "recordings": 14 * DAY}
    assert (config.interval, config.batch_size) == (0.0, 100)
    assert parse({"interval": "0s"})[0].interval == 0.0
    assert parse({"interval": "15m"})[0].interval == 900.0


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_bad_retention_config_names_the_key(path: Path):
    expected = path.read_text().splitlines()[0].removeprefix("# error: ")
    _, errors = parse(yaml.safe_load(path.read_text())["retention"])
    assert expected in errors, errors


def test_interval_false_is_not_taken_for_zero():
    _, errors = parse({"interval": False})
    assert errors == ["retention.interval: must be a duration such as 500ms, 15s or 5m, got boolean"]


# --- the clean-up ------------------------------------------------------------------------------

class CountingStore:
    """The real store, recording each execute()'s (sql, row counts): the batches are visible."""

    def __init__(self, store: Any):
        self.store = store
        self.dialect = store.dialect
        self.calls: list[tuple[str, list[int]]] = []

    async def execute(self, statements, **options):
        counts = await self.store.execute(statements, **options)
        self.calls.extend((sql, [count]) for (sql, _), count in zip(statements, counts))
        return counts

    async def fetch(self, sql, params=()):
        return await self.store.fetch(sql, params)

    def batches(self, fragment: str) -> list[int]:
        return [counts[0] for sql, counts in self.calls if fragment in sql]


# (table, cut-off class, times just outside the period (deleted), times at or inside it (kept))
OLD = (-1.0, -10.0, -100.0, -1000.0, -1e6)
PLAN = {
    "analytics_events": ("analytics", OLD, (0.0, 1.0, 90 * DAY)),
    "performance_events": ("performance", OLD[:3], (0.0, 1.0)),
    "onboarding_funnel": ("analytics", OLD[:2], (0.5,)),
    "download_logs": ("analytics", OLD[:1], (2.0,)),
    "errors": ("analytics", OLD[:3], (0.0, 2.0)),
    "users": ("analytics", OLD[:2], (1.0,)),
    "mfa_audit_logs": ("audit", OLD[:2], (0.0, 1.0)),
    "security_events": ("security", OLD[:1], (1.0, 365 * DAY)),
    "recording_chunks": ("recordings", OLD[:2], (0.0, 1.0)),
    "recording_sessions": ("recordings", OLD[:1], (1.0,)),
}
EXPECTED = {"analytics": 5 + 2 + 1 + 3 + 2, "performance": 3 + 2, "audit": 2, "security": 1, "recordings": 2 + 1}


def seed(run, store) -> None:
    """Rows around each class's cut-off, per PLAN (all times relative to the cut-off), plus rollups."""
    analytics = [example_rows("cta_click", user=None, ts=CUT["analytics"] + d) for d in _all("analytics_events")]
    performance = [example_rows("api_request", user=None, ts=CUT["performance"] + d)
                   for d in _all("performance_events")]
    run(store.write_events(analytics + performance))
    statements = []
    for table, sql in (
            ("onboarding_funnel", "INSERT INTO onboarding_funnel (user_id, status, ts) VALUES ('u', 'started', ?)"),
            ("download_logs", "INSERT INTO download_logs (user_id, ts) VALUES ('u', ?)"),
            ("errors", "INSERT INTO errors (fingerprint, ts, received_at, type, sample) VALUES ('f', ?, 0, 'E', '{}')"),
            ("mfa_audit_logs", "INSERT INTO mfa_audit_logs (user_id, action, ts) VALUES ('u', 'verification', ?)"),
            ("security_events", "INSERT INTO security_events (user_id, type, ts) VALUES ('u', 'login_attempt', ?)")):
        statements += [(sql, (CUT[PLAN[table][0]] + d,)) for d in _all(table)]
    statements += [("INSERT INTO recording_chunks (session_id, first_ts, last_ts, ts, snapshots, raw_bytes, codec, "
                    "data) VALUES (?, 0, 0, ?, 1, 2, 'zlib', ?)", (f"s{i}", CUT["recordings"] + d, b"x\x9c"))
                   for i, d in enumerate(_all("recording_chunks"))]
    statements += [("INSERT INTO recording_sessions (session_id, start_ts, end_ts, received_at, ts, snapshots, "
                    "raw_bytes, stored_bytes, chunks) VALUES (?, 0, 0, 0, ?, 1, 2, 2, 1)",
                    (f"s{i}", CUT["recordings"] + d)) for i, d in enumerate(_all("recording_sessions"))]
    statements += [("INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?)",
                    (f"user_{i}", CUT["analytics"] - 5 * DAY, CUT["analytics"] + d))
                   for i, d in enumerate(_all("users"))]
    # cut-off 1_797_408_030: minute 29_956_800 starts 30 s before it (deleted), 29_956_801 after (kept)
    statements += [("INSERT INTO probe_rollups (target, minute, probes, successes, duration_sum, duration_max) "
                    "VALUES (?, ?, 4, 4, 0.4, 0.1)", (target, minute))
                   for target, minute in (("api", 29_956_800), ("api", 29_956_000), ("api", 29_956_801),
                                          ("db", 29_956_801))]
    run(store.execute(statements))


def _all(table: str) -> tuple[float, ...]:
    _, old, kept = PLAN[table]
    return old + kept


def remaining(run, store) -> dict[str, list[float]]:
    """Each table's rows, as times relative to their class's cut-off."""
    out = {}
    for key, (cls, _, _) in PLAN.items():
        table, where = {"analytics_events": ("events", "retention_class = 'analytics'"),
                        "performance_events": ("events", "retention_class = 'performance'")}.get(key, (key, "1 = 1"))
        column = "last_seen" if table == "users" else "ts"
        rows = run(store.fetch(f"SELECT {column} FROM {table} WHERE {where} ORDER BY {column}"))
        out[key] = [row[0] - CUT[cls] for row in rows]
    return out


def test_each_class_loses_exactly_its_rows_older_than_its_period_in_batches(store, run, caplog):
    seed(run, store)
    counting = CountingStore(store)
    registry = CollectorRegistry()
    metrics = RetentionMetrics(registry)
    with caplog.at_level(logging.INFO, logger="agent.retention"):
        deleted = run(run_cleanup_once(counting, CONFIG, NOW, metrics))
    assert deleted == EXPECTED
    assert remaining(run, store) == {key: sorted(kept) for key, (_, _, kept) in PLAN.items()}
    rollups = run(store.fetch("SELECT target, minute FROM probe_rollups ORDER BY target, minute"))
    assert rollups == [("api", 29_956_801), ("db", 29_956_801)]
    # batches of 2, each its own execute(), name by name: 5 old analytics events (cta_click) take
    # 2 + 2 + 1, then 3 old performance events (api_request) 2 + 1
    assert counting.batches("FROM events WHERE name = ?") == [2, 2, 1, 2, 1]
    assert counting.batches("FROM security_events") == [1]
    for name in CLASSES:
        assert registry.get_sample_value("loom_agent_retention_deleted_rows_total", {"class": name}) == EXPECTED[name]
    assert registry.get_sample_value("loom_agent_retention_runs_total", {"result": "success"}) == 1
    assert registry.get_sample_value("loom_agent_retention_last_run_timestamp_seconds") > 0
    assert registry.get_sample_value("loom_agent_retention_run_duration_seconds") >= 0
    (record,) = [r for r in caplog.records if r.getMessage() == "retention clean-up"]
    assert {name: getattr(record, f"deleted_{name}") for name in CLASSES} == EXPECTED


def test_a_second_run_deletes_nothing_and_metrics_stay(store, run):
    seed(run, store)
    registry = CollectorRegistry()
    metrics = RetentionMetrics(registry)
    run(run_cleanup_once(store, CONFIG, NOW, metrics))
    assert run(run_cleanup_once(store, CONFIG, NOW, metrics)) == dict.fromkeys(CLASSES, 0)
    assert registry.get_sample_value("loom_agent_retention_deleted_rows_total", {"class": "analytics"}) == 13
    assert registry.get_sample_value("loom_agent_retention_runs_total", {"result": "success"}) == 2


def test_a_batch_size_larger_than_the_backlog_takes_one_batch_per_table(store, run):
    seed(run, store)
    counting = CountingStore(store)
    deleted = run(run_cleanup_once(counting, RetentionConfig(batch_size=5000), NOW))
    assert deleted == EXPECTED
    # one per (class, table), events one per stored name; besides, the rollups' bucket deletes, unbatched
    # and the person and signup bitmaps' (tests/test_rollups.py, tests/test_person_bits.py,
    # tests/test_signup_bits.py check what they delete), and on PostgreSQL the months created ahead and the old
    # event ids deleted (tests/test_store_partitions.py)
    upkeep = ("rollup_", "person_bits_", "signup_bits_", "DO $$", "event_ids")
    assert len([sql for sql, _ in counting.calls if not any(part in sql for part in upkeep)]) == 14


def test_longer_periods_keep_more(store, run):
    seed(run, store)
    longer = RetentionConfig(analytics_events=CONFIG.analytics_events + 2000, batch_size=3)
    deleted = run(run_cleanup_once(store, longer, NOW))
    # 2000 s more: of the analytics rows only those older than cut-off - 2000 (one event, at -1e6) go
    assert deleted["analytics"] == 1


class FailingStore:
    async def execute(self, statements, **options):
        raise StoreUnavailable("database is locked")

    async def fetch(self, sql, params=()):
        raise StoreUnavailable("database is locked")


def test_a_failed_run_is_counted_and_raised():
    registry = CollectorRegistry()
    metrics = RetentionMetrics(registry)
    with pytest.raises(StoreUnavailable):
        asyncio.run(run_cleanup_once(FailingStore(), CONFIG, NOW, metrics))
    assert registry.get_sample_value("loom_agent_retention_runs_total", {"result": "failure"}) == 1
    assert registry.get_sample_value("loom_agent_retention_last_run_timestamp_seconds") == 0


# --- the schedule ------------------------------------------------------------------------------

async def _until(predicate, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_the_schedule_runs_in_the_running_agent(store, run):
    seed(run, store)
    registry = CollectorRegistry()

    async def scenario() -> None:
        app = agent_app(store, {"retention": {"batch_size": CONFIG.batch_size}}, registry=registry,
                        clocks=Clocks(wall=lambda: NOW))
        app[RETENTION].first_delay = 0              # the store: the app's, given to the schedule at start
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await _until(lambda: registry.get_sample_value("loom_agent_retention_runs_total",
                                                           {"result": "success"}) == 1)
        finally:
            await runner.cleanup()

    run(scenario())
    assert registry.get_sample_value("loom_agent_retention_deleted_rows_total", {"class": "analytics"}) == 13
    assert run(store.fetch("SELECT count(*) FROM mfa_audit_logs")) == [(2,)]


def test_the_schedule_survives_a_failing_store_and_stops_when_disabled():
    registry = CollectorRegistry()
    schedule = RetentionSchedule(FailingStore(), RetentionConfig(interval=0.01), RetentionMetrics(registry))

    async def scenario() -> None:
        task = asyncio.create_task(schedule.run(first_delay=0))
        await _until(lambda: registry.get_sample_value("loom_agent_retention_runs_total", {"result": "failure"}) >= 3)
        schedule.config = RetentionConfig(interval=0)       # a reload that disables the schedule
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


# --- the cleanup command -----------------------------------------------------------------------

def test_cleanup_command_prints_one_line_per_class(store, store_config, run):
    seed(run, store)
    out = io.StringIO()
    assert run(cleanup_command(store_config, CONFIG, now=NOW, out=out)) == 0
    assert out.getvalue().splitlines() == [
        "analytics: 13 rows deleted (kept: the last 90 days)",
        "performance: 5 rows deleted (kept: the last 30 days)",
        "audit: 2 rows deleted (kept: the last 365 days)",
        "security: 1 rows deleted (kept: the last 730 days)",
        "recordings: 3 rows deleted (kept: the last 30 days)",
    ]
    assert remaining(run, store)["mfa_audit_logs"] == [0.0, 1.0]


def test_main_cleanup_uses_the_config_store_and_the_clock(store, store_config, run, capsys):
    import time
    now = time.time()
    run(store.write_events([example_rows("cta_click", user=None, ts=now - 100 * DAY),
                            example_rows("cta_click", user=None, ts=now - 80 * DAY)]))
    assert main_cleanup(store_config, RetentionConfig()) == 0
    assert capsys.readouterr().out.splitlines()[0] == "analytics: 1 rows deleted (kept: the last 90 days)"
    assert run(store.fetch("SELECT count(*) FROM events")) == [(1,)]


def test_cleanup_command_without_a_store_exits_2(capsys):
    from agent.store.config import StoreConfig
    assert asyncio.run(cleanup_command(StoreConfig(driver="none"), CONFIG)) == 2
    assert "store.driver: none" in capsys.readouterr().err


def test_cleanup_command_with_an_unreachable_store_exits_1(tmp_path, capsys):
    from agent.store.config import StoreConfig
    config = StoreConfig(driver="sqlite", path=str(tmp_path / "no-such-dir" / "store.db"))
    assert asyncio.run(cleanup_command(config, CONFIG)) == 1
    assert "retention clean-up failed" in capsys.readouterr().err
