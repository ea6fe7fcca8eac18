"""The grpc collector against a real grpcio health server (grpc_health's HealthServicer), plain and TLS,
its gauges as blackbox_exporter 0.23 reports them, and its config validation."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.collectors import grpc as grpc_kind
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.config.load import parse_config
from agent.config.node import ConfigError
from agent.metrics.probe import result_gauges
from tests.support.agent_app import agent_app, served
from tests.support.certs import CertFiles, make_cert
from tests.support.collector_config import parse_kind
from tests.support.grpc_health import health_server
from tests.support.loopback import serve

STATUSES = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"}


def options_of(mapping: dict[str, Any]) -> grpc_kind.Options:
    options, errors = parse_kind(grpc_kind, mapping)
    assert errors == []
    return options


async def probe(address: str, mapping: dict[str, Any], timeout: float = 5.0) -> ProbeResult:
    target = ProbeTarget(name="t", kind="grpc", url=None, address=address, interval=15.0, timeout=timeout,
                         retries=0, labels={}, options=options_of(mapping))
    return await grpc_kind.Collector().probe(target, time.monotonic() + timeout)


def gauges(result: ProbeResult) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in result_gauges("grpc", result)}


def health_responses(result: ProbeResult) -> dict[str, float]:
    return {labels["serving_status"]: value for name, labels, value in result_gauges("grpc", result)
            if name == "probe_grpc_healthcheck_response"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("grpc-certs"))


# ---------------------------------------------------------------- probes


def test_serving_server_succeeds_with_blackbox_gauges() -> None:
    async def main() -> ProbeResult:
        async with health_server(statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}", {})
    result = asyncio.run(main())
    assert (result.success, result.reason, result.grpc_status_code, result.grpc_serving_status) == \
        (True, None, 0, "SERVING")
    values = gauges(result)
    assert values[("probe_success", ())] == 1.0
    assert values[("probe_grpc_status_code", ())] == 0.0
    assert values[("probe_grpc_ssl", ())] == 0.0
    assert values[("probe_ssl_earliest_cert_expiry", ())] == 0.0      # registered without TLS too, as blackbox
    assert health_responses(result) == {s: 1.0 if s == "SERVING" else 0.0 for s in STATUSES}
    assert {labels["phase"] for name, labels, _ in result_gauges("grpc", result)
            if name == "probe_grpc_duration_seconds"} == {"resolve", "check"}
    assert (result.ip_protocol, result.ip_address) == (4, "127.0.0.1")
    assert not any(name == "probe_tls_version_info" for name, _, _ in result_gauges("grpc", result))


def test_named_service_and_not_serving() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with health_server(statuses={"service1": "SERVING", "down": "NOT_SERVING"}) as server:
            address = f"127.0.0.1:{server.port}"
            return await probe(address, {"service": "service1"}), await probe(address, {"service": "down"})
    up, down = asyncio.run(main())
    assert (up.success, up.grpc_serving_status) == (True, "SERVING")
    assert (down.success, down.reason, down.grpc_status_code) == (False, Reason.STATUS, 0)
    assert "NOT_SERVING" in down.detail and "'down'" in down.detail
    assert health_responses(down) == {s: 1.0 if s == "NOT_SERVING" else 0.0 for s in STATUSES}


def test_status_changes_are_seen() -> None:
    async def main() -> list[bool]:
        async with health_server(statuses={"": "SERVING"}) as server:
            address = f"127.0.0.1:{server.port}"
            first = await probe(address, {})
            await server.set("", "NOT_SERVING")
            second = await probe(address, {})
            return [first.success, second.success]
    assert asyncio.run(main()) == [True, False]


def test_unknown_service_is_not_found() -> None:
    async def main() -> ProbeResult:
        async with health_server(statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}", {"service": "nope"})
    result = asyncio.run(main())
    assert (result.success, result.reason, result.grpc_status_code) == (False, Reason.STATUS, 5)   # NOT_FOUND
    assert result.detail.startswith("gRPC status NOT_FOUND")
    assert health_responses(result) == dict.fromkeys(STATUSES, 0.0)


def test_refused_port_is_unavailable() -> None:
    result = asyncio.run(probe(f"127.0.0.1:{free_port()}", {}))
    assert (result.success, result.reason, result.grpc_status_code) == (False, Reason.CONNECT, 14)
    assert gauges(result)[("probe_grpc_status_code", ())] == 14.0
    assert health_responses(result) == dict.fromkeys(STATUSES, 0.0)     # blackbox sets all four to 0


def test_server_that_never_answers_times_out_at_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> tuple[ProbeResult, float]:
        async with serve(silent) as port:
            started = time.monotonic()
            result = await probe(f"127.0.0.1:{port}", {}, timeout=0.5)
            return result, time.monotonic() - started
    result, took = asyncio.run(main())
    assert (result.success, result.reason) == (False, Reason.TIMEOUT)
    assert result.grpc_status_code == 4                                # DEADLINE_EXCEEDED
    assert took < 2.0                                                  # not grpcio's own 20 s connect timeout


def test_not_a_grpc_server_fails() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async def main() -> ProbeResult:
        async with serve(http) as port:
            return await probe(f"127.0.0.1:{port}", {}, timeout=2.0)
    result = asyncio.run(main())
    assert result.success is False and result.grpc_status_code not in (None, 0)


def test_tls_with_the_test_ca(cert: CertFiles) -> None:
    async def main() -> ProbeResult:
        async with health_server(cert, statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}", {"tls": True, "tls_config": {"ca_file": str(cert.ca)}})
    result = asyncio.run(main())
    assert (result.success, result.reason) == (True, None), result.detail
    values = gauges(result)
    assert values[("probe_grpc_ssl", ())] == 1.0
    assert values[("probe_ssl_earliest_cert_expiry", ())] == cert.not_after.timestamp()
    assert values[("probe_tls_version_info", (("version", "TLS 1.3"),))] == 1.0
    assert {labels["phase"] for name, labels, _ in result_gauges("grpc", result)
            if name == "probe_grpc_duration_seconds"} == {"resolve", "check"}


def test_tls_with_server_name_for_the_host_name(cert: CertFiles) -> None:
    async def main() -> ProbeResult:
        async with health_server(cert, statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}",
                               {"tls": True, "tls_config": {"ca_file": str(cert.ca), "server_name": "localhost"}})
    result = asyncio.run(main())
    assert result.success is True, result.detail


def test_tls_untrusted_certificate_fails_as_tls(cert: CertFiles) -> None:
    async def main() -> ProbeResult:
        async with health_server(cert, statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}", {"tls": True})    # the system CAs do not know it
    result = asyncio.run(main())
    assert (result.success, result.reason, result.grpc_status_code) == (False, Reason.TLS, 14)
    assert result.detail.startswith("certificate verify failed")
    assert gauges(result)[("probe_grpc_ssl", ())] == 0.0


def test_tls_against_a_plain_server_fails_as_tls(cert: CertFiles) -> None:
    async def main() -> ProbeResult:
        async with health_server(statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}", {"tls": True, "tls_config": {"ca_file": str(cert.ca)}})
    result = asyncio.run(main())
    assert (result.success, result.reason) == (False, Reason.TLS)


def test_plain_against_a_tls_server_fails(cert: CertFiles) -> None:
    async def main() -> ProbeResult:
        async with health_server(cert, statuses={"": "SERVING"}) as server:
            return await probe(f"127.0.0.1:{server.port}", {}, timeout=2.0)
    result = asyncio.run(main())
    assert result.success is False and result.grpc_status_code == 14


def test_ipv6_loopback() -> None:
    async def main() -> ProbeResult:
        async with health_server(statuses={"": "SERVING"}, host="::1") as server:
            return await probe(f"[::1]:{server.port}", {})
    try:
        result = asyncio.run(main())
    except RuntimeError as exc:                     # no IPv6 loopback on this machine
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    assert (result.success, result.ip_protocol) == (True, 6)


def test_host_name_resolves_with_the_preferred_protocol() -> None:
    async def main() -> ProbeResult:
        async with health_server(statuses={"": "SERVING"}) as server:
            return await probe(f"localhost:{server.port}", {"preferred_ip_protocol": "ip4"})
    result = asyncio.run(main())
    assert (result.success, result.ip_address) == (True, "127.0.0.1"), result.detail


def test_unresolvable_host_reports_the_resolve_phase_and_status_zero() -> None:
    result = asyncio.run(probe("no-such-host.invalid:50051", {}))
    assert (result.success, result.reason, result.grpc_status_code) == (False, Reason.RESOLVE, None)
    values = gauges(result)
    assert values[("probe_grpc_status_code", ())] == 0.0
    assert ("probe_grpc_duration_seconds", (("phase", "resolve"),)) in values
    assert health_responses(result) == {}        # blackbox: the vector is registered but empty before a call


# ---------------------------------------------------------------- config


def test_defaults_are_blackbox_s() -> None:
    options = options_of({})
    assert (options.service, options.tls, options.ip.preferred, options.ip.fallback) == ("", False, 6, True)


@pytest.mark.parametrize("mapping, message", [
    ({"service": 5}, "targets[0].service: must be a string"),
    ({"tls": "yes"}, "targets[0].tls: must be true or false"),
    ({"tls_config": {"verify": False}}, "targets[0].tls_config: verify: false is not supported for grpc"),
    ({"tls_config": {"ca_file": "/nonexistent/ca.pem"}}, "targets[0].tls_config.ca_file: file not found"),
    ({"preferred_ip_protocol": "ip5"}, "targets[0].preferred_ip_protocol: must be one of"),
    ({"source_ip_address": "127.0.0.1"}, "targets[0].source_ip_address: unknown key"),
    ({"payload_size": 10}, "targets[0].payload_size: unknown key"),
])
def test_config_errors_name_the_key(mapping: dict[str, Any], message: str) -> None:
    _, errors = parse_kind(grpc_kind, mapping)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_ca_file_is_read_from_disk(tmp_path: Path, cert: CertFiles) -> None:
    assert options_of({"tls": True, "tls_config": {"ca_file": str(cert.ca)}}).tls_config.ca_file == str(cert.ca)


# ---------------------------------------------------------------- /probe


def test_probe_endpoint_with_blackbox_s_grpc_modules(cert: CertFiles) -> None:
    """blackbox's built-in `grpc_plain` (service1, plain) and `grpc` (TLS, system CAs), and a module of the
    agent's flat form with the test CA."""
    config = {"modules": {"grpc_test_ca": {"kind": "grpc", "tls": True, "tls_config": {"ca_file": str(cert.ca)}}}}

    async def main() -> dict[str, Any]:
        async with health_server(statuses={"service1": "SERVING"}) as plain, \
                health_server(cert, statuses={"": "SERVING"}) as secure:
            async with served(agent_app(None, config)) as agent:
                async def get(query: str) -> Any:
                    return await agent.fetch("GET", "/probe?" + query)
                return {
                    "plain": await get(f"target=127.0.0.1:{plain.port}&module=grpc_plain"),
                    "untrusted": await get(f"target=127.0.0.1:{secure.port}&module=grpc"),
                    "trusted": await get(f"target=localhost:{secure.port}&module=grpc_test_ca"),
                    "no_port": await get("target=localhost&module=grpc_plain"),
                }
    answers = asyncio.run(main())
    plain = samples(answers["plain"].body)
    assert plain[("probe_success", ())] == 1.0
    assert plain[("probe_grpc_healthcheck_response", (("serving_status", "SERVING"),))] == 1.0
    assert plain[("probe_grpc_status_code", ())] == 0.0
    untrusted = samples(answers["untrusted"].body)
    assert (untrusted[("probe_success", ())], untrusted[("probe_grpc_status_code", ())]) == (0.0, 14.0)
    trusted = samples(answers["trusted"].body)
    assert (trusted[("probe_success", ())], trusted[("probe_grpc_ssl", ())]) == (1.0, 1.0)
    assert answers["no_port"].status == 400 and "expected host:port" in answers["no_port"].body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_blackbox_module_form_reads_blackbox_s_tls_config(cert: CertFiles) -> None:
    config = parse_config(f"""
modules:
  grpc_ca:
    prober: grpc
    grpc: {{tls: true, service: svc, tls_config: {{ca_file: "{cert.ca}", min_version: TLS12}}}}
""")
    options = config.modules["grpc_ca"].options
    assert (options.service, options.tls, options.tls_config.ca_file, options.tls_config.min_version) == \
        ("svc", True, str(cert.ca), "TLS 1.2")
    with pytest.raises(ConfigError) as info:
        parse_config("modules:\n  g: {prober: grpc, grpc: {tls: true, tls_config: {insecure_skip_verify: true}}}\n")
    assert info.value.errors == ["modules.g.grpc.tls_config: insecure_skip_verify: true is not supported for grpc "
                                 "(grpcio's client always verifies; give the server's CA as ca_file)"]
