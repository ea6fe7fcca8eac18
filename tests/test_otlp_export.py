"""OTLP export of metrics and traces against a real receiver on 127.0.0.1 (HTTP/protobuf and gRPC):
the values equal the store's and the registry's, and a collector that is down, failing or hung
never blocks the event loop, never raises into the caller, and is counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary

from agent.config.load import parse_config
from agent.metrics.store import MetricStore
from agent.otlp.export import LatestSnapshot, OtlpExport
from agent.otlp.metrics import registry_metrics
from agent.otlp.sender import RetryPolicy
from agent.otlp.traces import SpanQueue
from agent.config.node import ConfigError
from agent.otlp.tracing import (METRIC_POINTS_PER_REQUEST, DirectSpanExporter, build_metric_exporter, build_span_exporter,
                             build_tracer_provider)
from agent.otlp.config import OtlpConfig, TelemetryConfig
from tests.support.otlp_receiver import OtlpReceiver

PROTOCOLS = ["http/protobuf", "grpc"]
START_NS = 1_700_000_000_000_000_000
FAST = dict(metrics_interval=0.2, flush_interval=0.1, backoff=0.05, backoff_cap=0.2, stop_timeout=1.0)


def telemetry(receiver: OtlpReceiver | None, timeout: float = 0.5, **otlp) -> TelemetryConfig:
    endpoint = receiver.endpoint if receiver is not None else None
    protocol = receiver.protocol if receiver is not None else None
    return TelemetryConfig(otlp=OtlpConfig(endpoint=endpoint, protocol=protocol, timeout=timeout, **otlp))


def build_export(config: TelemetryConfig, registry: CollectorRegistry, store: MetricStore | None = None,
                 **overrides) -> tuple[OtlpExport, TracerProvider]:
    provider = build_tracer_provider(config)
    export = OtlpExport.from_config(config, registry=registry, tracer_provider=provider, store=store,
                                    environ={}, **{**FAST, **overrides})
    return export, provider


def sample(registry: CollectorRegistry, name: str, signal: str) -> float:
    return registry.get_sample_value(name, {"signal": signal})


def event_store() -> MetricStore:
    store = MetricStore()
    events = store.counter("loom_events", "Events, by category and event.", ("category", "event"))
    events.inc(("auth", "login_attempt"), 3)
    events.inc(("web_vitals", "lcp"), 2.5)
    store.gauge("loom_realtime_connections", "Open realtime connections.", ("channel",)).set(("chat",), 7)
    lcp = store.histogram("loom_web_vitals_lcp_seconds", "LCP.", ("page",), buckets=(0.5, 1.0, 2.5))
    for value in (0.2, 0.5, 0.9, 3.0, 10.0):
        lcp.observe(("/home",), value)
    return store


def prom_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("loom_probes", "Probes.", ["result"], registry=registry).labels("success").inc(4)
    Gauge("loom_agent_targets", "Targets.", ["kind"], registry=registry).labels("http").set(2)
    latency = Histogram("loom_probe_duration_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.5, 0.7, 4.0):
        latency.observe(value)
    Info("loom_agent_build", "Build.", registry=registry).info({"version": "1.2.3"})
    return registry


def attrs(point) -> dict[str, str]:
    return {a.key: a.value.string_value for a in point.attributes}


def assert_equal_to_store(received: dict, store: MetricStore) -> None:
    for family in store.families():
        metric = received[family.name]
        if family.kind == "histogram":
            points = {tuple(attrs(p)[label] for label in family.labels): p for p in metric.histogram.data_points}
            assert list(points[("/home",)].explicit_bounds) == list(family.buckets)
            for key, data in family.series.items():
                assert list(points[key].bucket_counts) == data[:-1]
                assert points[key].count == sum(data[:-1]) and points[key].sum == pytest.approx(data[-1])
            continue
        data = metric.sum if family.kind == "counter" else metric.gauge
        points = {tuple(attrs(p)[label] for label in family.labels): p.as_double for p in data.data_points}
        assert points == family.series
        if family.kind == "counter":
            assert metric.sum.is_monotonic and metric.sum.aggregation_temporality == 2     # CUMULATIVE
            assert all(p.start_time_unix_nano == START_NS for p in metric.sum.data_points)


def assert_equal_to_registry(received: dict, registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    assert received["loom_probes"].sum.data_points[0].as_double == value("loom_probes_total", {"result": "success"})
    assert received["loom_agent_targets"].gauge.data_points[0].as_double == value("loom_agent_targets",
                                                                                 {"kind": "http"})
    (hist,) = received["loom_probe_duration_seconds"].histogram.data_points
    cumulative = [value("loom_probe_duration_seconds_bucket", {"le": le}) for le in ("0.1", "1.0", "+Inf")]
    assert list(hist.explicit_bounds) == [0.1, 1.0]
    assert list(hist.bucket_counts) == [cumulative[0], cumulative[1] - cumulative[0], cumulative[2] - cumulative[1]]
    assert hist.count == value("loom_probe_duration_seconds_count")
    assert hist.sum == pytest.approx(value("loom_probe_duration_seconds_sum"))
    (info,) = received["loom_agent_build_info"].gauge.data_points
    assert info.as_double == 1 and attrs(info) == {"version": "1.2.3"}


async def measure_lag(until: Callable[[], Awaitable[None]], tick: float = 0.01) -> float:
    """Run `until()` while a ticker measures how late the loop wakes it; the worst lateness."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while not done.is_set():
            planned = loop.time() + tick
            await asyncio.sleep(tick)
            worst = max(worst, loop.time() - planned)

    task = asyncio.create_task(ticker())
    try:
        await until()
    finally:
        done.set()
        await task
    return worst


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metrics_reach_the_collector_with_the_stores_values(protocol: str) -> None:
    async def run(receiver: OtlpReceiver) -> None:
        store, registry = event_store(), prom_registry()
        export, _ = build_export(telemetry(receiver), registry, store, start_ns=START_NS)
        await export.start()
        await asyncio.to_thread(receiver.wait_for, lambda: "loom_events" in receiver.latest_metrics(),
                                what="a metrics request")
        await export.stop()
        received = receiver.latest_metrics()
        assert_equal_to_store(received, store)
        assert_equal_to_registry(received, registry)
        assert sample(registry, "loom_agent_exported_total", "metrics") > 0
        assert sample(registry, "loom_agent_export_failures_total", "metrics") == 0
        resource = {a.key: a.value.string_value for a in receiver.accepted("metrics")[-1].resource_metrics[0]
                    .resource.attributes}
        assert resource["service.name"] == "loom-agent"

    with OtlpReceiver(protocol) as receiver:
        asyncio.run(run(receiver))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_reach_the_collector_in_batches_with_headers(protocol: str) -> None:
    async def run(receiver: OtlpReceiver) -> None:
        registry = CollectorRegistry()
        config = telemetry(receiver, headers={"x-loom-tenant": "t1"}, export_metrics=False)
        export, provider = build_export(config, registry, batch_size=100)
        await export.start()
        tracer = provider.get_tracer("test")
        for i in range(250):
            tracer.start_span(f"span-{i}").end()
        await asyncio.to_thread(receiver.wait_for, lambda: len(receiver.spans()) == 250, what="250 spans")
        await export.stop()
        assert sorted(s.name for s in receiver.spans()) == sorted(f"span-{i}" for i in range(250))
        assert max(len(r.resource_spans[0].scope_spans[0].spans) for r in receiver.accepted("traces")) <= 100
        assert all(r.headers.get("x-loom-tenant") == "t1" for r in receiver.received)
        assert sample(registry, "loom_agent_exported_total", "traces") == 250
        assert sample(registry, "loom_agent_export_dropped_total", "traces") == 0
        assert registry.get_sample_value("loom_agent_exported_total", {"signal": "metrics"}) is None

    with OtlpReceiver(protocol) as receiver:
        asyncio.run(run(receiver))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collector_down_drops_and_counts_with_a_bounded_queue(protocol: str) -> None:
    async def run(receiver: OtlpReceiver) -> None:
        registry = CollectorRegistry()
        export, provider = build_export(telemetry(receiver), registry, event_store(), queue_size=50,
                                        batch_size=20, max_retries=1)
        await export.start()
        queue = export.traces.queue
        tracer = provider.get_tracer("test")
        for i in range(2000):
            tracer.start_span("s").end()                   # never raises, whatever the collector does
            assert len(queue) <= 50
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        assert sample(registry, "loom_agent_export_queue_size", "traces") <= 50
        await export.stop()
        dropped = sample(registry, "loom_agent_export_dropped_total", "traces")
        assert sample(registry, "loom_agent_exported_total", "traces") == 0
        assert dropped == 2000                      # every span is accounted for: none exported, all dropped
        for signal in ("traces", "metrics"):
            assert sample(registry, "loom_agent_export_failures_total", signal) >= 1
        assert sample(registry, "loom_agent_export_dropped_total", "metrics") > 0
        assert receiver.attempts("traces") == 0

    receiver = OtlpReceiver(protocol)
    receiver.down()
    try:
        asyncio.run(run(receiver))
    finally:
        receiver.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unavailable_collector_is_retried_and_data_arrives_after_recovery(protocol: str) -> None:
    async def run(receiver: OtlpReceiver) -> None:
        registry = CollectorRegistry()
        config = telemetry(receiver, export_metrics=False)
        export, provider = build_export(config, registry, max_retries=6)
        receiver.answer_unavailable(times=3)
        await export.start()
        tracer = provider.get_tracer("test")
        for i in range(30):
            tracer.start_span(f"s{i}").end()
        await asyncio.to_thread(receiver.wait_for, lambda: len(receiver.spans()) >= 30, what="spans after recovery")
        await export.stop()
        assert {s.name for s in receiver.spans()} == {f"s{i}" for i in range(30)}
        assert sum(1 for r in receiver.received if not r.accepted) == 3
        assert sample(registry, "loom_agent_export_failures_total", "traces") >= 3
        assert sample(registry, "loom_agent_export_retries_total", "traces") >= 3
        assert sample(registry, "loom_agent_exported_total", "traces") == 30
        assert sample(registry, "loom_agent_export_dropped_total", "traces") == 0

    with OtlpReceiver(protocol) as receiver:
        asyncio.run(run(receiver))


def test_metrics_export_recovers_and_the_last_values_arrive_on_stop() -> None:
    async def run(receiver: OtlpReceiver) -> None:
        registry, store = CollectorRegistry(), MetricStore()
        counter = store.counter("loom_events", "Events.", ("event",))
        export, _ = build_export(telemetry(receiver, export_traces=False), registry, store, max_retries=20)
        receiver.answer_unavailable()
        await export.start()
        for _ in range(10):
            counter.inc(("signup",))
            await asyncio.sleep(0.05)
        await asyncio.to_thread(receiver.wait_for, lambda: sample(registry, "loom_agent_export_retries_total",
                                                                  "metrics") >= 2, what="retries")
        receiver.answer_ok()
        await asyncio.to_thread(receiver.wait_for, lambda: receiver.accepted("metrics"), what="metrics after recovery")
        await export.stop()
        assert receiver.latest_metrics()["loom_events"].sum.data_points[0].as_double == 10
        assert sample(registry, "loom_agent_export_failures_total", "metrics") >= 2

    with OtlpReceiver("http/protobuf") as receiver:
        asyncio.run(run(receiver))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hung_collector_never_blocks_the_loop_and_stop_is_bounded(protocol: str) -> None:
    async def run(receiver: OtlpReceiver) -> None:
        registry = CollectorRegistry()
        # the exporter would wait 20 s for an answer: only giving up on the request can make stop() quick
        export, provider = build_export(telemetry(receiver, timeout=20.0), registry, event_store(),
                                        metrics_interval=0.1)
        await export.start()
        tracer = provider.get_tracer("test")

        async def keep_working() -> None:
            for _ in range(40):
                for _ in range(50):
                    tracer.start_span("s").end()
                await asyncio.sleep(0.03)

        lag = await measure_lag(keep_working)
        assert receiver.attempts("traces") >= 1 and receiver.attempts("metrics") >= 1   # both are hanging now
        started = time.monotonic()
        await export.stop()
        stop_seconds = time.monotonic() - started
        assert lag < 0.5, f"event loop lag {lag:.3f}s while the collector hung"
        assert stop_seconds < 3.0, f"stop() took {stop_seconds:.2f}s"
        assert receiver.accepted("traces") == [] and receiver.accepted("metrics") == []
        assert sample(registry, "loom_agent_export_dropped_total", "traces") == 2000
        assert sample(registry, "loom_agent_exported_total", "traces") == 0

    with OtlpReceiver(protocol) as receiver:
        receiver.hang()
        asyncio.run(run(receiver))


class RaisingSpanExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans) -> SpanExportResult:
        self.calls += 1
        raise RuntimeError("exporter bug")

    def shutdown(self) -> None:
        pass


class FailingMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.calls += 1
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def test_exporter_that_raises_or_fails_is_counted_not_propagated() -> None:
    async def run() -> None:
        registry, provider = CollectorRegistry(), TracerProvider()
        spans, metrics = RaisingSpanExporter(), FailingMetricExporter()
        export = OtlpExport(registry=registry, resource=provider.resource, metric_exporter=metrics,
                            span_exporter=spans, tracer_provider=provider, store=event_store(), max_retries=2,
                            **FAST)
        await export.start()
        for _ in range(10):
            provider.get_tracer("t").start_span("s").end()
        await asyncio.sleep(0.8)
        await export.stop()
        assert spans.calls == 3 and metrics.calls >= 3                     # one attempt + two retries
        assert sample(registry, "loom_agent_export_failures_total", "traces") == 3
        assert sample(registry, "loom_agent_export_retries_total", "traces") == 2
        assert sample(registry, "loom_agent_export_dropped_total", "traces") == 10
        assert sample(registry, "loom_agent_export_failures_total", "metrics") == metrics.calls

    asyncio.run(run())


def test_span_queue_is_bounded_and_counts_refusals() -> None:
    queue = SpanQueue(max_size=3, batch_size=2)
    provider = TracerProvider()
    provider.add_span_processor(queue)
    for _ in range(5):
        provider.get_tracer("t").start_span("s").end()
    assert (len(queue), queue.dropped) == (3, 2)
    assert len(queue.take(2)) == 2 and len(queue) == 1
    assert queue.close() == 1
    provider.get_tracer("t").start_span("late").end()
    assert (len(queue), queue.dropped) == (0, 3)


def test_latest_snapshot_keeps_only_the_newest() -> None:
    slot = LatestSnapshot()
    slot.put("old", 5)
    slot.put("new", 7)
    assert (len(slot), slot.dropped) == (7, 5)
    assert slot.take() == ("new", 7) and slot.take() is None and len(slot) == 0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, base=1.0, cap=30.0)
    for retry, step in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (10, 30.0)):
        delays = [policy.delay(retry) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1


def test_other_prometheus_types_become_gauges_and_sums() -> None:
    registry = CollectorRegistry()
    Enum("loom_state", "State.", states=["up", "down"], registry=registry).state("down")
    summary = Summary("loom_batch_size", "Batch sizes.", registry=registry)
    summary.observe(3)
    summary.observe(5)
    converted = {m.name: m for family in registry.collect() for m in registry_metrics(family, 1, 2)}
    state = {p.attributes["loom_state"]: p.value for p in converted["loom_state"].data.data_points}
    assert state == {"up": 0.0, "down": 1.0}
    assert converted["loom_batch_size_count"].data.data_points[0].value == 2
    assert converted["loom_batch_size_sum"].data.data_points[0].value == 8
    assert converted["loom_batch_size_count"].data.is_monotonic


def test_exporters_follow_config_then_environment() -> None:
    base = TelemetryConfig()
    assert build_span_exporter(base, {}) is None and build_metric_exporter(base, {}) is None
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}
    assert isinstance(build_span_exporter(base, env), DirectSpanExporter)      # http/protobuf, our encoder
    assert type(build_metric_exporter(base, env)).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    off = TelemetryConfig(otlp=OtlpConfig(endpoint="http://127.0.0.1:1", export_traces=False, export_metrics=False))
    assert build_span_exporter(off, {}) is None and build_metric_exporter(off, {}) is None


def test_base_endpoint_from_environment_and_headers_reach_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver("http/protobuf") as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-loom-key=secret")

        async def run() -> None:
            registry = CollectorRegistry()
            provider = build_tracer_provider(TelemetryConfig())
            export = OtlpExport.from_config(TelemetryConfig(otlp=OtlpConfig(timeout=1.0)), registry=registry,
                                            tracer_provider=provider, store=event_store(), **FAST)
            await export.start()
            provider.get_tracer("t").start_span("s").end()
            await asyncio.to_thread(receiver.wait_for, lambda: receiver.accepted("traces")
                                    and receiver.accepted("metrics"), what="both signals")
            await export.stop()

        asyncio.run(run())
        assert {r.path for r in receiver.received} == {"/v1/traces", "/v1/metrics"}
        assert all(r.headers.get("x-loom-key") == "secret" for r in receiver.received)


def test_config_endpoint_gets_the_signal_path_appended() -> None:
    with OtlpReceiver("http/protobuf") as receiver:
        async def run() -> None:
            config = TelemetryConfig(otlp=OtlpConfig(endpoint=receiver.endpoint + "/", timeout=1.0))
            export, provider = build_export(config, CollectorRegistry(), event_store())
            await export.start()
            provider.get_tracer("t").start_span("s").end()
            await asyncio.to_thread(receiver.wait_for, lambda: receiver.accepted("traces")
                                    and receiver.accepted("metrics"), what="both signals")
            await export.stop()

        asyncio.run(run())
        assert {r.path for r in receiver.received} == {"/v1/traces", "/v1/metrics"}


def test_a_large_snapshot_is_split_across_requests_and_arrives_whole() -> None:
    async def run(receiver: OtlpReceiver) -> None:
        store = MetricStore(default_series_limit=20_000)
        events = store.counter("loom_events", "Events.", ("event",))
        for i in range(METRIC_POINTS_PER_REQUEST + 1000):
            events.inc((f"e{i}",), i)
        export, _ = build_export(telemetry(receiver, export_traces=False), CollectorRegistry(), store,
                                 metrics_interval=60.0)
        await export.start()
        await export.stop()                                    # the final snapshot only
        requests = receiver.accepted("metrics")
        assert len(requests) >= 2
        values = {p.attributes[0].value.string_value: p.as_double for r in requests for rm in r.resource_metrics
                  for sm in rm.scope_metrics for m in sm.metrics if m.name == "loom_events"
                  for p in m.sum.data_points}
        assert values == {key[0]: value for key, value in events.series.items()}

    with OtlpReceiver("grpc") as receiver:
        asyncio.run(run(receiver))


def test_config_keys_defaults_and_errors_naming_the_key() -> None:
    otlp = parse_config("").telemetry.otlp
    assert (otlp.metrics_interval, otlp.queue_size, otlp.max_retries, otlp.export_metrics, otlp.export_traces) == \
        (15.0, 8192, 5, True, True)
    otlp = parse_config("""
telemetry:
  otlp: {metrics_interval: 30s, queue_size: 100, max_retries: 0, export_metrics: false, export_traces: true}
""").telemetry.otlp
    assert (otlp.metrics_interval, otlp.queue_size, otlp.max_retries, otlp.export_metrics) == (30.0, 100, 0, False)
    with pytest.raises(ConfigError) as info:
        parse_config("""
telemetry:
  otlp: {metrics_interval: 15, queue_size: 0, max_retries: 99, export_traces: "yes", batch: 1}
""")
    errors = "\n".join(info.value.errors)
    for key in ("metrics_interval", "queue_size", "max_retries", "export_traces"):
        assert f"telemetry.otlp.{key}: " in errors
    assert "telemetry.otlp.batch: unknown key" in errors
