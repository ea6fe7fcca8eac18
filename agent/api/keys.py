"""Every key of the aiohttp application's state, in one place, named for what it holds.

The composition root (agent/app/root.py) sets them; route modules read them. The types are imported
for type checkers only, so this module imports nothing of the agent at run time and anything may
import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from agent.api.admin_sessions import AdminSessions
    from agent.api.auth import AdminTokens
    from agent.api.ratelimit import RateLimiter
    from agent.collectors.runtime import ProbeRuntime
    from agent.config.reload import Reloader
    from agent.custom_metrics.registry import CustomMetrics
    from agent.error_tracking.sink import ErrorSink
    from agent.events.opt_outs import OptOuts
    from agent.events.pipeline import EventPipeline
    from agent.events.privacy import Privacy
    from agent.flags.evaluate import Flags
    from agent.metrics.releases import ReleaseTracker
    from agent.metrics.store import MetricStore
    from agent.posthog.config import PosthogSettings
    from agent.receiver.ingest import OtlpIngest
    from agent.receiver.prom_series import OtlpMetricSeries
    from agent.recordings.ingest import Recordings
    from agent.rules.anomaly_metrics import AnomalyMonitor
    from agent.sentry.ingest import SentryIngest
    from agent.status.history import ProbeHistory
    from agent.status.uptime import UptimeCache
    from agent.store.base import StoreSlot
    from agent.store.retention import RetentionSchedule

# the running configuration and its reload (SIGHUP, POST /-/reload)
RELOADER: web.AppKey[Reloader] = web.AppKey("reloader")
# probes: targets, collectors, scheduler, probe metrics
RUNTIME: web.AppKey[ProbeRuntime] = web.AppKey("runtime")
# the prometheus_client registry of the agent's own metrics (rendered on /metrics beside METRICS)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")
# the event-derived metrics (loom_*), rendered on /metrics and exported over OTLP
METRICS: web.AppKey[MetricStore] = web.AppKey("metrics")
# ingest of product events: validate -> privacy -> store -> metrics, spans, observers
PIPELINE: web.AppKey[EventPipeline] = web.AppKey("pipeline")
# the privacy rules every datum passes through, and the opted-out ids
PRIVACY: web.AppKey[Privacy] = web.AppKey("privacy")
# the durable event store: its slot holds it once it is open (None when store.driver is none)
EVENT_STORE: web.AppKey[StoreSlot] = web.AppKey("event_store")
# the running opt-out set and its refresh from the store
OPT_OUTS: web.AppKey[OptOuts] = web.AppKey("opt_outs")
ERROR_SINK: web.AppKey[ErrorSink] = web.AppKey("error_sink")
# the Sentry endpoints' running `sentry:` settings (keys, origins) and their item counter
SENTRY: web.AppKey[SentryIngest] = web.AppKey("sentry")
# the PostHog endpoints' running `posthog:` settings (origins, remote config, skew correction)
POSTHOG: web.AppKey[PosthogSettings] = web.AppKey("posthog")
# the running feature flags of the `flags:` block (PostHog's /flags, /decide, local evaluation)
FLAGS: web.AppKey[Flags] = web.AppKey("flags")
# posthog-js session recordings (POST /s/): privacy, bounds, the loom_recordings_* counters
RECORDINGS: web.AppKey[Recordings] = web.AppKey("recordings")
CUSTOM_METRICS: web.AppKey[CustomMetrics] = web.AppKey("custom_metrics")
RELEASES: web.AppKey[ReleaseTracker] = web.AppKey("releases")
ANOMALIES: web.AppKey[AnomalyMonitor] = web.AppKey("anomalies")
ADMIN_TOKENS: web.AppKey[AdminTokens] = web.AppKey("admin_tokens")
BUSINESS_RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("business_metrics_rate_limiter")
# the analytics page's signed-in browser sessions, and its sign-in attempts per address (agent/api/analytics_page.py)
ADMIN_SESSIONS: web.AppKey[AdminSessions] = web.AppKey("admin_sessions")
SIGN_IN_LIMITER: web.AppKey[RateLimiter] = web.AppKey("sign_in_rate_limiter")
STATUS_HISTORY: web.AppKey[ProbeHistory] = web.AppKey("status_history")
UPTIME_CACHE: web.AppKey[UptimeCache] = web.AppKey("status_uptime")
# the OTLP receiver (agent/receiver): what its listeners do with a request, its counters and span metrics
OTLP_RECEIVER: web.AppKey[OtlpIngest] = web.AppKey("otlp_receiver")
# received OTLP metric points as Prometheus series (agent/receiver/prom_series.py), fed by OTLP_RECEIVER
OTLP_METRICS: web.AppKey[OtlpMetricSeries] = web.AppKey("otlp_metrics")
# the retention clean-up schedule (given the store once it is open)
RETENTION: web.AppKey[RetentionSchedule] = web.AppKey("retention")
