"""Retention: how long each class of data is kept, and the clean-up that deletes what is older.

The documentation's periods are the defaults: analytics events 90 days, audit logs 1 year, security
events 2 years, performance metrics 30 days. A class covers tables (CLASS_TABLES below).

The clean-up deletes in batches of `batch_size` rows, each batch its own short transaction through
`store.execute` (serialised with the ingest commits by the driver), yielding to the event loop
between batches: ingest interleaves with a large clean-up instead of waiting behind one long
transaction and its locks. It runs on a schedule (`interval`, from a cleanup_ctx) and on demand
(`python -m agent cleanup`, `main_cleanup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.config.node import Node
from agent.store.base import Store
from agent.store.config import StoreConfig
from agent.store.errors import StoreError
from agent.store.open import open_store

if TYPE_CHECKING:
    from agent.config.load import Config

log = logging.getLogger("agent.retention")

DAY = 86400.0
MIN_PERIOD = DAY
MIN_INTERVAL = 60.0
CLASSES = ("analytics", "performance", "audit", "security")
# the first scheduled run comes this long after start (not at once: start-up has enough to do)
FIRST_RUN_DELAY = 60.0


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    analytics_events: float = 90 * DAY
    audit_logs: float = 365 * DAY
    security_events: float = 730 * DAY
    performance_metrics: float = 30 * DAY
    interval: float = 3600.0       # between scheduled clean-ups; 0: no schedule (on demand only)
    batch_size: int = 5000

    def periods(self) -> dict[str, float]:
        """class -> how long its rows are kept, in seconds."""
        return {"analytics": self.analytics_events, "performance": self.performance_metrics,
                "audit": self.audit_logs, "security": self.security_events}


_PERIOD_KEYS = ("analytics_events", "audit_logs", "security_events", "performance_metrics")


def parse_retention(node: Node) -> RetentionConfig:
    base = RetentionConfig()
    periods = {key: _period(node, key, getattr(base, key)) for key in _PERIOD_KEYS}
    config = RetentionConfig(**periods, interval=_interval(node, base.interval),
                             batch_size=node.int("batch_size", base.batch_size, minimum=1, maximum=1_000_000))
    node.finish()
    return config


def _period(node: Node, key: str, default: float) -> float:
    seconds = node.duration(key, default)
    if seconds < MIN_PERIOD:
        node.error(f"must be at least 1d, got {node.data[key]}", key)
        return default
    return seconds


def _interval(node: Node, default: float) -> float:
    value = node.raw("interval")
    if value is not False and value in (0, "0", "0s"):
        return 0.0
    seconds = node.duration("interval", default)
    if seconds < MIN_INTERVAL:
        node.error(f"must be at least 1m, or 0 to disable the scheduled clean-up, got {node.data['interval']}",
                   "interval")
        return default
    return seconds


# class -> the batched DELETEs that clean it: (table, statement). Each statement takes
# (cutoff, batch_size) and deletes at most batch_size rows older than the cutoff.
def _by_id(table: str, where: str) -> str:
    return (f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} "
            "ORDER BY ts LIMIT ?)")


# events are deleted name by name through the (name, ts, ...) index: no index of their own serves the
# clean-up, as each costs every ingest (an index on (retention_class, ts) cost ~7 us an event)
EVENTS_OF_NAME = _by_id("events", "name = ? AND ts < ?")
NEXT_NAME = "SELECT min(name) FROM events WHERE name > ?"            # one index seek per distinct name
CLASS_OF_NAME = "SELECT retention_class FROM events WHERE name = ? LIMIT 1"

CLASS_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "analytics": (
        ("onboarding_funnel", _by_id("onboarding_funnel", "ts < ?")),
        ("download_logs", _by_id("download_logs", "ts < ?")),
        ("errors", _by_id("errors", "ts < ?")),
        ("users", "DELETE FROM users WHERE user_id IN (SELECT user_id FROM users WHERE last_seen < ? "
                  "ORDER BY last_seen LIMIT ?)"),
    ),
    "performance": (
        # a rollup row is the minute starting at minute*60; the cutoff is a whole minute (see _cutoff)
        ("probe_rollups", "DELETE FROM probe_rollups WHERE (target, minute) IN (SELECT target, minute FROM "
                          "probe_rollups WHERE minute < ? ORDER BY minute LIMIT ?)"),
        ("probe_rollups_hourly", "DELETE FROM probe_rollups_hourly WHERE (target, hour) IN (SELECT target, hour "
                                 "FROM probe_rollups_hourly WHERE hour < ? ORDER BY hour LIMIT ?)"),
    ),
    "audit": (("mfa_audit_logs", _by_id("mfa_audit_logs", "ts < ?")),),
    "security": (("security_events", _by_id("security_events", "ts < ?")),),
}


def _cutoff(table: str, cutoff: float) -> float | int:
    """The statement's cutoff parameter: unix seconds, or for probe_rollups the first minute kept
    (minute*60 < cutoff  <=>  minute < ceil(cutoff / 60)), an integer as its column is."""
    if table == "probe_rollups_hourly":       # an hour straddling the cut-off is kept, like a minute
        return math.ceil(cutoff / 3600)
    return math.ceil(cutoff / 60) if table == "probe_rollups" else cutoff


async def delete_older(store: Store, table: str, sql: str, cutoff: float, batch_size: int) -> int:
    """Run one batched DELETE until a batch deletes fewer than batch_size rows; rows deleted."""
    total = 0
    param = _cutoff(table, cutoff)
    while True:
        (deleted,) = await store.execute([(sql, (param, batch_size))])
        total += deleted
        if deleted < batch_size:
            return total
        await asyncio.sleep(0)       # let the ingest commits waiting behind us go first


class RetentionMetrics:
    """loom_agent_retention_* on the registry given (never the global one)."""

    def __init__(self, registry: CollectorRegistry):
        self.deleted = Counter("loom_agent_retention_deleted_rows", "Rows deleted by the retention clean-up, "
                               "by class of data.", ["class"], registry=registry)
        self.runs = Counter("loom_agent_retention_runs", "Retention clean-up runs, by result (success or "
                            "failure: the store refused a batch).", ["result"], registry=registry)
        self.last_run = Gauge("loom_agent_retention_last_run_timestamp_seconds",
                              "When the last successful retention clean-up finished, as unix seconds.",
                              registry=registry)
        self.duration = Gauge("loom_agent_retention_run_duration_seconds",
                              "How long the last retention clean-up took.", registry=registry)
        for name in CLASSES:
            self.deleted.labels(name)
        for result in ("success", "failure"):
            self.runs.labels(result)


async def event_names_by_class(store: Store) -> dict[str, list[str]]:
    """The event names stored, by retention class (a name's class never changes: it follows its
    catalog category)."""
    by_class: dict[str, list[str]] = {name: [] for name in CLASSES}
    (name,), = await store.fetch("SELECT min(name) FROM events")
    while name is not None:
        (klass,), = await store.fetch(CLASS_OF_NAME, (name,))
        by_class.setdefault(klass, []).append(name)
        (name,), = await store.fetch(NEXT_NAME, (name,))
    return by_class


async def delete_old_events(store: Store, names: list[str], cutoff: float, batch_size: int) -> int:
    total = 0
    for name in names:
        while True:
            (deleted,) = await store.execute([(EVENTS_OF_NAME, (name, cutoff, batch_size))])
            total += deleted
            if deleted < batch_size:
                break
            await asyncio.sleep(0)
    return total


async def run_cleanup_once(store: Store, config: RetentionConfig, now: float,
                           metrics: RetentionMetrics | None = None) -> dict[str, int]:
    """Delete every row older than its class's period (as of `now`); rows deleted per class.
    Raises StoreError when the store refuses a batch (what was deleted before stays deleted)."""
    started = time.monotonic()
    deleted = {name: 0 for name in CLASSES}
    try:
        names = await event_names_by_class(store)
        for name, period in config.periods().items():
            count = await delete_old_events(store, names.get(name, []), now - period, config.batch_size)
            deleted[name] += count
            if metrics is not None and count:
                metrics.deleted.labels(name).inc(count)
            for table, sql in CLASS_TABLES[name]:
                count = await delete_older(store, table, sql, now - period, config.batch_size)
                deleted[name] += count
                if metrics is not None and count:
                    metrics.deleted.labels(name).inc(count)
    except StoreError:
        if metrics is not None:
            metrics.runs.labels("failure").inc()
        raise
    elapsed = time.monotonic() - started
    if metrics is not None:
        metrics.runs.labels("success").inc()
        metrics.last_run.set(time.time())
        metrics.duration.set(elapsed)
    log.info("retention clean-up", extra={**{f"deleted_{name}": n for name, n in deleted.items()},
                                          "duration_seconds": round(elapsed, 3)})
    return deleted


class RetentionSchedule:
    """The scheduled clean-up. `config` may be replaced on reload; the next run uses the new one
    (an interval changed from 0 starts the schedule only at the next start of the agent).
    `store` None: the app's EVENT_STORE when the schedule starts (the store is opened before)."""

    def __init__(self, store: Store | None, config: RetentionConfig, metrics: RetentionMetrics,
                 clock: Callable[[], float] = time.time):
        self.store, self.config, self.metrics, self.clock = store, config, metrics, clock

    async def run(self, first_delay: float = FIRST_RUN_DELAY) -> None:
        """Clean up after `first_delay`, then every `config.interval` (re-read each time; 0: stop)."""
        delay = first_delay
        while self.config.interval > 0:
            await asyncio.sleep(delay)
            if self.config.interval <= 0:
                return
            try:
                await run_cleanup_once(self.store, self.config, self.clock(), self.metrics)
            except StoreError as exc:
                log.warning("retention clean-up failed, next try in %s s: %s: %s", self.config.interval,
                            type(exc).__name__, exc)
            delay = self.config.interval


RETENTION = web.AppKey("retention", RetentionSchedule)


def schedule_ctx(first_delay: float = FIRST_RUN_DELAY) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx running app[RETENTION]'s schedule for the app's lifetime."""
    async def retention_schedule(app: web.Application) -> AsyncIterator[None]:
        from agent.api import EVENT_STORE        # agent.api imports agent.config.load, which imports this module
        schedule = app[RETENTION]
        if schedule.store is None:
            schedule.store = app[EVENT_STORE]
        task = asyncio.create_task(schedule.run(first_delay))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return retention_schedule


def format_report(deleted: dict[str, int], config: RetentionConfig) -> list[str]:
    """One line per class, for the CLI."""
    periods = config.periods()
    return [f"{name}: {deleted[name]} rows deleted (kept: the last {periods[name] / DAY:g} days)"
            for name in CLASSES]


async def cleanup_command(store_config: StoreConfig, config: RetentionConfig, now: float | None = None,
                          out: TextIO | None = None) -> int:
    """`python -m agent cleanup`: open the configured store, clean up once, print one line per class,
    close. The exit status: 0 done, 1 the store failed, 2 no store is configured."""
    try:
        store = await open_store(store_config)
        if store is None:
            print("error: no event store is configured (store.driver: none): nothing to clean up", file=sys.stderr)
            return 2
        try:
            deleted = await run_cleanup_once(store, config, time.time() if now is None else now)
        finally:
            await store.close()
    except StoreError as exc:
        print(f"error: retention clean-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in format_report(deleted, config):
        print(line, file=out or sys.stdout)
    return 0


def main_cleanup(config: Config) -> int:
    """The `cleanup` command on a loaded Config (its `store` and `retention` blocks); the exit status."""
    return asyncio.run(cleanup_command(config.store, config.retention))
