"""The `otlp_receiver:` block: the OTLP/HTTP and OTLP/gRPC listeners the application's SDKs send to.

Absent block: no listener (an old config keeps its behaviour); the shipped config.yaml enables both on
127.0.0.1:4318 (HTTP) and 127.0.0.1:4317 (gRPC), the ports an OpenTelemetry SDK sends to by default.

Ingest keys: with no `ingest_keys` key the receiver asks for the same keys as every ingest endpoint
(`events.api_keys`, LOOM_AGENT_INGEST_API_KEYS), so a configured agent is not left open on a second
port; a list gives the receiver its own keys (or LOOM_AGENT_OTLP_INGEST_KEYS); `ingest_keys: []` asks for
none (an SDK with its default endpoint and no headers on a loopback listener). Keys come as
`Authorization: Bearer <key>` (the collector's bearertokenauth; OTEL_EXPORTER_OTLP_HEADERS=
"Authorization=Bearer%20<key>") or X-Loom-Api-Key, on gRPC as the same metadata.

Reload: the keys, span-metric limits and the metric series' `stale_after` / `max_series` apply on
SIGHUP; the listeners (enabled, listen), the body bound, the buckets and `span_metrics.enabled` take
effect on restart (agent/config/reload.py RESTART_ONLY).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.config.node import Node

ENV_INGEST_KEYS = "LOOM_AGENT_OTLP_INGEST_KEYS"
DEFAULT_HTTP_LISTEN = "127.0.0.1:4318"
DEFAULT_GRPC_LISTEN = "127.0.0.1:4317"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024        # the collector's default max_request_body_size / gRPC max message
MAX_BODY_BYTES_LIMIT = 64 * 1024 * 1024
# the spanmetrics connector's default explicit buckets (2ms ... 15s), in seconds
DEFAULT_SPAN_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0)


class ListenError(OSError):
    """A receiver listener that cannot bind, already logged naming its key: the agent exits 1 without
    blaming its own `listen` address."""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    enabled: bool = False
    listen: tuple[str, int] = ("127.0.0.1", 0)


@dataclass(frozen=True, slots=True)
class ReceivedMetricsConfig:
    """What H2's OtlpMetricSeries (agent/receiver/prom_series.py) is built with."""
    stale_after: float = 300.0         # a series not sent for this long leaves /metrics
    max_series: int = 10_000           # converted series held at most; new ones past it are refused


@dataclass(frozen=True, slots=True)
class SpanMetricsConfig:
    enabled: bool = True
    buckets: tuple[float, ...] = DEFAULT_SPAN_BUCKETS          # seconds; +Inf implied
    series_limit: int = 5_000          # series of each loom_span_* family (service x span name x kind x status)
    max_span_names: int = 500          # distinct span names per service; later ones count as span_name="other"
    max_services: int = 200            # distinct service names; later ones count as service_name="other"


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    http: ListenerConfig = ListenerConfig(listen=("127.0.0.1", 4318))
    grpc: ListenerConfig = ListenerConfig(listen=("127.0.0.1", 4317))
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES      # decompressed; HTTP 413 / gRPC RESOURCE_EXHAUSTED beyond
    ingest_keys: tuple[str, ...] | None = None        # None: events.api_keys apply
    metrics: ReceivedMetricsConfig = ReceivedMetricsConfig()
    span_metrics: SpanMetricsConfig = field(default_factory=SpanMetricsConfig)

    @property
    def enabled(self) -> bool:
        return self.http.enabled or self.grpc.enabled

    def keys(self, ingest_keys: tuple[str, ...]) -> tuple[str, ...]:
        """The keys in force, given the events block's `ingest_keys` (events.api_keys)."""
        return ingest_keys if self.ingest_keys is None else self.ingest_keys


def parse_receiver(node: Node, environ: Mapping[str, str] = os.environ,
                   main_listen: tuple[str, int] | None = None, export_endpoint: str | None = None) -> ReceiverConfig:
    base = ReceiverConfig()
    keys: tuple[str, ...] | None = None
    if node.has("ingest_keys") or environ.get(ENV_INGEST_KEYS):
        keys = node.secret_list("ingest_keys", ENV_INGEST_KEYS, environ)
    config = ReceiverConfig(
        http=_listener(node.child("http"), DEFAULT_HTTP_LISTEN),
        grpc=_listener(node.child("grpc"), DEFAULT_GRPC_LISTEN),
        max_body_bytes=node.int("max_body_bytes", base.max_body_bytes, minimum=1024, maximum=MAX_BODY_BYTES_LIMIT),
        ingest_keys=keys,
        metrics=_metrics(node.child("metrics")),
        span_metrics=_span_metrics(node.child("span_metrics")),
    )
    _distinct_ports(node, config, main_listen)
    _not_itself(node, config, export_endpoint, environ)
    node.finish()
    return config


def _listener(node: Node, default: str) -> ListenerConfig:
    config = ListenerConfig(enabled=node.bool("enabled", False), listen=_address(node, default))
    node.finish()
    return config


def _address(node: Node, default: str) -> tuple[str, int]:
    """host:port, [v6]:port; port 0 binds any free port (tests)."""
    text = node.str("listen", default)
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        node.error(f"invalid address {text!r}: expected host:port", "listen")
        host, _, port = default.rpartition(":")
    return host, int(port)


def _distinct_ports(node: Node, config: ReceiverConfig, main_listen: tuple[str, int] | None) -> None:
    taken = {"listen": main_listen} if main_listen is not None else {}
    for name, listener in (("http", config.http), ("grpc", config.grpc)):
        if not listener.enabled or listener.listen[1] == 0:
            continue
        for other, address in taken.items():
            if address is not None and address[1] == listener.listen[1] and \
                    (address[0] == listener.listen[0] or "0.0.0.0" in (address[0], listener.listen[0])):
                node.error(f"{listener.listen[0]}:{listener.listen[1]} is already the {other} address; "
                           "each listener needs its own port", f"{name}.listen")
        taken[f"otlp_receiver.{name}.listen"] = listener.listen


_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                       "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")


def _not_itself(node: Node, config: ReceiverConfig, endpoint: str | None, environ: Mapping[str, str]) -> None:
    """The agent's own OTLP destination must not be its receiver: every forwarded span would come back and
    be forwarded again, without end."""
    candidates = [("telemetry.otlp.endpoint", endpoint)] if endpoint else \
        [(name, environ.get(name)) for name in _ENDPOINT_VARIABLES]
    for where, url in candidates:
        if not url:
            continue
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            host, port = parts.hostname or "", parts.port
        except ValueError:
            continue
        for name, listener in (("http", config.http), ("grpc", config.grpc)):
            lhost, lport = listener.listen
            same_host = host == lhost or (host in _LOOPBACK and lhost in _LOOPBACK)
            if listener.enabled and lport and port == lport and same_host:
                node.error(f"is where {where} ({url}) sends the agent's exports: the agent would forward what it "
                           "receives to itself, without end; point telemetry.otlp at a collector", f"{name}.listen")


def _metrics(node: Node) -> ReceivedMetricsConfig:
    base = ReceivedMetricsConfig()
    config = ReceivedMetricsConfig(stale_after=node.duration("stale_after", base.stale_after),
                                   max_series=node.int("max_series", base.max_series, minimum=1, maximum=1_000_000))
    node.finish()
    return config


def _span_metrics(node: Node) -> SpanMetricsConfig:
    base = SpanMetricsConfig()
    config = SpanMetricsConfig(
        enabled=node.bool("enabled", base.enabled),
        buckets=_buckets(node, "buckets", base.buckets),
        series_limit=node.int("series_limit", base.series_limit, minimum=1, maximum=1_000_000),
        max_span_names=node.int("max_span_names", base.max_span_names, minimum=1, maximum=100_000),
        max_services=node.int("max_services", base.max_services, minimum=1, maximum=100_000),
    )
    node.finish()
    return config


def _buckets(node: Node, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """Seconds: a non-empty, strictly increasing list of finite positive numbers (+Inf implied)."""
    raw = node.raw(key)
    if raw is None:
        return default
    if not isinstance(raw, list) or not raw or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                       for b in raw):
        node.error("must be a non-empty list of numbers (seconds)", key)
        return default
    if not all(math.isfinite(b) and b > 0 for b in raw):
        node.error("must be finite numbers of seconds above 0 (the +Inf bucket is always added)", key)
        return default
    if any(b >= c for b, c in itertools.pairwise(raw)):
        node.error("must be strictly increasing", key)
        return default
    return tuple(float(b) for b in raw)
