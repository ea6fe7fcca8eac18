"""Metric snapshots -> the OpenTelemetry SDK's export data model (cumulative), for OTLPMetricExporter.

No SDK instrument is touched per event: the event MetricStore and the prometheus_client registry
keep counting as they do for /metrics, and every export interval this module reads both once.
`take_snapshot()` runs on the event loop (it copies series values, so the loop may keep mutating
the store); `to_metrics_data()` runs in a worker thread and builds the SDK objects. Both sources
produce the numbers Prometheus scrapes, so OTLP and /metrics agree by construction.

Mapping: counter -> monotonic cumulative Sum (named without `_total`, as OTLP names are);
gauge -> Gauge; histogram -> Histogram with explicit bounds; info, stateset and unknown -> Gauge
per sample name (`loom_agent_build_info` = 1); a summary's `_count`/`_sum` -> monotonic Sums and
its quantiles -> Gauge. Every data point starts at the agent's start (`start_ns`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.metrics_core import Metric as PromMetric

from agent import __version__
from agent.metrics.store import Histogram as StoreHistogram, MetricStore

CUMULATIVE = AggregationTemporality.CUMULATIVE
EVENTS_SCOPE = InstrumentationScope("loom-agent.events", __version__)
AGENT_SCOPE = InstrumentationScope("loom-agent", __version__)
OVERFLOW_NAME = "loom_agent_label_overflow"
OVERFLOW_HELP = "Label values folded to `other` by an allow-list or a series limit, by metric and label."


class MetricSource(Protocol):
    """Where prometheus_client families are collected from: a CollectorRegistry, or a collector."""

    def collect(self) -> Iterable[PromMetric]: ...


@dataclass(frozen=True, slots=True)
class FamilySnapshot:
    """One MetricStore family at one instant: a counter's or gauge's values in `series`, a histogram's
    in `histograms` (copies of the live lists: bucket counts..., +Inf bucket, sum)."""

    name: str
    help: str
    unit: str
    kind: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]
    series: list[tuple[tuple[str, ...], float]]
    histograms: list[tuple[tuple[str, ...], list[float]]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    time_ns: int
    store: list[FamilySnapshot]
    overflow: list[tuple[tuple[str, str], int]]
    registry: list[PromMetric]


def take_snapshot(store: MetricStore | None, registry: MetricSource | None) -> Snapshot:
    """Copy what the loop may mutate; cheap enough to run on the event loop."""
    families: list[FamilySnapshot] = []
    overflow: list[tuple[tuple[str, str], int]] = []
    if store is not None:
        for family in store.families():
            if isinstance(family, StoreHistogram):
                series, histograms = [], [(key, list(value)) for key, value in family.series.items()]
                buckets = family.buckets
            else:
                series, histograms, buckets = list(family.series.items()), [], ()
            families.append(FamilySnapshot(family.name, family.help, family.unit, family.kind, family.labels,
                                           buckets, series, histograms))
        overflow = list(store.overflow.items())
    collected = list(registry.collect()) if registry is not None else []
    return Snapshot(time.time_ns(), families, overflow, collected)


def to_metrics_data(snapshot: Snapshot, resource: Resource, start_ns: int) -> tuple[MetricsData, int]:
    """The snapshot as one ResourceMetrics, and its number of data points.

    A family both in the store and in the registry (a store exposed through a registry collector)
    is exported once, from the store.
    """
    now = snapshot.time_ns
    events = [store_metric(f, start_ns, now) for f in snapshot.store if f.series or f.histograms]
    if snapshot.overflow:
        events.append(overflow_metric(snapshot.overflow, start_ns, now))
    in_store = {f.name for f in snapshot.store} | ({OVERFLOW_NAME} if snapshot.overflow else set())
    agent = [m for family in snapshot.registry if family.name not in in_store
             for m in registry_metrics(family, start_ns, now)]
    scopes = [ScopeMetrics(scope, metrics, "") for scope, metrics in ((EVENTS_SCOPE, events), (AGENT_SCOPE, agent))
              if metrics]
    points = sum(len(m.data.data_points) for s in scopes for m in s.metrics)
    return MetricsData([ResourceMetrics(resource, scopes, "")]), points


def store_metric(family: FamilySnapshot, start_ns: int, now: int) -> Metric:
    labels = family.labels
    if family.kind == "histogram":
        bounds = family.buckets
        # the store keeps bucket counts as ints in a list[float] (whose last item is the float sum)
        histogram = [_histogram_point(dict(zip(labels, key)), start_ns, now, int(sum(v[:-1])), v[-1],
                                      [int(c) for c in v[:-1]], bounds) for key, v in family.histograms]
        return Metric(family.name, family.help, family.unit, Histogram(histogram, CUMULATIVE))
    points = [NumberDataPoint(dict(zip(labels, key)), start_ns, now, float(v)) for key, v in family.series]
    if family.kind == "counter":
        return Metric(family.name, family.help, family.unit, Sum(points, CUMULATIVE, True))
    return Metric(family.name, family.help, family.unit, Gauge(points))


def overflow_metric(overflow: Iterable[tuple[tuple[str, str], int]], start_ns: int, now: int) -> Metric:
    points = [NumberDataPoint({"metric": metric, "label": label}, start_ns, now, float(count))
              for (metric, label), count in overflow]
    return Metric(OVERFLOW_NAME, OVERFLOW_HELP, "", Sum(points, CUMULATIVE, True))


def registry_metrics(family: PromMetric, start_ns: int, now: int) -> list[Metric]:
    """One prometheus_client family (as collected) -> zero or more OTLP metrics."""
    if family.type == "counter":
        points = _number_points(family.samples, family.name + "_total", start_ns, now)
        return [Metric(family.name, family.documentation, family.unit, Sum(points, CUMULATIVE, True))] if points else []
    if family.type == "histogram":
        histogram = _histogram_points(family, start_ns, now)
        return ([Metric(family.name, family.documentation, family.unit, Histogram(histogram, CUMULATIVE))]
                if histogram else [])
    if family.type == "summary":
        return _summary_metrics(family, start_ns, now)
    return _gauges_by_sample_name(family, family.samples, start_ns, now)


def _number_points(samples: Sequence, name: str, start_ns: int, now: int) -> list[NumberDataPoint]:
    return [NumberDataPoint(dict(s.labels), start_ns, now, float(s.value)) for s in samples if s.name == name]


def _gauges_by_sample_name(family: PromMetric, samples: Sequence, start_ns: int, now: int) -> list[Metric]:
    by_name: dict[str, list[NumberDataPoint]] = {}
    for s in samples:
        if s.name.endswith("_created"):
            continue
        by_name.setdefault(s.name, []).append(NumberDataPoint(dict(s.labels), start_ns, now, float(s.value)))
    return [Metric(name, family.documentation, family.unit, Gauge(points)) for name, points in by_name.items()]


def _summary_metrics(family: PromMetric, start_ns: int, now: int) -> list[Metric]:
    out = []
    for suffix in ("_count", "_sum"):
        points = _number_points(family.samples, family.name + suffix, start_ns, now)
        if points:
            out.append(Metric(family.name + suffix, family.documentation, family.unit, Sum(points, CUMULATIVE, True)))
    quantiles = [s for s in family.samples if s.name == family.name]
    return out + _gauges_by_sample_name(family, quantiles, start_ns, now)


def _histogram_points(family: PromMetric, start_ns: int, now: int) -> list[HistogramDataPoint]:
    """Cumulative `_bucket{le}` samples -> per-bucket counts; `_sum` completes each series."""
    buckets: dict[tuple, list[tuple[float, float]]] = {}
    sums: dict[tuple, float] = {}
    attrs: dict[tuple, dict[str, str]] = {}
    for s in family.samples:
        if s.name == family.name + "_bucket":
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            key = tuple(sorted(labels.items()))
            attrs.setdefault(key, labels)
            buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        elif s.name == family.name + "_sum":
            sums[tuple(sorted(s.labels.items()))] = s.value
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        counts, previous = [], 0.0
        for _, running in cumulative:
            counts.append(int(running - previous))
            previous = running
        bounds = [le for le, _ in cumulative if le != float("inf")]
        if len(bounds) == len(counts):       # no +Inf bucket: the last count is the total
            counts.append(0)
        points.append(_histogram_point(attrs[key], start_ns, now, int(previous), float(sums.get(key, 0.0)),
                                       counts, bounds))
    return points


def _histogram_point(attributes: dict[str, str], start_ns: int, now: int, count: int, total: float,
                     bucket_counts: Sequence[int], bounds: Sequence[float]) -> HistogramDataPoint:
    """A data point without min and max (neither store keeps them): None leaves OTLP's optional fields unset."""
    return HistogramDataPoint(attributes, start_ns, now, count, total, bucket_counts, bounds,
                              # opentelemetry-sdk declares min and max `float`, but its OTLP encoder hands them
                              # to the protobuf constructor, where None means "not set" (optional double)
                              None, None)  # type: ignore[arg-type]
