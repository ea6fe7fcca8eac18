"""Probe results per target and minute, for the dashboard's serviceUptime over any range.

The probe runtime calls `observe` for every scheduled probe (cheap: one dict update); `run` flushes
the accumulated minutes to the store's probe_rollups table every 15 s. The upsert ADDS to an
existing row, so flushing the same minute twice, or several agents sharing one PostgreSQL database,
sum up instead of overwriting each other.

A flush that fails (store down) puts its rows back and the next one retries them; while the store
stays down the pending rows are bounded by `max_pending` (target, minute) pairs, the oldest dropped
first and counted in `dropped`. On shutdown `run` makes one last flush.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.store.base import Store
from agent.store.errors import StoreError

log = logging.getLogger("agent.store.probe_rollups")

MINUTE = 60
HOUR = 3600
MAX_PENDING = 100_000        # (target, minute) pairs: 200 targets for over 8 hours of outage


def _upsert(table: str, period: str) -> str:
    return (f"INSERT INTO {table} (target, {period}, probes, successes, duration_sum, duration_max) "
            f"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target, {period}) DO UPDATE SET "
            f"probes = {table}.probes + excluded.probes, "
            f"successes = {table}.successes + excluded.successes, "
            f"duration_sum = {table}.duration_sum + excluded.duration_sum, "
            f"duration_max = CASE WHEN excluded.duration_max > {table}.duration_max "
            f"THEN excluded.duration_max ELSE {table}.duration_max END")


UPSERT_SQL = _upsert("probe_rollups", "minute")
UPSERT_HOURLY_SQL = _upsert("probe_rollups_hourly", "hour")


def hourly(minutes: dict[tuple[str, int], list[Any]]) -> dict[tuple[str, int], list[Any]]:
    """The (target, minute) rows summed into (target, hour) rows."""
    hours: dict[tuple[str, int], list[Any]] = {}
    for (target, minute), (probes, successes, total, peak) in minutes.items():
        row = hours.get((target, minute * MINUTE // HOUR))
        if row is None:
            hours[(target, minute * MINUTE // HOUR)] = [probes, successes, total, peak]
        else:
            row[0] += probes
            row[1] += successes
            row[2] += total
            row[3] = max(row[3], peak)
    return hours


class ProbeRollups:
    def __init__(self, max_pending: int = MAX_PENDING):
        self.max_pending = max_pending
        # (target, minute) -> [probes, successes, duration_sum, duration_max]; insertion order ~ time order
        self._pending: dict[tuple[str, int], list[Any]] = {}
        self.dropped = 0             # (target, minute) pairs given up while the store was unreachable

    def __len__(self) -> int:
        return len(self._pending)

    def observe(self, target_name: str, success: bool, duration_seconds: float, ended_at: float) -> None:
        """Count one probe of `target_name` that ended at `ended_at` (unix seconds)."""
        key = (target_name, int(ended_at // MINUTE))
        row = self._pending.get(key)
        if row is None:
            self._pending[key] = [1, int(success), duration_seconds, duration_seconds]
            self._bound()
            return
        row[0] += 1
        row[1] += int(success)
        row[2] += duration_seconds
        if duration_seconds > row[3]:
            row[3] = duration_seconds

    def _bound(self) -> None:
        while len(self._pending) > self.max_pending:
            del self._pending[next(iter(self._pending))]
            self.dropped += 1

    async def flush(self, store: Store) -> int:
        """Add the pending minutes to probe_rollups in one transaction; returns how many rows it wrote.
        On a StoreError the rows are kept for the next flush and the error is raised."""
        if not self._pending:
            return 0
        taken, self._pending = self._pending, {}
        statements = [(UPSERT_SQL, (target, minute, *row)) for (target, minute), row in taken.items()]
        statements += [(UPSERT_HOURLY_SQL, (target, hour, *row)) for (target, hour), row in hourly(taken).items()]
        try:
            await store.execute(statements)
        except StoreError:
            self._restore(taken)
            raise
        return len(taken)

    def _restore(self, taken: dict[tuple[str, int], list[Any]]) -> None:
        """Put failed rows back in front of what was observed meanwhile, merging the same minutes."""
        newer, self._pending = self._pending, taken
        for key, row in newer.items():
            old = self._pending.get(key)
            if old is None:
                self._pending[key] = row
            else:
                old[0] += row[0]
                old[1] += row[1]
                old[2] += row[2]
                old[3] = max(old[3], row[3])
        self._bound()

    async def run(self, store: Store, every: float = 15.0) -> None:
        """Flush every `every` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(every)
                await self._flush_logged(store)
        finally:
            await self._flush_logged(store)

    async def _flush_logged(self, store: Store) -> None:
        try:
            await self.flush(store)
        except StoreError as exc:
            log.warning("probe rollups not stored yet; retrying at the next flush",
                        extra={"error": str(exc), "pending": len(self._pending), "dropped": self.dropped})
