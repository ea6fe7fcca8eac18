"""The tcp collector against real loopback servers, and its config validation."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import yaml

from agent.collectors import tcp
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from tests.support.certs import make_cert
from tests.support.collector_config import parse_kind
from tests.support.loopback import Handler, serve


def parse(mapping: dict[str, Any]) -> tuple[tcp.Options, list[str]]:
    return parse_kind(tcp, mapping)


def options_of(mapping: dict[str, Any]) -> tcp.Options:
    options, errors = parse(mapping)
    assert errors == []
    return options


async def probe(address: str, mapping: dict[str, Any], timeout: float = 5.0) -> ProbeResult:
    target = ProbeTarget(name="t", kind="tcp", url=None, address=address, interval=15.0, timeout=timeout,
                         retries=0, labels={}, options=options_of(mapping))
    return await tcp.Collector().probe(target, time.monotonic() + timeout)


def free_port() -> int:
    """A port nobody listens on: bound once, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- servers


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 ready\r\n")
    await writer.drain()
    line = await reader.readline()
    writer.write(b"250 ok\r\n" if line == b"HELO x\r\n" else b"500 what\r\n")
    await writer.drain()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"this is not TLS at all\r\n" * 20)
    await writer.drain()
    await reader.read()


def starttls_server(context: Any) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        if await reader.readline() != b"STARTTLS\r\n":
            return
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        await writer.start_tls(context)
        writer.write(b"250 secure\r\n")
        await writer.drain()
        await reader.read()
    return handler


BANNER_STEPS = [{"expect": "^220 "}, {"send": "HELO x\r\n"}, {"expect": "^250 ok$"}]


# ---------------------------------------------------------------- probes


def test_open_port_succeeds() -> None:
    async def main() -> ProbeResult:
        async with serve(silent) as port:
            return await probe(f"127.0.0.1:{port}", {})
    result = asyncio.run(main())
    assert result.success, result.detail
    assert set(result.phases) == {"resolve", "connect"}
    assert result.tls_version is None and result.cert_expiry is None
    assert result.duration_seconds > 0


def test_hostname_is_resolved() -> None:
    # blackbox's choice (collectors/ipproto.py): the first IPv6 address (preferred_ip_protocol ip6), else the first
    addresses = [info[4][0] for info in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)]
    first_ip = next((ip for ip in addresses if ":" in ip), addresses[0])

    async def main() -> ProbeResult:
        async with serve(silent, host=first_ip) as port:
            return await probe(f"localhost:{port}", {})
    result = asyncio.run(main())
    assert result.success, result.detail
    assert any(f"resolved localhost to {first_ip}" in line for line in result.log)


def test_unresolvable_host_is_resolve() -> None:
    result = asyncio.run(probe("no-such-host.invalid:25", {}))
    assert result.reason is Reason.RESOLVE
    assert "no-such-host.invalid" in result.detail


def test_refused_is_connect() -> None:
    port = free_port()
    result = asyncio.run(probe(f"127.0.0.1:{port}", {}))
    assert result.reason is Reason.CONNECT
    assert "refused" in result.detail.lower()


def test_banner_exchange_succeeds() -> None:
    async def main() -> ProbeResult:
        async with serve(banner) as port:
            return await probe(f"127.0.0.1:{port}", {"query_response": BANNER_STEPS})
    result = asyncio.run(main())
    assert result.success, result.detail
    assert any("expect[2] /^250 ok$/ matched" in line for line in result.log)


def test_send_escapes_from_yaml_are_real_newlines() -> None:
    mapping = yaml.safe_load('query_response:\n  - expect: "^220"\n  - send: "HELO x\\r\\n"\n'
                             '  - expect: "^250"\n')

    async def main() -> ProbeResult:
        async with serve(banner) as port:
            return await probe(f"127.0.0.1:{port}", mapping)
    result = asyncio.run(main())
    assert result.success, result.detail


def test_wrong_expect_is_expect() -> None:
    steps = BANNER_STEPS[:2] + [{"expect": "^251"}]

    async def main() -> ProbeResult:
        async with serve(banner) as port:
            return await probe(f"127.0.0.1:{port}", {"query_response": steps})
    result = asyncio.run(main())
    assert result.reason is Reason.EXPECT
    assert result.detail == "expect[2] /^251/: connection closed before a match"


def test_wrong_send_gets_the_error_reply() -> None:
    steps = [{"expect": "^220 "}, {"send": "HELLO\r\n"}, {"expect": "^250"}]

    async def main() -> ProbeResult:
        async with serve(banner) as port:
            return await probe(f"127.0.0.1:{port}", {"query_response": steps})
    result = asyncio.run(main())
    assert result.reason is Reason.EXPECT
    assert any("500 what" in line for line in result.log)


def test_silent_server_times_out_waiting_for_expect() -> None:
    async def main() -> tuple[ProbeResult, float]:
        async with serve(silent) as port:
            begin = time.monotonic()
            result = await probe(f"127.0.0.1:{port}", {"query_response": [{"expect": "^OK"}]}, timeout=1.0)
            return result, time.monotonic() - begin
    result, elapsed = asyncio.run(main())
    assert result.reason is Reason.TIMEOUT
    assert result.detail == "timeout waiting for expect[0] /^OK/"
    assert 0.8 < elapsed < 3.0


def test_overlong_line_is_expect() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * (tcp.MAX_LINE + 10))
        await writer.drain()
        await reader.read()

    async def main() -> ProbeResult:
        async with serve(flood) as port:
            return await probe(f"127.0.0.1:{port}", {"query_response": [{"expect": "^OK"}]})
    result = asyncio.run(main())
    assert result.reason is Reason.EXPECT
    assert "line longer than" in result.detail


def test_tls_connection_reports_version_and_expiry(tmp_path) -> None:
    cert = make_cert(tmp_path)

    async def main() -> ProbeResult:
        async with serve(banner, cert.server_context()) as port:
            return await probe(f"127.0.0.1:{port}", {"tls": True, "tls_config": {"ca_file": str(cert.ca)},
                                                     "query_response": BANNER_STEPS})
    result = asyncio.run(main())
    assert result.success, result.detail
    assert result.tls_version in ("TLS 1.2", "TLS 1.3")
    assert result.cert_expiry == pytest.approx(cert.not_after.timestamp(), abs=1)
    assert set(result.phases) == {"resolve", "connect", "tls"}


def test_tls_against_untrusted_cert_is_tls(tmp_path) -> None:
    cert = make_cert(tmp_path, self_signed=True)

    async def main() -> ProbeResult:
        async with serve(silent, cert.server_context()) as port:
            return await probe(f"127.0.0.1:{port}", {"tls": True})
    result = asyncio.run(main())
    assert result.reason is Reason.TLS
    assert "self-signed" in result.detail or "self signed" in result.detail


def test_tls_against_plain_garbage_is_tls() -> None:
    async def main() -> ProbeResult:
        async with serve(garbage) as port:
            return await probe(f"127.0.0.1:{port}", {"tls": True, "tls_config": {"verify": False}})
    result = asyncio.run(main())
    assert result.reason is Reason.TLS, result.detail


def test_starttls_step_upgrades_mid_exchange(tmp_path) -> None:
    cert = make_cert(tmp_path)
    steps = [{"expect": "^220 ready"}, {"send": "STARTTLS\r\n"}, {"expect": "^220 go"},
             {"starttls": True}, {"expect": "^250 secure"}]

    async def main() -> ProbeResult:
        async with serve(starttls_server(cert.server_context())) as port:
            return await probe(f"127.0.0.1:{port}", {"tls_config": {"ca_file": str(cert.ca)},
                                                     "query_response": steps})
    result = asyncio.run(main())
    assert result.success, result.detail
    assert result.tls_version in ("TLS 1.2", "TLS 1.3")
    assert result.cert_expiry == pytest.approx(cert.not_after.timestamp(), abs=1)
    assert "tls" in result.phases


def test_starttls_with_untrusted_cert_is_tls(tmp_path) -> None:
    cert = make_cert(tmp_path, self_signed=True)
    steps = [{"expect": "^220 ready"}, {"send": "STARTTLS\r\n"}, {"expect": "^220 go"}, {"starttls": True}]

    async def main() -> ProbeResult:
        async with serve(starttls_server(cert.server_context())) as port:
            return await probe(f"127.0.0.1:{port}", {"query_response": steps})
    result = asyncio.run(main())
    assert result.reason is Reason.TLS
    assert result.detail.startswith("certificate verify failed")


def test_deadline_already_passed_is_timeout_during_resolve() -> None:
    result = asyncio.run(probe("localhost:9", {}, timeout=0.0))
    assert result.reason is Reason.TIMEOUT
    assert result.detail == "timeout during resolve"


# ---------------------------------------------------------------- config validation


def test_valid_options_are_read() -> None:
    options = options_of({"name": "smtp", "kind": "tcp", "address": "mail:25", "tls": False,
                          "query_response": [{"expect": "^220"}, {"send": "QUIT\r\n"}, {"starttls": True}]})
    assert [s.expect.pattern if s.expect else None for s in options.query_response] == ["^220", None, None]
    assert options.query_response[1].send == "QUIT\r\n"
    assert options.query_response[2].starttls
    assert options.tls_config.verify is True


def test_step_with_send_and_expect_is_an_error() -> None:
    _, errors = parse({"query_response": [{"send": "x", "expect": "y"}]})
    assert errors == ["targets[0].query_response[0]: set only one of expect, send or starttls in a step, "
                      "got expect, send"]


def test_empty_step_is_an_error() -> None:
    _, errors = parse({"query_response": [{"expect": "a"}, {}]})
    assert errors == ["targets[0].query_response[1]: a step needs one of expect, send or starttls"]
    _, errors = parse({"query_response": [{"expect": None}]})
    assert errors == ["targets[0].query_response[0]: a step needs one of expect, send or starttls"]


def test_unknown_key_in_step_is_an_error() -> None:
    _, errors = parse({"query_response": [{"expect": "a", "sned": "b"}]})
    assert errors == ["targets[0].query_response[0].sned: unknown key"]


def test_bad_regex_is_an_error() -> None:
    _, errors = parse({"query_response": [{"expect": "(unclosed"}]})
    assert len(errors) == 1
    assert errors[0].startswith("targets[0].query_response[0].expect: invalid regular expression:")


def test_step_that_is_not_a_mapping_is_an_error() -> None:
    _, errors = parse({"query_response": ["expect ^220"]})
    assert errors == ["targets[0].query_response[0]: must be a mapping, got str"]


def test_starttls_false_is_an_error() -> None:
    _, errors = parse({"query_response": [{"starttls": False}]})
    assert errors == ["targets[0].query_response[0].starttls: must be true (it is a step of its own)"]


def test_second_starttls_is_an_error() -> None:
    _, errors = parse({"query_response": [{"starttls": True}, {"send": "x"}, {"starttls": True}]})
    assert errors == ["targets[0].query_response[2].starttls: may appear only once"]


def test_starttls_with_tls_is_an_error() -> None:
    _, errors = parse({"tls": True, "query_response": [{"starttls": True}]})
    assert errors == ["targets[0].query_response[0].starttls: cannot be used with tls: true "
                      "(the connection is already TLS)"]


def test_wrongly_typed_values_are_errors() -> None:
    _, errors = parse({"tls": "yes", "query_response": [{"send": 5}], "tls_config": {"verfy": False}})
    assert errors == ["targets[0].tls: must be true or false, got str",
                      "targets[0].tls_config.verfy: unknown key",
                      "targets[0].query_response[0].send: must be a string, got int"]


def test_query_response_must_be_a_list() -> None:
    _, errors = parse({"query_response": {"expect": "x"}})
    assert errors == ["targets[0].query_response: must be a list, got dict"]


def test_unknown_option_is_an_error() -> None:
    _, errors = parse({"name": "x", "kind": "tcp", "address": "a:1", "query_responce": []})
    assert errors == ["targets[0].query_responce: unknown key"]
