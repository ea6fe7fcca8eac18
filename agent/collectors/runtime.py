"""The probes' running state: the targets, the collectors, the scheduler, the probe metrics and spans.

`ProbeRuntime` is created once per process by the composition root. It is reloadable
(agent/config/reload.py): `prepare(new)` returns the switch to the new config's targets and modules,
which the Reloader calls only once every component accepted the new config.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from agent.collectors.base import Collector, ProbeResult, ProbeTarget
from agent.collectors.kinds import KINDS
from agent.collectors.scheduler import Scheduler
from agent.collectors.spans import emit_probe_span
from agent.config.load import Config
from agent.metrics.agent import SelfMetrics
from agent.metrics.probe import ProbeMetrics

log = logging.getLogger("agent.collectors.runtime")


class ProbeRuntime:
    def __init__(self, config: Config, registry: CollectorRegistry, tracer_provider: TracerProvider):
        self.config = config
        self.registry = registry
        self.self_metrics = SelfMetrics(registry)
        self.probe_metrics = ProbeMetrics()     # rendered by its own fast path, beside the registry
        self.tracer_provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("loom-agent.probes")
        # set by the app when spans have somewhere to go; a span nobody exports is CPU for nothing
        # (about a quarter of a probe's cost, bench/RESULTS.md)
        self.spans_exported = False
        self.collectors: dict[str, Collector] = {}
        self.scheduler: Scheduler | None = None
        # called with every probe result (target, result, unix time it ended): e.g. the store's rollups
        self.result_observers: list[Callable[[ProbeTarget, ProbeResult, float], None]] = []

    async def start(self) -> None:
        self.collectors = {name: kind.collector_factory() for name, kind in KINDS.items()}
        m = self.self_metrics
        self.scheduler = Scheduler(
            self.collectors, self._record, max_concurrency=self.config.scheduler.max_concurrency,
            slot_grid=self.config.scheduler.slot_grid,
            on_lag=m.scheduler_lag.observe,
            on_missed=lambda target, n: m.probe_slots_missed.labels(target.kind).inc(n),
            on_internal_error=lambda target: m.probe_internal_errors.labels(target.kind).inc(),
            in_flight=m.probes_in_flight.inc)
        self._apply(self.config)

    async def stop(self, grace: float) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop(grace)
        for collector in self.collectors.values():
            await collector.close()
        self.tracer_provider.shutdown()

    def prepare(self, new: Config) -> Callable[[], None]:
        """Reloadable: the new targets and modules (validated by the loader) always apply."""
        def commit() -> None:
            self.config = new
            if self.scheduler is not None:
                self._apply(new)
        return commit

    def _apply(self, config: Config) -> None:
        self.probe_metrics.set_targets(config.targets)
        assert self.scheduler is not None
        self.scheduler.update(config.targets)
        counts = Counter(t.kind for t in config.targets)
        for kind in KINDS:
            self.self_metrics.targets.labels(kind).set(counts.get(kind, 0))

    def _record(self, target: ProbeTarget, result: ProbeResult, attempts: int, start_unix: float) -> None:
        self.probe_metrics.record(target, result, attempts)
        for observe in self.result_observers:
            observe(target, result, start_unix + result.duration_seconds)
        if self.spans_exported and self.config.telemetry.trace_probes:
            emit_probe_span(self.tracer, target, result, start_unix, attempts)
        if not result.success:
            log.debug("probe failed", extra={"target": target.name, "reason": result.reason_value,
                                             "detail": result.detail})
