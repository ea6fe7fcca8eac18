"""Each target's uptime over the last 24 hours, from the store's probe_rollups, for the status page.

The query sums up to 1,440 rows per target (1.4 M for 1,000 targets), far too much to run on every
load of `/`. `UptimeCache` runs it at most once per `ttl` seconds, in a task of its own: a page
asking for a stale value gets the previous one at once and starts the refresh (stale while
revalidate); only the very first load waits, at most `first_wait` seconds (once: a database that hangs
does not make every load wait). A failing store
keeps the last good value and says why in `error`; the next refresh is again `ttl` later, so a
down database is not asked on every page load.

The minutes counted are the ones flushed by agent/store/probe_rollups.py (every 15 s), so the
newest quarter-minute of probes shows up at the next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agent.analytics.queries import Uptime, probe_uptime
from agent.analytics.timerange import DAY, TimeRange
from agent.store.base import Store
from agent.store.errors import StoreError

log = logging.getLogger("agent.status")

TTL_SECONDS = 30.0
FIRST_WAIT_SECONDS = 1.0
WINDOW_SECONDS = DAY


class UptimeCache:
    def __init__(self, ttl: float = TTL_SECONDS, first_wait: float = FIRST_WAIT_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.ttl = ttl
        self.first_wait = first_wait
        self.clock = clock
        self.rows: dict[str, Uptime] | None = None     # target -> its last 24 h, once a query succeeded
        self.fetched_at: float | None = None           # when the last query (good or failed) ended
        self.error: str | None = None                  # why the last query failed, None when it did not
        self._task: asyncio.Task[None] | None = None
        self._waited = False

    async def get(self, store: Store) -> dict[str, Uptime] | None:
        """The cached rows (None before the first good query), refreshing them when older than ttl."""
        if self._stale() and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh(store))
        if not self._waited and self._task is not None and not self._task.done():
            self._waited = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.first_wait)
        return self.rows

    def _stale(self) -> bool:
        return self.fetched_at is None or self.clock() - self.fetched_at >= self.ttl

    async def _refresh(self, store: Store) -> None:
        now = self.clock()
        try:
            found = await probe_uptime(store, TimeRange(now - WINDOW_SECONDS, now))
        except StoreError as exc:
            self.error = str(exc) or type(exc).__name__
            log.warning("status page: 24 h uptime not read from the store", extra={"error": self.error})
        else:
            self.rows, self.error = {row.target: row for row in found}, None
        finally:
            self.fetched_at = self.clock()

    async def close(self) -> None:
        """Cancel a refresh still running (before the store closes under it)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
