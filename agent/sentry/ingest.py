"""The running state of the Sentry endpoints: the `sentry:` block (reloadable) and the counters of what
they read: `loom_agent_sentry_items_total{type, outcome}`, what the SDKs report they dropped
(`client_report` items: `loom_agent_sdk_discarded_events_total{reason, category}`) and the SDKs' log
records by level and logger (`log` / `otel_log` items: `loom_agent_sentry_logs_total{level, logger}`); and the two
components that hold the release-health series (`session` / `sessions` items: sessions.py) and the
cron monitors (`check_in` items: crons.py, whose declared monitors and bound follow `sentry:` reloads).

Why a component: the route (agent/api/sentry.py) reads the keys, origins and bound of the running
config, which a reload may change, and counts each item in a family whose labels are closed sets
(an envelope's item type is the client's text: an unknown one is counted as `other`).

Outcomes: `accepted` (an item the agent took: an error event committed, a client report, log or
metric item read; a metric item with at least one metric recorded), `skipped` (a type the agent
does not read yet: counted, the rest of the envelope goes on), `rejected` (an item refused on its own:
past its size limit, past the session limit, an event that does not validate, a payload of the wrong
shape, a metric item none of whose metrics could be recorded).
"""

from __future__ import annotations

from collections.abc import Callable

from agent.metrics.store import Counter, MetricStore
from agent.sentry.config import SentryConfig
from agent.sentry.crons import CronMonitors
from agent.sentry.items import CATEGORIES, LEVELS, LOGGER_SERIES_LIMIT, REASONS
from agent.sentry.logs import SentryLogs
from agent.sentry.sessions import ReleaseHealth
from agent.sentry.sourcemaps import REASONS as SOURCE_MAP_OUTCOMES, SourceMaps
from agent.sentry.transactions import SentryTransactions

# Sentry's item types (Relay's ItemType), each its own label value; anything else is "other"
ITEM_TYPES = ("event", "transaction", "span", "otel_span", "session", "sessions", "check_in", "log", "otel_log",
              "trace_metric", "statsd", "metric_buckets", "client_report", "attachment", "replay_event",
              "replay_recording", "replay_video", "profile", "profile_chunk", "feedback", "user_report",
              "security", "form_data", "raw_security", "nel", "unreal_report")
OTHER = "other"
OUTCOMES = ("accepted", "skipped", "rejected")
ACCEPTED, SKIPPED, REJECTED = OUTCOMES


def item_label(item_type: str) -> str:
    return item_type if item_type in ITEM_TYPES else OTHER


class SentryIngest:
    """The `sentry:` settings of the running agent and the item counter. `config` follows reloads."""

    def __init__(self, config: SentryConfig, metrics: MetricStore, *, transactions: SentryTransactions | None = None,
                 logs: SentryLogs | None = None):
        self.config = config
        self.keys = config.keys()
        # transaction / span / otel_span items -> spans and RED metrics; log records -> OTLP (None: not read)
        self.transactions, self.app_logs = transactions, logs
        self.items: Counter = metrics.counter(
            "loom_agent_sentry_items", "Items of Sentry envelopes (and /store/ events), by item type and outcome.",
            ("type", "outcome"), allow={"type": frozenset((*ITEM_TYPES, OTHER)), "outcome": frozenset(OUTCOMES)})
        self.discarded: Counter = metrics.counter(
            "loom_agent_sdk_discarded_events", "Events the Sentry SDKs report they dropped before sending "
            "(client reports), by Sentry's discard reason and data category.", ("reason", "category"),
            allow={"reason": REASONS | {OTHER}, "category": CATEGORIES | {OTHER}})
        self.logs: Counter = metrics.counter(
            "loom_agent_sentry_logs", "Log records sent by the Sentry SDKs (log and otel_log items), by level "
            "and logger.", ("level", "logger"), allow={"level": frozenset((*LEVELS, OTHER))},
            series_limit=LOGGER_SERIES_LIMIT)
        self.release_health = ReleaseHealth(metrics)
        self.source_maps = SourceMaps(config.source_maps_dir) if config.source_maps_dir else None
        self.source_map_frames: Counter = metrics.counter(
            "loom_agent_sentry_source_map_frames", "Minified JavaScript frames of Sentry events, by how the "
            "release's source maps resolved them (resolved, else why not).", ("outcome",),
            allow={"outcome": frozenset(SOURCE_MAP_OUTCOMES)})
        self.crons = CronMonitors(metrics, dict(config.monitors), config.max_monitors)

    def prepare(self, config: SentryConfig) -> Callable[[], None]:
        """Reloadable: every `sentry:` setting applies from the next request."""
        return lambda: self.reconfigure(config)

    def reconfigure(self, config: SentryConfig) -> None:
        if config.source_maps_dir != self.config.source_maps_dir:      # a new directory: its maps read afresh
            self.source_maps = SourceMaps(config.source_maps_dir) if config.source_maps_dir else None
        self.config, self.keys = config, config.keys()
        self.crons.reconfigure(dict(config.monitors), config.max_monitors)

    def count(self, item_type: str, outcome: str, n: int = 1) -> None:
        self.items.inc((item_label(item_type), outcome), n)
