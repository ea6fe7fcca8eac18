"""OTLP metric points -> Prometheus series on /metrics, by the OpenTelemetry "Prometheus and OpenMetrics
Compatibility" spec (names: prom_names.py; exponential histograms: expo_buckets.py).

What each OTLP point becomes:
- Sum, monotonic -> counter (`_total`); Sum, not monotonic -> gauge; Gauge -> gauge. A delta sum is
  accumulated into a cumulative one from its series' first start time.
- Histogram -> `_bucket{le}` (cumulative), `_count`, `_sum` (neither when the point has no sum or the
  histogram has negative buckets: OpenMetrics allows no `_count` without `_sum` and no `_sum` with negative
  buckets, as prometheus_client writes them; the `+Inf` bucket is the count);
  ExponentialHistogram -> the same, with buckets at powers of two (expo_buckets.py says how and the error);
  Summary -> `{quantile}`, `_count`, `_sum`.
- Labels: the point's attributes (names by prom_names.label_name; two attributes that map to one name are
  joined with `;` in the order of their original keys, as the spec says; a value is cut at
  MAX_VALUE_CHARS characters, arrays and maps as JSON), `job` = `service.namespace/service.name`,
  `instance` = `service.instance.id`, `otel_scope_name` / `otel_scope_version`. The other resource
  attributes (at most MAX_INFO_LABELS) are the labels of `target_info` (value 1), one per resource.
  No `_created` sample: Prometheus reads it only with an experimental flag, and in the text format it
  would be one more series per counter; the start time is kept for the OTLP re-export instead.

Refused, counted in `rejected` by reason (REASONS), never raised: a series past `max_series` (the series
already there keep updating), a name that arrives as another type than it is (a counter, then a gauge),
a point older than its series' last (a cumulative point, or a delta that ends before or overlaps the last
accepted one: never counted twice), invalid points (unspecified temporality, negative or non-finite
counter values, bucket counts that do not match the bounds or the count, a bad scale, an empty name).

Staleness: a series not updated for `stale_after` seconds disappears. Every update moves its series to
the end of one insertion-ordered dict, so the stale ones are always at its front: a sweep (each consume and
each scrape) pops from the front until it reaches a fresh one, O(expired), never O(all series).

Cost (bench/otlp.py: 1,000-point requests over 1,000 series; µs per point in-process, quiet core): the
series lookup keys a per-family dict by the point's attributes as bytes -- a number point serialised once
and sliced past its 9-byte times and value (number_key: 1.0 µs; a KeyValue serialised at a time was 2.9 µs
for 4 attributes), a histogram point read from its own bytes with its packed counts and bounds
(histogram_wire.py: ~4 µs; ~10 µs through protobuf's objects) -- then the value update and the move in the
age order: ~1.7 µs a gauge point, ~2.3 a counter point, ~5 a 15-bound histogram point, ~4.5 for the bench's
mix, plus 0.5-0.8 µs of ParseFromString. Label names, sanitising, collisions and the guard run only for a
new key; names are computed once per (name, unit, type), a resource's labels once per resource. /metrics:
prom_text.py with each series' line prefixes cached (13 ms for those 1,000 series, 300 of them histograms).

Everything here runs on the event loop (consume, collect, the re-export snapshot): no locks.
"""

from __future__ import annotations

import json
import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest as text_of_registry
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_of_registry
from prometheus_client.samples import Sample

from agent.receiver import histogram_wire, prom_text
from agent.receiver.expo_buckets import MAX_SPAN, ExpoError, explicit, merge, scale0
from agent.receiver.prom_names import label_name, metric_name, unit_suffix

MAX_VALUE_CHARS = 256            # a label value (attribute or resource attribute) is cut at this length
MAX_LABELS = 64                  # a point with more attributes is refused (invalid)
MAX_INFO_LABELS = 64             # target_info keeps the first 64 resource attributes (by key order)
MAX_BUCKETS = 256                # explicit bounds of a histogram point
MAX_HELP_CHARS = 1024
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_RECORDED_VALUE = 1            # DataPointFlags.FLAG_NO_RECORDED_VALUE: the series ended (a staleness marker)
RESOURCE_LABELS = ("service.name", "service.namespace", "service.instance.id")
TARGET_INFO = "target_info"
TARGET_INFO_HELP = "Target metadata: the OTLP resource's attributes, one series per resource."

# families the agent exposes itself on /metrics: a received metric of such a name is refused (type_conflict),
# so that an application cannot put a second family of the same name into the agent's scrape
# (and Prometheus' own `up` and `scrape_*`, as custom metrics reserve them: agent/custom_metrics/naming.py)
RESERVED_PREFIXES = ("loom_", "probe_", "python_", "scrape_")
RESERVED_NAMES = frozenset({TARGET_INFO, "up", "process_cpu_seconds", "process_open_fds", "process_max_fds",
                            "process_virtual_memory_bytes", "process_resident_memory_bytes",
                            "process_start_time_seconds"})

SERIES_LIMIT, TYPE_CONFLICT, OUT_OF_ORDER, INVALID = "series_limit", "type_conflict", "out_of_order", "invalid"
REASONS = (SERIES_LIMIT, TYPE_CONFLICT, OUT_OF_ORDER, INVALID)
EOF = b"# EOF\n"

_serialize = KeyValue.SerializeToString
# NumberDataPoint's fields before its attributes (7, tag 0x3a) that are 9 bytes on the wire: start_time (2),
# time (3), as_double (4), as_int (6); exemplars (5) are not (a point with them takes the slow key)
_NUMBER_FIXED = frozenset({0x11, 0x19, 0x21, 0x31})
_NUMBER_ATTRIBUTES = 0x3a


def number_key(dp: Any) -> bytes | tuple[bytes, ...]:
    """What identifies a number point's attributes, cheaply: the point serialised (one C call; protobuf writes
    fields in field-number order) from its attributes on -- past the times and the value, 9 bytes each --
    1.0 us a point of 4 attributes against 2.9 us for serialising each KeyValue (bench/otlp.py). Only a cache
    key: points whose keys differ in bytes but not in attributes resolve to the same series by their labels."""
    data = dp.SerializeToString()
    pos, end = 0, len(data)
    while pos < end and data[pos] in _NUMBER_FIXED:
        pos += 9
    if pos < end and data[pos] != _NUMBER_ATTRIBUTES:          # exemplars, or fields this code does not know
        return tuple(map(_serialize, dp.attributes))
    return data[pos:]


@dataclass(frozen=True, slots=True)
class Consumed:
    """What one request's data points came to: `rejected` points are OTLP's rejected_data_points, `message`
    says why (empty when none was refused)."""

    accepted: int
    rejected: int
    message: str


@dataclass(frozen=True, slots=True)
class Origin:
    """The OTLP metric a series came from, for the re-export: name, description, unit, data kind."""

    name: str
    description: str
    unit: str
    kind: str                    # sum, gauge, histogram, exponential_histogram, summary
    monotonic: bool


class ResourceContext:
    """A resource's labels (job, instance), its target_info series and its attributes (re-export)."""

    __slots__ = ("attributes", "info", "info_labels", "labels")

    def __init__(self, labels: tuple[tuple[str, str], ...], info_labels: dict[str, str] | None,
                 attributes: dict[str, Any]):
        self.labels, self.info_labels, self.attributes = labels, info_labels, attributes
        self.info: Series | None = None


class ScopeContext:
    """The labels every point of one resource's scope carries, and the scope for the re-export."""

    __slots__ = ("labels", "name", "resource", "version")

    def __init__(self, resource: ResourceContext, name: str, version: str):
        self.resource, self.name, self.version = resource, name, version
        scope: tuple[tuple[str, str], ...] = (("otel_scope_name", cut(name)),) if name else ()
        if version:
            scope += (("otel_scope_version", cut(version)),)
        self.labels = resource.labels + scope


class Series:
    """One label set of a family. `value`: a float (counter, gauge), HistogramState, ExpoState or
    SummaryState. `start_ns`/`last_ns`: OTLP times of the accumulated value; `seen`: the clock's."""

    __slots__ = (
        "attributes",          # the point's attributes as received (values cut), for the re-export
        "family",
        "key",
        "labels",
        "last_ns",
        "lines",               # a histogram's or summary's line prefixes, by bound set (prom_text.py)
        "origin",
        "scope",
        "seen",
        "start_ns",
        "text",                # a counter's, gauge's or info's line prefix (prom_text.py)
        "value",
    )

    def __init__(self, family: Family, key: tuple, labels: dict[str, str], attributes: dict[str, str],
                 scope: ScopeContext | None, origin: Origin | None):
        self.family: Family | None = family          # None once removed (a stale raw-cache entry)
        self.key, self.labels, self.attributes = key, labels, attributes
        self.scope, self.origin = scope, origin
        self.value: Any = 0.0
        self.start_ns = self.last_ns = 0
        self.seen = 0.0
        self.text: str | None = None
        self.lines: tuple[Any, list[str]] | None = None

    def label_text(self) -> str:
        return prom_text.label_text(self.key)

    def text_line(self, sample: str) -> str:
        """`\nsample{labels} `, built once (a series' labels never change)."""
        text = self.text
        if text is None:
            labels = self.label_text()
            text = self.text = f"\n{sample}{{{labels}}} " if labels else f"\n{sample} "
        return text


class HistogramState:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...], counts: list[int], count: int, total: float | None):
        self.bounds, self.counts, self.count, self.sum = bounds, counts, count, total


class ExpoState:
    __slots__ = ("count", "negative", "positive", "sum", "zero")

    def __init__(self, negative: dict[int, int], zero: int, positive: dict[int, int], count: int,
                 total: float | None):
        self.negative, self.zero, self.positive, self.count, self.sum = negative, zero, positive, count, total


class SummaryState:
    __slots__ = ("count", "quantiles", "sum")

    def __init__(self, count: int, total: float, quantiles: tuple[tuple[float, float], ...]):
        self.count, self.sum, self.quantiles = count, total, quantiles


class Family:
    """One Prometheus metric family: its type, help, unit and series by label key. `raw` maps the
    serialised attributes a point arrived with (and its scope) to the series they resolved to."""

    __slots__ = ("help", "kind", "name", "raw", "series", "unit")

    def __init__(self, name: str, kind: str, help: str, unit: str):
        self.name, self.kind, self.help, self.unit = name, kind, help, unit
        self.series: dict[tuple, Series] = {}
        self.raw: dict[tuple, Series] = {}


class Refusals:
    """The refused points of one request by reason, and its message."""

    __slots__ = ("counts", "details")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.details: dict[str, str] = {}

    def add(self, reason: str, detail: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        self.details.setdefault(reason, detail)

    def message(self) -> str:
        return "; ".join(f"{n} {reason} ({self.details[reason]})" for reason, n in self.counts.items())


@dataclass(frozen=True, slots=True)
class MetricPlan:
    """How the points of one (name, unit, data kind, monotonic) are converted."""

    family: str                  # the Prometheus family name ('' when nothing of the name is usable)
    kind: str                    # counter, gauge, histogram, summary
    unit: str                    # OpenMetrics UNIT (the family name ends with it) or ''


def plan(name: str, unit: str, data: str, monotonic: bool) -> MetricPlan:
    counter = data == "sum" and monotonic
    gauge = data == "gauge" or (data == "sum" and not monotonic)
    kind = "counter" if counter else "gauge" if gauge else "summary" if data == "summary" else "histogram"
    family = metric_name(name, unit, counter=counter, gauge=gauge)
    suffix = "ratio" if gauge and unit == "1" else unit_suffix(unit)
    return MetricPlan(family, kind, suffix if suffix and family.endswith("_" + suffix) else "")


def cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS]


def any_value(value: AnyValue) -> Any:
    """An attribute's value as Python (the re-export's attribute, and its label text via label_text)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values[:MAX_LABELS]]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values[:MAX_LABELS]}
    if kind == "bytes_value":
        return value.bytes_value[:MAX_VALUE_CHARS].hex()
    return getattr(value, kind)


def label_text(value: Any) -> str:
    """A label value: strings as they are, booleans as true/false, numbers as written, the rest as JSON;
    cut at MAX_VALUE_CHARS."""
    if isinstance(value, str):
        return cut(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return cut(json.dumps(value, separators=(",", ":"), default=str))


def attribute_labels(attributes: Iterable[KeyValue]) -> dict[str, str] | None:
    """Attribute labels, colliding names joined with `;` in original-key order; None past MAX_LABELS."""
    items = [(kv.key, kv.value) for kv in attributes]
    if len(items) > MAX_LABELS:
        return None
    merged: dict[str, list[tuple[str, str]]] = {}
    for key, value in items:
        name = label_name(key)
        if name:
            merged.setdefault(name, []).append((key, label_text(any_value(value))))
    return {name: cut(";".join(v for _, v in sorted(pairs))) if len(pairs) > 1 else pairs[0][1]
            for name, pairs in merged.items()}


def resource_context(attributes: Iterable[KeyValue]) -> ResourceContext:
    values = {kv.key: any_value(kv.value) for kv in attributes}
    name, namespace = values.get("service.name"), values.get("service.namespace")
    labels: list[tuple[str, str]] = []
    if name not in (None, ""):
        labels.append(("job", cut(f"{namespace}/{name}" if namespace not in (None, "") else str(name))))
    instance = values.get("service.instance.id")
    if instance not in (None, ""):
        labels.append(("instance", label_text(instance)))
    rest = {k: v for k, v in values.items() if k not in RESOURCE_LABELS}
    info = None
    if rest:
        info_keys = list(rest)[:MAX_INFO_LABELS]
        merged = attribute_labels(KeyValue(key=k, value=_any(rest[k])) for k in info_keys) or {}
        info = {**merged, **dict(labels)}
    return ResourceContext(tuple(labels), info, {k: exported_value(v) for k, v in values.items()})


def exported_value(value: Any) -> Any:
    """An attribute value for the re-export: strings cut, scalars as they are, the rest as label text."""
    if isinstance(value, str):
        return cut(value)
    return value if isinstance(value, (bool, int, float)) else label_text(value)


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value if isinstance(value, str) else label_text(value))


class OtlpMetricSeries:
    """The received metrics as Prometheus families: `render()` for /metrics (text or OpenMetrics, through
    prometheus_client's encoders over `collect()`), `live()` for the re-export (prom_reexport.py),
    `stats_collector()` for the agent's own loom_agent_otlp_metric_* series."""

    def __init__(self, *, max_series: int, stale_after: float, clock: Callable[[], float] = time.monotonic):
        self.max_series, self.stale_after, self._clock = max_series, stale_after, clock
        self.families: dict[str, Family] = {}
        self.info = Family(TARGET_INFO, "info", TARGET_INFO_HELP, "")
        self._age: OrderedDict[Series, None] = OrderedDict()     # least recently updated first
        self._resources: dict[bytes, ResourceContext] = {}
        self._scopes: dict[tuple[bytes, bytes], ScopeContext] = {}
        self._plans: dict[tuple[str, str, str, bool], MetricPlan] = {}
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.accepted = 0
        self.expired = 0
        # names other parts of the agent expose on /metrics (the composition root points it at the event
        # MetricStore, whose custom metrics may have any name with an empty custom_metrics.namespace)
        self.taken: Callable[[str], bool] = lambda name: False
        # its own registry: rendered beside the agent's, never in it (the OTLP export snapshots the agent's
        # registry under the agent's resource; these series are re-exported under their own resources)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    @property
    def series_count(self) -> int:
        return len(self._age)

    def reconfigure(self, *, max_series: int, stale_after: float) -> None:
        """A lower max_series refuses new series until enough go stale; nothing is removed for it."""
        self.max_series, self.stale_after = max_series, stale_after
        self.sweep()

    # -- ingest ---------------------------------------------------------------------------------------

    def consume(self, request: ExportMetricsServiceRequest) -> Consumed:
        now = self._clock()
        self.sweep(now)
        refused = Refusals()
        accepted = 0
        for rm in request.resource_metrics:
            rkey = rm.resource.SerializeToString()
            resource = self._resource(rkey, rm.resource.attributes, now)
            for sm in rm.scope_metrics:
                scope = self._scope(rkey, sm.scope.SerializeToString(), resource, sm.scope.name, sm.scope.version)
                for metric in sm.metrics:
                    accepted += self._metric(metric, scope, now, refused)
        self.accepted += accepted
        rejected = sum(refused.counts.values())
        for reason, n in refused.counts.items():
            self.rejected[reason] += n
        return Consumed(accepted, rejected, refused.message() if rejected else "")

    def _resource(self, key: bytes, attributes: Iterable[KeyValue], now: float) -> ResourceContext:
        context = self._resources.get(key)
        if context is None:
            if len(self._resources) >= 4 * max(self.max_series, 1):
                self._resources.clear()
                self._scopes.clear()
            context = self._resources[key] = resource_context(attributes)
        if context.info_labels is not None:
            info = context.info
            if info is None or info.family is None:
                labels = tuple(sorted(context.info_labels.items()))
                info = context.info = self.info.series.get(labels) or self._new_series(
                    self.info, labels, context.info_labels, {}, None, None)
            if info is not None:
                info.value, info.seen = 1.0, now
                self._age.move_to_end(info)
        return context

    def _scope(self, rkey: bytes, key: bytes, resource: ResourceContext, name: str, version: str) -> ScopeContext:
        context = self._scopes.get((rkey, key))
        if context is None or context.resource is not resource:
            if len(self._scopes) >= 4 * max(self.max_series, 1):     # distinct scope names are the sender's to pick
                self._scopes.clear()
            context = self._scopes[(rkey, key)] = ScopeContext(resource, name, version)
        return context

    def _metric(self, metric: Any, scope: ScopeContext, now: float, refused: Refusals) -> int:
        data = metric.WhichOneof("data")
        if data is None:
            return 0
        body = getattr(metric, data)
        points = body.data_points
        monotonic = data == "sum" and body.is_monotonic
        key = (metric.name, metric.unit, data, monotonic)
        how = self._plans.get(key)
        if how is None:
            if len(self._plans) >= 65_536:
                self._plans.clear()
            how = self._plans[key] = plan(*key)
        if not how.family:
            refused.add(INVALID, f"metric name {metric.name[:80]!r} has no usable character", len(points))
            return 0
        temporality = body.aggregation_temporality if data in ("sum", "histogram", "exponential_histogram") \
            else CUMULATIVE
        if temporality not in (DELTA, CUMULATIVE):
            refused.add(INVALID, f"{metric.name[:80]}: aggregation temporality unspecified", len(points))
            return 0
        family = self.families.get(how.family)
        if family is None:
            if how.family in RESERVED_NAMES or how.family.startswith(RESERVED_PREFIXES) or self.taken(how.family):
                refused.add(TYPE_CONFLICT, f"{how.family} is a name of the agent's own metrics", len(points))
                return 0
            family = self.families[how.family] = Family(how.family, how.kind, metric.description[:MAX_HELP_CHARS],
                                                        how.unit)
        elif family.kind != how.kind:
            refused.add(TYPE_CONFLICT, f"{how.family} is a {family.kind}, not a {how.kind}", len(points))
            return 0
        origin = Origin(metric.name, metric.description, metric.unit, data, monotonic)
        delta = temporality == DELTA
        if data == "sum" or data == "gauge":
            accepted = self._numbers(family, points, scope, origin, delta, monotonic, now, refused)
        elif data == "histogram":
            accepted = self._points(family, points, scope, origin, delta, now, refused, _read_histogram)
        elif data == "exponential_histogram":
            accepted = self._points(family, points, scope, origin, delta, now, refused, _read_expo)
        else:
            accepted = self._points(family, points, scope, origin, False, now, refused, _read_summary)
        if not family.series:          # every point refused (max_series, invalid) or ended: no name held for it
            del self.families[how.family]
        return accepted

    def _series(self, family: Family, scope: ScopeContext, attributes: Any, origin: Origin,
                refused: Refusals, raw: tuple) -> Series | None:
        """The series of a point whose raw key is not cached: labels resolved, the guard asked."""
        attrs = attribute_labels(attributes)
        if attrs is None:
            refused.add(INVALID, f"a point with more than {MAX_LABELS} attributes")
            return None
        labels = {**attrs, **dict(scope.labels)}
        key = tuple(sorted(labels.items()))
        series = family.series.get(key)
        if series is None:
            original = {kv.key: exported_value(any_value(kv.value)) for kv in attributes}
            series = self._new_series(family, key, labels, original, scope, origin)
            if series is None:
                refused.add(SERIES_LIMIT, f"max_series {self.max_series} reached")
                return None
        if len(family.raw) >= 2 * len(family.series) + 1024:      # keys that differ only in attribute order
            family.raw.clear()
        family.raw[raw] = series
        return series

    def _new_series(self, family: Family, key: tuple, labels: dict[str, str], attrs: dict[str, str],
                    scope: ScopeContext | None, origin: Origin | None) -> Series | None:
        if len(self._age) >= self.max_series:
            return None
        series = family.series[key] = Series(family, key, labels, attrs, scope, origin)
        self._age[series] = None
        return series

    def _numbers(self, family: Family, points: Any, scope: ScopeContext, origin: Origin, delta: bool,
                 counter: bool, now: float, refused: Refusals) -> int:
        raw_cache, age, accepted = family.raw, self._age, 0
        move = age.move_to_end
        for dp in points:
            raw = (scope, number_key(dp))
            series = raw_cache.get(raw)
            if series is None or series.family is None:
                series = self._series(family, scope, dp.attributes, origin, refused, raw)
                if series is None:
                    continue
                fresh = True
            else:
                fresh = False
            if dp.flags & NO_RECORDED_VALUE:
                self._drop(series)
                accepted += 1
                continue
            value = dp.as_double or float(dp.as_int)
            t = dp.time_unix_nano
            if (counter and not (value >= 0 and value != math.inf)) or (delta and not math.isfinite(value)):
                refused.add(INVALID, f"{family.name}: {'counter' if counter else 'delta'} value {value}")
                if fresh:
                    self._drop(series)
                continue
            if fresh:
                series.value, series.start_ns, series.last_ns = value, dp.start_time_unix_nano, t
            elif delta:
                if t <= series.last_ns or dp.start_time_unix_nano < series.last_ns:
                    refused.add(OUT_OF_ORDER, f"{family.name}: a delta older than or overlapping the last")
                    continue
                series.value += value
                series.last_ns = t
            else:
                if t < series.last_ns:
                    refused.add(OUT_OF_ORDER, f"{family.name}: a point older than the last")
                    continue
                series.value, series.start_ns, series.last_ns = value, dp.start_time_unix_nano, t
            series.seen = now
            move(series)
            accepted += 1
        return accepted

    def _points(self, family: Family, points: Any, scope: ScopeContext, origin: Origin, delta: bool, now: float,
                refused: Refusals, read: Callable[[Any], Any]) -> int:
        """Histograms, exponential histograms and summaries: `read` gives the point's (key, flags, start,
        time, state or the ValueError that refuses it as invalid); deltas merge into the series' state."""
        raw_cache, age, accepted = family.raw, self._age, 0
        for dp in points:
            key, flags, start, t, state = read(dp)
            raw = (scope, key)
            series = raw_cache.get(raw)
            fresh = series is None or series.family is None
            if fresh:
                series = self._series(family, scope, dp.attributes, origin, refused, raw)
                if series is None:
                    continue
            assert series is not None
            if flags & NO_RECORDED_VALUE:
                self._drop(series)
                accepted += 1
                continue
            if isinstance(state, ValueError):
                refused.add(INVALID, f"{family.name}: {state}")
                if fresh:
                    self._drop(series)
                continue
            if fresh:
                series.value, series.start_ns, series.last_ns = state, start, t
            elif delta:
                if t <= series.last_ns or start < series.last_ns:
                    refused.add(OUT_OF_ORDER, f"{family.name}: a delta older than or overlapping the last")
                    continue
                try:
                    _accumulate(series.value, state)
                except ValueError as e:
                    refused.add(INVALID, f"{family.name}: {e}")
                    continue
                series.last_ns = t
            else:
                if t < series.last_ns:
                    refused.add(OUT_OF_ORDER, f"{family.name}: a point older than the last")
                    continue
                series.value, series.start_ns, series.last_ns = state, start, t
            series.seen = now
            age.move_to_end(series)
            accepted += 1
        return accepted

    # -- staleness ------------------------------------------------------------------------------------

    def _drop(self, series: Series) -> None:
        family = series.family
        if family is None:
            return
        if family.series.get(series.key) is series:
            del family.series[series.key]
        self._age.pop(series, None)
        series.family = None                 # a raw-cache entry that still points here is a miss
        if not family.series and family is not self.info:
            family.raw.clear()

    def sweep(self, now: float | None = None) -> int:
        """Remove the series not updated for stale_after seconds; O(removed)."""
        cutoff = (self._clock() if now is None else now) - self.stale_after
        age, removed = self._age, 0
        while age:
            series = next(iter(age))
            if series.seen >= cutoff:
                break
            self._drop(series)
            removed += 1
        if removed:
            self.expired += removed
            for name in [name for name, family in self.families.items() if not family.series]:
                del self.families[name]
        return removed

    # -- exposition -----------------------------------------------------------------------------------

    def render(self, openmetrics: bool) -> str:
        """The families for /metrics (a renderer of agent/metrics/exposition.py: no `# EOF`), by prom_text.py;
        the same samples as prometheus_client's encoders over collect() (`render_by_client`), faster."""
        self.sweep()
        return prom_text.render([*self.families.values(), self.info], openmetrics)

    def render_by_client(self, openmetrics: bool) -> str:
        if openmetrics:
            return openmetrics_of_registry(self._registry).removesuffix(EOF).decode()
        return text_of_registry(self._registry).decode()

    def live(self) -> list[Series]:
        """Every live series but target_info's, after a sweep (the re-export reads them on the loop)."""
        self.sweep()
        return [s for family in self.families.values() for s in family.series.values()]

    def stats_collector(self) -> SeriesStats:
        return SeriesStats(self)

    def collect(self) -> Iterator[PromMetric]:
        """Fresh prometheus_client families of every live series (and target_info)."""
        self.sweep()
        families = list(self.families.values())
        if self.info.series:
            families.append(self.info)
        for family in families:
            yield family_metric(family)


class SeriesStats:
    """loom_agent_otlp_metric_series (gauge), _series_limit, _series_expired_total and
    loom_agent_otlp_metric_points_rejected_total{reason} (REASONS), for the agent's registry."""

    def __init__(self, series: OtlpMetricSeries):
        self._series = series

    def collect(self) -> Iterator[PromMetric]:
        s = self._series
        yield GaugeMetricFamily("loom_agent_otlp_metric_series", "Series converted from received OTLP metric "
                                "points (label sets, target_info's included) on /metrics now.", s.series_count)
        yield GaugeMetricFamily("loom_agent_otlp_metric_series_limit", "At most this many converted series "
                                "(otlp_receiver.metrics.max_series); new ones past it are refused.", s.max_series)
        yield CounterMetricFamily("loom_agent_otlp_metric_series_expired", "Converted series removed because "
                                  "no point of theirs arrived for stale_after.", s.expired)
        rejected = CounterMetricFamily("loom_agent_otlp_metric_points_rejected", "Received OTLP metric points "
                                       "not converted, by reason (series_limit, type_conflict, out_of_order, "
                                       "invalid).", labels=["reason"])
        for reason in REASONS:
            rejected.add_metric([reason], s.rejected[reason])
        yield rejected


def family_metric(family: Family) -> PromMetric:
    name = family.name
    if family.kind == "info":
        metric = PromMetric(name.removesuffix("_info"), family.help, "info")
        metric.samples = [Sample(name, s.labels, 1.0) for s in family.series.values()]
        return metric
    metric = PromMetric(name, family.help, family.kind, family.unit)
    samples = metric.samples
    if family.kind == "counter":
        samples += [Sample(name + "_total", s.labels, s.value) for s in family.series.values()]
    elif family.kind == "gauge":
        samples += [Sample(name, s.labels, s.value) for s in family.series.values()]
    elif family.kind == "summary":
        for s in family.series.values():
            state = s.value
            samples += [Sample(name, {**s.labels, "quantile": _float_text(q)}, v) for q, v in state.quantiles]
            samples.append(Sample(name + "_count", s.labels, float(state.count)))
            samples.append(Sample(name + "_sum", s.labels, state.sum))
    else:
        for s in family.series.values():
            samples += histogram_samples(name, s.labels, s.value)
    return metric


def histogram_samples(name: str, labels: dict[str, str], state: HistogramState | ExpoState) -> list[Sample]:
    if isinstance(state, ExpoState):
        bounds, counts = explicit(state.negative, state.zero, state.positive)
    else:
        bounds, counts = list(state.bounds), state.counts
    out, running = [], 0
    for bound, count in zip(bounds, counts):
        running += count
        out.append(Sample(name + "_bucket", {**labels, "le": _float_text(bound)}, float(running)))
    out.append(Sample(name + "_bucket", {**labels, "le": "+Inf"}, float(state.count)))
    if state.sum is not None and not (bounds and bounds[0] < 0):      # no _sum with negative buckets (OM)
        out.append(Sample(name + "_count", labels, float(state.count)))
        out.append(Sample(name + "_sum", labels, state.sum))
    return out


def _float_text(value: float) -> str:
    """An `le`/`quantile` label as Prometheus' own clients write it (1.0, 0.25, 1e-05)."""
    return repr(float(value))


# -- point readers: (key, flags, start, time, state or the ValueError that refuses it) -------------------

PointRead = tuple[Any, int, int, int, Any]


def _through_objects(make: Callable[[Any], Any]) -> Callable[[Any], PointRead]:
    """A reader through protobuf's objects: the key from each KeyValue serialised, the state from `make`."""
    def read(dp: Any) -> PointRead:
        try:
            state = make(dp)
        except ValueError as e:
            state = e
        return tuple(map(_serialize, dp.attributes)), dp.flags, dp.start_time_unix_nano, dp.time_unix_nano, state
    return read


def _read_histogram(dp: Any) -> PointRead:
    """From the point's bytes (histogram_wire.py), else through its objects."""
    wire = histogram_wire.read(dp.SerializeToString())
    if wire is None:
        return _read_histogram_objects(dp)
    key, flags, start, t, count, total, counts, bounds = wire
    try:
        state: Any = _histogram_state(_bounds_of(bounds), array("Q", counts).tolist(), count, total)
    except ValueError as e:
        state = e
    return key, flags, start, t, state


_BOUNDS: dict[bytes, tuple[float, ...]] = {}        # packed bounds already checked -> the bounds (an SDK sends a few)


def _bounds_of(packed: bytes) -> tuple[float, ...]:
    bounds = _BOUNDS.get(packed)
    if bounds is None:
        bounds = tuple(array("d", packed))
        _check_bounds(bounds)
        if len(_BOUNDS) >= 1024:
            _BOUNDS.clear()
        _BOUNDS[packed] = bounds
    return bounds


def _check_bounds(bounds: tuple[float, ...]) -> None:
    if len(bounds) > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} bucket bounds")
    if any(not math.isfinite(b) for b in bounds) or any(a >= b for a, b in pairwise(bounds)):
        raise ValueError("bucket bounds not finite and strictly increasing")


def _histogram_state(bounds: tuple[float, ...], counts: list[int], count: int, total: float | None) -> HistogramState:
    if counts:
        if len(counts) != len(bounds) + 1:
            raise ValueError(f"{len(counts)} bucket counts for {len(bounds)} bounds")
        if sum(counts) != count:
            raise ValueError(f"bucket counts sum to {sum(counts)}, count is {count}")
    elif bounds:
        raise ValueError(f"no bucket counts for {len(bounds)} bounds")
    else:
        counts = [count]
    return HistogramState(bounds, counts, count, total)

def _histogram(dp: Any) -> HistogramState:
    bounds = tuple(dp.explicit_bounds)
    _check_bounds(bounds)
    return _histogram_state(bounds, list(dp.bucket_counts), dp.count, dp.sum if dp.HasField("sum") else None)


def _expo(dp: Any) -> ExpoState:
    try:
        positive = scale0(dp.scale, dp.positive.offset, dp.positive.bucket_counts)
        negative = scale0(dp.scale, dp.negative.offset, dp.negative.bucket_counts)
    except ExpoError as e:
        raise ValueError(str(e)) from None
    if sum(positive.values()) + sum(negative.values()) + dp.zero_count != dp.count:
        raise ValueError("exponential bucket counts do not add up to count")
    return ExpoState(negative, dp.zero_count, positive, dp.count, dp.sum if dp.HasField("sum") else None)


def _summary(dp: Any) -> SummaryState:
    quantiles = tuple((q.quantile, q.value) for q in dp.quantile_values)
    if len(quantiles) > MAX_BUCKETS or any(not 0.0 <= q <= 1.0 for q, _ in quantiles):
        raise ValueError("summary quantiles outside [0, 1] or too many")
    return SummaryState(dp.count, dp.sum, quantiles)


_read_histogram_objects = _through_objects(_histogram)
_read_expo = _through_objects(_expo)
_read_summary = _through_objects(_summary)


def _accumulate(state: Any, more: Any) -> None:
    """A delta histogram point into the series' cumulative state (same kind, same bounds)."""
    if isinstance(state, HistogramState) and isinstance(more, HistogramState):
        if state.bounds != more.bounds:
            raise ValueError("delta bucket bounds differ from the series'")
        state.counts = [a + b for a, b in zip(state.counts, more.counts)]
    elif isinstance(state, ExpoState) and isinstance(more, ExpoState):
        for side, new in ((state.positive, more.positive), (state.negative, more.negative)):
            keys = [*side, *new]
            if keys and max(keys) - min(keys) >= MAX_SPAN:
                raise ValueError(f"accumulated exponential histogram spans more than 2^{MAX_SPAN}")
        merge(state.positive, more.positive)
        merge(state.negative, more.negative)
        state.zero += more.zero
    else:
        raise ValueError("a delta of another histogram kind than the series'")
    state.count += more.count
    state.sum = None if state.sum is None or more.sum is None else state.sum + more.sum
