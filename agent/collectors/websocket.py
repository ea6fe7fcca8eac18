"""The `websocket` probe: open a WebSocket (ws:// or wss://), optionally exchange a message
and/or a ping, and close it cleanly.

Steps: the upgrade (TCP connect, TLS for wss, the HTTP/1.1 `101 Switching Protocols`), then
`send` (a text message) and the first data message back, which must match `expect`; with
`expect` and no `send`, the first message the server sends by itself must match. With
`ping: true` a ping frame is sent and its pong awaited. Finally a close handshake, bounded
by what is left of the deadline.

Phases: resolve (only for a host name), connect (TCP and TLS), upgrade (the HTTP upgrade),
round_trip (send -> reply), receive (waiting for the server's first message when nothing
was sent), ping (ping -> pong). `round_trip_seconds` is the message round trip, else the
ping round trip. Each probe opens a fresh connection (the connector never reuses one).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any, ClassVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from agent.collectors.base import (
    PhaseTrace,
    ProbeFailed,
    ProbeLog,
    ProbeResult,
    ProbeTarget,
    Reason,
    is_ip_literal,
    run_until,
)
from agent.collectors.ipproto import IpOptions, choose, lookup, parse_ip_options, protocol_of
from agent.collectors.tlsinfo import TlsSettings, client_context, parse_tls, peer_info
from agent.config.node import Node

KIND = "websocket"
PING_PAYLOAD = b"loom-agent"
# frames read in a row before a probe lets the event loop run other tasks: receive() does not suspend
# while frames are buffered, so a server flooding frames would otherwise hold the loop (tests/test_faults_probes.py)
YIELD_EVERY = 64
_HANDSHAKE_HEADERS = ("connection", "upgrade", "sec-websocket-key", "sec-websocket-version",
                      "sec-websocket-protocol", "sec-websocket-extensions")
_EXCERPT = 80


@dataclass(frozen=True, slots=True)
class Options:
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    tls: TlsSettings = field(default_factory=TlsSettings)
    send: str | None = None
    expect: re.Pattern[str] | None = None
    ping: bool = False
    ip: IpOptions = IpOptions()


def parse_options(node: Node) -> Options:
    return Options(
        headers=_headers(node, "headers"),
        subprotocols=node.str_list("subprotocols"),
        tls=parse_tls(node.child("tls")),
        send=node.str("send"),
        expect=node.regex("expect"),
        ping=node.bool("ping", False),
        ip=parse_ip_options(node),
    )


def _headers(node: Node, key: str) -> tuple[tuple[str, str], ...]:
    headers = node.str_map(key)
    for name in headers:
        if name.lower() in _HANDSHAKE_HEADERS:
            hint = " (use subprotocols)" if name.lower() == "sec-websocket-protocol" else ""
            node.error(f"is set by the WebSocket handshake and cannot be overridden{hint}", f"{key}.{name}")
    return tuple((k, v) for k, v in headers.items() if k.lower() not in _HANDSHAKE_HEADERS)


@dataclass(slots=True)
class _Conversation:
    """What one probe holds beside its PhaseTrace: the instants aiohttp's trace hooks marked while
    connecting (perf_counter), the open websocket, the round trip, and whether every step passed."""

    trace: PhaseTrace
    ip: IpOptions = IpOptions()
    marks: dict[str, float] = field(default_factory=dict)
    ws: aiohttp.ClientWebSocketResponse | None = None
    round_trip: float | None = None
    done: bool = False                 # every step passed: close the websocket cleanly


# The probe in progress, for aiohttp's trace hooks below. The hooks run inside the probing task (or a
# task it spawned, which copies its context), so a context variable keeps concurrent probes on one
# session apart.
_CURRENT: ContextVar[_Conversation | None] = ContextVar("loom_websocket_probe", default=None)
# the connection step in progress once a hook has fired: what a timeout then names
_PHASE_AFTER = {"connect_start": "connect", "resolve_start": "resolve", "resolve_end": "connect",
                "connect_end": "upgrade"}


async def _mark(name: str, _session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
    conversation = _CURRENT.get()
    if conversation is not None:
        conversation.marks[name] = time.perf_counter()
        conversation.trace.phase = _PHASE_AFTER[name]


class _Resolver(AbstractResolver):
    """Host names through ipproto (preferred_ip_protocol, ip_protocol_fallback), the choice recorded on
    the probe in progress; aiohttp hands IP literals to the connection without asking a resolver."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        conversation = _CURRENT.get()
        resolved = await lookup(host, port, conversation.ip if conversation is not None else IpOptions())
        if conversation is not None and conversation.trace.ip_address is None:
            conversation.trace.ip_address, conversation.trace.ip_protocol = resolved.ip, resolved.protocol
            conversation.trace.log(f"resolved {host} to {resolved.ip} (ip{resolved.protocol})")
        af = socket.AF_INET if resolved.protocol == 4 else socket.AF_INET6
        return [{"hostname": host, "host": resolved.ip, "port": port, "family": af, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


def _literal_host(url: str, conversation: _Conversation) -> None:
    """An IP literal in the URL is the address probed: its family must be allowed (no fallback)."""
    try:
        host = URL(url).host or ""
    except (UnicodeError, ValueError) as exc:   # yarl IDNA-encodes the host: a 64-char label, a C1 control
        raise ProbeFailed(Reason.RESOLVE, f"not a valid host name: {exc}") from None
    if not is_ip_literal(host):
        return
    if choose([host], conversation.ip) is None:
        raise ProbeFailed(Reason.RESOLVE, f"{host} is not an ip{conversation.ip.preferred} address "
                                          "(preferred_ip_protocol, ip_protocol_fallback: false)")
    conversation.trace.ip_address, conversation.trace.ip_protocol = host, protocol_of(host)


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_start.append(partial(_mark, "resolve_start"))
    trace.on_dns_resolvehost_end.append(partial(_mark, "resolve_end"))
    trace.on_connection_create_start.append(partial(_mark, "connect_start"))
    trace.on_connection_create_end.append(partial(_mark, "connect_end"))
    return trace


def _connection_phases(conversation: _Conversation, started: float, upgraded: float) -> None:
    """resolve, connect and upgrade from the hooks' marks (connect without its resolve time)."""
    marks, phases = conversation.marks, conversation.trace.phases
    resolve = marks.get("resolve_end", 0.0) - marks.get("resolve_start", 0.0)
    phases["resolve"] = resolve
    if "connect_start" in marks and "connect_end" in marks:
        phases["connect"] = marks["connect_end"] - marks["connect_start"] - resolve
        phases["upgrade"] = upgraded - marks["connect_end"]
    else:
        phases["connect"] = upgraded - started - resolve


class Collector:
    kind: ClassVar[str] = KIND

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        conversation = _Conversation(PhaseTrace(phase="connect"), target.options.ip)
        token = _CURRENT.set(conversation)
        try:
            failure = await run_until(deadline, conversation.trace,
                                      self._talk(target.url or "", target.options, conversation))
        finally:
            _CURRENT.reset(token)
            if conversation.ws is not None:      # clean close after success, else drop the connection
                await _close(conversation.ws, deadline if conversation.done else None, conversation.trace.log)
        return conversation.trace.result(failure, round_trip_seconds=conversation.round_trip)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(force_close=True, limit=0, use_dns_cache=False, resolver=_Resolver())
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(), trace_configs=[_trace_config()])
        return self._session

    async def _talk(self, url: str, options: Options, conversation: _Conversation) -> None:
        conversation.ws = await self._connect(url, options, conversation)
        await _converse(conversation.ws, options, conversation)

    async def _connect(self, url: str, options: Options,
                       conversation: _Conversation) -> aiohttp.ClientWebSocketResponse:
        problem = url_error(url)
        if problem:         # the config loader should have refused it (see url_error)
            raise ProbeFailed(Reason.INTERNAL, problem)
        conversation.trace.log(f"opening {url}")
        _literal_host(url, conversation)
        started = time.perf_counter()
        try:
            ws = await self._client().ws_connect(
                url, protocols=options.subprotocols, headers=options.headers or None,
                ssl=client_context(options.tls), server_hostname=options.tls.server_name,
                autoping=False, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=None))
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise _connect_failure(exc) from None
        except UnicodeError as exc:      # the resolver could not IDNA-encode the host (a 64-char label, ...)
            raise ProbeFailed(Reason.RESOLVE, f"not a valid host name: {exc}") from None
        _connection_phases(conversation, started, time.perf_counter())
        conversation.trace.log(f"upgraded: HTTP 101, subprotocol {ws.protocol or '(none)'}")
        return ws


def url_error(url: str | None) -> str | None:
    """Why `url` cannot be a websocket target, or None: for the config loader to report."""
    if not url:
        return "a websocket target needs a url"
    if not url.startswith(("ws://", "wss://")):
        return f"must be a ws:// or wss:// URL, got {url!r}"
    return None


def _connect_failure(exc: Exception) -> ProbeFailed:
    """The Reason for an error of the connect, TLS or upgrade step."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status != 101:
            return ProbeFailed(Reason.PROTOCOL, f"websocket upgrade refused: HTTP {exc.status}")
        return ProbeFailed(Reason.PROTOCOL, f"bad websocket upgrade: {exc.message}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        message = getattr(cert_error, "verify_message", None) or str(cert_error)
        return ProbeFailed(Reason.TLS, f"certificate verification failed: {message}")
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch, ssl.SSLError)):
        return ProbeFailed(Reason.TLS, f"TLS handshake failed: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):      # yarl could not IDNA-encode the host (a 64-char label, ...)
        return ProbeFailed(Reason.RESOLVE, f"not a valid host name in {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeFailed(Reason.RESOLVE, f"cannot resolve {exc.host}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProbeFailed(Reason.CONNECT, f"{exc.host} port {exc.port}: {_os_message(exc.os_error)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProbeFailed(Reason.PROTOCOL, "server closed the connection during the upgrade")
    if isinstance(exc, (aiohttp.ClientOSError, ConnectionError)):
        return ProbeFailed(Reason.CONNECT, f"connection failed: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return ProbeFailed(Reason.PROTOCOL, f"bad upgrade response: {exc}")
    return ProbeFailed(Reason.CONNECT, f"connection failed: {exc}")


async def _converse(ws: aiohttp.ClientWebSocketResponse, options: Options, conversation: _Conversation) -> None:
    """TLS facts, then the message exchange and the ping the options ask for (into the trace and the
    conversation, so a failed exchange still reports what was learnt)."""
    trace = conversation.trace
    trace.tls_version, trace.cert_expiry = peer_info(ws.get_extra_info("ssl_object"))
    if trace.tls_version:
        trace.log(f"TLS: {trace.tls_version}")
    try:
        if options.send is not None or options.expect is not None:
            conversation.round_trip = await _message_round_trip(ws, options, trace)
        if options.ping:
            rtt = await _ping_round_trip(ws, trace)
            conversation.round_trip = rtt if conversation.round_trip is None else conversation.round_trip
    except (aiohttp.ClientConnectionError, ConnectionError) as exc:
        raise ProbeFailed(Reason.PROTOCOL, f"connection lost before the reply: {exc}") from None
    trace.waiting = ""
    conversation.done = True


async def _message_round_trip(ws: aiohttp.ClientWebSocketResponse, options: Options,
                              trace: PhaseTrace) -> float | None:
    started = time.perf_counter()
    if options.send is not None:
        trace.log(f"sending {_excerpt(options.send)}")
        await ws.send_str(options.send)
    trace.waiting = "waiting for reply"
    reply = await _next_message(ws)
    elapsed = time.perf_counter() - started
    trace.phases["round_trip" if options.send is not None else "receive"] = elapsed
    trace.log(f"received {_excerpt(reply)}")
    if options.expect is not None and not options.expect.search(reply):
        raise ProbeFailed(Reason.BODY, f"reply did not match expect {options.expect.pattern!r}: {_excerpt(reply)}")
    return elapsed if options.send is not None else None


async def _ping_round_trip(ws: aiohttp.ClientWebSocketResponse, trace: PhaseTrace) -> float:
    started = time.perf_counter()
    trace.log("sending ping")
    await ws.ping(PING_PAYLOAD)
    trace.waiting = "waiting for pong"
    count = 0
    while True:
        count += 1
        msg = await ws.receive()
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if msg.type is aiohttp.WSMsgType.PONG and msg.data == PING_PAYLOAD:
            break
        if msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PONG):
            raise _closed_failure(ws, msg, "pong")
    elapsed = time.perf_counter() - started
    trace.phases["ping"] = elapsed
    trace.log("received pong")
    return elapsed


async def _next_message(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The next text or binary message (binary decoded as UTF-8), answering pings on the way."""
    count = 0
    while True:
        count += 1
        msg = await ws.receive()
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if msg.type is aiohttp.WSMsgType.TEXT:
            return msg.data
        if msg.type is aiohttp.WSMsgType.BINARY:
            return msg.data.decode("utf-8", "replace")
        if msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is not aiohttp.WSMsgType.PONG:
            raise _closed_failure(ws, msg, "reply")


def _closed_failure(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage, awaited: str) -> ProbeFailed:
    if msg.type is aiohttp.WSMsgType.ERROR:
        return ProbeFailed(Reason.PROTOCOL, f"websocket error before the {awaited}: {msg.data}")
    return ProbeFailed(Reason.PROTOCOL, f"server closed the websocket before the {awaited} (code {ws.close_code})")


async def _close(ws: aiohttp.ClientWebSocketResponse, deadline: float | None, log: ProbeLog) -> None:
    """Close handshake within what is left of the deadline. With no deadline (a failed probe)
    or once it has passed, the close frame is sent and the connection dropped at once: the
    expired timeout cancels the wait for the server's close frame, and aiohttp then closes
    the connection."""
    if ws.closed:
        return
    budget = 0.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        async with asyncio.timeout(budget):
            await ws.close()
        log(f"closed (code {ws.close_code})")
    except TimeoutError:
        log("connection dropped" if deadline is None else
                "close not acknowledged before the deadline; connection dropped")
    except (aiohttp.ClientError, ConnectionError) as exc:
        log(f"close failed: {exc}")


def _os_message(error: OSError) -> str:
    return os.strerror(error.errno).lower() if error.errno else str(error)


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT] + "...")
