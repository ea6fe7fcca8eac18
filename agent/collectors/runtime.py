"""The running agent's state: the current config, the collectors, the scheduler, the metrics.

`ProbeRuntime` is created once per process; `reload()` swaps in a new config only when it
loads and validates completely, so a bad file leaves the old one running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from opentelemetry.sdk.trace import TracerProvider

from agent.collectors import KINDS, kind_module
from agent.collectors.base import Collector, ProbeResult, ProbeTarget
from agent.collectors.scheduler import Scheduler
from agent.config.load import Config, load_config
from agent.metrics.probe import ProbeMetrics
from agent.collectors.spans import emit_probe_span
from agent.config.node import ConfigError
from agent.metrics.agent import SelfMetrics

log = logging.getLogger("agent.collectors.runtime")


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """Settings a reload cannot apply to the running process (the listen socket, the exporters, the
    concurrency bound, the span trackers), when the new config changes them."""
    pairs = {
        "listen": (old.listen, new.listen),
        "scheduler": (old.scheduler, new.scheduler),
        "telemetry": (old.telemetry, new.telemetry),
        "events.spans": ((old.events.span_idle_timeout, old.events.max_open_spans),
                         (new.events.span_idle_timeout, new.events.max_open_spans)),
        "custom_metrics.namespace": (old.custom_metrics.namespace, new.custom_metrics.namespace),
        "custom_metrics.buckets": ((old.custom_metrics.buckets, old.custom_metrics.metric_buckets),
                                   (new.custom_metrics.buckets, new.custom_metrics.metric_buckets)),
        "custom_metrics.statsd": (old.custom_metrics.statsd, new.custom_metrics.statsd),
        "store": (old.store, new.store),
        "privacy": (old.privacy, new.privacy),
    }
    return [name for name, (before, after) in pairs.items() if before != after]


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
        self._reload_lock = asyncio.Lock()
        self.last_reload_errors: list[str] = []
        # called with a new, valid config before it is applied; each returns its commit function
        # or raises ValueError to reject the reload
        self.reload_hooks: list[Callable[[Config], Callable[[], None]]] = []
        # called with every probe result (target, result, unix time it ended): e.g. the store's rollups
        self.result_observers: list[Callable[[ProbeTarget, ProbeResult, float], None]] = []
        self._mark_loaded()

    async def start(self) -> None:
        self.collectors = {kind: kind_module(kind).Collector() for kind in KINDS}
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

    async def reload(self) -> bool:
        """Re-read the config file; keep the running config when the new one is invalid."""
        async with self._reload_lock:
            path = self.config.source
            try:
                new = await asyncio.to_thread(load_config, path)
                try:
                    commits = [hook(new) for hook in self.reload_hooks]
                except ValueError as exc:
                    raise ConfigError([str(exc)]) from exc
            except ConfigError as exc:
                self._reload_failed(path, exc.errors)
                return False
            for commit in commits:
                commit()
            changed = restart_only_changes(self.config, new)
            if changed:
                log.warning("some changed settings take effect on restart", extra={"settings": changed})
            self.config, self.last_reload_errors = new, []
            self._apply(new)
            self._mark_loaded()
            self.self_metrics.reloads.labels("success").inc()
            log.info("config reloaded", extra={"config_file": path, "targets": len(new.targets)})
            return True

    def _reload_failed(self, path: str | None, errors: list[str]) -> None:
        self.last_reload_errors = errors
        self.self_metrics.reload_successful.set(0)
        self.self_metrics.reloads.labels("failure").inc()
        log.error("config reload failed; keeping the running config", extra={"config_file": path, "errors": errors})

    def _apply(self, config: Config) -> None:
        self.probe_metrics.set_targets(config.targets)
        assert self.scheduler is not None
        self.scheduler.update(config.targets)
        counts = Counter(t.kind for t in config.targets)
        for kind in KINDS:
            self.self_metrics.targets.labels(kind).set(counts.get(kind, 0))

    def _mark_loaded(self) -> None:
        self.self_metrics.reload_successful.set(1)
        self.self_metrics.reload_success_timestamp.set(time.time())

    def _record(self, target: ProbeTarget, result: ProbeResult, attempts: int, start_unix: float) -> None:
        self.probe_metrics.record(target, result, attempts)
        for observe in self.result_observers:
            observe(target, result, start_unix + result.duration_seconds)
        if self.spans_exported and self.config.telemetry.trace_probes:
            emit_probe_span(self.tracer, target, result, start_unix, attempts)
        if not result.success:
            log.debug("probe failed", extra={"target": target.name, "reason": result.reason.value,
                                             "detail": result.detail})
