"""The tls collector against real loopback TLS servers, and its config validation."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from agent.collectors import tls
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from tests.support.certs import CertFiles, make_ca, make_cert
from tests.support.collector_config import parse_kind
from tests.support.loopback import serve


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\nnot TLS\r\n" * 10)
    await writer.drain()
    await reader.read()


def parse(mapping: dict[str, Any]) -> tuple[tls.Options, list[str]]:
    return parse_kind(tls, mapping)


def options_of(mapping: dict[str, Any]) -> tls.Options:
    options, errors = parse(mapping)
    assert errors == []
    return options


async def probe(port: int, mapping: dict[str, Any], timeout: float = 5.0) -> ProbeResult:
    target = ProbeTarget(name="t", kind="tls", url=None, address=f"127.0.0.1:{port}", interval=15.0,
                         timeout=timeout, retries=0, labels={}, options=options_of(mapping))
    return await tls.Collector().probe(target, time.monotonic() + timeout)


def probe_server(context: ssl.SSLContext, mapping: dict[str, Any]) -> ProbeResult:
    async def main() -> ProbeResult:
        async with serve(silent, context) as port:
            return await probe(port, mapping)
    return asyncio.run(main())


def trusting(cert: CertFiles, **tls_settings: Any) -> dict[str, Any]:
    return {"tls": {"ca_file": str(cert.ca), **tls_settings}}


# ---------------------------------------------------------------- probes


def test_ca_signed_certificate_succeeds(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, days_valid=30)
    result = probe_server(cert.server_context(), trusting(cert))
    assert result.success, result.detail
    assert result.tls_version in ("TLS 1.2", "TLS 1.3")
    assert result.cert_expiry == pytest.approx(cert.not_after.timestamp(), abs=1)
    assert set(result.phases) == {"resolve", "connect", "tls"}
    assert all(seconds >= 0 for seconds in result.phases.values())


def test_earliest_expiry_over_the_presented_chain(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)                              # valid 3650 days
    leaf = make_cert(tmp_path, days_valid=4000, ca=ca)  # outlives its CA
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.cert.read_bytes() + ca[2].read_bytes())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, leaf.key)
    result = probe_server(context, trusting(leaf))
    assert result.success, result.detail
    assert result.cert_expiry == pytest.approx(ca[0].not_valid_after_utc.timestamp(), abs=1)
    assert result.cert_expiry < leaf.not_after.timestamp()


def test_self_signed_is_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, self_signed=True)
    result = probe_server(cert.server_context(), {})
    assert result.reason is Reason.TLS
    assert result.detail in ("certificate verify failed: self-signed certificate",
                             "certificate verify failed: self signed certificate")


def test_unknown_ca_is_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)          # signed by a CA the probe is not told about
    result = probe_server(cert.server_context(), {})
    assert result.reason is Reason.TLS
    assert result.detail == "certificate verify failed: unable to get local issuer certificate"


def test_expired_is_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, expired=True)
    result = probe_server(cert.server_context(), trusting(cert))
    assert result.reason is Reason.TLS
    assert result.detail == "certificate verify failed: certificate has expired"


def test_hostname_mismatch_is_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    result = probe_server(cert.server_context(), trusting(cert, server_name="example.com"))
    assert result.reason is Reason.TLS
    assert "mismatch" in result.detail.lower() and "example.com" in result.detail


def test_server_name_is_checked_instead_of_the_host(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)          # valid for localhost and 127.0.0.1
    result = probe_server(cert.server_context(), trusting(cert, server_name="localhost"))
    assert result.success, result.detail


def test_expired_without_verify_succeeds_with_past_expiry(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, expired=True)
    result = probe_server(cert.server_context(), {"tls": {"verify": False}})
    assert result.success, result.detail
    assert result.cert_expiry is not None and result.cert_expiry < time.time()
    assert result.cert_expiry == pytest.approx(cert.not_after.timestamp(), abs=1)


def test_expiring_soon_fails_with_detail(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, days_valid=5)
    result = probe_server(cert.server_context(), {**trusting(cert), "fail_if_expires_within": "30d"})
    assert result.reason is Reason.TLS
    assert result.detail.startswith("certificate expires in 5.0d (at ")
    assert result.detail.endswith("within fail_if_expires_within 30.0d")
    assert result.cert_expiry == pytest.approx(cert.not_after.timestamp(), abs=1)
    assert result.tls_version is not None


def test_expiring_later_than_the_window_succeeds(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, days_valid=60)
    result = probe_server(cert.server_context(), {**trusting(cert), "fail_if_expires_within": "30d"})
    assert result.success, result.detail


def test_expired_without_verify_still_fails_the_expiry_window(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, expired=True)
    result = probe_server(cert.server_context(), {"tls": {"verify": False}, "fail_if_expires_within": "1d"})
    assert result.reason is Reason.TLS
    assert result.detail.startswith("certificate expired 1.0d ago")


def test_silent_server_times_out_during_tls() -> None:
    async def main() -> tuple[ProbeResult, float]:
        async with serve(silent) as port:
            begin = time.monotonic()
            result = await probe(port, {}, timeout=1.0)
            return result, time.monotonic() - begin
    result, elapsed = asyncio.run(main())
    assert result.reason is Reason.TIMEOUT
    assert result.detail == "timeout during tls"
    assert 0.8 < elapsed < 3.0


def test_plain_server_sending_garbage_is_tls() -> None:
    async def main() -> ProbeResult:
        async with serve(garbage) as port:
            return await probe(port, {})
    result = asyncio.run(main())
    assert result.reason is Reason.TLS
    assert result.detail.startswith("tls handshake: ")


def test_server_closing_mid_handshake_is_tls() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async def main() -> ProbeResult:
        async with serve(hang_up) as port:
            return await probe(port, {})
    result = asyncio.run(main())
    assert result.reason is Reason.TLS, result.detail
    assert result.detail.startswith("tls handshake: ")


def test_refused_is_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(probe(port, {}))
    assert result.reason is Reason.CONNECT
    assert "refused" in result.detail.lower()


# ---------------------------------------------------------------- config validation


def test_valid_options_are_read(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    options = options_of({"name": "x", "kind": "tls", "address": "a:443", "fail_if_expires_within": "14d",
                          "tls": {"ca_file": str(cert.ca), "server_name": "a.example"}})
    assert options.fail_if_expires_within == 14 * 86400
    assert options.tls.verify is True and options.tls.server_name == "a.example"
    assert options_of({}) == tls.Options()


def test_bad_duration_is_an_error() -> None:
    _, errors = parse({"fail_if_expires_within": "two weeks"})
    assert len(errors) == 1
    assert errors[0].startswith("targets[0].fail_if_expires_within: invalid duration 'two weeks'")


def test_unknown_key_in_tls_block_is_an_error() -> None:
    _, errors = parse({"tls": {"verfy": False}})
    assert errors == ["targets[0].tls.verfy: unknown key"]


def test_unknown_option_is_an_error() -> None:
    _, errors = parse({"name": "x", "kind": "tls", "address": "a:1", "fail_if_expires": "1d"})
    assert errors == ["targets[0].fail_if_expires: unknown key"]
