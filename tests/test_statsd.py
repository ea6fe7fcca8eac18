"""StatsD / DogStatsD lines: the parser line by line, then the UDP endpoint over real UDP on 127.0.0.1
(port 0), sharing the registry and its rules with POST /v1/metrics (agent/custom_metrics/statsd.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.custom_metrics.config import CustomMetricsConfig, StatsdConfig
from agent.custom_metrics.registry import CustomMetrics, Sample
from agent.custom_metrics.statsd import LineError, StatsdProtocol, StatsdServer, parse_line, statsd_ctx
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.metrics.exposition import render
from agent.metrics.store import MetricStore


def one(line: str) -> Sample:
    (sample,) = parse_line(line)
    return sample


@pytest.mark.parametrize("line, expected", [
    ("conversions:1|c", ("conversions", "counter", "none", 1.0, (), (), "inc", 1)),
    ("hits:3|c|@0.5", ("hits", "counter", "none", 6.0, (), (), "inc", 1)),
    ("queue:5|g", ("queue", "gauge", "none", 5.0, (), (), "set", 1)),
    ("queue:+2|g", ("queue", "gauge", "none", 2.0, (), (), "add", 1)),
    ("queue:-2|g", ("queue", "gauge", "none", -2.0, (), (), "add", 1)),
    ("queue:7|g|@0.5", ("queue", "gauge", "none", 7.0, (), (), "set", 1)),
    ("api.latency:12.5|ms", ("api.latency", "distribution", "millisecond", 12.5, (), (), "observe", 1)),
    ("api.latency:12|ms|@0.1", ("api.latency", "distribution", "millisecond", 12.0, (), (), "observe", 10)),
    ("upload.size:512|h", ("upload.size", "distribution", "none", 512.0, (), (), "observe", 1)),
    ("upload.size:512|d", ("upload.size", "distribution", "none", 512.0, (), (), "observe", 1)),
    ("req:1|c|#route:/home,method:GET", ("req", "counter", "none", 1.0, ("route", "method"), ("/home", "GET"), "inc", 1)),
    ("req:1|c|#url:http://x:8080/a", ("req", "counter", "none", 1.0, ("url",), ("http://x:8080/a",), "inc", 1)),
    ("req:1|c|@0.5|#route:/a", ("req", "counter", "none", 2.0, ("route",), ("/a",), "inc", 1)),
    ("req:1|c|#route:/a|c:83c0a99c0a54|T1656581400", ("req", "counter", "none", 1.0, ("route",), ("/a",), "inc", 1)),
    ("req,route=/a,code=200:1|c", ("req", "counter", "none", 1.0, ("route", "code"), ("/a", "200"), "inc", 1)),
    ("req#route=/a,code=200:1|c", ("req", "counter", "none", 1.0, ("route", "code"), ("/a", "200"), "inc", 1)),
    ("req[route=/a].count:1|c", ("req.count", "counter", "none", 1.0, ("route",), ("/a",), "inc", 1)),
    ("req,route=/a:1|c|#code:200", ("req", "counter", "none", 1.0, ("route", "code"), ("/a", "200"), "inc", 1)),
])
def test_lines_are_parsed(line: str, expected: tuple) -> None:
    s = one(line)
    assert (s.name, s.kind, s.unit, s.value, s.keys, s.values, s.op, s.repeat) == expected


def test_packed_values_are_several_samples() -> None:
    assert [s.value for s in parse_line("lat:1:2.5:3|d|#a:b")] == [1.0, 2.5, 3.0]


@pytest.mark.parametrize("line, result, phrase", [
    ("nocolon", "invalid", "expected name:value|type"),
    (":1|c", "invalid", "expected name:value|type"),
    ("x:1", "invalid", "expected name:value|type"),
    ("x:abc|c", "invalid", "not a number"),
    ("x:|c", "invalid", "not a number"),
    ("x:1|zz", "invalid", "unknown type"),
    ("x:-1|c", "invalid", "a counter only goes up"),
    ("x:nan|g", "invalid", "finite"),
    ("x:inf|c", "invalid", "finite"),
    ("x:1e400|ms", "invalid", "finite"),
    ("x:1e308|c|@0.001", "invalid", "finite"),                # finite as sent, not once scaled by the rate
    ("x:1|c|@2", "invalid", "sample rate"),
    ("x:1|c|@0", "invalid", "sample rate"),
    ("x:1|ms|@0.0001", "invalid", "sample rate"),
    ("x:1|c|#novalue", "invalid", "a tag without a value"),
    ("x:1|c|#", "invalid", "a tag without a value"),
    ("x:1|c|bogus", "invalid", "unknown field"),
    ("x[a=b:1|c", "invalid", "unbalanced"),
    ("x]a=b[:1|c", "invalid", "unbalanced"),
    ("users:42|s", "unsupported", "sets (|s) are not supported"),
    ("_e{5,4}:title|text", "unsupported", "events and service checks"),
    ("_sc|db|0", "unsupported", "events and service checks"),
])
def test_bad_lines_are_refused_with_their_result(line: str, result: str, phrase: str) -> None:
    with pytest.raises(LineError) as caught:
        parse_line(line)
    assert caught.value.result == result and phrase in str(caught.value)


# --- the UDP endpoint -----------------------------------------------------------------------------

def make_registry(**config: Any) -> CustomMetrics:
    return CustomMetrics(CustomMetricsConfig(**config), MetricStore(), Privacy(PrivacyConfig(), b"k" * 32))


def lines_by_result(registry: CustomMetrics) -> dict[str, float]:
    return {key[0]: value for key, value in registry.store.get("loom_agent_statsd_lines").series.items() if value}


async def send_and_wait(address: tuple[str, int], registry: CustomMetrics, datagrams: list[bytes], lines: int) -> None:
    """Send each datagram from a real UDP socket, then wait until the endpoint has counted `lines`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, address)
    deadline = time.monotonic() + 10
    while sum(lines_by_result(registry).values()) < lines:
        assert time.monotonic() < deadline, f"only {lines_by_result(registry)} of {lines} lines arrived"
        await asyncio.sleep(0.01)


def scrape(registry: CustomMetrics) -> dict[str, list]:
    list(parse_openmetrics(render(registry.store, None, openmetrics=True).decode()))
    return {f.name: f.samples for f in parse_text(render(registry.store, None, openmetrics=False).decode())}


def values(families: dict[str, list], sample_name: str) -> dict[frozenset, float]:
    family = sample_name.removesuffix("_total").removesuffix("_sum").removesuffix("_count")
    return {frozenset(s.labels.items()): s.value for s in families.get(family, []) if s.name == sample_name}


def test_lines_over_udp_become_metrics_and_bad_lines_are_counted_not_fatal() -> None:
    registry = make_registry()

    async def scenario() -> None:
        server = StatsdServer(registry, "127.0.0.1", 0)
        await server.start()
        try:
            assert server.address[0] == "127.0.0.1" and server.address[1] > 0
            first = (b"checkout.completed:1|c|#plan:pro\n"
                     b"checkout.completed:2|c|#plan:pro\r\n"
                     b"api.latency:250|ms|#route:/home\n"
                     b"queue.depth:10|g\nqueue.depth:-3|g\n"
                     b"upload.size:2048|d\n\n"
                     b"users:42|s\n"
                     b"garbage\n"
                     b"checkout.completed:1|g|#plan:pro\n"           # a counter already: conflict
                     b"bad\xff\xfe:1|c\n"                             # not UTF-8: a replacement character, still a name
                     b"contact:1|c|#user_id:alice@example.com")
            second = b"signup:1|c|#source:bob@example.com"
            await send_and_wait(server.address, registry, [first, second], 12)
        finally:
            await server.stop()

    asyncio.run(scenario())
    assert lines_by_result(registry) == {"accepted": 8, "unsupported": 1, "invalid": 2, "conflict": 1}
    families = scrape(registry)
    assert values(families, "loom_app_checkout_completed_total") == {frozenset({("plan", "pro")}): 3.0}
    assert values(families, "loom_app_api_latency_seconds_sum") == {frozenset({("route", "/home")}): 0.25}
    assert values(families, "loom_app_queue_depth") == {frozenset(): 7.0}
    assert values(families, "loom_app_upload_size_sum") == {frozenset(): 2048.0}
    assert values(families, "loom_app_bad_total") == {frozenset(): 1.0}
    (source,) = values(families, "loom_app_signup_total")
    assert dict(source)["source"].startswith("email:")                 # tag values pass privacy
    assert "loom_app_contact" not in families                          # user ids are never labels


def test_statsd_and_http_share_one_registry_and_its_limits() -> None:
    registry = make_registry(max_metrics=2)
    registry.record(Sample("conversions", "counter", "none", 1.0, ("type",), ("trial",), "inc"))

    async def scenario() -> None:
        server = StatsdServer(registry, "127.0.0.1", 0)
        await server.start()
        try:
            await send_and_wait(server.address, registry, [b"conversions:1|c|#type:trial\nconversions:1|c\n"
                                                           b"a:1|c\nb:1|c\na:2|c"], 5)
        finally:
            await server.stop()

    asyncio.run(scenario())
    assert lines_by_result(registry) == {"accepted": 3, "conflict": 1, "limit": 1}
    families = scrape(registry)
    assert values(families, "loom_app_conversions_total") == {frozenset({("type", "trial")}): 2.0}
    assert values(families, "loom_app_a_total") == {frozenset(): 3.0}
    assert "loom_app_b" not in families


def test_a_sampled_timer_is_observed_once_per_sampled_event() -> None:
    registry = make_registry()
    for sample in parse_line("render:20|ms|@0.25"):
        registry.record(sample)
    families = scrape(registry)
    assert values(families, "loom_app_render_seconds_count") == {frozenset(): 4.0}
    assert values(families, "loom_app_render_seconds_sum") == {frozenset(): pytest.approx(0.08)}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_cleanup_ctx_listens_only_when_enabled_and_closes_at_stop() -> None:
    async def scenario() -> None:
        port = free_udp_port()
        for enabled in (False, True):
            registry = make_registry()
            app = web.Application()
            app.cleanup_ctx.append(statsd_ctx(registry, StatsdConfig(enabled=enabled, listen=("127.0.0.1", port))))
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                if enabled:
                    await send_and_wait(("127.0.0.1", port), registry, [b"up.and.running:1|g"], 1)
                    assert registry.store.get("loom_app_up_and_running").series == {(): 1.0}
                else:
                    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    probe.bind(("127.0.0.1", port))         # nobody holds the port
                    probe.close()
                    assert registry.store.get("loom_agent_statsd_lines") is None
            finally:
                await runner.cleanup()
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", port))                     # released at stop
        probe.close()
    asyncio.run(scenario())


def test_a_port_in_use_fails_the_start_with_the_reason() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.1", 0))
            server = StatsdServer(make_registry(), "127.0.0.1", holder.getsockname()[1])
            with pytest.raises(OSError, match="Address already in use"):
                await server.start()
    asyncio.run(scenario())


def test_refused_lines_are_logged_at_most_once_a_minute_without_personal_data(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry()
    protocol = StatsdProtocol(registry)
    with caplog.at_level(logging.WARNING, logger="agent.statsd"):
        protocol.datagram_received(b"1alice@example.com:1|c\nx:1|zz", None)
        protocol.datagram_received(b"users:1|s\ngarbage", None)
    (record,) = caplog.records
    assert "lines refused since the last report: invalid 2" in record.getMessage()
    assert "must start with a letter" in record.getMessage() and "email:" in record.getMessage()
    assert "alice@example.com" not in caplog.text
    assert lines_by_result(registry) == {"invalid": 3, "unsupported": 1}
