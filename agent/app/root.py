"""The aiohttp application: routes, and every background component started and stopped
through cleanup_ctx (OTLP export, probe runtime, event span sweeper)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.api import (PIPELINE, PRIVACY, RUNTIME, STORE, anomalies, events, health, identify, index, metrics_api,
                       openapi, probe)
from agent.api import error_events as errors_api
from agent.api.auth import ADMIN_TOKENS
from agent.api.nul_guard import refuse_nul_in_url
from agent.app.store import build_privacy, setup_store
from agent.config.load import Config
from agent.events.pipeline import EventPipeline
from agent.events.span_metrics import EventSpanMetrics
from agent.events.spans import EventSpans
from agent.metrics.store import MetricStore
from agent.otlp.export import OtlpExport
from agent.error_tracking.sink import ErrorSink
from agent.metrics.releases import RELEASES, ReleaseTracker
from agent.collectors.runtime import ProbeRuntime
from agent.otlp.tracing import build_tracer_provider

# how long in-flight probes may finish after SIGTERM before they are cancelled (the whole budget
# is in agent/__main__.py)
STOP_GRACE_SECONDS = 1.5
SPAN_SWEEP_SECONDS = 5.0


def build_app(config: Config, registry: CollectorRegistry | None = None) -> web.Application:
    # the body limit is enforced per endpoint (events: events.max_body_bytes); this is the ceiling
    app = web.Application(client_max_size=max(config.events.max_body_bytes, 1024 * 1024),
                          middlewares=[refuse_nul_in_url])
    registry = registry or CollectorRegistry(auto_describe=True)
    tracer_provider = build_tracer_provider(config.telemetry)
    runtime = ProbeRuntime(config, registry, tracer_provider)
    store = MetricStore(config.events.series_limit)
    export = OtlpExport.from_config(config.telemetry, registry=registry, tracer_provider=tracer_provider,
                                    store=store, collectors=(runtime.probe_metrics,))
    runtime.spans_exported = export.traces is not None
    spans = EventSpans(tracer_provider.get_tracer("loom-agent.events"), idle_timeout=config.events.span_idle_timeout,
                       max_open=config.events.max_open_spans)
    privacy = build_privacy(config)
    pipeline = EventPipeline(config.events, store, spans, privacy)
    app[RELEASES] = releases = ReleaseTracker(store)
    custom_metrics = metrics_api.setup(app, config.custom_metrics, store, privacy, runtime.reload_hooks)
    custom_metrics.release_observers.append(releases.seen)        # POST /v1/metrics, StatsD
    pipeline.observers.append(releases.observe)
    registry.register(EventSpanMetrics(spans))
    error_sink = ErrorSink(config.errors, store, privacy, tracer_provider.get_tracer("loom-agent.errors"))
    errors_api.setup(app, error_sink)          # POST /v1/errors, /v1/errors/batch, GET /api/errors
    error_sink.observers.append(releases.observe)
    runtime.reload_hooks.append(lambda new: lambda: error_sink.reconfigure(new.errors))
    runtime.reload_hooks.append(lambda new: pipeline.prepare(new.events))
    app[RUNTIME], app[STORE], app[PIPELINE], app[PRIVACY] = runtime, store, pipeline, privacy
    app[ADMIN_TOKENS] = list(config.api.admin_tokens)
    runtime.reload_hooks.append(_reload_admin_tokens(app[ADMIN_TOKENS]))
    windows = anomalies.setup(app, config.alerting, registry)
    pipeline.observers.append(windows.observe)
    runtime.reload_hooks.append(_reload_thresholds(app[anomalies.ANOMALIES]))
    app.cleanup_ctx.append(export.cleanup_ctx)    # first up, last down: flushes the final spans
    app.cleanup_ctx.append(_runtime_ctx)
    app.cleanup_ctx.append(_span_sweeper_ctx)
    setup_store(app, config, registry, store, runtime)
    for module in (health, probe, events, identify, index, openapi):
        module.add_routes(app)
    return app


def _reload_admin_tokens(tokens: list[str]) -> Callable[[Config], Callable[[], None]]:
    """A reload hook: the new config's admin tokens replace the running ones in place."""
    def prepare(new: Config) -> Callable[[], None]:
        def commit() -> None:
            tokens[:] = new.api.admin_tokens
        return commit
    return prepare


def _reload_thresholds(monitor: anomalies.AnomalyMonitor) -> Callable[[Config], Callable[[], None]]:
    def prepare(new: Config) -> Callable[[], None]:
        return lambda: monitor.reconfigure(new.alerting)
    return prepare


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.start()
    yield
    await runtime.stop(STOP_GRACE_SECONDS)


async def _span_sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    spans = app[PIPELINE].spans
    task = asyncio.create_task(spans.run_sweeper(SPAN_SWEEP_SECONDS))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    spans.close()          # end what is open, before the tracer provider shuts down
