"""The dns collector against tests/dns_server.py on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import dns.asyncresolver
import dns.resolver
import pytest

from agent.collectors import dns as dns_collector
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from tests.support.collector_config import parse_kind
from tests.support.dns_server import DnsServer

RECORDS = {
    ("example.test.", "A"): ["192.0.2.1", "192.0.2.2"],
    ("example.test.", "AAAA"): ["2001:db8::1"],
    ("example.test.", "MX"): ["10 mail.example.test."],
    ("example.test.", "TXT"): ['"hello world"'],
    ("alias.example.test.", "CNAME"): ["example.test."],
}
AUTHORITY = [("example.test.", "NS", "ns1.example.test.")]
ADDITIONAL = [("ns1.example.test.", "A", "192.0.2.53")]


def parse(**options: Any) -> tuple[dns_collector.Options, list[str]]:
    return parse_kind(dns_collector, {"name": "t", "kind": "dns", "address": "127.0.0.1", **options})


def make_target(address: str | None, timeout: float, **options: Any) -> ProbeTarget:
    parsed, errors = parse(**options)
    assert errors == []
    return ProbeTarget(name="t", kind="dns", url=None, address=address, interval=15.0, timeout=timeout,
                       retries=0, labels={}, options=parsed)


async def probe(address: str | None, timeout: float = 2.0, **options: Any) -> ProbeResult:
    collector = dns_collector.Collector()
    try:
        return await collector.probe(make_target(address, timeout, **options), time.monotonic() + timeout)
    finally:
        await collector.close()


async def probe_server(server: DnsServer, **options: Any) -> ProbeResult:
    async with server:
        return await probe(server.address, **options)


def run(server: DnsServer, **options: Any) -> ProbeResult:
    return asyncio.run(probe_server(server, **options))


def full_server(**kwargs: Any) -> DnsServer:
    return DnsServer(RECORDS, authority=AUTHORITY, additional=ADDITIONAL, **kwargs)


# --- successes --------------------------------------------------------------------------

def test_a_record_success_with_counts() -> None:
    result = run(full_server(), query_name="example.test")
    assert result.success, result.detail
    assert result.reason is None
    assert result.dns_rcode == "NOERROR"
    assert (result.dns_answer_rrs, result.dns_authority_rrs, result.dns_additional_rrs) == (2, 1, 1)
    assert set(result.phases) == {"resolve", "request"}
    assert result.phases["request"] > 0
    assert result.duration_seconds >= result.phases["request"]
    assert any("example.test.\t300\tIN\tA\t192.0.2.1" in line for line in result.log)


@pytest.mark.parametrize(("query_type", "name", "expected"), [
    ("AAAA", "example.test.", r"^example\.test\.\t300\tIN\tAAAA\t2001:db8::1$"),
    ("MX", "example.test.", r"\tMX\t10 mail\.example\.test\.$"),
    ("TXT", "example.test.", r'\tTXT\t"hello world"$'),
    ("CNAME", "alias.example.test.", r"^alias\.example\.test\.\t300\tIN\tCNAME\texample\.test\.$"),
])
def test_record_types_and_their_text_form(query_type: str, name: str, expected: str) -> None:
    server = full_server()
    result = run(server, query_name=name, query_type=query_type,
                 validate_answer_rrs={"fail_if_not_matches_regexp": [expected]})
    assert result.success, result.detail
    assert result.dns_answer_rrs == 1
    assert server.queries == [("udp", name, query_type, True)]


def test_known_name_without_the_type_is_an_empty_noerror() -> None:
    result = run(DnsServer(RECORDS), query_name="example.test.", query_type="SRV")
    assert result.success, result.detail
    assert (result.dns_rcode, result.dns_answer_rrs) == ("NOERROR", 0)


def test_recursion_desired_false_clears_the_rd_flag() -> None:
    server = DnsServer(RECORDS)
    result = run(server, query_name="example.test.", recursion_desired=False)
    assert result.success, result.detail
    assert server.queries == [("udp", "example.test.", "A", False)]


def test_tcp_transport() -> None:
    server = full_server()
    result = run(server, query_name="example.test.", transport="tcp")
    assert result.success, result.detail
    assert result.dns_answer_rrs == 2
    assert set(result.phases) == {"resolve", "connect", "request"}
    assert server.queries == [("tcp", "example.test.", "A", True)]


def test_server_given_by_host_name_is_resolved() -> None:
    infos = socket.getaddrinfo("localhost", 53, type=socket.SOCK_DGRAM)
    if [info[4][0] for info in infos] != ["127.0.0.1"]:
        pytest.skip("localhost resolves to more than 127.0.0.1 here (ip6 would be preferred)")

    async def main() -> ProbeResult:
        async with DnsServer(RECORDS) as server:
            return await probe(f"localhost:{server.port}", query_name="example.test.")

    result = asyncio.run(main())
    assert result.success, result.detail
    assert any("resolved localhost to 127.0.0.1" in line for line in result.log)


def test_system_resolver_uses_the_first_nameserver(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> ProbeResult:
        async with DnsServer(RECORDS) as server:
            class FakeResolver:
                nameservers = ["127.0.0.1"]
                nameserver_ports: dict[str, int] = {}
                port = server.port

            monkeypatch.setattr(dns.asyncresolver, "Resolver", FakeResolver)
            return await probe(None, query_name="example.test.")

    result = asyncio.run(main())
    assert result.success, result.detail
    assert result.dns_answer_rrs == 2


def test_no_system_resolver_is_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_config() -> None:
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    monkeypatch.setattr(dns.asyncresolver, "Resolver", no_config)
    result = asyncio.run(probe(None, query_name="example.test."))
    assert (result.success, result.reason) == (False, Reason.RESOLVE)
    assert "no system resolver" in result.detail


# --- failures ---------------------------------------------------------------------------

def test_nxdomain_with_default_rcodes_is_rcode() -> None:
    result = run(full_server(), query_name="missing.test.")
    assert (result.success, result.reason) == (False, Reason.RCODE)
    assert result.dns_rcode == "NXDOMAIN"
    assert result.detail == "rcode NXDOMAIN is not one of NOERROR"
    assert result.dns_answer_rrs == 0


def test_nxdomain_listed_in_valid_rcodes_is_success() -> None:
    result = run(full_server(), query_name="missing.test.", valid_rcodes=["NXDOMAIN"])
    assert result.success, result.detail
    assert result.dns_rcode == "NXDOMAIN"


def test_answer_matching_fail_if_matches_is_answer() -> None:
    result = run(full_server(), query_name="example.test.",
                 validate_answer_rrs={"fail_if_matches_regexp": [r"192\.0\.2\.2$"]})
    assert (result.success, result.reason) == (False, Reason.ANSWER)
    assert result.detail.startswith("answer record matched fail_if_matches_regexp")
    assert result.dns_answer_rrs == 2


def test_answer_not_matching_fail_if_not_matches_is_answer() -> None:
    result = run(full_server(), query_name="example.test.",
                 validate_answer_rrs={"fail_if_not_matches_regexp": [r"\tA\t192\.0\.2\.1$"]})
    assert (result.success, result.reason) == (False, Reason.ANSWER)
    assert "did not match" in result.detail and "192.0.2.2" in result.detail


def test_passing_answer_regexes_succeed() -> None:
    result = run(full_server(), query_name="example.test.",
                 validate_answer_rrs={"fail_if_matches_regexp": ["198\\.51\\.100\\."],
                                      "fail_if_not_matches_regexp": ["\\tA\\t192\\.0\\.2\\.[12]$"]})
    assert result.success, result.detail


def test_authority_and_additional_sections_are_validated() -> None:
    authority = run(full_server(), query_name="example.test.",
                    validate_authority_rrs={"fail_if_not_matches_regexp": ["ns2\\."]})
    assert (authority.reason, authority.detail.split()[0]) == (Reason.ANSWER, "authority")
    additional = run(full_server(), query_name="example.test.",
                     validate_additional_rrs={"fail_if_matches_regexp": ["192\\.0\\.2\\.53"]})
    assert (additional.reason, additional.detail.split()[0]) == (Reason.ANSWER, "additional")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_silent_server_is_timeout_at_the_deadline(transport: str) -> None:
    started = time.monotonic()
    result = run(DnsServer(RECORDS, mode="silent"), timeout=1.0, query_name="example.test.",
                 transport=transport)
    elapsed = time.monotonic() - started
    assert (result.success, result.reason) == (False, Reason.TIMEOUT)
    assert result.detail == "timeout during request"
    assert result.dns_rcode is None
    assert 0.9 <= elapsed < 3.0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_malformed_reply_is_protocol(transport: str) -> None:
    result = run(DnsServer(RECORDS, mode="garbage"), query_name="example.test.", transport=transport)
    assert (result.success, result.reason) == (False, Reason.PROTOCOL)
    assert result.detail.startswith("malformed reply")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_closed_port_is_connect(transport: str) -> None:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(probe(f"127.0.0.1:{port}", query_name="example.test.", transport=transport))
    assert (result.success, result.reason) == (False, Reason.CONNECT)
    assert "refused" in result.detail


def test_unresolvable_server_name_is_resolve() -> None:
    result = asyncio.run(probe("dns.invalid:53", query_name="example.test."))
    assert (result.success, result.reason) == (False, Reason.RESOLVE)
    assert "dns.invalid" in result.detail


# --- configuration ----------------------------------------------------------------------

def test_defaults() -> None:
    options, errors = parse(query_name="example.test.")
    assert errors == []
    assert (options.query_type, options.transport, options.recursion_desired, options.valid_rcodes) == (
        "A", "udp", True, ("NOERROR",))


def test_config_missing_query_name() -> None:
    assert parse()[1] == ["targets[0].query_name: is required"]


def test_config_empty_query_name() -> None:
    assert parse(query_name="")[1] == ["targets[0].query_name: must not be empty"]


def test_config_invalid_query_name() -> None:
    errors = parse(query_name="a" * 64 + ".test.")[1]
    assert len(errors) == 1 and errors[0].startswith("targets[0].query_name: invalid DNS name")


def test_config_bad_query_type() -> None:
    assert parse(query_name="x.test.", query_type="ANY")[1] == [
        "targets[0].query_type: must be one of A, AAAA, CNAME, MX, TXT, NS, SOA, PTR, SRV, got 'ANY'"]


def test_config_bad_rcode_name() -> None:
    assert parse(query_name="x.test.", valid_rcodes=["NOERROR", "NOPE"])[1] == [
        "targets[0].valid_rcodes[1]: unknown rcode 'NOPE' (use e.g. NOERROR, NXDOMAIN, SERVFAIL)"]


def test_config_rcode_names_are_case_insensitive() -> None:
    options, errors = parse(query_name="x.test.", valid_rcodes=["nxdomain", "ServFail"])
    assert errors == [] and options.valid_rcodes == ("NXDOMAIN", "SERVFAIL")


def test_config_bad_transport() -> None:
    assert parse(query_name="x.test.", transport="quic")[1] == [
        "targets[0].transport: must be one of udp, tcp, got 'quic'"]


def test_config_unknown_key_in_validate_answer_rrs() -> None:
    assert parse(query_name="x.test.", validate_answer_rrs={"fail_if_all_match_regexp": ["x"]})[1] == [
        "targets[0].validate_answer_rrs.fail_if_all_match_regexp: unknown key"]


def test_config_invalid_regexp() -> None:
    errors = parse(query_name="x.test.", validate_authority_rrs={"fail_if_matches_regexp": ["("]})[1]
    assert len(errors) == 1
    assert errors[0].startswith("targets[0].validate_authority_rrs.fail_if_matches_regexp[0]: "
                                "invalid regular expression")


def test_config_unknown_option_is_flagged_by_finish() -> None:
    assert parse(query_name="x.test.", query_class="IN")[1] == ["targets[0].query_class: unknown key"]
