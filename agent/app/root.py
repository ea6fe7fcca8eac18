"""The composition root: every component of the running agent is built here, once, and handed to the
route modules through the application's state (agent/api/keys.py).

Reading order: `build_app` builds the components (`build_components`), binds the reloadable ones to
their config blocks, registers the background work in start order (`_lifetimes`; shutdown runs the
reverse) and adds the routes. Nothing under agent/api builds a component.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.api import (
    analytics,
    analytics_page,
    anomalies,
    error_events,
    events,
    experiments,
    flags,
    health,
    identify,
    index,
    insights,
    metrics_api,
    openapi,
    posthog,
    privacy,
    probe,
    recordings,
    sentry,
)
from agent.api.admin_sessions import SIGN_IN_ATTEMPTS, AdminSessions
from agent.api.auth import AdminTokens
from agent.api.keys import (
    ADMIN_SESSIONS,
    ADMIN_TOKENS,
    ANOMALIES,
    BUSINESS_RATE_LIMITER,
    CUSTOM_METRICS,
    ERROR_SINK,
    EVENT_STORE,
    FLAGS,
    METRICS,
    OPT_OUTS,
    OTLP_METRICS,
    OTLP_RECEIVER,
    PIPELINE,
    POSTHOG,
    PRIVACY,
    RECORDINGS,
    REGISTRY,
    RELEASES,
    RELOADER,
    RUNTIME,
    SENTRY,
    SIGN_IN_LIMITER,
    STATUS_HISTORY,
    UPTIME_CACHE,
)
from agent.api.nul_guard import refuse_nul_in_url
from agent.api.problems import problem_middleware
from agent.api.ratelimit import RateLimiter
from agent.app.store import build_privacy, build_retention, store_bindings, store_lifetimes
from agent.app.tasks import CleanupCtx, background, lifetime
from agent.collectors.runtime import ProbeRuntime
from agent.config.load import Config
from agent.config.reload import Binding, Reloader
from agent.custom_metrics.registry import CustomMetrics
from agent.custom_metrics.statsd import statsd_ctx
from agent.error_tracking.sink import ErrorSink
from agent.events.opt_outs import OptOuts
from agent.events.pipeline import EventPipeline
from agent.events.span_metrics import EventSpanMetrics
from agent.events.spans import EventSpans
from agent.flags.evaluate import Flags
from agent.flags.metrics import FlagMetrics
from agent.metrics.releases import ReleaseTracker
from agent.metrics.store import MetricStore
from agent.otlp.export import OtlpExport
from agent.otlp.forward import EncodedQueue
from agent.otlp.tracing import build_tracer_provider
from agent.posthog.config import PosthogSettings
from agent.receiver import prom_reexport
from agent.receiver.grpc_server import grpc_ctx
from agent.receiver.http import http_ctx
from agent.receiver.ingest import OtlpIngest
from agent.receiver.prom_series import OtlpMetricSeries
from agent.receiver.stats import ReceiverStatsCollector
from agent.recordings.ingest import Recordings
from agent.rules.anomaly_metrics import AnomalyActiveCollector, AnomalyMonitor
from agent.sentry.ingest import SentryIngest
from agent.sentry.logs import SentryLogs
from agent.sentry.transactions import SentryTransactions
from agent.status.history import ProbeHistory
from agent.status.uptime import UptimeCache
from agent.store.base import Store, StoreSlot

# how long in-flight probes may finish after SIGTERM before they are cancelled (the whole budget
# is in agent/__main__.py)
STOP_GRACE_SECONDS = 1.5
SPAN_SWEEP_SECONDS = 5.0
ROUTE_MODULES = (health, probe, events, posthog, flags, identify, error_events, sentry, metrics_api, analytics,
                 insights, experiments, recordings, privacy, anomalies, index, analytics_page, openapi)


@dataclass(frozen=True, slots=True)
class Clocks:
    """Time sources, replaceable by tests: `wall` (unix seconds) and `monotonic`."""
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


def build_app(config: Config, registry: CollectorRegistry | None = None, *, clocks: Clocks = Clocks(),
              store: Store | None = None) -> web.Application:
    """The whole agent for `config`. `store`: an event store already open (tests that share one across
    apps, or fill it first) used instead of opening `config.store`; the app then leaves it open."""
    # the body limit is enforced per endpoint (events: events.max_body_bytes); this is the ceiling
    app = web.Application(client_max_size=max(config.events.max_body_bytes, 1024 * 1024),
                          middlewares=[problem_middleware, refuse_nul_in_url])
    registry = registry or CollectorRegistry(auto_describe=True)
    app[REGISTRY] = registry
    export = build_components(app, config, registry, clocks)
    app[RELOADER] = Reloader(config, _bindings(app), on_result=app[RUNTIME].self_metrics.reload_result)
    for context in _lifetimes(app, config, export, store):
        app.cleanup_ctx.append(context)
    for module in ROUTE_MODULES:
        module.add_routes(app)
    return app


def build_components(app: web.Application, config: Config, registry: CollectorRegistry,
                     clocks: Clocks) -> OtlpExport:
    """Every component into `app`, wired along the data flow (edge -> privacy -> store/metrics/spans);
    returns the OTLP export, whose lifetime frames all others."""
    tracer_provider = build_tracer_provider(config.telemetry)
    app[RUNTIME] = runtime = ProbeRuntime(config, registry, tracer_provider)
    app[METRICS] = metrics = MetricStore(config.events.series_limit)
    export = OtlpExport.from_config(config.telemetry, registry=registry, tracer_provider=tracer_provider,
                                    store=metrics, collectors=(runtime.probe_metrics,))
    runtime.spans_exported = export.traces is not None
    spans = EventSpans(tracer_provider.get_tracer("loom-agent.events"), idle_timeout=config.events.span_idle_timeout,
                       max_open=config.events.max_open_spans)
    registry.register(EventSpanMetrics(spans))
    app[EVENT_STORE] = StoreSlot()          # filled at start-up once the store is open
    app[PRIVACY] = privacy_rules = build_privacy(config)
    app[OPT_OUTS] = OptOuts(privacy_rules)
    app[PIPELINE] = pipeline = EventPipeline(config.events, metrics, spans, privacy_rules)
    app[RELEASES] = releases = ReleaseTracker(metrics)
    app[CUSTOM_METRICS] = custom = CustomMetrics(config.custom_metrics, metrics, privacy_rules)
    app[ERROR_SINK] = sink = ErrorSink(config.errors, metrics, privacy_rules,
                                       tracer_provider.get_tracer("loom-agent.errors"))
    # the Sentry endpoints feed the sink above; their spans and log records take the OTLP queues, when exported
    app[SENTRY] = SentryIngest(config.sentry, metrics, transactions=SentryTransactions(
        metrics, privacy_rules, export.traces.queue if export.traces is not None else None),
        logs=SentryLogs(privacy_rules, export.logs.queue if export.logs is not None else None))
    app[POSTHOG] = PosthogSettings(config.posthog)
    app[FLAGS] = Flags(config.flags)
    app[FLAGS].metrics = flag_metrics = FlagMetrics(metrics, app[FLAGS])
    app[RECORDINGS] = Recordings(metrics, privacy_rules)
    app[ANOMALIES] = monitor = AnomalyMonitor(config.alerting, clocks.wall)
    registry.register(AnomalyActiveCollector(monitor))
    app[ADMIN_TOKENS] = AdminTokens(config.api.admin_tokens)
    app[BUSINESS_RATE_LIMITER] = RateLimiter(config.api.rate_limit, clock=clocks.monotonic)
    app[ADMIN_SESSIONS] = AdminSessions(clock=clocks.wall)
    app[SIGN_IN_LIMITER] = RateLimiter(SIGN_IN_ATTEMPTS, clock=clocks.monotonic)
    app[STATUS_HISTORY] = history = ProbeHistory()
    app[UPTIME_CACHE] = UptimeCache()
    build_receiver(app, config, registry, export)
    # observers: who hears of what each ingest path accepted
    pipeline.observers += [releases.observe, monitor.windows.observe, flag_metrics.observe]
    sink.observers.append(releases.observe)
    custom.release_observers.append(releases.seen)          # POST /v1/metrics, StatsD
    runtime.result_observers.append(history.observe)
    build_retention(app, config, clocks.wall)
    return export


def build_receiver(app: web.Application, config: Config, registry: CollectorRegistry, export: OtlpExport) -> None:
    """The OTLP receiver: metric points into OTLP_METRICS, spans and log records into the export's forwarding
    queues (none when the signal has no destination, or no listener runs), span metrics into METRICS."""
    receiver = config.otlp_receiver
    app[OTLP_METRICS] = series = OtlpMetricSeries(max_series=receiver.metrics.max_series,
                                                  stale_after=receiver.metrics.stale_after)
    registry.register(series.stats_collector())
    series.taken = lambda name: app[METRICS].get(name) is not None      # a custom metric's name stays its own
    # rendered on /metrics by api/health.py from its own registry, re-exported under the senders' resources
    export.add_metric_source(lambda: prom_reexport.take(series))
    queues: dict[str, EncodedQueue | None] = {"traces": None, "logs": None}
    for signal, part in (("traces", export.traces), ("logs", export.logs)):
        if receiver.enabled and part is not None:
            part.forward = queues[signal] = EncodedQueue(config.telemetry.otlp.queue_size, part.queue.batch_size)
    app[OTLP_RECEIVER] = ingest = OtlpIngest(receiver, config.events.api_keys, app[METRICS], metric_series=series,
                                             traces=queues["traces"], logs=queues["logs"])
    registry.register(ReceiverStatsCollector(ingest.stats))


def _bindings(app: web.Application) -> list[Binding]:
    """Each reloadable component and the config block it applies (agent/config/reload.py)."""
    return [
        Binding(app[RUNTIME], "", applies=("defaults", "modules", "targets")),
        Binding(app[STATUS_HISTORY], "targets"),
        Binding(app[PIPELINE], "events"),
        Binding(app[ERROR_SINK], "errors"),
        Binding(app[SENTRY], "sentry"),
        Binding(app[POSTHOG], "posthog"),
        Binding(app[FLAGS], "flags"),
        Binding(app[CUSTOM_METRICS], "custom_metrics", applies=("custom_metrics.max_metrics",
                                                                "custom_metrics.series_limit")),
        Binding(app[ANOMALIES], "alerting"),
        Binding(app[ADMIN_TOKENS], "api", applies=("api.admin_tokens",)),
        Binding(app[BUSINESS_RATE_LIMITER], "api", applies=("api.rate_limit",)),
        Binding(app[OTLP_RECEIVER], "", applies=("otlp_receiver.ingest_keys", "otlp_receiver.metrics",
                                                 "otlp_receiver.span_metrics.series_limit",
                                                 "otlp_receiver.span_metrics.max_span_names",
                                                 "otlp_receiver.span_metrics.max_services")),
        *store_bindings(app),
    ]


def _lifetimes(app: web.Application, config: Config, export: OtlpExport, store: Store | None) -> list[CleanupCtx]:
    """Background work in start order; shutdown runs it in reverse. The OTLP export comes first so it
    stops last and flushes the final spans; the store's contexts come after the probes and the
    pipeline's span sweeper, so the store closes before them only once nothing writes to it; the uptime
    cache's refresh is cancelled before the store closes under it."""
    runtime, spans = app[RUNTIME], app[PIPELINE].spans
    if spans is None:
        raise RuntimeError("the event pipeline has no EventSpans (build_components gives it one)")
    return [
        export.cleanup_ctx,
        statsd_ctx(app[CUSTOM_METRICS], config.custom_metrics.statsd),
        # after the export, so they stop before it and what they accepted is flushed
        http_ctx(app[OTLP_RECEIVER], config.otlp_receiver.http, config.otlp_receiver.max_body_bytes),
        grpc_ctx(app[OTLP_RECEIVER], config.otlp_receiver.grpc, config.otlp_receiver.max_body_bytes),
        background("anomaly-evaluation", lambda _: app[ANOMALIES].run()),
        lifetime("probes", lambda _: runtime.start(), lambda _: runtime.stop(STOP_GRACE_SECONDS)),
        # end what is open, before the tracer provider shuts down
        background("event-span-sweeper", lambda _: spans.run_sweeper(SPAN_SWEEP_SECONDS),
                   stop=lambda _: spans.close()),
        *store_lifetimes(app, config, store),
        lifetime("status-uptime", None, lambda _: app[UPTIME_CACHE].close()),
    ]
