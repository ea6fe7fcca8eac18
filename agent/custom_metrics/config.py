"""The `custom_metrics:` block: the namespace of business metrics, their limits, the buckets of
distributions, and the StatsD listener (off by default: a UDP port nobody asked for is a port
anyone on the host can write metrics to)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.collectors.base import split_host_port
from agent.config.node import Node

# Prometheus' client libraries' default buckets (seconds), as statsd_exporter uses them
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEFAULT_STATSD_LISTEN = "127.0.0.1:8125"
_NAMESPACE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]*$")
# prefixes of the agent's own metrics: a namespace starting like them would mix custom series in
_AGENT_PREFIXES = ("loom_agent_", "loom_probe", "probe_", "process_", "python_", "scrape_")


@dataclass(frozen=True, slots=True)
class StatsdConfig:
    enabled: bool = False
    listen: tuple[str, int] = ("127.0.0.1", 8125)     # port 0: any free port (tests)


@dataclass(frozen=True, slots=True)
class CustomMetricsConfig:
    namespace: str = "loom_app"          # "": names as sent (statsd_exporter's behaviour)
    max_metrics: int = 1000              # distinct metric names; more are refused
    series_limit: int = 2000             # per metric; past it new tag values fold to "other"
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    metric_buckets: Mapping[str, tuple[float, ...]] = field(default_factory=dict)   # by final name
    statsd: StatsdConfig = StatsdConfig()

    def buckets_for(self, name: str) -> tuple[float, ...]:
        return self.metric_buckets.get(name, self.buckets)


def parse_custom_metrics(node: Node) -> CustomMetricsConfig:
    base = CustomMetricsConfig()
    statsd = node.child("statsd")
    config = CustomMetricsConfig(
        namespace=_namespace(node, base.namespace),
        max_metrics=node.int("max_metrics", base.max_metrics, minimum=1, maximum=100_000),
        series_limit=node.int("series_limit", base.series_limit, minimum=1, maximum=1_000_000),
        buckets=parse_buckets(node, "buckets", base.buckets),
        metric_buckets=_metric_buckets(node.child("metric_buckets")),
        statsd=StatsdConfig(enabled=statsd.bool("enabled", False), listen=_listen(statsd)),
    )
    statsd.finish()
    node.finish()
    return config


def _namespace(node: Node, default: str) -> str:
    value = node.str("namespace", default)
    if value is None or value == "":
        return "" if value == "" else default
    if not _NAMESPACE.match(value):
        node.error("must be lowercase letters, digits and single underscores, starting with a letter "
                   "(e.g. loom_app), or \"\" for none", "namespace")
        return default
    if value == "loom" or (value + "_").startswith(_AGENT_PREFIXES):
        node.error(f"{value!r} would mix custom metrics into the agent's own (loom_agent_*, probe_*, ...); "
                   "choose a namespace of the application's", "namespace")
        return default
    return value


def _listen(node: Node) -> tuple[str, int]:
    text = node.str("listen", DEFAULT_STATSD_LISTEN)
    try:
        if text.endswith(":0"):                        # any free port; split_host_port wants 1-65535
            return split_host_port(text[:-2] + ":1")[0], 0
        return split_host_port(text)
    except ValueError as exc:
        node.error(str(exc), "listen")
        return split_host_port(DEFAULT_STATSD_LISTEN)


def parse_buckets(node: Node, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A non-empty, strictly increasing list of finite numbers (the +Inf bucket is implied)."""
    raw = node.raw(key)
    if raw is None:
        return default
    if not isinstance(raw, list) or not raw or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                       for b in raw):
        node.error("must be a non-empty list of numbers", key)
        return default
    if not all(math.isfinite(b) for b in raw):
        node.error("must be finite numbers (the +Inf bucket is always added)", key)
        return default
    if any(b >= c for b, c in itertools.pairwise(raw)):
        node.error("must be strictly increasing", key)
        return default
    return tuple(float(b) for b in raw)


def _metric_buckets(node: Node) -> dict[str, tuple[float, ...]]:
    out = {}
    for name in node.data:
        if not isinstance(name, str) or not _METRIC.match(name):
            node.error("is not a metric name: use the name as /metrics shows it (e.g. loom_app_upload_size_bytes)",
                       str(name))
            node.raw(name)
            continue
        out[name] = parse_buckets(node, name, DEFAULT_BUCKETS)
    return out
