"""The icmp collector: real echoes to 127.0.0.1 and ::1 (the tests run as root, so through a raw socket when
net.ipv4.ping_group_range excludes the group, as Debian's default does), the "not permitted" path with
socket creation refused, blackbox's gauges, and the config validation."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import pytest
from icmplib import ICMPv4Socket, ICMPv6Socket
from prometheus_client.parser import text_string_to_metric_families

from agent.collectors import icmp
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.metrics.probe import result_gauges
from tests.support.agent_app import agent_app, served
from tests.support.collector_config import parse_kind


def options_of(mapping: dict[str, Any]) -> icmp.Options:
    options, errors = parse_kind(icmp, mapping)
    assert errors == []
    return options


async def probe(address: str, mapping: dict[str, Any], timeout: float = 3.0) -> ProbeResult:
    target = ProbeTarget(name="t", kind="icmp", url=None, address=address, interval=15.0, timeout=timeout,
                         retries=0, labels={}, options=options_of(mapping))
    return await icmp.Collector().probe(target, time.monotonic() + timeout)


def icmp_allowed() -> bool:
    try:
        icmp.open_socket(4, None).close()
    except Exception:
        return False
    return True


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_icmp = pytest.mark.skipif(not icmp_allowed(), reason="neither a ping socket nor a raw socket is allowed")


def phases(result: ProbeResult) -> dict[str, float]:
    return {labels["phase"]: value for name, labels, value in result_gauges("icmp", result)
            if name == "probe_icmp_duration_seconds"}


# ---------------------------------------------------------------- echoes


@needs_icmp
def test_echo_to_ipv4_loopback() -> None:
    result = asyncio.run(probe("127.0.0.1", {}))
    assert (result.success, result.reason) == (True, None), result.detail
    assert (result.ip_protocol, result.ip_address) == (4, "127.0.0.1")
    assert result.icmp_hop_limit == 64                   # loopback: the TTL the kernel sent the reply with
    names = {name for name, _, _ in result_gauges("icmp", result)}
    assert {"probe_success", "probe_duration_seconds", "probe_dns_lookup_time_seconds",
            "probe_icmp_duration_seconds", "probe_icmp_reply_hop_limit"} <= names
    assert set(phases(result)) == {"resolve", "setup", "rtt"} and phases(result)["rtt"] > 0
    assert any("echo reply from 127.0.0.1" in line for line in result.log)


@needs_icmp
@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_echo_to_ipv6_loopback() -> None:
    result = asyncio.run(probe("::1", {}))
    assert (result.success, result.ip_protocol, result.icmp_hop_limit) == (True, 6, 64), result.detail


@needs_icmp
def test_host_name_with_the_preferred_protocol() -> None:
    result = asyncio.run(probe("localhost", {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False}))
    assert (result.success, result.ip_address) == (True, "127.0.0.1"), result.detail


@needs_icmp
def test_payload_ttl_and_dont_fragment() -> None:
    result = asyncio.run(probe("127.0.0.1", {"payload_size": 1400, "ttl": 5, "dont_fragment": True}))
    assert result.success is True, result.detail
    assert any("1400 bytes, ttl 5" in line for line in result.log)
    assert any("echo reply from 127.0.0.1: 1408 bytes" in line for line in result.log)


@needs_icmp
@pytest.mark.parametrize("protocol", [4, 6])
def test_dont_fragment_and_reply_ttl_are_asked_of_the_socket(protocol: int) -> None:
    """What the kernel is told: IP_MTU_DISCOVER = IP_PMTUDISC_DO (DF set, no fragmenting) or IPV6_DONTFRAG,
    and the reply's TTL / hop limit as ancillary data."""
    level = socket.IPPROTO_IP if protocol == 4 else socket.IPPROTO_IPV6
    for dont_fragment in (False, True):
        sock = icmp.open_socket(protocol, None)
        try:
            icmp._configure(sock.sock, protocol, options_of({"dont_fragment": dont_fragment}))
            if protocol == 4:
                assert (sock.sock.getsockopt(level, 10) == 2) is dont_fragment          # IP_MTU_DISCOVER: DO
                assert sock.sock.getsockopt(level, 12) == 1                       # IP_RECVTTL
            else:
                assert sock.sock.getsockopt(level, socket.IPV6_DONTFRAG) == int(dont_fragment)
                assert sock.sock.getsockopt(level, socket.IPV6_RECVHOPLIMIT) == 1
        finally:
            sock.close()
    _, errors = parse_kind(icmp, {"payload_size": icmp.MAX_PAYLOAD + 1})
    assert errors and errors[0].startswith("targets[0].payload_size:")


@needs_icmp
def test_source_address() -> None:
    ok = asyncio.run(probe("127.0.0.1", {"source_ip_address": "127.0.0.1"}))
    assert ok.success is True, ok.detail
    foreign = asyncio.run(probe("127.0.0.1", {"source_ip_address": "192.0.2.77"}))
    assert (foreign.success, foreign.reason) == (False, Reason.CONNECT)
    assert "source_ip_address 192.0.2.77" in foreign.detail


@needs_icmp
def test_concurrent_probes_each_match_their_own_reply() -> None:
    async def main() -> list[ProbeResult]:
        return await asyncio.gather(*(probe("127.0.0.1", {"payload_size": 16 + n}) for n in range(20)))
    results = asyncio.run(main())
    assert all(r.success for r in results), [r.detail for r in results if not r.success]


def test_unresolvable_host_fails_in_resolve_with_every_phase_reported() -> None:
    result = asyncio.run(probe("no-such-host.invalid", {}))
    assert (result.success, result.reason) == (False, Reason.RESOLVE)
    assert set(phases(result)) == {"resolve", "setup", "rtt"}
    assert phases(result)["rtt"] == 0.0
    assert not any(name == "probe_icmp_reply_hop_limit" for name, _, _ in result_gauges("icmp", result))


@needs_icmp
def test_a_host_that_never_replies_times_out_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A silent host cannot be counted on (this test machine's network answered an echo to 192.0.2.1), so
    the silence is made here: the reply is never read."""
    async def silence(sock: socket.socket) -> Any:
        await asyncio.Event().wait()

    monkeypatch.setattr(icmp, "_recvmsg", silence)
    started = time.monotonic()
    result = asyncio.run(probe("127.0.0.1", {}, timeout=0.3))
    assert (result.success, result.reason) == (False, Reason.TIMEOUT)
    assert result.detail == "timeout waiting for the echo reply"
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------- no privilege


def test_neither_socket_allowed_is_a_permission_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an unprivileged agent sees where ping_group_range excludes its group: both sockets refused."""
    tried: list[int] = []

    def refuse(self: Any, kind: int) -> socket.socket:
        tried.append(kind)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(ICMPv4Socket, "_create_socket", refuse)
    monkeypatch.setattr(ICMPv6Socket, "_create_socket", refuse)
    result = asyncio.run(probe("127.0.0.1", {}))
    assert (result.success, result.reason) == (False, Reason.PERMISSION)
    assert result.detail.startswith("ICMP not permitted: no unprivileged ping socket for IPv4 (")
    assert "raw socket needs root or CAP_NET_RAW" in result.detail
    assert tried == [socket.SOCK_DGRAM, socket.SOCK_RAW]            # unprivileged first, as blackbox
    assert set(phases(result)) == {"resolve", "setup", "rtt"}


def test_ping_socket_is_tried_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel allows ping sockets, no raw socket is opened (checked with a real DGRAM socket when
    the sysctl allows this process's group, else by recording what is asked for)."""
    asked: list[int] = []
    real = ICMPv4Socket._create_socket

    def record(self: Any, kind: int) -> socket.socket:
        asked.append(kind)
        return real(self, kind)

    monkeypatch.setattr(ICMPv4Socket, "_create_socket", record)
    try:
        sock = icmp.open_socket(4, None)
    except Exception:
        pytest.skip("no ICMP socket at all")
    sock.close()
    low, high = (int(n) for n in open("/proc/sys/net/ipv4/ping_group_range").read().split())
    expected = [socket.SOCK_DGRAM] if low <= os.getgid() <= high else [socket.SOCK_DGRAM, socket.SOCK_RAW]
    assert asked == expected


# ---------------------------------------------------------------- config


def test_defaults_are_blackbox_s() -> None:
    options = options_of({})
    assert (options.payload_size, options.ttl, options.dont_fragment) == (0, 64, False)
    assert (options.ip.preferred, options.ip.fallback, options.ip.source_ip) == (6, True, None)
    assert options.payload == b"Prometheus Blackbox Exporter"
    assert options_of({"payload_size": 4}).payload == b"Prom"
    assert options_of({"payload_size": 32}).payload == b"Prometheus Blackbox Exporter\0\0\0\0"
    assert options_of({"ttl": 0}).ttl == 64


@pytest.mark.parametrize("mapping, message", [
    ({"payload_size": -1}, "targets[0].payload_size: must be at least 0"),
    ({"payload_size": "big"}, "targets[0].payload_size: must be an integer"),
    ({"ttl": 256}, "targets[0].ttl: must be at most 255"),
    ({"ttl": -1}, "targets[0].ttl: must be at least 0"),
    ({"dont_fragment": "yes"}, "targets[0].dont_fragment: must be true or false"),
    ({"source_ip_address": "eth0"}, "targets[0].source_ip_address: must be an IP address"),
    ({"preferred_ip_protocol": "ipv4"}, "targets[0].preferred_ip_protocol: must be one of"),
    ({"service": "x"}, "targets[0].service: unknown key"),
])
def test_config_errors_name_the_key(mapping: dict[str, Any], message: str) -> None:
    _, errors = parse_kind(icmp, mapping)
    assert len(errors) == 1 and errors[0].startswith(message), errors


# ---------------------------------------------------------------- /probe


@needs_icmp
def test_probe_endpoint_with_blackbox_s_icmp_modules() -> None:
    async def main() -> dict[str, Any]:
        async with served(agent_app(None, "")) as agent:
            return {name: await agent.fetch("GET", "/probe?" + query) for name, query in (
                ("icmp", "target=127.0.0.1&module=icmp"),
                ("ttl5", "target=127.0.0.1&module=icmp_ttl5&debug=true"),
                ("port", "target=127.0.0.1:80&module=icmp"))}
    answers = asyncio.run(main())
    icmp_samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(answers["icmp"].body) for s in family.samples}
    assert icmp_samples[("probe_success", ())] == 1.0
    assert icmp_samples[("probe_icmp_reply_hop_limit", ())] == 64.0
    assert icmp_samples[("probe_ip_protocol", ())] == 4.0
    assert {labels for name, labels in icmp_samples if name == "probe_icmp_duration_seconds"} == \
        {(("phase", "resolve"),), (("phase", "setup"),), (("phase", "rtt"),)}
    assert "ttl 5" in answers["ttl5"].body and "Probe succeeded" in answers["ttl5"].body
    assert answers["port"].status == 400 and "icmp takes a host with no port" in answers["port"].body
