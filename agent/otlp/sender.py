"""Delivering one batch to an SDK exporter: off the event loop, retried with backoff, counted.

The SDK exporters block (HTTP requests, gRPC calls, their own short retries within `timeout`), so
each attempt runs in a daemon thread and the event loop only awaits a future. A daemon thread,
not `asyncio.to_thread`: the default executor is joined when the loop shuts down, so a hung
collector would hold the process's exit for the exporter's timeout; an abandoned daemon thread
does not. One `Sender` per signal awaits one attempt at a time, so at most one export per
signal is in flight.

The counters are plain integers bumped on the loop and read by `ExportStatsCollector` at scrape
time: no lock and no prometheus_client call on any path that runs per span or per event.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("agent.otlp")


class Pending(Protocol):
    """A signal's queue of items waiting for export, as the counters see it."""

    dropped: int          # items the queue itself refused or replaced

    def __len__(self) -> int: ...


@dataclass(slots=True)
class ExportStats:
    exported: int = 0     # items the collector accepted (spans / metric data points)
    dropped: int = 0      # items given up: retries exhausted, or left over at shutdown
    retries: int = 0      # re-attempts of a failed batch
    failures: int = 0     # attempts that failed (FAILURE result, exception)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 5
    base: float = 1.0
    cap: float = 30.0

    def delay(self, retry: int) -> float:
        """Exponential backoff with equal jitter: half the step, plus up to half again at random."""
        step = min(self.cap, self.base * 2 ** (retry - 1))
        return step / 2 + random.uniform(0, step / 2)


def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future:
    """Run `fn(*args)` in a new daemon thread; the returned future completes on this loop."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def run() -> None:
        try:
            ok, value = True, fn(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            ok, value = False, exc
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:          # the loop has closed: nobody awaits this any more
            pass

    threading.Thread(target=run, name=f"otlp-{getattr(fn, '__name__', 'export')}", daemon=True).start()
    return future


class Sender:
    """Sends batches of one signal through `export` (blocking; True when accepted)."""

    def __init__(self, signal: str, export: Callable[[Any], bool], policy: RetryPolicy, stopping: asyncio.Event):
        self.signal = signal
        self.stats = ExportStats()
        self._export = export
        self._policy = policy
        self._stopping = stopping
        self._failing = False

    async def deliver(self, batch: Any, count: int,
                      newer: Callable[[], tuple[Any, int] | None] | None = None) -> bool:
        """Attempt, then retry with backoff until accepted, out of retries, or stopping.

        `newer` (metrics) may hand a fresher batch before each retry; the stale one counts as dropped.
        """
        stats = self.stats
        retry = 0
        try:
            while True:
                if await self._attempt(batch):
                    stats.exported += count
                    self._set_failing(False)
                    return True
                stats.failures += 1
                self._set_failing(True)
                if retry >= self._policy.max_retries or self._stopping.is_set():
                    break
                retry += 1
                if not await self._pause(self._policy.delay(retry)):
                    break
                fresh = newer() if newer is not None else None
                if fresh is not None:
                    stats.dropped += count
                    batch, count = fresh
                stats.retries += 1
        except asyncio.CancelledError:
            stats.dropped += count
            raise
        stats.dropped += count
        return False

    async def _attempt(self, batch: Any) -> bool:
        try:
            return bool(await in_daemon_thread(self._export, batch))
        except Exception:
            log.exception("OTLP %s export raised", self.signal)
            return False

    async def _pause(self, seconds: float) -> bool:
        """Sleep before a retry; False when stopping interrupted it."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    def _set_failing(self, failing: bool) -> None:
        if failing and not self._failing:
            log.warning("OTLP %s export failing; retrying with backoff and counting drops", self.signal)
        elif self._failing and not failing:
            log.info("OTLP %s export recovered", self.signal)
        self._failing = failing


class ExportStatsCollector:
    """`loom_agent_export*{signal}` from each signal's Sender stats and queue, read at scrape time."""

    def __init__(self, signals: Mapping[str, tuple[ExportStats, Pending]]):
        self._signals = dict(signals)

    def collect(self) -> Iterator[Any]:
        exported = CounterMetricFamily("loom_agent_exported", "Items accepted by the OTLP collector "
                                       "(spans; metric data points).", labels=["signal"])
        dropped = CounterMetricFamily("loom_agent_export_dropped", "Items never exported: queue full, "
                                      "superseded snapshot, retries exhausted, or left at shutdown.",
                                      labels=["signal"])
        retries = CounterMetricFamily("loom_agent_export_retries", "Re-attempts of failed OTLP export batches.",
                                      labels=["signal"])
        failures = CounterMetricFamily("loom_agent_export_failures", "OTLP export attempts that failed.",
                                       labels=["signal"])
        queued = GaugeMetricFamily("loom_agent_export_queue_size", "Items waiting for OTLP export.",
                                   labels=["signal"])
        for signal, (stats, pending) in self._signals.items():
            exported.add_metric([signal], stats.exported)
            dropped.add_metric([signal], stats.dropped + pending.dropped)
            retries.add_metric([signal], stats.retries)
            failures.add_metric([signal], stats.failures)
            queued.add_metric([signal], len(pending))
        return iter((exported, dropped, retries, failures, queued))
