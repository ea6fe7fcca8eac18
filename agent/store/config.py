"""The `store:` block: which database keeps the events, and how hard to push it.

    store:
      driver: sqlite            # sqlite (default) | postgres | none (no event store)
      path: loom-agent.db       # sqlite: relative to the config file's directory
      dsn: ${PG_DSN}            # postgres: secret (`${ENV}` or dsn_file); LOOM_AGENT_STORE_DSN overrides
      synchronous: full         # sqlite: full (fsync every commit) | normal (WAL, fsync at checkpoint)
      max_size_mb: 0            # sqlite: cap on the database size (0: none); beyond it ingest answers
                                # 503 (StoreFull) until retention frees room: a sidecar bounds its disk
      max_pending_events: 100000   # beyond this, ingest answers 503 (StoreBusy) instead of queueing
      pool_size: 4              # postgres connections
      connect_timeout: 5s       # postgres connect (a write unanswered for twice this long: 503);
                                # sqlite busy timeout (waiting for a lock)
      query_timeout: 10s        # a read (analytics, exports) running longer is abandoned: 503 with
                                # Retry-After, never a hung request (postgres: statement_timeout on the
                                # read connections, and the connection closed 0.5 s later if the server
                                # does not answer; sqlite: the query interrupted)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config.node import Node

DAY = 86400.0
MIN_PERIOD = DAY
MIN_INTERVAL = 60.0
# the retention classes of data (agent/store/retention.py: the tables of each)
CLASSES = ("analytics", "performance", "audit", "security", "recordings")

ENV_DSN = "LOOM_AGENT_STORE_DSN"
DRIVERS = ("sqlite", "postgres", "none")
SYNCHRONOUS = ("full", "normal")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    driver: str = "sqlite"
    path: str = "loom-agent.db"            # absolute once parsed
    dsn: str | None = field(default=None, repr=False)   # may hold a password: never in repr or logs
    synchronous: str = "full"
    max_size_mb: float = 0.0                # 0: unlimited
    max_pending_events: int = 100_000
    pool_size: int = 4
    connect_timeout: float = 5.0
    query_timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.driver != "none"


def parse_store(node: Node, base_dir: str, environ: Mapping[str, str] | None = None) -> StoreConfig:
    """Read `store:`; a relative sqlite path is taken relative to `base_dir` (the config file's directory),
    so the agent finds the same database whatever its working directory."""
    environ = os.environ if environ is None else environ
    defaults = StoreConfig()
    driver = node.str("driver", defaults.driver, choices=DRIVERS)
    path = node.str("path", defaults.path)
    if path is not None and not path.strip():
        node.error("must not be empty", "path")
        path = defaults.path
    errors_before = len(node.errors)
    dsn = node.secret("dsn")
    if environ.get(ENV_DSN):
        dsn = environ[ENV_DSN]
    if driver == "postgres" and not dsn and len(node.errors) == errors_before:
        node.error(f"is required for driver postgres (or set {ENV_DSN})", "dsn")
    if dsn and driver == "postgres" and not dsn.startswith(("postgres://", "postgresql://")):
        node.error("must be a postgresql:// URL", "dsn")
    if driver == "postgres" and node.has("max_size_mb"):
        node.error("applies to driver sqlite only (PostgreSQL: use the server's quotas)", "max_size_mb")
    config = StoreConfig(
        driver=driver,
        path=os.path.normpath(os.path.join(base_dir, os.path.expanduser(path))),
        dsn=dsn or None,
        synchronous=node.str("synchronous", defaults.synchronous, choices=SYNCHRONOUS),
        max_size_mb=node.number("max_size_mb", defaults.max_size_mb, minimum=0),
        max_pending_events=node.int("max_pending_events", defaults.max_pending_events, minimum=1),
        pool_size=node.int("pool_size", defaults.pool_size, minimum=1, maximum=100),
        connect_timeout=node.duration("connect_timeout", defaults.connect_timeout),
        query_timeout=_query_timeout(node, defaults.query_timeout),
    )
    node.finish()
    return config


def _query_timeout(node: Node, default: float) -> float:
    seconds = node.duration("query_timeout", default)
    if seconds < 0.1:
        node.error(f"must be at least 100ms, got {node.data['query_timeout']}", "query_timeout")
        return default
    return seconds


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    analytics_events: float = 90 * DAY
    audit_logs: float = 365 * DAY
    security_events: float = 730 * DAY
    performance_metrics: float = 30 * DAY
    session_recordings: float = 30 * DAY       # posthog-js recordings (agent/store/recordings.py)
    interval: float = 3600.0       # between scheduled clean-ups; 0: no schedule (on demand only)
    batch_size: int = 5000

    def periods(self) -> dict[str, float]:
        """class -> how long its rows are kept, in seconds."""
        return {"analytics": self.analytics_events, "performance": self.performance_metrics,
                "audit": self.audit_logs, "security": self.security_events, "recordings": self.session_recordings}


_PERIOD_KEYS = ("analytics_events", "audit_logs", "security_events", "performance_metrics", "session_recordings")


def parse_retention(node: Node) -> RetentionConfig:
    base = RetentionConfig()
    periods = {key: _period(node, key, getattr(base, key)) for key in _PERIOD_KEYS}
    config = RetentionConfig(**periods, interval=_interval(node, base.interval),
                             batch_size=node.int("batch_size", base.batch_size, minimum=1, maximum=1_000_000))
    node.finish()
    return config


def _period(node: Node, key: str, default: float) -> float:
    seconds = node.duration(key, default)
    if seconds < MIN_PERIOD:
        node.error(f"must be at least 1d, got {node.data[key]}", key)
        return default
    return seconds


def _interval(node: Node, default: float) -> float:
    value = node.raw("interval")
    if value is not False and value in (0, "0", "0s"):
        return 0.0
    seconds = node.duration("interval", default)
    if seconds < MIN_INTERVAL:
        node.error(f"must be at least 1m, or 0 to disable the scheduled clean-up, got {node.data['interval']}",
                   "interval")
        return default
    return seconds
