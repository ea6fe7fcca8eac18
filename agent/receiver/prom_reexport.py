"""The received metrics exported again over the agent's OTLP exporter (telemetry.otlp), with their own
resources and scopes, as the latest cumulative state of each converted series.

Why the state and not the received points: the state is already bounded (max_series, stale_after) and
taken with the agent's own metrics every `metrics_interval` (agent/otlp/export.py MetricsExport), so a
destination gets at most one point per series per interval whatever rate the applications send at, and
never a queue to overflow; deltas arrive accumulated (as the collector's deltatocumulative processor
makes them). What changes on the way: an exponential histogram is re-exported at scale 0 (the power-of-two
buckets expo_buckets.py converts it to), a summary (which the SDK's data model lacks) as `<name>_count` and
`<name>_sum` monotonic sums and a `<name>` gauge per quantile (the `quantile` attribute), as
agent/otlp/metrics.py exports the agent's own summaries; attributes keep their original keys and types,
their string values cut at MAX_VALUE_CHARS.

`take(series)` runs on the event loop and copies what the loop may change (cheap: tuples of references and
numbers); the `build()` it returns runs in the export's worker thread and makes the SDK objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from agent.receiver.prom_series import ExpoState, HistogramState, OtlpMetricSeries, SummaryState

CUMULATIVE = AggregationTemporality.CUMULATIVE
Build = Callable[[], tuple[list[ResourceMetrics], int]]


def take(series: OtlpMetricSeries) -> Build:
    """Copy the live series' state on the loop; the returned function builds the ResourceMetrics."""
    rows = []
    for s in series.live():
        if s.scope is None or s.origin is None:
            continue
        rows.append((s.scope, s.origin, s.attributes, _copy(s.value), s.start_ns, s.last_ns))
    return lambda: build(rows)


def _copy(value: Any) -> Any:
    if isinstance(value, HistogramState):
        return ("histogram", value.bounds, tuple(value.counts), value.count, value.sum)
    if isinstance(value, ExpoState):
        return ("expo", dict(value.negative), value.zero, dict(value.positive), value.count, value.sum)
    if isinstance(value, SummaryState):
        return ("summary", value.count, value.sum, value.quantiles)
    return value


def build(rows: list[tuple]) -> tuple[list[ResourceMetrics], int]:
    """Rows (scope, origin, attributes, state, start, time) -> ResourceMetrics by resource, scope and metric."""
    now = time.time_ns()
    tree: dict[Any, dict[Any, dict[Any, list]]] = {}
    for scope, origin, attributes, state, start, end in rows:
        tree.setdefault(scope.resource, {}).setdefault(scope, {}).setdefault(origin, []).append(
            (attributes, state, start, end or now))
    out, points = [], 0
    for resource, scopes in tree.items():
        scope_metrics = []
        for scope, metrics in scopes.items():
            converted = [m for origin, items in metrics.items() for m in _metrics(origin, items)]
            points += sum(len(m.data.data_points) for m in converted)
            scope_metrics.append(ScopeMetrics(InstrumentationScope(scope.name, scope.version or None),
                                              converted, ""))
        out.append(ResourceMetrics(Resource(resource.attributes), scope_metrics, ""))
    return out, points


def _metrics(origin: Any, items: list[tuple]) -> list[Metric]:
    name, description, unit = origin.name, origin.description, origin.unit
    if origin.kind == "gauge":
        return [Metric(name, description, unit, Gauge([NumberDataPoint(a, st, t, v) for a, v, st, t in items]))]
    if origin.kind == "sum":
        points = [NumberDataPoint(a, st, t, v) for a, v, st, t in items]
        return [Metric(name, description, unit, Sum(points, CUMULATIVE, origin.monotonic))]
    if origin.kind == "histogram":
        hist = [HistogramDataPoint(a, st, t, v[3], v[4] if v[4] is not None else 0.0, list(v[2]), list(v[1]),
                                   None, None)  # type: ignore[arg-type]  # None: min/max unset (agent/otlp/metrics.py)
                for a, v, st, t in items]
        return [Metric(name, description, unit, Histogram(hist, CUMULATIVE))]
    if origin.kind == "exponential_histogram":
        expo = [_expo_point(a, v, st, t) for a, v, st, t in items]
        return [Metric(name, description, unit, ExponentialHistogram(expo, CUMULATIVE))]
    counts = [NumberDataPoint(a, st, t, v[1]) for a, v, st, t in items]
    sums = [NumberDataPoint(a, st, t, v[2]) for a, v, st, t in items]
    quantiles = [NumberDataPoint({**a, "quantile": q}, st, t, value) for a, v, st, t in items for q, value in v[3]]
    out = [Metric(name + "_count", description, "", Sum(counts, CUMULATIVE, True)),
           Metric(name + "_sum", description, unit, Sum(sums, CUMULATIVE, True))]
    if quantiles:
        out.append(Metric(name, description, unit, Gauge(quantiles)))
    return out


def _expo_point(attributes: dict, state: tuple, start: int, end: int) -> ExponentialHistogramDataPoint:
    _, negative, zero, positive, count, total = state
    return ExponentialHistogramDataPoint(attributes, start, end, count, total if total is not None else 0.0, 0,
                                         zero, _buckets(positive), _buckets(negative), 0,
                                         None, None)  # type: ignore[arg-type]  # min/max unset


def _buckets(counts: dict[int, int]) -> Buckets:
    if not counts:
        return Buckets(0, [])
    low = min(counts)
    return Buckets(low, [counts.get(k, 0) for k in range(low, max(counts) + 1)])
