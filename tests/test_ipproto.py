"""IP protocol selection (collectors/ipproto.py): blackbox_exporter's preferred_ip_protocol and
ip_protocol_fallback, and the address facts a result carries (probe_ip_protocol, probe_ip_addr_hash)."""

from __future__ import annotations

import asyncio

import pytest

from agent.collectors.base import PhaseTrace, ProbeFailed, Reason
from agent.collectors.ipproto import IpOptions, choose, ip_hash, lookup, parse_ip_options, resolve
from agent.config.node import Node


def test_choose_prefers_the_family_and_falls_back_only_when_allowed() -> None:
    both = ["192.0.2.1", "2001:db8::1", "192.0.2.2"]
    assert choose(both, IpOptions(preferred=6)) == "2001:db8::1"
    assert choose(both, IpOptions(preferred=4)) == "192.0.2.1"
    assert choose(["192.0.2.1"], IpOptions(preferred=6)) == "192.0.2.1"          # fallback
    assert choose(["192.0.2.1"], IpOptions(preferred=6, fallback=False)) is None
    assert choose([], IpOptions()) is None


def test_literal_of_the_other_family_without_fallback_is_a_resolve_failure() -> None:
    ok = asyncio.run(lookup("127.0.0.1", 80, IpOptions(preferred=6)))
    assert (ok.ip, ok.protocol) == ("127.0.0.1", 4)
    with pytest.raises(ProbeFailed) as info:
        asyncio.run(lookup("127.0.0.1", 80, IpOptions(preferred=6, fallback=False)))
    assert info.value.reason is Reason.RESOLVE and "not an ip6 address" in info.value.detail


def test_resolve_records_the_first_address_on_the_trace() -> None:
    trace = PhaseTrace()
    asyncio.run(resolve("localhost", 80, IpOptions(preferred=4, fallback=False), trace))
    assert (trace.ip_address, trace.ip_protocol) == ("127.0.0.1", 4)
    assert "resolve" in trace.phases
    result = trace.result()
    assert (result.ip_address, result.ip_protocol) == ("127.0.0.1", 4)


def test_hash_is_32_bit_fnv1a_over_the_address_bytes() -> None:
    # FNV-1a by its definition, over the 4 bytes of 127.0.0.1 (blackbox hashes To4() for IPv4)
    value = 0x811C9DC5
    for byte in bytes([127, 0, 0, 1]):
        value = ((value ^ byte) * 0x01000193) % 2**32
    assert ip_hash("127.0.0.1") == value
    assert ip_hash("::ffff:127.0.0.1") == value          # an IPv4-mapped address is hashed as IPv4
    assert ip_hash("::1") != value and 0 <= ip_hash("::1") < 2**32


def test_parse_errors_name_the_key() -> None:
    errors: list[str] = []
    node = Node({"preferred_ip_protocol": "ip5", "ip_protocol_fallback": "yes", "source_ip_address": "here"},
                "modules.m.tcp", errors)
    options = parse_ip_options(node, source_ip=True)
    assert options == IpOptions()
    assert errors == ["modules.m.tcp.preferred_ip_protocol: must be one of ip4, ip6, got 'ip5'",
                      "modules.m.tcp.ip_protocol_fallback: must be true or false, got str",
                      "modules.m.tcp.source_ip_address: must be an IP address, got 'here'"]
