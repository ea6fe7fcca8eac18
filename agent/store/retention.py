"""Retention: how long each class of data is kept, and the clean-up that deletes what is older.

The documentation's periods are the defaults: analytics events 90 days, audit logs 1 year, security
events 2 years, performance metrics 30 days, session recordings 30 days. A class covers tables (CLASS_TABLES below).

The clean-up deletes in batches of `batch_size` rows, each batch its own short transaction through
`store.execute` (serialised with the ingest commits by the driver), yielding to the event loop
between batches: ingest interleaves with a large clean-up instead of waiting behind one long
transaction and its locks. It runs on a schedule (`RetentionSchedule`, started by the composition root) and on
demand (`python -m agent cleanup`, agent/store/cleanup.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from agent.metrics.retention import RetentionMetrics
from agent.store import person_bits, rollups, signup_bits
from agent.store.base import Store
from agent.store.config import CLASSES, RetentionConfig
from agent.store.errors import StoreError
from agent.store.partitions import retire
from agent.store.person_traits import clear_traits

log = logging.getLogger("agent.retention")

# the first scheduled run comes this long after start (not at once: start-up has enough to do)
FIRST_RUN_DELAY = 60.0


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
        # a PostHog alias goes once its person has (the users row, by last_seen) and it is older than the period;
        # a group not identified again within the period goes (the next $groupidentify brings it back)
        ("person_aliases", "DELETE FROM person_aliases WHERE alias_id IN (SELECT alias_id FROM person_aliases "
                           "WHERE ts < ? AND person_id NOT IN (SELECT user_id FROM users) ORDER BY ts LIMIT ?)"),
        ("group_profiles", "DELETE FROM group_profiles WHERE (group_type, group_key) IN (SELECT group_type, "
                           "group_key FROM group_profiles WHERE last_seen < ? ORDER BY last_seen LIMIT ?)"),
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
    # a recording by when its chunks were received (client clocks lie); a session once its last chunk went
    "recordings": (
        ("recording_chunks", _by_id("recording_chunks", "ts < ?")),
        ("recording_sessions", "DELETE FROM recording_sessions WHERE session_id IN (SELECT session_id FROM "
                               "recording_sessions WHERE ts < ? ORDER BY ts LIMIT ?)"),
    ),
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
        (deleted,) = await store.execute([(sql, (param, batch_size))], rollups_current=False)
        total += deleted
        if deleted < batch_size:
            return total
        await asyncio.sleep(0)       # let the ingest commits waiting behind us go first


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
            (deleted,) = await store.execute([(EVENTS_OF_NAME, (name, cutoff, batch_size))], rollups_current=False)
            total += deleted
            if deleted < batch_size:
                break
            await asyncio.sleep(0)
    return total


EVENT_CLASSES = ("analytics", "performance")


async def delete_old_rollups(store: Store, config: RetentionConfig, now: float) -> None:
    """The analytics rollups follow their events (agent/store/rollups.py): each stored name's buckets
    with its class (above); the per-person rollups with the analytics class (activity is analytics data);
    and any bucket older than the longest event class, whatever its name (names no longer stored)."""
    periods = config.periods()
    await store.execute(rollups.retention_statements(now - periods["analytics"], None), rollups_current=False)
    await store.execute(person_bits.retention_statements(now - periods["analytics"], None), rollups_current=False)
    oldest = now - max(periods[name] for name in EVENT_CLASSES)
    await store.execute(rollups.retention_statements(oldest, ()), rollups_current=False)
    await store.execute(person_bits.retention_statements(oldest, ()), rollups_current=False)
    await store.execute(signup_bits.retention_statements(oldest, ()), rollups_current=False)


async def run_cleanup_once(store: Store, config: RetentionConfig, now: float,
                           metrics: RetentionMetrics | None = None) -> dict[str, int]:
    """Delete every row older than its class's period (as of `now`); rows deleted per class.
    Raises StoreError when the store refuses a batch (what was deleted before stays deleted)."""
    started = time.monotonic()
    deleted = {name: 0 for name in CLASSES}
    try:
        names = await event_names_by_class(store)
        if store.dialect == "postgres":     # whole months first, by DROP (agent/store/partitions.py)
            class_of = {event: klass for klass, events in names.items() for event in events}
            months = await retire(store.fetch, store.execute, config.periods(), class_of, now)
            for klass, count in months.items():
                deleted[klass] += count
                if metrics is not None and count:
                    metrics.deleted.labels(klass).inc(count)
        for name, period in config.periods().items():
            count = await delete_old_events(store, names.get(name, []), now - period, config.batch_size)
            deleted[name] += count
            if metrics is not None and count:
                metrics.deleted.labels(name).inc(count)
            for table, sql in CLASS_TABLES[name]:
                count = await delete_older(store, table, sql, now - period, config.batch_size)
                if table == "users" and count:      # /flags reads traits from the store again (person_traits.py)
                    clear_traits(store)
                deleted[name] += count
                if metrics is not None and count:
                    metrics.deleted.labels(name).inc(count)
            if name in EVENT_CLASSES and names.get(name):
                await store.execute(rollups.retention_statements(now - period, names[name]), rollups_current=False)
                await store.execute(person_bits.retention_statements(now - period, names[name]), rollups_current=False)
                await store.execute(signup_bits.retention_statements(now - period, names[name]), rollups_current=False)
        await delete_old_rollups(store, config, now)
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
    `store` None: set by the composition root once the store is open."""

    def __init__(self, store: Store | None, config: RetentionConfig, metrics: RetentionMetrics,
                 clock: Callable[[], float] = time.time):
        self.store, self.config, self.metrics, self.clock = store, config, metrics, clock
        self.first_delay = FIRST_RUN_DELAY

    def prepare(self, config: RetentionConfig) -> Callable[[], None]:
        """Reloadable: the next run uses the new periods and interval."""
        return lambda: setattr(self, "config", config)

    async def run(self, first_delay: float | None = None) -> None:
        """Clean up after `first_delay` (default: `self.first_delay`), then every `config.interval`
        (re-read each time; 0: stop)."""
        delay = self.first_delay if first_delay is None else first_delay
        while self.config.interval > 0:
            await asyncio.sleep(delay)
            if self.config.interval <= 0:
                return
            store = self.store
            if store is None:       # the composition root sets it before it starts the schedule
                raise RuntimeError("the retention schedule runs without a store")
            try:
                await run_cleanup_once(store, self.config, self.clock(), self.metrics)
            except StoreError as exc:
                log.warning("retention clean-up failed, next try in %s s: %s: %s", self.config.interval,
                            type(exc).__name__, exc)
            delay = self.config.interval


