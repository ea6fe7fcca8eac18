"""The `events:` block: ingestion limits, API keys, span timeouts and custom mapping rules."""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config.node import Node

ENV_INGEST_KEYS = "LOOM_AGENT_INGEST_API_KEYS"
_METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# properties that identify a person: never a label, whatever a mapping rule says
IDENTIFYING = frozenset({"user_id", "anonymous_id", "session_id", "distinct_id", "email", "ip", "phone",
                         "name", "event_id", "connection_id", "notification_id", "resource_id"})
RESERVED_LABELS = frozenset({"le", "quantile", "job", "instance"})
RESERVED_PREFIXES = ("probe_", "loom_probe", "loom_agent_", "process_", "python_")
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ACTIONS = ("count", "observe", "drop")


@dataclass(frozen=True, slots=True)
class MappingRule:
    """statsd_exporter-style: events whose name matches `match` are counted, observed or dropped."""

    match: str
    action: str
    name: str | None = None
    help: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)      # label name -> property name
    value: str | None = None                                      # property observed (action observe)
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    series_limit: int | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, event_name: str) -> bool:
        return self.regex is not None and self.regex.match(event_name) is not None


@dataclass(frozen=True, slots=True)
class EventsConfig:
    api_keys: tuple[str, ...] = ()
    max_batch: int = 1000
    max_body_bytes: int = 1024 * 1024
    max_future_skew: float = 300.0
    max_past_age: float = 30 * 86400.0
    strict: bool = False
    series_limit: int = 2000
    series_limits: Mapping[str, int] = field(default_factory=dict)   # per metric family
    custom_event_limit: int = 500      # distinct custom event names counted by name; more: "other"
    span_idle_timeout: float = 300.0
    max_open_spans: int = 10000
    mappings: tuple[MappingRule, ...] = ()


def parse_events(node: Node, environ: Mapping[str, str] = os.environ) -> EventsConfig:
    base = EventsConfig()
    keys = node.secret_list("api_keys", ENV_INGEST_KEYS, environ)
    spans = node.child("spans")
    config = EventsConfig(
        api_keys=keys,
        max_batch=node.int("max_batch", base.max_batch, minimum=1, maximum=100_000),
        max_body_bytes=node.int("max_body_bytes", base.max_body_bytes, minimum=1024, maximum=256 * 1024 * 1024),
        max_future_skew=node.duration("max_future_skew", base.max_future_skew),
        max_past_age=node.duration("max_past_age", base.max_past_age),
        strict=node.bool("strict", base.strict),
        series_limit=node.int("series_limit", base.series_limit, minimum=1, maximum=1_000_000),
        series_limits=_series_limits(node),
        custom_event_limit=node.int("custom_event_limit", base.custom_event_limit, minimum=0, maximum=100_000),
        span_idle_timeout=spans.duration("idle_timeout", base.span_idle_timeout),
        max_open_spans=spans.int("max_open", base.max_open_spans, minimum=1, maximum=1_000_000),
        mappings=tuple(rule for i, item in node.items("mappings")
                       if (rule := _parse_rule(Node(item, f"{node.path}.mappings[{i}]", node.errors))) is not None),
    )
    spans.finish()
    node.finish()
    return config


def _series_limits(node: Node) -> dict[str, int]:
    limits = {}
    child = node.child("series_limits")
    for name in child.data:
        value = child.int(str(name), minimum=1, maximum=1_000_000)
        if value is not None:
            limits[str(name)] = value
    return limits


def _parse_rule(node: Node) -> MappingRule | None:
    match = node.str("match", required=True)
    action = node.str("action", "count", choices=ACTIONS)
    name = node.str("name", required=action != "drop")
    if name is not None and not _METRIC_RE.match(name):
        node.error("is not a valid Prometheus metric name", "name")
    if name is not None and name.startswith(RESERVED_PREFIXES):
        node.error(f"must not start with {', '.join(RESERVED_PREFIXES)}: those names belong to the agent's own "
                   "probe and self metrics", "name")
    if name is not None and name.endswith("_total") and action == "count":
        node.error("leave out _total: the exposition adds it to counters", "name")
    labels = node.str_map("labels")
    for label, prop in labels.items():
        if not _LABEL_RE.match(label) or label.startswith("__") or label in RESERVED_LABELS:
            node.error("is not a usable label name", f"labels.{label}")
        if prop in IDENTIFYING or label in IDENTIFYING:
            node.error(f"identifies a person ({prop}); user identifiers are never labels", f"labels.{label}")
    value = node.str("value")
    if action == "observe" and value is None:
        node.error("is required when action is observe", "value")
    if action != "observe" and value is not None:
        node.error("is only used when action is observe", "value")
    buckets = _buckets(node)
    rule = MappingRule(match=match or "", action=action or "count", name=name, help=node.str("help", ""),
                       labels=labels, value=value, buckets=buckets,
                       series_limit=node.int("series_limit", minimum=1, maximum=1_000_000),
                       regex=re.compile(fnmatch.translate(match)) if match else None)
    node.finish()
    return rule


def _buckets(node: Node) -> tuple[float, ...]:
    raw = node.raw("buckets")
    if raw is None:
        return DEFAULT_BUCKETS
    if not isinstance(raw, list) or not raw or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                       for b in raw):
        node.error("must be a non-empty list of numbers", "buckets")
        return DEFAULT_BUCKETS
    if not all(math.isfinite(b) for b in raw):
        node.error("must be finite numbers (the +Inf bucket is always added)", "buckets")
        return DEFAULT_BUCKETS
    if list(raw) != sorted(set(raw)):
        node.error("must be strictly increasing", "buckets")
        return DEFAULT_BUCKETS
    return tuple(float(b) for b in raw)
