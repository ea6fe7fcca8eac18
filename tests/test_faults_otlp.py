"""The OTLP collector failing under a real agent process in full flood: down (connection refused), slow
(answers after 2 s), answering HTTP 503 or 500 for the whole stretch; over gRPC, down.

For each fault, 40,000 events carrying W3C trace context (one span each) are posted as fast as two
clients can while the collector misbehaves, and then:
- every ingest request is answered 200: export never stands in the way of ingest;
- the span queue stays within telemetry.otlp.queue_size (loom_agent_export_queue_size, scraped through
  the flood) and the agent's RSS grows by less than RSS_GROWTH_LIMIT_MIB (the flood's spans would take
  ~115 MiB in an unbounded queue: ~3 KB each);
- what could not be sent is counted in loom_agent_export_dropped_total, and the books balance: once the
  collector is back and the queue drained, exported + dropped equals the spans made, and the collector
  holds exactly the spans counted as exported;
- export resumes by itself once the collector is healthy again: spans made from then on (10 every
  0.2 s) and a metrics snapshot carrying the flood's loom_events total arrive.
(The SDK retries a 503 within its timeout but not a 500; the agent's own retry and drop count cover both.)

tests/test_otlp_export.py covers the same machinery in-process (hung collector, stop() bounds, batch
splitting); this file is about the running agent. Each test prints a FIGURE line (RSS, drops, time to
resume) for docs/reliability.md: `python3 -m pytest tests/test_faults_otlp.py -s`.
"""

from __future__ import annotations

import http.client
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.otlp_receiver import OtlpReceiver, _HttpHandler
from tests.support.procs import AgentProcess, wait_until

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

QUEUE_SIZE = 2000
BATCH = 1000                  # events per request
FLOOD_REQUESTS = 20           # per client
CLIENTS = 2
RSS_GROWTH_LIMIT_MIB = 48
MIN_FAULT_SECONDS = 4.0       # the fault lasts at least this long (the flood itself takes ~2 s)
SLOW_SECONDS = 2.0            # the slow collector's answer time, below the exporter's timeout (3 s)
_metric_line = re.compile(r'^(loom_agent_export\w*)\{signal="(\w+)"\} (\S+)$', re.M)


class _StatusHandler(_HttpHandler):
    """The test receiver's handler, answering `receiver.error_status` where it would answer 503."""

    def _answer(self, status: int, body: bytes) -> None:
        super()._answer(self.receiver.error_status if status == 503 else status, body)


class FaultyReceiver(OtlpReceiver):
    """OtlpReceiver (down, unavailable, hang) plus two faults: slow answers, and HTTP 500 errors."""

    error_status = 503
    delay = 0.0

    def up(self) -> None:
        super().up()
        if self.protocol == "http/protobuf":
            server = self._server.server
            server.RequestHandlerClass = type("Handler", (_StatusHandler,), {"receiver": self})
            server.handle_error = lambda request, address: None     # a client that gave up: not news

    def handle(self, signal: str, body: bytes, headers: dict[str, str], path: str = "") -> str:
        outcome = super().handle(signal, body, headers, path)
        if outcome == "ok" and self.delay:
            time.sleep(self.delay)
        return outcome

    def heal(self) -> None:
        self.error_status, self.delay = 503, 0.0
        self.answer_ok()
        self.up()

    def break_as(self, fault: str) -> None:
        if fault == "down":
            self.down()
        elif fault == "slow":
            self.delay = SLOW_SECONDS
        elif fault in ("503", "unavailable"):
            self.answer_unavailable()
        elif fault == "500":
            self.error_status = 500
            self.answer_unavailable()
        else:
            raise ValueError(fault)


@dataclass
class Harness:
    agent: AgentProcess
    receiver: FaultyReceiver
    spans_made: int = 0          # events with trace context the agent accepted: one span each
    events: int = 0              # all events the agent accepted (loom_events_total of cta_click)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def export_counters(agent: AgentProcess) -> dict[tuple[str, str], float]:
    """(metric, signal) -> value of every loom_agent_export* sample on /metrics."""
    return {(name, signal): float(value) for name, signal, value in _metric_line.findall(agent.metrics())}


def cta_clicks(with_trace: bool, n: int) -> bytes:
    events = [{"event": "cta_click", "anonymousId": "anon_faults", "properties": {"ctaId": "hero", "location": "hero"}}
              for _ in range(n)]
    if with_trace:
        for event in events:
            event["context"] = {"traceId": secrets.token_hex(16), "spanId": secrets.token_hex(8)}
    return orjson.dumps(events)


def post(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/events/batch", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_harness(tmp: Path, protocol: str) -> Harness:
    receiver = FaultyReceiver(protocol)
    agent = AgentProcess(tmp, {
        "telemetry": {"trace_probes": False, "otlp": {
            "endpoint": receiver.endpoint, "protocol": protocol, "timeout": "3s", "metrics_interval": "1s",
            "queue_size": QUEUE_SIZE, "max_retries": 1}},
        # the event store is not under test here (its page cache would blur the RSS figure)
        "store": {"driver": "none"},
        "events": {"max_batch": BATCH}})
    return Harness(agent, receiver)


@pytest.fixture(scope="module")
def http_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = start_harness(tmp_path_factory.mktemp("otlp-http"), "http/protobuf")
    try:
        yield harness
    finally:
        harness.agent.stop()
        harness.receiver.stop()


@pytest.fixture(scope="module")
def grpc_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = start_harness(tmp_path_factory.mktemp("otlp-grpc"), "grpc")
    try:
        yield harness
    finally:
        harness.agent.stop()
        harness.receiver.stop()


@dataclass
class Flood:
    """What the clients and a /metrics scraper saw during the flood."""

    statuses: dict[int, int] = field(default_factory=dict)
    queue_max: dict[str, float] = field(default_factory=dict)
    scrape_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0


def flood(harness: Harness) -> Flood:
    """CLIENTS clients post FLOOD_REQUESTS batches each while a scraper reads the export queue sizes."""
    seen = Flood()
    lock = threading.Lock()
    done = threading.Event()

    def client() -> None:
        for _ in range(FLOOD_REQUESTS):
            status = post(harness.agent.port, cta_clicks(True, BATCH))
            with lock:
                seen.statuses[status] = seen.statuses.get(status, 0) + 1

    def scraper() -> None:
        while not done.is_set():
            started = time.monotonic()
            counters = export_counters(harness.agent)
            seen.scrape_seconds.append(time.monotonic() - started)
            for signal in ("traces", "metrics"):
                size = counters[("loom_agent_export_queue_size", signal)]
                seen.queue_max[signal] = max(seen.queue_max.get(signal, 0.0), size)
            done.wait(0.2)

    watcher = threading.Thread(target=scraper, daemon=True)
    watcher.start()
    started = time.monotonic()
    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(120)
    seen.seconds = time.monotonic() - started
    done.set()
    watcher.join(10)
    accepted = seen.statuses.get(200, 0) * BATCH
    harness.spans_made += accepted
    harness.events += accepted
    return seen


def settled(harness: Harness) -> dict[tuple[str, str], float]:
    """Wait until every span made is either exported or counted as dropped and nothing is queued."""
    def balanced() -> dict[tuple[str, str], float] | None:
        counters = export_counters(harness.agent)
        books = counters[("loom_agent_exported_total", "traces")] + counters[("loom_agent_export_dropped_total", "traces")]
        if books == harness.spans_made and counters[("loom_agent_export_queue_size", "traces")] == 0:
            return counters
        return None

    return wait_until(balanced, 30, interval=0.2, what=f"exported + dropped == {harness.spans_made} spans made; "
                      f"counters {export_counters(harness.agent)}")


def event_total(metrics: dict[str, Any]) -> float:
    """loom_events_total{event="cta_click"} in an OTLP metrics request."""
    metric = metrics.get("loom_events")
    if metric is None:
        return -1.0
    return sum(point.as_double or point.as_int for point in metric.sum.data_points
               if any(a.key == "event" and a.value.string_value == "cta_click" for a in point.attributes))


@contextmanager
def markers(harness: Harness) -> Iterator[set[str]]:
    """Post a batch of 10 traced events every 0.2 s for the duration of the block; yields the set of
    their trace ids (filled as they are accepted)."""
    sent: set[str] = set()
    stop = threading.Event()

    def poster() -> None:
        while not stop.is_set():
            ids = [secrets.token_hex(16) for _ in range(10)]
            body = orjson.dumps([{"event": "cta_click", "anonymousId": "anon_faults", "properties": {"ctaId": "m"},
                                  "context": {"traceId": trace_id, "spanId": secrets.token_hex(8)}}
                                 for trace_id in ids])
            assert post(harness.agent.port, body) == 200
            harness.spans_made += len(ids)
            harness.events += len(ids)
            sent.update(ids)
            stop.wait(0.2)

    thread = threading.Thread(target=poster, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(30)


def hold_until_noticed(harness: Harness, fault: str, before: dict[tuple[str, str], float],
                       faulted: float) -> dict[tuple[str, str], float]:
    """Keep the fault for at least MIN_FAULT_SECONDS and until the exporter has met it: failed attempts
    on both signals (the slow collector: a slow export that went through), and metric points dropped."""
    def noticed() -> dict[tuple[str, str], float] | None:
        counters = export_counters(harness.agent)

        def grew(name: str, signal: str) -> bool:
            return counters[(name, signal)] > before[(name, signal)]

        met = grew("loom_agent_exported_total", "traces") if fault == "slow" else (
            grew("loom_agent_export_failures_total", "traces") and grew("loom_agent_export_failures_total", "metrics"))
        long_enough = time.monotonic() - faulted >= MIN_FAULT_SECONDS
        return counters if met and long_enough and grew("loom_agent_export_dropped_total", "metrics") else None

    return wait_until(noticed, 30, interval=0.2, what=f"the exporter meeting the fault {fault!r}; counters "
                      f"{export_counters(harness.agent)}")


def run_fault(harness: Harness, fault: str) -> None:
    agent, receiver = harness.agent, harness.receiver
    receiver.heal()
    before = settled(harness)
    rss_before = rss_mib(agent.proc.pid)
    log_lines = len(agent.log().splitlines())

    faulted = time.monotonic()
    receiver.break_as(fault)
    seen = flood(harness)
    during = hold_until_noticed(harness, fault, before, faulted)
    fault_seconds = time.monotonic() - faulted
    rss_after = rss_mib(agent.proc.pid)

    assert seen.statuses == {200: CLIENTS * FLOOD_REQUESTS}, f"ingest answers during the fault: {seen.statuses}"
    assert seen.queue_max["traces"] <= QUEUE_SIZE, seen.queue_max
    assert during[("loom_agent_export_queue_size", "traces")] <= QUEUE_SIZE
    dropped = during[("loom_agent_export_dropped_total", "traces")] - before[("loom_agent_export_dropped_total", "traces")]
    exported = during[("loom_agent_exported_total", "traces")] - before[("loom_agent_exported_total", "traces")]
    assert dropped >= CLIENTS * FLOOD_REQUESTS * BATCH - QUEUE_SIZE - exported - 1024, (dropped, exported)
    if fault != "slow":
        assert exported == 0, f"{exported} spans counted as exported while the collector was failing"
    growth = rss_after - rss_before
    assert growth < RSS_GROWTH_LIMIT_MIB, f"RSS grew {growth:.0f} MiB ({rss_before:.0f} -> {rss_after:.0f})"

    # the collector comes back: new spans (posted every 0.2 s from the moment it is healthy) and a fresh
    # metrics snapshot arrive by themselves, then the books balance
    metrics_requests = len(receiver.accepted("metrics"))
    healed = time.monotonic()
    receiver.heal()
    with markers(harness) as sent:
        wait_until(lambda: sent & {span.trace_id.hex() for span in receiver.spans()}, 30, interval=0.05,
                   what="a span made after the collector came back, at the collector")
        spans_back = time.monotonic() - healed
    wait_until(lambda: len(receiver.accepted("metrics")) > metrics_requests
               and event_total(receiver.latest_metrics()) == harness.events, 30, interval=0.05,
               what=f"a metrics snapshot with loom_events_total == {harness.events}")
    metrics_back = time.monotonic() - healed
    after = settled(harness)
    if fault != "slow":        # a slow answer may land after the exporter gave up: then it is only >=
        assert len(receiver.spans()) == after[("loom_agent_exported_total", "traces")]
    assert len(receiver.spans()) >= after[("loom_agent_exported_total", "traces")]
    new_log_lines = len(agent.log().splitlines()) - log_lines       # per failed attempt, not per span
    assert new_log_lines < 40 * fault_seconds, f"{new_log_lines} log lines in {fault_seconds:.1f}s of fault"
    print(f"\nFIGURE otlp.{receiver.protocol}.{fault}: fault held {fault_seconds:.1f}s, "
          f"{CLIENTS * FLOOD_REQUESTS * BATCH} spans made in {seen.seconds:.1f}s, ingest all 200; RSS {rss_before:.0f} -> {rss_after:.0f} MiB; traces queue max "
          f"{seen.queue_max['traces']:.0f}/{QUEUE_SIZE}; dropped {dropped:.0f}, exported {exported:.0f} during the fault; "
          f"/metrics max {max(seen.scrape_seconds) * 1000:.0f} ms; spans back {spans_back:.2f}s, metrics back "
          f"{metrics_back:.2f}s after recovery; {new_log_lines} log lines")


@pytest.mark.parametrize("fault", ["down", "slow", "503", "500"])
def test_http_collector_fault_is_bounded_counted_and_recovered(http_harness: Harness, fault: str) -> None:
    run_fault(http_harness, fault)


def test_grpc_collector_down_is_bounded_counted_and_recovered(grpc_harness: Harness) -> None:
    run_fault(grpc_harness, "down")           # UNAVAILABLE: the same path as HTTP 503, with a new channel

