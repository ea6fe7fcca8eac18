"""OTLP export of the agent's metrics and traces: bounded, off the event loop, never in the way.

Metrics: every `metrics_interval` a snapshot of the event MetricStore and the prometheus_client
registry (`agent/otlp/metrics.py`) is converted in a thread and placed in a one-slot queue; a
newer snapshot replaces a waiting one (cumulative data makes it redundant; its points count as
dropped). Sources added with `add_metric_source` (the OTLP receiver's converted series) join each
snapshot as ResourceMetrics of their own resources. Traces: the SpanQueue processor
(`agent/otlp/traces.py`) collects ended spans; a flusher sends batches of up to `batch_size` spans every
`flush_interval`, or sooner when a batch is full.
Logs (the application's records the agent relays, agent/otlp/logs.py) take the traces' path with
their own bounded queue, when `telemetry.otlp.export_logs` and an endpoint are set.
Each signal has one Sender (`agent/otlp/sender.py`): one export in flight, retries with backoff.
The application's spans and log records the OTLP receiver accepts (agent/receiver) wait in the
signal's `forward` queue (agent/otlp/forward.py, encoded bytes) and take the same flusher and Sender.

`stop()` takes a last metrics snapshot, then flushes what is queued for at most `stop_timeout`
seconds; whatever is still waiting then is counted as dropped and the exporters are shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData, ResourceMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric as PromMetric

from agent.metrics.store import MetricStore
from agent.otlp.config import TelemetryConfig
from agent.otlp.forward import Encoded, EncodedQueue
from agent.otlp.logs import LogQueue
from agent.otlp.metrics import MetricSource, take_snapshot, to_metrics_data
from agent.otlp.sender import ExportStatsCollector, RetryPolicy, Sender, in_daemon_thread
from agent.otlp.traces import SpanQueue
from agent.otlp.tracing import build_log_exporter, build_metric_exporter, build_span_exporter

log = logging.getLogger("agent.otlp")

BATCH_SIZE = 512
FLUSH_INTERVAL = 2.0
STOP_TIMEOUT = 1.5               # part of the SIGTERM budget, see agent/__main__.py
EXPORTER_SHUTDOWN_WAIT = 0.3

# more ResourceMetrics for each snapshot (the OTLP receiver's converted series, agent/receiver/prom_reexport.py):
# called on the loop, it copies what it needs and returns the builder the worker thread runs (-> metrics, points)
ResourceMetricsSource = Callable[[], Callable[[], tuple[list[ResourceMetrics], int]]]


class LatestSnapshot:
    """A one-slot queue that keeps only the newest metrics batch."""

    def __init__(self) -> None:
        self.batch: MetricsData | None = None
        self.points = 0
        self.dropped = 0          # data points of snapshots replaced before they were sent
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return self.points

    def put(self, batch: MetricsData, points: int) -> None:
        if self.batch is not None:
            self.dropped += self.points
        self.batch, self.points = batch, points
        self.ready.set()

    def take(self) -> tuple[MetricsData, int] | None:
        if self.batch is None:
            return None
        taken = (self.batch, self.points)
        self.batch, self.points = None, 0
        self.ready.clear()
        return taken


class MetricsExport:
    def __init__(self, exporter: MetricExporter, store: MetricStore | None, registry: MetricSource | None,
                 resource: Resource, start_ns: int, interval: float, policy: RetryPolicy, stopping: asyncio.Event):
        self.exporter = exporter
        self.pending = LatestSnapshot()
        self.sender = Sender("metrics", self._export, policy, stopping)
        self._store, self._registry, self._resource = store, registry, resource
        self._start_ns, self._interval, self._stopping = start_ns, interval, stopping
        self.sources: list[ResourceMetricsSource] = []

    def _export(self, batch: MetricsData) -> bool:
        return self.exporter.export(batch) is MetricExportResult.SUCCESS

    async def snapshot(self) -> None:
        """Read both sources on the loop, convert in a thread, queue the result."""
        try:
            snap = take_snapshot(self._store, self._registry)
            builds = [take() for take in self.sources]
            batch, points = await in_daemon_thread(_with_sources, snap, self._resource, self._start_ns, builds)
        except Exception:
            log.exception("taking a metrics snapshot for OTLP failed")
            return
        self.pending.put(batch, points)

    async def tick(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if not self._stopping.is_set():
                await self.snapshot()

    async def send(self) -> None:
        """Deliver snapshots until stopping and nothing waits."""
        while True:
            taken = self.pending.take()
            if taken is None:
                if self._stopping.is_set():
                    return
                await self.pending.ready.wait()
                continue
            await self.sender.deliver(*taken, newer=self.pending.take)

    def discard_pending(self) -> None:
        taken = self.pending.take()
        if taken is not None:
            self.sender.stats.dropped += taken[1]


def _with_sources(snap: Any, resource: Resource, start_ns: int,
                  builds: list[Callable[[], tuple[list[ResourceMetrics], int]]]) -> tuple[MetricsData, int]:
    """The agent's own ResourceMetrics, then each source's (under their own resources)."""
    batch, points = to_metrics_data(snap, resource, start_ns)
    if not builds:
        return batch, points
    more: list[ResourceMetrics] = []
    for build in builds:
        metrics, count = build()
        more += metrics
        points += count
    return MetricsData([*batch.resource_metrics, *more]), points


class TracesExport:
    signal = "traces"

    def __init__(self, exporter: Any, queue: Any, flush_interval: float, policy: RetryPolicy,
                 stopping: asyncio.Event):
        self.exporter = exporter
        self.queue = queue
        # the received items to forward (agent/receiver), set by the composition root when it runs a receiver
        self.forward: EncodedQueue | None = None
        self.sender = Sender(self.signal, self._export, policy, stopping)
        self._flush_interval, self._stopping = flush_interval, stopping
        self._wake = asyncio.Event()

    def _export(self, batch: Any) -> bool:
        if isinstance(batch, Encoded):
            return bool(self.exporter.export_encoded(batch))
        return self.exporter.export(batch) is SpanExportResult.SUCCESS

    def wake(self) -> None:
        self._wake.set()

    def _full(self) -> bool:
        return len(self.queue) >= self.queue.batch_size or (self.forward is not None and self.forward.ready())

    async def flush(self) -> None:
        """Send batches (the agent's own items, then the received ones) until stopping and both are empty."""
        self.queue.wake_with(asyncio.get_running_loop(), self._wake)
        if self.forward is not None:
            self.forward.wake_with(self._wake)
        while True:
            if not self._full() and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval)
                self._wake.clear()
            batch = self.queue.take(self.queue.batch_size)
            if batch:
                await self.sender.deliver(batch, len(batch))
            encoded = self.forward.take() if self.forward is not None else None
            if encoded is not None:
                await self.sender.deliver(encoded, encoded.count)
            if not batch and encoded is None and self._stopping.is_set():
                return

    def discard_pending(self) -> None:
        self.queue.wake_with(None)
        self.sender.stats.dropped += self.queue.close()
        if self.forward is not None:
            self.forward.wake_with(None)
            self.sender.stats.dropped += self.forward.close()


class _Waiting:
    """A signal's queue as the export counters see it: its own items plus the received ones to forward."""

    def __init__(self, export: TracesExport):
        self._export = export

    @property
    def dropped(self) -> int:
        return int(self._export.queue.dropped)

    def __len__(self) -> int:
        forward = self._export.forward
        return len(self._export.queue) + (len(forward) if forward is not None else 0)


class LogsExport(TracesExport):
    """The relayed log records (agent/otlp/logs.py): the traces' flusher over a LogQueue."""

    signal = "logs"

    def _export(self, batch: Any) -> bool:
        if isinstance(batch, Encoded):
            return bool(self.exporter.export_encoded(batch))
        return bool(self.exporter.export(batch))


class _Combined:
    """The registry plus collectors that are rendered outside it (probe metrics): what OTLP exports."""

    def __init__(self, registry: CollectorRegistry, collectors: Sequence[MetricSource]):
        self._parts: tuple[MetricSource, ...] = (registry, *collectors)

    def collect(self) -> Iterator[PromMetric]:
        for part in self._parts:
            yield from part.collect()


class OtlpExport:
    """Runs the metrics and trace exports; `start()`/`stop()` from the app's cleanup_ctx."""

    def __init__(self, *, registry: CollectorRegistry, resource: Resource,
                 metric_exporter: MetricExporter | None = None, span_exporter: SpanExporter | None = None,
                 tracer_provider: TracerProvider | None = None, store: MetricStore | None = None,
                 log_exporter: Any = None,
                 metrics_interval: float = 15.0, queue_size: int = 8192, max_retries: int = 5,
                 batch_size: int = BATCH_SIZE, flush_interval: float = FLUSH_INTERVAL,
                 backoff: float = 1.0, backoff_cap: float = 30.0, stop_timeout: float = STOP_TIMEOUT,
                 start_ns: int | None = None, collectors: Sequence[MetricSource] = ()):
        self._stopping = asyncio.Event()
        self._stopped = False
        self._stop_timeout = stop_timeout
        self._tasks: list[asyncio.Task] = []
        policy = RetryPolicy(max_retries, backoff, backoff_cap)
        self.metrics: MetricsExport | None = None
        self.traces: TracesExport | None = None
        if metric_exporter is not None:
            source = registry if not collectors else _Combined(registry, collectors)
            self.metrics = MetricsExport(metric_exporter, store, source, resource,
                                         start_ns if start_ns is not None else time.time_ns(),
                                         metrics_interval, policy, self._stopping)
        if span_exporter is not None and tracer_provider is not None:
            queue = SpanQueue(queue_size, batch_size)
            tracer_provider.add_span_processor(queue)
            self.traces = TracesExport(span_exporter, queue, flush_interval, policy, self._stopping)
        self.logs: LogsExport | None = None        # the application's log records the agent relays
        if log_exporter is not None:
            self.logs = LogsExport(log_exporter, LogQueue(queue_size, batch_size), flush_interval, policy,
                                   self._stopping)
        signals: dict[str, Any] = {}
        if self.metrics is not None:
            signals["metrics"] = (self.metrics.sender.stats, self.metrics.pending)
        if self.traces is not None:
            signals["traces"] = (self.traces.sender.stats, _Waiting(self.traces))
        if self.logs is not None:
            signals["logs"] = (self.logs.sender.stats, _Waiting(self.logs))
        if signals:
            registry.register(ExportStatsCollector(signals))

    @classmethod
    def from_config(cls, config: TelemetryConfig, *, registry: CollectorRegistry, tracer_provider: TracerProvider,
                    store: MetricStore | None = None, collectors: Sequence[MetricSource] = (),
                    environ: Mapping[str, str] = os.environ, **overrides: Any) -> OtlpExport:
        """Exporters and limits from `telemetry:`; `overrides` (tests: short intervals) win."""
        otlp = config.otlp
        settings: dict[str, Any] = dict(metrics_interval=otlp.metrics_interval, queue_size=otlp.queue_size,
                                        max_retries=otlp.max_retries)
        settings.update(overrides)
        return cls(registry=registry, resource=tracer_provider.resource,
                   metric_exporter=build_metric_exporter(config, environ),
                   span_exporter=build_span_exporter(config, environ), tracer_provider=tracer_provider,
                   log_exporter=build_log_exporter(config, environ),
                   store=store, collectors=collectors, **settings)

    def add_metric_source(self, source: ResourceMetricsSource) -> None:
        """Export `source`'s ResourceMetrics with every metrics snapshot (nothing when metrics are not exported)."""
        if self.metrics is not None:
            self.metrics.sources.append(source)

    @property
    def enabled(self) -> bool:
        return self.metrics is not None or self.traces is not None or self.logs is not None

    async def start(self) -> None:
        if self.metrics is not None:
            self._tasks += [asyncio.create_task(self.metrics.tick(), name="otlp-metrics-tick"),
                            asyncio.create_task(self.metrics.send(), name="otlp-metrics-send")]
        if self.traces is not None:
            self._tasks.append(asyncio.create_task(self.traces.flush(), name="otlp-traces-flush"))
        if self.logs is not None:
            self._tasks.append(asyncio.create_task(self.logs.flush(), name="otlp-logs-flush"))

    async def stop(self) -> None:
        """Flush for at most `stop_timeout` seconds, then give up on what is left (counted as dropped).

        Returns within about stop_timeout + EXPORTER_SHUTDOWN_WAIT seconds, however the collector behaves.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self._stop_timeout
        if self.metrics is not None:          # the last values, queued before the sender may finish
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.metrics.snapshot(), self._stop_timeout / 2)
        self._stopping.set()
        if self.traces is not None:
            self.traces.wake()
        if self.logs is not None:
            self.logs.wake()
        if self.metrics is not None:
            self.metrics.pending.ready.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        parts = [part for part in (self.metrics, self.traces, self.logs) if part is not None]
        for part in parts:
            part.discard_pending()
        await _shutdown_exporters([part.exporter for part in parts])

    async def cleanup_ctx(self, _app: Any = None) -> AsyncIterator[None]:
        """For `app.cleanup_ctx.append(export.cleanup_ctx)`."""
        await self.start()
        yield
        await self.stop()


async def _shutdown_exporters(exporters: list[MetricExporter | SpanExporter]) -> None:
    """Let the SDK abort its own retry waits and close its connections, without waiting long."""
    if not exporters:
        return
    futures = [in_daemon_thread(exporter.shutdown) for exporter in exporters]
    done, _ = await asyncio.wait(futures, timeout=EXPORTER_SHUTDOWN_WAIT)
    for future in done:
        if future.exception() is not None:
            log.warning("OTLP exporter shutdown failed: %s", future.exception())
