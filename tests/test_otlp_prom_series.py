"""OTLP metric points -> Prometheus series (agent/receiver/prom_series.py): every conversion rule with
hand-built ExportMetricsServiceRequest protobufs, read back through the text and OpenMetrics parsers of
prometheus_client (what Prometheus would scrape), and the re-export of the same state to a real OTLP
receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import struct

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.metrics.exposition import render
from agent.otlp.config import OtlpConfig, TelemetryConfig
from agent.otlp.export import OtlpExport
from agent.otlp.tracing import build_tracer_provider
from agent.receiver import prom_reexport
from agent.receiver.expo_buckets import explicit, scale0
from agent.receiver.prom_names import label_name, metric_name, unit_suffix
from agent.receiver.prom_series import MAX_VALUE_CHARS, OtlpMetricSeries
from tests.support.otlp_receiver import OtlpReceiver

DELTA, CUMULATIVE = 1, 2
SERVICE = {"service.name": "shop", "service.namespace": "prod", "service.instance.id": "i-1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kvs(attributes: dict) -> list[KeyValue]:
    out = []
    for key, value in attributes.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=value)
        out.append(KeyValue(key=key, value=any_value))
    return out


def request(*metrics: metrics_pb2.Metric, resource: dict | None = None, scope: str = "app",
            version: str = "1.0") -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs(SERVICE if resource is None else resource))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = scope, version
    sm.metrics.extend(metrics)
    return req


def number_points(kind: str, points: list[tuple]) -> list:
    """points: (value, attributes, time[, start]) -> NumberDataPoints."""
    out = []
    for value, attributes, t, *start in points:
        dp = metrics_pb2.NumberDataPoint(time_unix_nano=t, start_time_unix_nano=start[0] if start else 0)
        if isinstance(value, int):
            dp.as_int = value
        else:
            dp.as_double = value
        dp.attributes.extend(kvs(attributes))
        out.append(dp)
    return out


def sum_metric(name: str, points: list[tuple], *, unit: str = "", monotonic: bool = True,
               temporality: int = CUMULATIVE) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit=unit, description=f"{name} help")
    m.sum.is_monotonic, m.sum.aggregation_temporality = monotonic, temporality
    m.sum.data_points.extend(number_points("sum", points))
    return m


def gauge_metric(name: str, points: list[tuple], *, unit: str = "") -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit=unit)
    m.gauge.data_points.extend(number_points("gauge", points))
    return m


def histogram_metric(name: str, bounds: list[float], counts: list[int], total: float | None, *, t: int = 10,
                     start: int = 0, temporality: int = CUMULATIVE, count: int | None = None, unit: str = "s",
                     attributes: dict | None = None) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit=unit)
    m.histogram.aggregation_temporality = temporality
    dp = m.histogram.data_points.add(time_unix_nano=t, start_time_unix_nano=start,
                                     count=sum(counts) if count is None else count)
    if total is not None:
        dp.sum = total
    dp.explicit_bounds.extend(bounds)
    dp.bucket_counts.extend(counts)
    dp.attributes.extend(kvs(attributes or {}))
    return m


def expo_metric(name: str, scale: int, offset: int, counts: list[int], *, zero: int = 0, neg_offset: int = 0,
                negative: list[int] | None = None, total: float = 1.0, t: int = 10, start: int = 0,
                temporality: int = CUMULATIVE) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit="s")
    m.exponential_histogram.aggregation_temporality = temporality
    dp = m.exponential_histogram.data_points.add(time_unix_nano=t, start_time_unix_nano=start, scale=scale,
                                                 zero_count=zero, sum=total,
                                                 count=sum(counts) + zero + sum(negative or []))
    dp.positive.offset = offset
    dp.positive.bucket_counts.extend(counts)
    dp.negative.offset = neg_offset
    dp.negative.bucket_counts.extend(negative or [])
    return m


def samples(series: OtlpMetricSeries, openmetrics: bool = False) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} as prometheus_client's parser reads the rendered text."""
    text = series.render(openmetrics) + ("# EOF\n" if openmetrics else "")
    families = parse_openmetrics(text) if openmetrics else parse_text(text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(series: OtlpMetricSeries, name: str, **labels: str) -> float | None:
    """The sample `name` whose labels include `labels` (exactly one must match)."""
    found = [v for (n, ls), v in samples(series).items() if n == name and labels.items() <= dict(ls).items()]
    assert len(found) <= 1, found
    return found[0] if found else None


def new(max_series: int = 1000, stale_after: float = 300.0, clock: Clock | None = None) -> OtlpMetricSeries:
    return OtlpMetricSeries(max_series=max_series, stale_after=stale_after, clock=clock or Clock())


# -- names -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "unit", "counter", "gauge", "expected"), [
    ("http.server.duration", "s", False, False, "http_server_duration_seconds"),
    ("http.server.request.size", "By", False, False, "http_server_request_size_bytes"),
    ("db.latency", "ms", False, False, "db_latency_milliseconds"),
    ("http.server.requests", "{request}", True, False, "http_server_requests"),
    ("system.memory.utilization", "1", False, True, "system_memory_utilization_ratio"),
    ("jobs.done", "1", True, False, "jobs_done"),
    ("net.io", "By/s", False, True, "net_io_bytes_per_second"),
    ("(lambda).function.executions(#)", "", True, False, "lambda_function_executions"),
    ("9lives", "", False, True, "_9lives"),
    ("a..b__c--d", "", False, True, "a_b_c_d"),
    ("requests_total", "", True, False, "requests"),
    ("latency_seconds", "s", False, False, "latency_seconds"),
    # the unit already one of the name's words, `total` anywhere in a counter's: Prometheus' otlptranslator
    ("bytes_total", "By", True, False, "bytes"),
    ("latency_seconds_max", "s", False, True, "latency_seconds_max"),
    ("total_requests", "", True, False, "requests"),
    ("bytes_per_second", "By/s", False, True, "bytes_per_second"),
    ("weird", "packets", True, False, "weird_packets"),
    ("...", "", False, True, ""),
])
def test_metric_names_follow_the_compatibility_spec(name, unit, counter, gauge, expected) -> None:
    assert metric_name(name, unit, counter=counter, gauge=gauge) == expected


def test_label_names_are_sanitised_and_reserved_ones_renamed() -> None:
    assert label_name("http.method") == "http_method"
    assert label_name("2xx") == "key_2xx"
    assert label_name("__secret") == "key__secret"
    assert label_name("job") == "exported_job"
    assert label_name("le") == "exported_le"
    assert label_name("...") == ""
    assert unit_suffix("{packets}/s") == ""


def test_every_point_kind_renders_in_both_formats() -> None:
    series = new()
    consumed = series.consume(request(
        sum_metric("http.server.requests", [(5, {"http.method": "GET"}, 10)], unit="{request}"),
        sum_metric("queue.depth", [(3, {}, 10)], monotonic=False),
        gauge_metric("memory.utilization", [(0.25, {}, 10)], unit="1"),
        histogram_metric("http.server.duration", [0.1, 1.0], [1, 2, 3], 7.5),
        expo_metric("rpc.latency", 0, 0, [1, 2]),
        summary_metric("gc.pause", [(0.5, 0.01), (0.99, 0.2)], count=10, total=0.5),
    ))
    assert consumed.accepted == 6 and consumed.rejected == 0 and consumed.message == ""
    base = {"job": "prod/shop", "instance": "i-1", "otel_scope_name": "app", "otel_scope_version": "1.0"}
    for openmetrics in (False, True):
        got = samples(series, openmetrics)

        def at(name: str, got: dict = got, **labels: str) -> float:
            return got[(name, tuple(sorted({**base, **labels}.items())))]

        assert at("http_server_requests_total", http_method="GET") == 5
        assert at("queue_depth") == 3
        assert at("memory_utilization_ratio") == 0.25
        assert at("http_server_duration_seconds_bucket", le="0.1") == 1
        assert at("http_server_duration_seconds_bucket", le="1.0") == 3
        assert at("http_server_duration_seconds_bucket", le="+Inf") == 6
        assert at("http_server_duration_seconds_count") == 6
        assert at("http_server_duration_seconds_sum") == 7.5
        assert at("rpc_latency_seconds_bucket", le="2.0") == 1        # bucket 0 at scale 0: (1, 2]
        assert at("rpc_latency_seconds_bucket", le="4.0") == 3
        assert at("rpc_latency_seconds_count") == 3
        assert at("gc_pause_seconds", quantile="0.99") == 0.2
        assert at("gc_pause_seconds_count") == 10
        assert not any(n == "target_info" for n, _ in got)        # only service attributes: no target_info
    text = series.render(False)
    assert "# TYPE http_server_requests_total counter" in text and "_created" not in text
    assert "# UNIT http_server_duration_seconds seconds" in series.render(True)


def summary_metric(name: str, quantiles: list[tuple[float, float]], *, count: int, total: float,
                   t: int = 10) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name, unit="s")
    dp = m.summary.data_points.add(time_unix_nano=t, count=count, sum=total)
    for q, v in quantiles:
        dp.quantile_values.add(quantile=q, value=v)
    return m


def test_point_keys_from_the_wire_agree_with_the_protobuf_objects() -> None:
    """number_key and histogram_wire read a point's serialisation; what they give must be what protobuf's
    objects say, for points with and without the optional fields, and the same attributes sent in another
    order or with exemplars (the slow key) land in the same series."""
    from agent.receiver import prom_series as ps

    histogram = histogram_metric("h", [0.5, 1.0] * 1 + [float(2 ** i) for i in range(1, 40)],
                                 list(range(42)), 3.25, start=5, attributes={"a": "x" * 300, "b": 1}).histogram
    point = histogram.data_points[0]
    point.min, point.max, point.flags = 0.1, 9.0, 0
    fast, slow = ps._read_histogram(point), ps._read_histogram_objects(point)
    assert fast[1:4] == slow[1:4] == (0, 5, 10)
    assert (fast[4].bounds, fast[4].counts, fast[4].count, fast[4].sum) == \
        (slow[4].bounds, slow[4].counts, slow[4].count, slow[4].sum)
    assert isinstance(fast[0], bytes) and b"x" * 300 in fast[0]
    assert struct.pack("<d", 9.0) not in fast[0] and struct.pack("<d", 3.25) not in fast[0]     # not max, sum
    no_sum = histogram_metric("h", [], [], None, count=4).histogram.data_points[0]
    assert ps._read_histogram(no_sum)[4].sum is None and ps._read_histogram(no_sum)[4].counts == [4]
    series = new()
    ordered = gauge_metric("g", [(1.0, {"a": "1", "b": "2"}, 10)])
    reordered = gauge_metric("g", [(2.0, {"b": "2", "a": "1"}, 20)])
    exemplar = gauge_metric("g", [(3.0, {"a": "1", "b": "2"}, 30)])
    exemplar.gauge.data_points[0].exemplars.add(as_double=1.0, time_unix_nano=29)
    assert isinstance(ps.number_key(exemplar.gauge.data_points[0]), tuple)
    assert isinstance(ps.number_key(ordered.gauge.data_points[0]), bytes)
    for metric in (ordered, reordered, exemplar):
        series.consume(request(metric))
    assert series.series_count == 1 and value(series, "g", a="1", b="2") == 3.0
    series.consume(request(histogram_metric("hist", [1.0], [1, 1], 2.0, attributes={"k": "v"})))
    assert value(series, "hist_seconds_bucket", k="v", le="1.0") == 1


def test_the_fast_rendering_equals_prometheus_clients() -> None:
    """render() (prom_text.py, cached line prefixes) against prometheus_client's encoders over collect(),
    parsed: the same families, types and samples in both formats, twice (the second from the caches)."""
    series = new()
    for t in (10, 20):
        series.consume(request(
            sum_metric("orders", [(t, {"country": "fr"}, t), (1, {"q": 'a"b\\c\nd'}, t)]),
            gauge_metric("temp", [(math.nan, {}, t), (-1.5, {"k": "v"}, t)], unit="Cel"),
            histogram_metric("lat", [0.5, 1.0], [1, 2, t], 9.0, t=t),
            histogram_metric("nosum", [1e-05, 1e21], [0, 1, 1], None, t=t),
            expo_metric("e", 1, -3, [1, 0, 2], zero=1, negative=[4], neg_offset=2, t=t),
            summary_metric("s", [(0.5, 1.0), (0.99, 2.5)], count=t, total=3.0, t=t),
            resource={**SERVICE, "host.name": "h"}))
        for openmetrics in (False, True):
            def parsed(text: str, openmetrics: bool = openmetrics) -> list:
                text += "# EOF\n" if openmetrics else ""
                families = parse_openmetrics(text) if openmetrics else parse_text(text)
                return sorted((f.name, f.type, f.unit, sorted((s.name, sorted(s.labels.items()), repr(float(s.value)))
                                                              for s in f.samples)) for f in families)
            assert parsed(series.render(openmetrics)) == parsed(series.render_by_client(openmetrics))


def test_job_instance_and_target_info_from_the_resource() -> None:
    series = new()
    resource = {**SERVICE, "host.name": "web-1", "k8s.pod.name": "p" * 1000, "deployment.environment": "prod"}
    series.consume(request(gauge_metric("g", [(1.0, {}, 10)]), resource=resource))
    info = [(dict(ls), v) for (n, ls), v in samples(series).items() if n == "target_info"]
    assert len(info) == 1
    labels, one = info[0]
    assert one == 1
    assert labels["job"] == "prod/shop" and labels["instance"] == "i-1" and labels["host_name"] == "web-1"
    assert labels["deployment_environment"] == "prod"
    assert len(labels["k8s_pod_name"]) == MAX_VALUE_CHARS
    assert "service_name" not in labels
    assert value(series, "g", job="prod/shop", instance="i-1") == 1.0
    # no namespace: job is the service name alone; no instance id: no instance label
    series.consume(request(gauge_metric("g", [(2.0, {}, 10)]), resource={"service.name": "cart"}))
    assert value(series, "g", job="cart") == 2.0
    assert not any("instance" in dict(ls) for (n, ls) in samples(series) if dict(ls).get("job") == "cart")


def test_colliding_attributes_are_joined_in_key_order_and_values_cut() -> None:
    series = new()
    series.consume(request(gauge_metric("g", [(1.0, {"http.method": "GET", "http-method": "X", "a": "v" * 999,
                                                    "le": "x", "n": 7, "ok": True}, 10)])))
    labels = dict(next(ls for (n, ls) in samples(series) if n == "g"))
    assert labels["http_method"] == "X;GET"              # "http-method" < "http.method"
    assert len(labels["a"]) == MAX_VALUE_CHARS
    assert labels["exported_le"] == "x" and labels["n"] == "7" and labels["ok"] == "true"


# -- temporality -------------------------------------------------------------------------------------

def test_deltas_accumulate_and_out_of_order_ones_are_refused_not_counted_twice() -> None:
    series = new()
    send = lambda points: series.consume(request(sum_metric("jobs", points, temporality=DELTA)))  # noqa: E731
    assert send([(2, {}, 20, 10)]).accepted == 1
    assert send([(3, {}, 30, 20)]).accepted == 1
    assert value(series, "jobs_total") == 5
    again = send([(3, {}, 30, 20)])                       # the same delta again (a retry)
    older = send([(7, {}, 25, 15)])                       # ends before the last one
    overlap = send([(4, {}, 40, 25)])                     # starts inside the last one
    assert (again.rejected, older.rejected, overlap.rejected) == (1, 1, 1)
    assert "out_of_order" in again.message
    assert value(series, "jobs_total") == 5
    assert send([(1, {}, 50, 40)]).accepted == 1          # a gap is fine: accumulated
    assert value(series, "jobs_total") == 6
    assert series.rejected["out_of_order"] == 3


def test_cumulative_points_replace_and_older_ones_are_refused() -> None:
    series = new()
    send = lambda v, t: series.consume(request(sum_metric("c", [(v, {}, t, 1)])))  # noqa: E731
    send(10, 20)
    assert send(4, 15).rejected == 1
    send(12, 30)
    assert value(series, "c_total") == 12
    send(1, 40)                                           # a reset (new start) is just the new value
    assert value(series, "c_total") == 1


def test_delta_histograms_and_exponential_histograms_accumulate() -> None:
    series = new()
    series.consume(request(histogram_metric("h", [1.0], [1, 0], 0.5, t=20, start=10, temporality=DELTA)))
    series.consume(request(histogram_metric("h", [1.0], [2, 3], 9.0, t=30, start=20, temporality=DELTA)))
    assert value(series, "h_seconds_bucket", le="1.0") == 3
    assert value(series, "h_seconds_count") == 6 and value(series, "h_seconds_sum") == 9.5
    other = series.consume(request(histogram_metric("h", [2.0], [1, 0], 1.0, t=40, start=30, temporality=DELTA)))
    assert other.rejected == 1 and "bounds" in other.message
    series.consume(request(expo_metric("e", 1, 0, [1, 1], t=20, start=10, temporality=DELTA)))   # (1,√2], (√2,2]
    series.consume(request(expo_metric("e", 3, 8, [4], t=30, start=20, temporality=DELTA)))      # (2, 2^(9/8)]
    assert value(series, "e_seconds_bucket", le="2.0") == 2
    assert value(series, "e_seconds_bucket", le="4.0") == 6
    assert value(series, "e_seconds_count") == 6


def test_exponential_buckets_merge_exactly_to_powers_of_two() -> None:
    # scale 2: bucket i is (2^(i/4), 2^((i+1)/4)]; i = -4..3 lie in (0.5, 1] and (1, 2]
    assert scale0(2, -4, [1, 1, 1, 1, 2, 0, 0, 3]) == {-1: 4, 0: 5}
    # scale -1: bucket 1 is (4, 16]: its count goes to the highest scale-0 bucket inside, (8, 16]
    assert scale0(-1, 1, [5]) == {3: 5}
    bounds, counts = explicit({1: 2}, 3, {0: 1, 2: 4})
    # negative (-4, -2] at le=-2 after an empty le=-4; zero at 0; positive from an empty le=1
    assert bounds == [-4.0, -2.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    assert counts == [0, 2, 3, 0, 1, 0, 4, 0]


def test_exponential_histogram_with_negative_and_zero_buckets() -> None:
    series = new()
    series.consume(request(expo_metric("t", 0, 1, [2], zero=1, neg_offset=0, negative=[3], total=-1.0)))
    assert value(series, "t_seconds_bucket", le="-2.0") == 0
    assert value(series, "t_seconds_bucket", le="-1.0") == 3
    assert value(series, "t_seconds_bucket", le="0.0") == 4
    assert value(series, "t_seconds_bucket", le="4.0") == 6
    assert value(series, "t_seconds_bucket", le="+Inf") == 6
    # negative buckets: no _sum (OpenMetrics forbids it) and so no _count
    assert value(series, "t_seconds_count") is None and value(series, "t_seconds_sum") is None


# -- refusals ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("metric", "reason"), [
    (histogram_metric("h", [1.0, 2.0], [1, 1], 1.0), "2 bucket counts for 2 bounds"),
    (histogram_metric("h", [1.0], [1, 1], 1.0, count=5), "sum to 2, count is 5"),
    (histogram_metric("h", [2.0, 1.0], [1, 1, 1], 1.0), "strictly increasing"),
    (histogram_metric("h", [math.nan], [1, 1], 1.0), "strictly increasing"),
    (expo_metric("e", 21, 0, [1]), "scale 21"),
    (expo_metric("e", 0, 0, [1] + [0] * 70 + [1]), "spans more than"),
    (sum_metric("c", [(-1, {}, 10)]), "counter value -1"),
    (sum_metric("c", [(math.nan, {}, 10)]), "counter value nan"),
    (sum_metric("", [(1, {}, 10)]), "no usable character"),
    (sum_metric("...", [(1, {}, 10)]), "no usable character"),
    (sum_metric("c", [(1, {}, 10)], temporality=0), "temporality unspecified"),
])
def test_invalid_points_are_refused_and_counted_never_raised(metric, reason) -> None:
    series = new()
    consumed = series.consume(request(metric, gauge_metric("fine", [(1.0, {}, 10)])))
    assert (consumed.accepted, consumed.rejected) == (1, 1)
    assert "invalid" in consumed.message and reason in consumed.message
    assert series.rejected["invalid"] == 1
    assert series.series_count == 1                       # only `fine`: a refused point leaves no series
    samples(series), samples(series, True)                # and both renders still parse


def test_nan_and_inf_gauges_are_kept() -> None:
    series = new()
    series.consume(request(gauge_metric("g", [(math.nan, {"k": "a"}, 10), (math.inf, {"k": "b"}, 10),
                                              (-math.inf, {"k": "c"}, 10)])))
    assert math.isnan(value(series, "g", k="a"))
    assert value(series, "g", k="b") == math.inf and value(series, "g", k="c") == -math.inf
    delta = series.consume(request(sum_metric("d", [(math.inf, {}, 10)], monotonic=False, temporality=DELTA)))
    assert delta.rejected == 1


def test_a_name_keeps_its_first_type() -> None:
    series = new()
    series.consume(request(sum_metric("x", [(1, {}, 10)], monotonic=False)))        # a gauge
    flip = series.consume(request(histogram_metric("x", [1.0], [1, 0], 1.0, unit="")))
    assert flip.rejected == 1 and "type_conflict" in flip.message and "x is a gauge" in flip.message
    assert series.consume(request(sum_metric("loom_agent_up", [(1, {}, 10)]))).rejected == 1
    assert series.consume(request(gauge_metric("target_info", [(1.0, {}, 10)]))).rejected == 1
    assert series.consume(request(gauge_metric("up", [(1.0, {}, 10)]))).rejected == 1
    series.taken = {"orders"}.__contains__          # a custom metric of that name (root.py: the MetricStore)
    assert series.consume(request(sum_metric("orders", [(1, {}, 10)]))).rejected == 1
    assert series.rejected["type_conflict"] == 5
    assert value(series, "x") == 1


def test_max_series_refuses_new_series_and_existing_ones_keep_updating() -> None:
    series = new(max_series=5)                            # only service attributes: no target_info series
    first = series.consume(request(gauge_metric("g", [(1.0, {"i": str(i)}, 10) for i in range(8)])))
    assert (first.accepted, first.rejected) == (5, 3)
    assert "series_limit" in first.message and "max_series 5" in first.message
    update = series.consume(request(gauge_metric("g", [(2.0, {"i": str(i)}, 20) for i in range(8)])))
    assert (update.accepted, update.rejected) == (5, 3)
    assert sorted(v for (n, _), v in samples(series).items() if n == "g") == [2.0] * 5
    series.reconfigure(max_series=6, stale_after=300.0)
    assert series.consume(request(gauge_metric("g", [(3.0, {"i": "7"}, 30)]))).accepted == 1


@pytest.mark.parametrize("requests", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_a_million_attribute_values_stay_bounded(requests: int) -> None:
    """100,000 distinct values in the fast lane, 1,000,000 in the slow one."""
    series = new(max_series=1000)
    metric = gauge_metric("hostile", [])
    refused = 0
    for chunk in range(requests):                         # requests of 5,000 distinct values each
        metric.gauge.ClearField("data_points")
        metric.gauge.data_points.extend(number_points("gauge", [(1.0, {"user": f"{chunk}-{i}"}, 10)
                                                                for i in range(5000)]))
        refused += series.consume(request(metric)).rejected
    assert series.series_count == 1000 and refused == requests * 5000 - 1000
    assert series.rejected["series_limit"] == refused
    family = series.families["hostile"]
    assert len(family.series) == 1000 and len(family.raw) <= 2 * 1000 + 1024


def test_too_many_attributes_on_one_point_are_refused() -> None:
    series = new()
    consumed = series.consume(request(gauge_metric("g", [(1.0, {f"k{i}": "v" for i in range(200)}, 10)])))
    assert consumed.rejected == 1 and "attributes" in consumed.message


# -- staleness ---------------------------------------------------------------------------------------

def test_series_not_updated_for_stale_after_disappear() -> None:
    clock = Clock()
    series = new(stale_after=60.0, clock=clock)
    series.consume(request(gauge_metric("a", [(1.0, {}, 10)]), resource={**SERVICE, "host.name": "h"}))
    clock.now += 40
    series.consume(request(gauge_metric("b", [(1.0, {}, 10)]), resource={"service.name": "other"}))
    clock.now += 30                                       # a: 70 s old, b: 30 s
    names = {n for n, _ in samples(series)}
    assert "a" not in names and "target_info" not in names and "b" in names
    assert series.expired == 2 and series.series_count == 1
    clock.now += 31
    assert samples(series) == {}
    assert series.families == {}
    # a series that comes back starts again (a delta from its new start)
    series.consume(request(sum_metric("a", [(2, {}, 50, 40)], temporality=DELTA)))
    assert value(series, "a_total") == 2


def test_an_updated_series_stays_and_a_sweep_reaches_only_stale_ones() -> None:
    clock = Clock()
    series = new(stale_after=10.0, clock=clock)
    for step in range(5):
        series.consume(request(gauge_metric("kept", [(float(step), {}, 10 + step)]),
                               gauge_metric(f"once{step}", [(1.0, {}, 10)])))
        clock.now += 6
    assert {n for n, _ in samples(series)} == {"kept", "once4"}
    assert value(series, "kept") == 4.0


def test_no_recorded_value_flag_ends_the_series() -> None:
    series = new()
    series.consume(request(gauge_metric("g", [(1.0, {}, 10)])))
    ended = gauge_metric("g", [(0.0, {}, 20)])
    ended.gauge.data_points[0].flags = 1
    assert series.consume(request(ended)).accepted == 1
    assert value(series, "g") is None and series.series_count == 0


# -- /metrics and the re-export ----------------------------------------------------------------------

def test_rendered_beside_the_agents_metrics_in_both_formats() -> None:
    series = new()
    series.consume(request(sum_metric("orders", [(4, {}, 10)])))
    registry = CollectorRegistry()
    registry.register(series.stats_collector())
    for openmetrics in (False, True):
        body = render(None, registry, openmetrics=openmetrics, renderers=(series.render,)).decode()
        families = {f.name: f for f in (parse_openmetrics(body) if openmetrics else parse_text(body))}
        assert families["orders"].samples[0].value == 4
        assert families["loom_agent_otlp_metric_series"].samples[0].value == 1
        rejected = {s.labels["reason"]: s.value for s in families["loom_agent_otlp_metric_points_rejected"].samples}
        assert set(rejected) == {"series_limit", "type_conflict", "out_of_order", "invalid"}


def test_reexported_with_their_resources_as_cumulative_state() -> None:
    series = new()
    series.consume(request(sum_metric("jobs", [(2, {"queue": "a"}, 20, 10)], temporality=DELTA),
                           histogram_metric("lat", [1.0], [1, 1], 3.0),
                           expo_metric("e", 0, 0, [1, 2]),
                           summary_metric("s", [(0.5, 1.0)], count=3, total=4.0),
                           resource={**SERVICE, "host.name": "h"}))
    series.consume(request(sum_metric("jobs", [(5, {"queue": "a"}, 30, 20)], temporality=DELTA),
                           resource={**SERVICE, "host.name": "h"}))

    async def run(receiver: OtlpReceiver) -> None:
        config = TelemetryConfig(otlp=OtlpConfig(endpoint=receiver.endpoint, protocol="http/protobuf", timeout=1.0))
        provider = build_tracer_provider(config)
        export = OtlpExport.from_config(config, registry=CollectorRegistry(), tracer_provider=provider,
                                        environ={}, metrics_interval=0.1, stop_timeout=1.0)
        export.add_metric_source(lambda: prom_reexport.take(series))
        await export.start()
        await asyncio.to_thread(receiver.wait_for, lambda: "jobs" in receiver.latest_metrics(), what="jobs")
        await export.stop()

    with OtlpReceiver() as receiver:
        asyncio.run(run(receiver))
        last = receiver.accepted("metrics")[-1]
    theirs = [rm for rm in last.resource_metrics
              if any(a.key == "host.name" for a in rm.resource.attributes)]
    assert len(theirs) == 1
    attrs = {a.key: a.value.string_value for a in theirs[0].resource.attributes}
    assert attrs == {**SERVICE, "host.name": "h"}
    scope = theirs[0].scope_metrics[0]
    assert (scope.scope.name, scope.scope.version) == ("app", "1.0")
    metrics = {m.name: m for m in scope.metrics}
    jobs = metrics["jobs"].sum
    assert jobs.is_monotonic and jobs.aggregation_temporality == CUMULATIVE
    assert jobs.data_points[0].as_double == 7 and jobs.data_points[0].start_time_unix_nano == 10
    assert {a.key: a.value.string_value for a in jobs.data_points[0].attributes} == {"queue": "a"}
    assert list(metrics["lat"].histogram.data_points[0].bucket_counts) == [1, 1]
    expo = metrics["e"].exponential_histogram.data_points[0]
    assert (expo.scale, expo.positive.offset, list(expo.positive.bucket_counts)) == (0, 0, [1, 2])
    assert metrics["s_count"].sum.data_points[0].as_int == 3
    assert metrics["s"].gauge.data_points[0].as_double == 1.0
    agents = [rm for rm in last.resource_metrics if rm is not theirs[0]]
    assert all(any(a.value.string_value == "loom-agent" for a in rm.resource.attributes) for rm in agents)


# -- through the receiver's HTTP listener ------------------------------------------------------------

@pytest.mark.parametrize(("parts", "size"), [(1, 20_000), pytest.param(5, 200_000, marks=pytest.mark.slow)])
def test_hostile_metric_requests_through_the_receiver_get_partial_success_never_a_500(agent_server, run, parts: int,
                                                                                      size: int) -> None:
    """Distinct attribute values (a million in the slow lane: 5 requests of 200,000 points), out-of-order
    deltas and a type flip sent to the agent's OTLP/HTTP listener: 200s whose partial_success counts what was
    refused, the series stay at max_series, /metrics stays whole."""
    import aiohttp
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    from agent.api.keys import OTLP_RECEIVER

    agent = agent_server({"otlp_receiver": {"http": {"enabled": True, "listen": "127.0.0.1:0"}, "ingest_keys": [],
                                            "max_body_bytes": 32 * 1024 * 1024,
                                            "metrics": {"max_series": 500}}})
    url = f"http://127.0.0.1:{agent.app[OTLP_RECEIVER].ports['http']}/v1/metrics"

    def post(req: ExportMetricsServiceRequest) -> tuple[int, ExportMetricsServiceResponse]:
        async def go() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as session, session.post(
                    url, data=req.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}) as resp:
                return resp.status, await resp.read()
        status, body = run(go())
        return status, ExportMetricsServiceResponse.FromString(body) if status == 200 else body

    status, answer = post(request(sum_metric("jobs", [(2, {}, 20, 10)], temporality=DELTA)))
    assert status == 200 and answer.partial_success.rejected_data_points == 0
    metric = gauge_metric("hostile", [])
    rejected = 0
    for part in range(parts):
        metric.gauge.ClearField("data_points")
        metric.gauge.data_points.extend(number_points("gauge", [(1.0, {"user": f"{part}-{i}"}, 10)
                                                                for i in range(size)]))
        status, answer = post(request(metric))
        assert status == 200
        rejected += answer.partial_success.rejected_data_points
        assert "series_limit" in answer.partial_success.error_message
    assert rejected == parts * size - 499                 # "jobs" holds one of the 500
    # the delta again (a retry), a delta ending before it, and "hostile" as a histogram: all refused
    status, answer = post(request(sum_metric("jobs", [(2, {}, 20, 10), (5, {}, 15, 5)], temporality=DELTA),
                                  histogram_metric("hostile", [1.0], [1, 0], 1.0, unit="")))
    assert status == 200 and answer.partial_success.rejected_data_points == 3
    assert "out_of_order" in answer.partial_success.error_message
    assert "type_conflict" in answer.partial_success.error_message
    text = str(agent.get("/metrics").body)
    families = {f.name: f for f in parse_text(text)}
    assert len(families["hostile"].samples) == 499 and families["jobs"].samples[0].value == 2
    assert families["loom_agent_otlp_metric_series"].samples[0].value == 500
    by_reason = {s.labels["reason"]: s.value for s in families["loom_agent_otlp_metric_points_rejected"].samples}
    assert by_reason == {"series_limit": parts * size - 499, "out_of_order": 2, "type_conflict": 1, "invalid": 0}


def test_a_reload_applies_max_series_and_stale_after(run, tmp_path) -> None:
    """otlp_receiver.metrics.max_series / stale_after reach the running series on SIGHUP's path (no restart):
    a lower limit refuses new series, the old ones stay; the limit's gauge follows."""
    from agent.api.keys import OTLP_METRICS, REGISTRY, RELOADER
    from agent.app.root import build_app
    from agent.config.load import load_config
    from tests.support.agent_app import served

    path = tmp_path / "agent.yaml"

    def write(max_series: int, stale_after: str) -> None:
        path.write_text("targets: []\nstore: {driver: none}\notlp_receiver: {ingest_keys: [], "
                        "http: {enabled: true, listen: '127.0.0.1:0'}, "
                        f"metrics: {{max_series: {max_series}, stale_after: {stale_after}}}}}\n")

    write(10, "5m")

    async def scenario() -> None:
        app = build_app(load_config(str(path), environ={}))
        async with served(app):
            series = app[OTLP_METRICS]
            assert (series.max_series, series.stale_after) == (10, 300.0)
            series.consume(request(gauge_metric("g", [(1.0, {"i": str(i)}, 10) for i in range(5)])))
            write(3, "1m")
            assert await app[RELOADER].reload()
            assert (series.max_series, series.stale_after) == (3, 60.0)
            assert app[REGISTRY].get_sample_value("loom_agent_otlp_metric_series_limit") == 3
            again = series.consume(request(gauge_metric("g", [(2.0, {"i": str(i)}, 20) for i in range(6)])))
            assert (again.accepted, again.rejected) == (5, 1)
    run(scenario())
