"""The real OpenTelemetry Python SDK (MeterProvider + OTLPMetricExporter over HTTP/protobuf) sends metrics to
an agent process; a real Prometheus (Debian's) scrapes the agent's /metrics with honor_labels, as the
shipped prometheus/prometheus.yml does, and PromQL reads the converted series: names with their unit and
`_total` suffixes, values, job/instance from the resource, target_info, histogram_quantile over explicit
and exponential histograms, and a delta-temporality counter accumulated."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from tests.support.procs import AgentProcess, PrometheusProcess, free_port, wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None and not Path(PrometheusProcess.BINARY).exists(),
                                 reason="Prometheus is installed by scripts/test.sh")]

DELTA = {kind: AggregationTemporality.DELTA for kind in (Counter, UpDownCounter, Histogram, ObservableCounter,
                                                         ObservableUpDownCounter, ObservableGauge)}


class Stack:
    def __init__(self, tmp: Path):
        self.otlp_port = free_port()
        self.agent = AgentProcess(tmp, {
            "targets": [], "store": {"driver": "none"},
            "otlp_receiver": {"http": {"enabled": True, "listen": f"127.0.0.1:{self.otlp_port}"},
                              "ingest_keys": []}})
        self.prometheus = PrometheusProcess(tmp, [{"job_name": "loom-agent", "honor_labels": True,
                                                   "static_configs": [{"targets": [f"127.0.0.1:{self.agent.port}"]}]}])

    def provider(self, resource: dict, *, delta: bool = False, views: tuple = ()) -> MeterProvider:
        exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{self.otlp_port}/v1/metrics",
                                      preferred_temporality=DELTA if delta else None)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        return MeterProvider(resource=Resource.create(resource), metric_readers=[reader], views=list(views))

    def value(self, expr: str) -> float:
        result = wait_until(lambda: self.prometheus.query(expr), 30, what=f"{expr} in Prometheus")
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def stop(self) -> None:
        self.prometheus.stop()
        assert self.agent.stop() == 0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    yield stack
    stack.stop()


def test_sdk_metrics_reach_prometheus_as_the_compatibility_spec_names_them(stack: Stack) -> None:
    provider = stack.provider(
        {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "co-1",
         "host.name": "web-3", "deployment.environment": "prod"},
        views=(View(instrument_name="rpc.latency", aggregation=ExponentialBucketHistogramAggregation()),))
    meter = provider.get_meter("shop.checkout", "1.2")
    orders = meter.create_counter("orders", unit="{order}", description="Orders placed.")
    queue = meter.create_up_down_counter("queue.items", unit="{item}")
    duration = meter.create_histogram("http.server.duration", unit="ms")
    latency = meter.create_histogram("rpc.latency", unit="s")

    def temperature(_options: CallbackOptions) -> list[Observation]:
        return [Observation(61.5, {"sensor": "cpu0"})]

    meter.create_observable_gauge("cpu.temperature", [temperature], unit="Cel")
    orders.add(3, {"country": "fr"})
    orders.add(4, {"country": "fr"})
    orders.add(1, {"country": "de"})
    queue.add(10)
    queue.add(-4)
    for ms in range(1, 101):                     # 1..100 ms: the median is ~50, p90 ~90
        duration.record(ms, {"http.route": "/cart"})
    for i in range(1, 1001):                     # 1 ms .. 1 s uniform
        latency.record(i / 1000)
    assert provider.force_flush()

    job = 'job="shop/checkout",instance="co-1"'
    assert stack.value(f'orders_total{{{job},country="fr"}}') == 7
    assert stack.value(f'orders_total{{{job},country="de"}}') == 1
    assert stack.value(f'queue_items{{{job}}}') == 6
    assert stack.value(f'cpu_temperature_celsius{{{job},sensor="cpu0"}}') == 61.5
    scope = stack.prometheus.query(f'orders_total{{{job},country="fr"}}')[0]["metric"]
    assert (scope["otel_scope_name"], scope["otel_scope_version"]) == ("shop.checkout", "1.2")
    assert stack.value(f'target_info{{{job},host_name="web-3",deployment_environment="prod"}}') == 1
    assert stack.value(f'http_server_duration_milliseconds_count{{{job},http_route="/cart"}}') == 100
    assert stack.value(f'http_server_duration_milliseconds_sum{{{job}}}') == sum(range(1, 101))
    # explicit buckets (the SDK's default 0, 5, 10, 25, 50, 75, 100, ...): the quantile interpolates in them
    median = stack.value(f'histogram_quantile(0.5, http_server_duration_milliseconds_bucket{{{job}}})')
    assert 40 <= median <= 60
    # the exponential histogram, as power-of-two buckets: within a factor of two of the true quantile
    assert stack.value(f'rpc_latency_seconds_count{{{job}}}') == 1000
    p90 = stack.value(f'histogram_quantile(0.9, rpc_latency_seconds_bucket{{{job}}})')
    assert 0.45 <= p90 <= 1.8
    assert {t["health"] for t in stack.prometheus.targets()} == {"up"}
    provider.shutdown()


def test_a_delta_counter_is_accumulated_across_exports(stack: Stack) -> None:
    provider = stack.provider({"service.name": "worker"}, delta=True)
    meter = provider.get_meter("worker")
    jobs = meter.create_counter("jobs.done")
    seconds = meter.create_histogram("job.duration", unit="s")
    jobs.add(2)
    seconds.record(0.3)
    assert provider.force_flush()
    assert stack.value('jobs_done_total{job="worker"}') == 2
    jobs.add(5)
    seconds.record(3.0)
    assert provider.force_flush()
    wait_until(lambda: stack.prometheus.query('jobs_done_total{job="worker"} == 7'), 30, what="the second delta")
    assert stack.value('job_duration_seconds_count{job="worker"}') == 2
    assert stack.value('job_duration_seconds_sum{job="worker"}') == pytest.approx(3.3)
    provider.shutdown()
    metrics = stack.agent.metrics()
    assert 'loom_agent_otlp_metric_points_rejected_total{reason="out_of_order"} 0.0' in metrics
