"""Group commit: every ingest request waits for its events to be durable, yet the database sees one
transaction per group of requests, not one per request.

One background task commits; each `submit()` queues its batch and awaits a future. Whenever the task is
free it takes EVERYTHING queued meanwhile, writes it with ONE `store.write_events` call (one transaction,
one fsync), and resolves each submission with the duplicate positions of its own batch. There is no
timer: while a commit runs, the next group forms by itself, so groups grow exactly as fast as load does
and an idle agent commits a lone request at once.

Back-pressure: more than `max_pending_events` events submitted and not yet committed -> StoreBusy at
once (the API answers 503 + Retry-After) instead of an unbounded queue. A failed commit fails every
submission of its group with the StoreError: none of them is acknowledged, each client retries, and the
client event ids make the retries idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from agent.metrics.store import MetricStore
from agent.store.base import Store
from agent.store.batch import USER_ID
from agent.store.errors import StoreBusy, StoreError, StoreFull, StoreUnavailable
from agent.store.person_traits import forget_traits
from agent.store.rows import EventRows

log = logging.getLogger("agent.store")

_Submission = tuple[Sequence[EventRows], "asyncio.Future[frozenset[int]]"]


_RESULTS = frozenset({"ok", "unavailable", "full", "error"})


def _result(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, StoreFull):
        return "full"
    return "unavailable" if isinstance(exc, StoreError) else "error"


class CommitMetrics:
    """What an operator watches on the store: commits by result, their latency, events per commit
    (how well grouping works), and the backlog."""

    def __init__(self, metrics: MetricStore):
        self.commits = metrics.counter("loom_agent_store_commits", "Group commits to the event store, by result.",
                                       ("result",), allow={"result": _RESULTS})
        self.seconds = metrics.histogram("loom_agent_store_commit_seconds", "Duration of one group commit.",
                                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                         unit="seconds")
        self.events = metrics.histogram("loom_agent_store_commit_events", "Events per group commit.",
                                        buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000), unit="")
        self.pending = metrics.gauge("loom_agent_store_pending_events",
                                     "Events submitted to the store and not yet committed.")
        self.fold_failures = metrics.counter(
            "loom_agent_store_fold_failures", "Folds of the analytics rollups a full store refused (SQLite: the "
            "events are stored, the analytics lag behind them until retention frees room).")
        self.fold_failures.inc((), 0)   # present from the start: increase() sees the first failure
        self._folds_refused = 0     # the store's count at the last commit (it counts folds at reads too)

    def committed(self, exc: BaseException | None, seconds: float, events: int, pending: int,
                  folds_refused: int = 0) -> None:
        self.commits.inc((_result(exc),))
        self.seconds.observe((), seconds)
        self.events.observe((), events)
        self.pending.set((), pending)
        if folds_refused > self._folds_refused:
            self.fold_failures.inc((), folds_refused - self._folds_refused)
        self._folds_refused = max(self._folds_refused, folds_refused)


class GroupCommitWriter:
    def __init__(self, store: Store, max_pending_events: int = 100_000, metrics: MetricStore | None = None):
        self.store = store
        self.metrics = CommitMetrics(metrics) if metrics is not None else None
        self.max_pending_events = max_pending_events
        self.pending = 0            # events submitted and not yet committed (or failed)
        self.commits = 0            # write_events calls made, for metrics and tests
        self._queue: list[_Submission] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store-group-commit")

    async def stop(self, timeout: float = 5.0) -> None:
        """Refuse new submissions and commit what was submitted (up to `timeout` seconds; what is left
        then fails with StoreUnavailable, unacknowledged)."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._fail(self._queue, StoreUnavailable("the agent stopped before these events were committed"))
            self._queue = []
        self._task = None

    async def submit(self, batch: Sequence[EventRows]) -> frozenset[int]:
        """Wait until `batch` is committed; returns the positions in it of events already stored (their
        client event id was seen before, or earlier in the group). Raises StoreError: nothing committed."""
        if not batch:
            return frozenset()
        if self._stopping or self._task is None:
            raise StoreUnavailable("the event store is not running")
        # a batch larger than the whole bound is let through alone, or it could never be stored
        if self.pending and self.pending + len(batch) > self.max_pending_events:
            raise StoreBusy(f"{self.pending} events are waiting to be committed "
                            f"(store.max_pending_events: {self.max_pending_events})")
        future: asyncio.Future[frozenset[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        self.pending += len(batch)
        if self.metrics is not None:
            self.metrics.pending.set((), self.pending)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            group, self._queue = self._queue, []
            await self._commit(group)

    async def _commit(self, group: list[_Submission]) -> None:
        combined = [rows for batch, _ in group for rows in batch]
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            duplicates = await self.store.write_events(combined)
        except StoreError as exc:
            failure = exc
            log.warning("store commit of %d events failed: %s", len(combined), exc)
            self._fail(group, exc)
            return
        except asyncio.CancelledError:      # stop() gave up waiting: not acknowledged, not lost silently
            failure = StoreUnavailable("the agent stopped before these events were committed")
            self._fail(group, failure)
            raise
        except Exception as exc:    # a bug: fail these requests (500), keep committing the next groups
            failure = exc
            log.exception("store commit failed unexpectedly")
            self._fail(group, exc)
            return
        finally:
            self.commits += 1
            # an event stating its user's role changed the users row: /flags reads it again (person_traits.py)
            roles = [rows.event[USER_ID] for rows in combined if rows.role is not None]
            if roles:
                forget_traits(self.store, roles)
            self.pending -= len(combined)
            if self.metrics is not None:
                self.metrics.committed(failure, time.perf_counter() - started, len(combined), self.pending,
                                       self.store.fold_failures)
        start = 0
        for batch, future in group:
            end = start + len(batch)
            if not future.done():   # its request may have been cancelled (client gone): committed anyway
                future.set_result(frozenset(p - start for p in duplicates if start <= p < end))
            start = end

    @staticmethod
    def _fail(group: list[_Submission], exc: BaseException) -> None:
        for _, future in group:
            if not future.done():
                future.set_exception(exc)
