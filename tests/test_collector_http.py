"""The http collector against real loopback servers (aiohttp.web, or raw asyncio for misbehaviour)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.collectors import http
from agent.collectors.base import ProbeFailed, ProbeResult, ProbeTarget, Reason
from agent.collectors.http_wire import ChunkedDecoder
from tests.support.certs import make_cert
from tests.support.collector_config import parse_kind

# ---------------------------------------------------------------- helpers

def parse(mapping: dict[str, Any]) -> tuple[http.Options, list[str]]:
    return parse_kind(http, {"name": "t", "kind": "http", "url": "http://x/", **mapping})


def options(**mapping: Any) -> http.Options:
    opts, errors = parse(mapping)
    assert errors == []
    return opts


async def probe(url: str, timeout: float = 3.0, **mapping: Any) -> ProbeResult:
    target = ProbeTarget(name="t", kind="http", url=url, address=None, interval=15.0, timeout=timeout,
                         retries=0, labels={}, options=options(**mapping))
    return await http.Collector().probe(target, time.monotonic() + timeout)


@contextlib.asynccontextmanager
async def serve(routes: list[web.RouteDef], ssl_context=None) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1:<free port>; yields its base URL (no trailing slash)."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                     ) -> AsyncIterator[str]:
    """A raw asyncio server that runs `handle` per connection; yields its base URL."""
    tasks: set[asyncio.Task] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await server.wait_closed()


def reply_with(raw: bytes) -> Callable:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
    return handle


def run_against(routes: list[web.RouteDef], path: str, **mapping: Any) -> ProbeResult:
    async def scenario() -> ProbeResult:
        async with serve(routes) as base:
            return await probe(base + path, **mapping)
    return asyncio.run(scenario())


def run_raw(raw: bytes, **mapping: Any) -> ProbeResult:
    async def scenario() -> ProbeResult:
        async with raw_server(reply_with(raw)) as base:
            return await probe(base + "/", **mapping)
    return asyncio.run(scenario())


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello world")


async def fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="broken")


# ---------------------------------------------------------------- plain http

def test_healthy_200_reports_status_lengths_and_phases() -> None:
    result = run_against([web.get("/", hello)], "/")
    assert result.success, result
    assert (result.status_code, result.content_length, result.body_length) == (200, 11, 11)
    assert result.http_version == 1.1 and result.redirects == 0 and result.tls_version is None
    assert result.phases["connect"] > 0 and result.phases["processing"] > 0
    assert result.phases["resolve"] >= 0 and result.phases["transfer"] >= 0
    assert "tls" not in result.phases
    assert 0 < result.duration_seconds < 3 and any("200" in line for line in result.log)


def test_500_is_a_status_failure() -> None:
    result = run_against([web.get("/", fail)], "/")
    assert not result.success and result.reason is Reason.STATUS and result.status_code == 500


def test_valid_status_codes_can_accept_500() -> None:
    assert run_against([web.get("/", fail)], "/", valid_status_codes=[500]).success


def test_body_must_match_regexp() -> None:
    routes = [web.get("/", hello)]
    assert run_against(routes, "/", fail_if_body_not_matches_regexp=["hel+o"]).success
    result = run_against(routes, "/", fail_if_body_not_matches_regexp=["goodbye"])
    assert result.reason is Reason.BODY and "goodbye" in result.detail


def test_body_must_not_match_regexp() -> None:
    routes = [web.get("/", hello)]
    assert run_against(routes, "/", fail_if_body_matches_regexp=["error"]).success
    result = run_against(routes, "/", fail_if_body_matches_regexp=["wor.d"])
    assert result.reason is Reason.BODY and "wor.d" in result.detail


def test_connection_refused_is_connect() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = asyncio.run(probe(f"http://127.0.0.1:{port}/"))
    assert result.reason is Reason.CONNECT and result.status_code is None


def test_silent_server_times_out_during_processing() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def scenario() -> tuple[ProbeResult, float]:
        async with raw_server(never_answer) as base:
            started = time.monotonic()
            result = await probe(base + "/", timeout=1.0)
            return result, time.monotonic() - started

    result, elapsed = asyncio.run(scenario())
    assert result.reason is Reason.TIMEOUT and result.detail == "timeout during processing"
    assert 0.9 < elapsed < 1.8


def test_stalled_body_times_out_during_transfer() -> None:
    async def half_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await asyncio.sleep(30)

    async def scenario() -> ProbeResult:
        async with raw_server(half_body) as base:
            return await probe(base + "/", timeout=1.0)

    result = asyncio.run(scenario())
    assert result.reason is Reason.TIMEOUT and result.detail == "timeout during transfer"


# ---------------------------------------------------------------- redirects

async def redirect_old(request: web.Request) -> web.Response:
    raise web.HTTPFound("/new")


async def redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def post_then_see_other(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/landing")


REDIRECT_ROUTES = [web.get("/old", redirect_old), web.get("/new", hello), web.get("/loop", redirect_loop),
                   web.post("/form", post_then_see_other), web.get("/landing", hello)]


def test_redirect_is_followed() -> None:
    result = run_against(REDIRECT_ROUTES, "/old")
    assert result.success and result.redirects == 1 and result.status_code == 200
    assert any("redirect 302" in line for line in result.log)


def test_redirect_loop_fails_with_redirect() -> None:
    result = run_against(REDIRECT_ROUTES, "/loop")
    assert result.reason is Reason.REDIRECT and "loop" in result.detail


def test_too_many_redirects_fails_with_redirect() -> None:
    result = run_against(REDIRECT_ROUTES, "/old", max_redirects=0)
    assert result.reason is Reason.REDIRECT and "max_redirects" in result.detail


def test_303_after_post_switches_to_get() -> None:
    result = run_against(REDIRECT_ROUTES, "/form", method="POST", body="a=1")
    assert result.success and result.redirects == 1


def test_redirect_not_followed_returns_the_302() -> None:
    result = run_against(REDIRECT_ROUTES, "/old", follow_redirects=False)
    assert result.reason is Reason.STATUS and result.status_code == 302 and result.redirects == 0
    assert run_against(REDIRECT_ROUTES, "/old", follow_redirects=False, valid_status_codes=[302]).success


# ---------------------------------------------------------------- https

def run_https(tmp_path: Path, cert, **mapping: Any) -> ProbeResult:
    async def scenario() -> ProbeResult:
        async with serve([web.get("/", hello)], ssl_context=cert.server_context()) as base:
            return await probe(base + "/", **mapping)
    return asyncio.run(scenario())


def test_https_with_ca_file_reports_tls_version_and_expiry(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, days_valid=20)
    result = run_https(tmp_path, cert, tls={"ca_file": str(cert.ca)})
    assert result.success, result
    assert result.tls_version in ("TLS 1.2", "TLS 1.3") and result.phases["tls"] > 0
    assert abs(result.cert_expiry - cert.not_after.timestamp()) <= 1


def test_https_self_signed_fails_tls(tmp_path: Path) -> None:
    result = run_https(tmp_path, make_cert(tmp_path, self_signed=True))
    assert result.reason is Reason.TLS and "certificate" in result.detail


def test_https_expired_fails_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, expired=True)
    result = run_https(tmp_path, cert, tls={"ca_file": str(cert.ca)})
    assert result.reason is Reason.TLS and "expired" in result.detail


def test_https_expired_without_verification_succeeds(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, expired=True)
    result = run_https(tmp_path, cert, tls={"verify": False})
    assert result.success and result.cert_expiry < time.time()


def test_https_hostname_mismatch_fails_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    result = run_https(tmp_path, cert, tls={"ca_file": str(cert.ca), "server_name": "elsewhere.example"})
    assert result.reason is Reason.TLS


def test_fail_if_not_ssl_on_plain_http() -> None:
    result = run_against([web.get("/", hello)], "/", fail_if_not_ssl=True)
    assert result.reason is Reason.TLS and "fail_if_not_ssl" in result.detail


# ---------------------------------------------------------------- bodies and framing

async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for piece in (b"a" * 1000, b"b" * 3000, b"c"):
        await response.write(piece)
    await response.write_eof()
    return response


def test_chunked_body_is_counted() -> None:
    result = run_against([web.get("/", chunked)], "/", fail_if_body_not_matches_regexp=["^a{1000}b{3000}c$"])
    assert result.success, result
    assert result.body_length == 4001 and result.content_length == -1


def test_chunked_decoder_byte_by_byte() -> None:
    wire = b"4;ext=1\r\nWiki\r\n0005\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nextra"
    pieces: list[bytes] = []
    decoder = ChunkedDecoder()
    done = [decoder.feed(wire[i:i + 1], lambda p: pieces.append(bytes(p))) for i in range(len(wire))]
    assert b"".join(pieces) == b"Wikipedia in\r\n\r\nchunks." and done.index(True) == len(wire) - 6
    with pytest.raises(ProbeFailed):
        ChunkedDecoder().feed(b"zz\r\n", pieces.append)


def test_missing_content_length_reads_until_close() -> None:
    result = run_raw(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 5000)
    assert result.success and result.content_length == -1 and result.body_length == 5000
    assert result.http_version == 1.0


def test_body_cut_short_is_protocol() -> None:
    result = run_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert result.reason is Reason.PROTOCOL and result.status_code == 200


def test_body_size_limit_exceeded_is_body() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2000)
    result = run_against([web.get("/", big)], "/", body_size_limit=1000)
    assert result.reason is Reason.BODY and "body_size_limit" in result.detail
    assert run_against([web.get("/", big)], "/", body_size_limit=2000).body_length == 2000


def test_malformed_status_line_is_protocol() -> None:
    result = run_raw(b"HTTP/1.1 OK 200\r\n\r\n")
    assert result.reason is Reason.PROTOCOL and "status" in result.detail
    assert run_raw(b"SMTP/1.1 200 OK\r\n\r\n").reason is Reason.PROTOCOL


def test_http_version_outside_valid_versions_is_protocol() -> None:
    raw = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert run_raw(raw, valid_http_versions=["HTTP/1.0"]).success
    assert run_raw(raw, valid_http_versions=["HTTP/1.1"]).reason is Reason.PROTOCOL


def test_head_request_reads_no_body() -> None:
    result = run_against([web.get("/", hello)], "/", method="HEAD")
    assert result.success and result.body_length == 0 and result.content_length == 11


# ---------------------------------------------------------------- what the request carries

async def echo_check(request: web.Request) -> web.Response:
    problems = []
    if request.method != "POST":
        problems.append(f"method {request.method}")
    if await request.read() != b'{"q": 1}':
        problems.append("body")
    if request.headers.get("X-Probe") != "loom" or request.headers.get("Content-Type") != "application/json":
        problems.append("headers")
    if request.headers.get("Connection", "").lower() != "close":
        problems.append("connection")
    return web.Response(status=400 if problems else 200, text=", ".join(problems))


def test_post_body_and_headers_reach_the_server() -> None:
    result = run_against([web.post("/echo", echo_check)], "/echo", method="POST", body='{"q": 1}',
                         headers={"X-Probe": "loom", "Content-Type": "application/json"})
    assert result.success, result


async def authorization(request: web.Request) -> web.Response:
    return web.Response(text=request.headers.get("Authorization", "none"))


def test_basic_auth_reaches_the_server(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    expected = "Basic " + base64.b64encode(b"probe:s3cret").decode()
    result = run_against([web.get("/", authorization)], "/", fail_if_body_not_matches_regexp=[f"^{expected}$"],
                         basic_auth={"username": "probe", "password_file": str(secret)})
    assert result.success, result


def test_bearer_token_reaches_the_server() -> None:
    result = run_against([web.get("/", authorization)], "/", bearer_token="tok-123",
                         fail_if_body_not_matches_regexp=["^Bearer tok-123$"])
    assert result.success, result


def test_unresolvable_host_is_resolve() -> None:
    result = asyncio.run(probe("http://nonexistent.invalid/"))
    assert result.reason is Reason.RESOLVE and "resolve" in result.detail


def test_invalid_url_is_a_failed_result() -> None:
    assert asyncio.run(probe("ftp://127.0.0.1/")).reason is Reason.PROTOCOL
    assert http.check_url("ftp://x/") is not None and http.check_url("https://x:8443/a?b") is None


# ---------------------------------------------------------------- config validation

def test_config_bad_regex() -> None:
    _, errors = parse({"fail_if_body_matches_regexp": ["ok", "(unclosed"]})
    assert len(errors) == 1
    assert errors[0].startswith("targets[0].fail_if_body_matches_regexp[1]: invalid regular expression")


def test_config_bad_status_code() -> None:
    _, errors = parse({"valid_status_codes": [200, 700]})
    assert errors == ["targets[0].valid_status_codes[1]: must be an HTTP status code from 100 to 599, got 700"]


def test_config_basic_auth_and_bearer_token_together() -> None:
    _, errors = parse({"basic_auth": {"username": "u", "password": "p"}, "bearer_token": "t"})
    assert errors == ["targets[0].bearer_token: set either basic_auth or bearer_token, not both"]


def test_config_unknown_key_in_basic_auth() -> None:
    _, errors = parse({"basic_auth": {"username": "u", "passwd": "p"}})
    assert errors == ["targets[0].basic_auth.passwd: unknown key"]


def test_config_bad_method() -> None:
    _, errors = parse({"method": "GET /"})
    assert errors == ["targets[0].method: must be an HTTP method such as GET or POST, got 'GET /'"]


def test_config_negative_max_redirects_and_unknown_key() -> None:
    _, errors = parse({"max_redirects": -1, "no_follow_redirect": True})
    assert errors == ["targets[0].max_redirects: must be at least 0, got -1",
                      "targets[0].no_follow_redirect: unknown key"]


def test_config_defaults() -> None:
    opts = options()
    assert opts == http.Options() and opts.method == "GET" and opts.body_size_limit == 10485760
    assert opts.follow_redirects and opts.max_redirects == 10 and opts.valid_status_codes == ()
