"""The websocket collector against aiohttp.web WebSocket servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from agent.collectors import websocket as ws_collector
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from tests.support.certs import make_cert
from tests.support.collector_config import parse_kind

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEADERS = web.AppKey("headers", dict)


# --- servers ----------------------------------------------------------------------------

async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("loom.v1",))
    await ws.prepare(request)
    request.app[HEADERS].update(request.headers)
    async for msg in ws:            # autoping answers pings with pongs
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(f"echo: {msg.data}")
    return ws


async def mute(request: web.Request) -> web.WebSocketResponse:
    """Accepts the upgrade, reads (and drops) everything, never answers, not even pings."""
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


async def greeter(request: web.Request) -> web.WebSocketResponse:
    """Speaks first."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("hello from the server")
    async for _ in ws:
        pass
    return ws


async def hangup(request: web.Request) -> web.WebSocketResponse:
    """Closes the websocket as soon as a message arrives."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.receive()
    await ws.close(code=1011, message=b"bye")
    return ws


async def plain(request: web.Request) -> web.Response:
    return web.Response(text="not a websocket")


ROUTES: dict[str, Handler] = {"/echo": echo, "/mute": mute, "/greeter": greeter, "/hangup": hangup,
                              "/plain": plain}


class Server:
    """An aiohttp.web app with ROUTES on 127.0.0.1, port 0, optionally with TLS."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self.ssl_context = ssl_context
        self.app = web.Application()
        self.app[HEADERS] = {}
        for path, handler in ROUTES.items():
            self.app.router.add_get(path, handler)
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.5)
        self.port = 0

    def url(self, path: str) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> Server:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


# --- helpers ----------------------------------------------------------------------------

def parse(**options: Any) -> tuple[ws_collector.Options, list[str]]:
    return parse_kind(ws_collector, {"name": "t", "kind": "websocket", "url": "ws://127.0.0.1/", **options})


def make_target(url: str, timeout: float, **options: Any) -> ProbeTarget:
    parsed, errors = parse(**options)
    assert errors == []
    return ProbeTarget(name="t", kind="websocket", url=url, address=None, interval=15.0, timeout=timeout,
                       retries=0, labels={}, options=parsed)


async def probe(url: str, timeout: float = 2.0, **options: Any) -> ProbeResult:
    collector = ws_collector.Collector()
    try:
        return await collector.probe(make_target(url, timeout, **options), time.monotonic() + timeout)
    finally:
        await collector.close()


def run(path: str, timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None,
        **options: Any) -> ProbeResult:
    async def main() -> ProbeResult:
        async with Server(ssl_context) as server:
            return await probe(server.url(path), timeout, **options)
    return asyncio.run(main())


# --- successes --------------------------------------------------------------------------

def test_echo_round_trip() -> None:
    result = run("/echo", send="hi", expect="^echo: hi$")
    assert result.success, result.detail
    assert result.round_trip_seconds is not None and result.round_trip_seconds > 0
    assert result.phases["round_trip"] == result.round_trip_seconds
    assert {"resolve", "connect", "upgrade", "round_trip"} <= set(result.phases)
    assert result.tls_version is None
    assert any("received 'echo: hi'" in line for line in result.log)
    assert any(line.endswith("closed (code 1000)") for line in result.log)


def test_upgrade_only_without_exchange() -> None:
    result = run("/echo")
    assert result.success, result.detail
    assert result.round_trip_seconds is None
    assert "round_trip" not in result.phases and "upgrade" in result.phases


def test_headers_and_subprotocol_are_sent() -> None:
    async def main() -> tuple[ProbeResult, dict[str, str]]:
        async with Server() as server:
            result = await probe(server.url("/echo"), headers={"X-Probe": "loom"}, subprotocols=["loom.v1"])
            return result, server.app[HEADERS]

    result, headers = asyncio.run(main())
    assert result.success, result.detail
    assert headers["X-Probe"] == "loom"
    assert headers["Sec-WebSocket-Protocol"] == "loom.v1"
    assert any("subprotocol loom.v1" in line for line in result.log)


def test_expect_on_a_server_that_speaks_first() -> None:
    result = run("/greeter", expect="^hello")
    assert result.success, result.detail
    assert result.round_trip_seconds is None
    assert "receive" in result.phases


def test_ping_pong() -> None:
    result = run("/echo", ping=True)
    assert result.success, result.detail
    assert result.round_trip_seconds is not None and result.round_trip_seconds > 0
    assert result.phases["ping"] == result.round_trip_seconds


def test_message_and_ping_together() -> None:
    result = run("/echo", send="x", ping=True)
    assert result.success, result.detail
    assert result.round_trip_seconds == result.phases["round_trip"]
    assert "ping" in result.phases


# --- failures ---------------------------------------------------------------------------

def test_expect_mismatch_is_body() -> None:
    result = run("/echo", send="hi", expect="^pong$")
    assert (result.success, result.reason) == (False, Reason.BODY)
    assert result.detail == "reply did not match expect '^pong$': 'echo: hi'"


def test_silent_server_is_timeout_at_the_deadline() -> None:
    started = time.monotonic()
    result = run("/mute", timeout=1.0, send="hi")
    elapsed = time.monotonic() - started
    assert (result.success, result.reason) == (False, Reason.TIMEOUT)
    assert result.detail == "timeout waiting for reply"
    assert "upgrade" in result.phases
    assert 0.9 <= elapsed < 3.0


def test_unanswered_ping_is_timeout() -> None:
    result = run("/mute", timeout=1.0, ping=True)
    assert (result.success, result.reason) == (False, Reason.TIMEOUT)
    assert result.detail == "timeout waiting for pong"


def test_plain_http_endpoint_is_protocol() -> None:
    result = run("/plain", send="hi")
    assert (result.success, result.reason) == (False, Reason.PROTOCOL)
    assert result.detail == "websocket upgrade refused: HTTP 200"


def test_missing_path_is_protocol_with_its_status() -> None:
    result = run("/nowhere")
    assert (result.success, result.reason) == (False, Reason.PROTOCOL)
    assert result.detail == "websocket upgrade refused: HTTP 404"


def test_server_closing_before_the_reply_is_protocol() -> None:
    result = run("/hangup", send="hi")
    assert (result.success, result.reason) == (False, Reason.PROTOCOL)
    assert result.detail.startswith("server closed the websocket before the reply")


def test_refused_is_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(probe(f"ws://127.0.0.1:{port}/"))
    assert (result.success, result.reason) == (False, Reason.CONNECT)
    assert result.detail == f"127.0.0.1 port {port}: connection refused"


def test_unresolvable_host_is_resolve() -> None:
    result = asyncio.run(probe("ws://ws.invalid/"))
    assert (result.success, result.reason) == (False, Reason.RESOLVE)
    assert "ws.invalid" in result.detail


def test_collector_reuses_one_session_but_not_connections() -> None:
    async def main() -> list[ProbeResult]:
        collector = ws_collector.Collector()
        async with Server() as server:
            target = make_target(server.url("/echo"), 2.0, send="a")
            results = [await collector.probe(target, time.monotonic() + 2.0) for _ in range(3)]
            session = collector._session
            assert session is not None and not session.closed
            await collector.close()
            assert session.closed
        return results

    results = asyncio.run(main())
    assert all(r.success for r in results)
    assert all(r.phases["connect"] > 0 for r in results)    # a new connection each time


def test_url_error_helper_and_a_bad_url_reaching_the_probe() -> None:
    assert ws_collector.url_error("ws://h/") is None and ws_collector.url_error("wss://h/") is None
    assert ws_collector.url_error(None) == "a websocket target needs a url"
    assert ws_collector.url_error("http://h/") == "must be a ws:// or wss:// URL, got 'http://h/'"
    result = asyncio.run(probe("http://127.0.0.1:1/"))
    assert (result.success, result.reason) == (False, Reason.INTERNAL)


# --- TLS --------------------------------------------------------------------------------

def test_wss_with_ca_signed_certificate(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    result = run("/echo", ssl_context=cert.server_context(), send="hi", tls={"ca_file": str(cert.ca)})
    assert result.success, result.detail
    assert result.tls_version in ("TLS 1.2", "TLS 1.3")
    assert result.cert_expiry is not None
    assert abs(result.cert_expiry - cert.not_after.timestamp()) < 2


def test_wss_failure_after_the_handshake_keeps_tls_facts(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    result = run("/echo", ssl_context=cert.server_context(), send="hi", expect="^nope$",
                 tls={"ca_file": str(cert.ca)})
    assert (result.success, result.reason) == (False, Reason.BODY)
    assert result.tls_version is not None and result.cert_expiry is not None


def test_wss_self_signed_is_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, self_signed=True)
    result = run("/echo", ssl_context=cert.server_context(), send="hi")
    assert (result.success, result.reason) == (False, Reason.TLS)
    assert re.fullmatch(r"certificate verification failed: self.signed certificate", result.detail)


def test_wss_expired_is_tls(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, expired=True)
    result = run("/echo", ssl_context=cert.server_context(), tls={"ca_file": str(cert.ca)})
    assert (result.success, result.reason) == (False, Reason.TLS)
    assert "expired" in result.detail


def test_wss_self_signed_with_verify_off(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, self_signed=True)
    result = run("/echo", ssl_context=cert.server_context(), ping=True, tls={"verify": False})
    assert result.success, result.detail
    assert result.tls_version is not None


# --- configuration ----------------------------------------------------------------------

def test_defaults() -> None:
    options, errors = parse()
    assert errors == []
    assert options == ws_collector.Options()


def test_config_handshake_header() -> None:
    assert parse(headers={"Sec-WebSocket-Protocol": "x"})[1] == [
        "targets[0].headers.Sec-WebSocket-Protocol: is set by the WebSocket handshake and cannot be "
        "overridden (use subprotocols)"]


def test_config_subprotocols_not_a_list() -> None:
    assert parse(subprotocols="chat")[1] == ["targets[0].subprotocols: must be a list of strings, got str"]


def test_config_invalid_expect() -> None:
    errors = parse(expect="(")[1]
    assert len(errors) == 1 and errors[0].startswith("targets[0].expect: invalid regular expression")


def test_config_send_not_a_string() -> None:
    assert parse(send=42)[1] == ["targets[0].send: must be a string, got int"]


def test_config_ping_not_a_bool() -> None:
    assert parse(ping="yes")[1] == ["targets[0].ping: must be true or false, got str"]


def test_config_missing_ca_file() -> None:
    assert parse(tls={"ca_file": "/nonexistent/ca.pem"})[1] == [
        "targets[0].tls.ca_file: file not found: /nonexistent/ca.pem"]


def test_config_unknown_tls_key() -> None:
    assert parse(tls={"insecure": True})[1] == ["targets[0].tls.insecure: unknown key"]


def test_config_unknown_option_is_flagged_by_finish() -> None:
    assert parse(message="hi")[1] == ["targets[0].message: unknown key"]


def test_the_address_probed_is_reported_and_chosen_as_blackbox_does() -> None:
    """ipproto through aiohttp: an IP literal is the address probed; a host name goes through the agent's
    resolver (ip4 without fallback: 127.0.0.1); an IP literal of a family not allowed is a resolve failure."""
    async def main() -> tuple[ProbeResult, ProbeResult, ProbeResult]:
        async with Server(None) as server:
            url = server.url("/echo")
            by_name = url.replace("127.0.0.1", "localhost")
            return (await probe(url), await probe(by_name, preferred_ip_protocol="ip4", ip_protocol_fallback=False),
                    await probe(url, preferred_ip_protocol="ip6", ip_protocol_fallback=False))
    literal, named, refused = asyncio.run(main())
    assert literal.success and (literal.ip_address, literal.ip_protocol) == ("127.0.0.1", 4)
    assert named.success and (named.ip_address, named.ip_protocol) == ("127.0.0.1", 4), named.detail
    assert any("resolved localhost to 127.0.0.1 (ip4)" in line for line in named.log)
    assert not refused.success and refused.reason is Reason.RESOLVE and "not an ip6 address" in refused.detail
