"""OTLP/HTTP protobuf bodies for bench/otlp.py: what an OpenTelemetry SDK sends, over a bounded set of series.

Metrics: one ExportMetricsServiceRequest of 1,000 data points, as a service's SDK exports them every
interval: 8 counters (cumulative monotonic sums, http.* attributes), 6 gauges and 6 explicit-bucket
histograms (the SDK's default 15 bounds), 50 series each (method x route x status), under one resource
(service.name, service.instance.id, host.name, ...) and scope. The values and times move on with every
request (`metrics_body(i)`), so cumulative points are newer each time; the series stay the same set.

Spans: one ExportTraceServiceRequest of 512 spans (HTTP server and client spans, ~10 attributes each,
a quarter with an error status), new ids each time.
"""

from __future__ import annotations

import os
import random

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

POINTS_PER_REQUEST = 1000
SPANS_PER_REQUEST = 512
SERIES_PER_METRIC = 50
COUNTERS, GAUGES, HISTOGRAMS = 8, 6, 6            # x 50 series = 1,000 points
BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0)
RESOURCE = {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "checkout-7d9f-1",
            "service.version": "2.4.1", "host.name": "web-3", "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.45.2"}
METHODS = ("GET", "POST")
ROUTES = ("/", "/cart", "/checkout", "/api/items/{id}", "/api/orders")
STATUSES = (200, 201, 302, 404, 500)


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def series_attributes() -> list[list[KeyValue]]:
    combos = [(m, r, s) for m in METHODS for r in ROUTES for s in STATUSES][:SERIES_PER_METRIC]
    return [[kv("http.request.method", m), kv("http.route", r), kv("http.response.status_code", s),
             kv("server.address", "checkout.internal")] for m, r, s in combos]


class MetricBodies:
    def __init__(self) -> None:
        self.attributes = series_attributes()
        self.rng = random.Random(7)

    def request(self, i: int, value_seed: int | None = None) -> ExportMetricsServiceRequest:
        """The i-th export (its time i seconds after the start); values from `value_seed` (default i)."""
        start, now = 1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + (i + 1) * 1_000_000_000
        self.rng.seed(i if value_seed is None else value_seed)
        i = i if value_seed is None else value_seed
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.extend(kv(k, v) for k, v in RESOURCE.items())
        sm = rm.scope_metrics.add()
        sm.scope.name, sm.scope.version = "opentelemetry.instrumentation.aiohttp_server", "0.66b2"
        for c in range(COUNTERS):
            m = sm.metrics.add(name=f"http.server.requests.c{c}", unit="{request}", description="Requests.")
            m.sum.is_monotonic, m.sum.aggregation_temporality = True, 2
            for attrs in self.attributes:
                m.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=now, as_int=i * 3 + c,
                                      attributes=attrs)
        for g in range(GAUGES):
            m = sm.metrics.add(name=f"process.memory.usage.g{g}", unit="By", description="Memory.")
            for attrs in self.attributes:
                m.gauge.data_points.add(time_unix_nano=now, as_double=self.rng.random() * 1e6, attributes=attrs)
        for h in range(HISTOGRAMS):
            m = sm.metrics.add(name=f"http.server.request.duration.h{h}", unit="ms", description="Duration.")
            m.histogram.aggregation_temporality = 2
            for attrs in self.attributes:
                counts = [i + k for k in range(len(BOUNDS) + 1)]
                m.histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=now, count=sum(counts),
                                            sum=float(sum(counts)) * 42.0, explicit_bounds=BOUNDS,
                                            bucket_counts=counts, attributes=attrs)
        return req

    def body(self, i: int, value_seed: int | None = None) -> bytes:
        return self.request(i, value_seed).SerializeToString()


def spans_body(i: int) -> bytes:
    rng = random.Random(i)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kv(k, v) for k, v in RESOURCE.items())
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.aiohttp_server", "0.66b2"
    base = 1_700_000_000_000_000_000 + i * 1_000_000_000
    trace_id = os.urandom(16)
    for n in range(SPANS_PER_REQUEST):
        if n % 8 == 0:
            trace_id = os.urandom(16)
        route = ROUTES[n % len(ROUTES)]
        status = STATUSES[rng.randrange(len(STATUSES))]
        server = n % 2 == 0
        span = ss.spans.add(trace_id=trace_id, span_id=os.urandom(8), name=f"GET {route}",
                            kind=trace_pb2.Span.SPAN_KIND_SERVER if server else trace_pb2.Span.SPAN_KIND_CLIENT,
                            start_time_unix_nano=base + n * 1000, end_time_unix_nano=base + n * 1000 + 2_500_000)
        span.attributes.extend([kv("http.request.method", "GET"), kv("http.route", route),
                                kv("http.response.status_code", status), kv("url.scheme", "https"),
                                kv("server.address", "checkout.internal"), kv("server.port", 443),
                                kv("network.protocol.version", "1.1"), kv("user_agent.original", "Mozilla/5.0"),
                                kv("client.address", "10.0.0.7"), kv("url.path", route)])
        if status >= 500:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return req.SerializeToString()


def metrics_points(req: ExportMetricsServiceRequest) -> int:
    return sum(len(getattr(m, m.WhichOneof("data")).data_points) for rm in req.resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics)
