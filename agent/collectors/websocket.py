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
import itertools
import os
import re
import ssl
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any, ClassVar

import aiohttp

from agent.collectors.base import ProbeLog, ProbeResult, ProbeTarget, Reason
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


def parse_options(node: Node) -> Options:
    return Options(
        headers=_headers(node, "headers"),
        subprotocols=node.str_list("subprotocols"),
        tls=parse_tls(node.child("tls")),
        send=node.str("send"),
        expect=node.regex("expect"),
        ping=node.bool("ping", False),
    )


def _headers(node: Node, key: str) -> tuple[tuple[str, str], ...]:
    headers = node.str_map(key)
    for name in headers:
        if name.lower() in _HANDSHAKE_HEADERS:
            hint = " (use subprotocols)" if name.lower() == "sec-websocket-protocol" else ""
            node.error(f"is set by the WebSocket handshake and cannot be overridden{hint}", f"{key}.{name}")
    return tuple((k, v) for k, v in headers.items() if k.lower() not in _HANDSHAKE_HEADERS)


class _Failed(Exception):
    """A probe step failed; turned into a ProbeResult at the probe boundary."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# perf_counter() marks of the connection steps, set by the aiohttp trace hooks below. The
# hooks run inside the probing task (or a task it spawned, which copies its context), so a
# context variable keeps concurrent probes on one session apart.
_MARKS: ContextVar[dict[str, float] | None] = ContextVar("loom_websocket_marks", default=None)


async def _mark(name: str, _session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
    marks = _MARKS.get()
    if marks is not None:
        marks[name] = time.perf_counter()


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_start.append(partial(_mark, "resolve_start"))
    trace.on_dns_resolvehost_end.append(partial(_mark, "resolve_end"))
    trace.on_connection_create_start.append(partial(_mark, "connect_start"))
    trace.on_connection_create_end.append(partial(_mark, "connect_end"))
    return trace


@dataclass(slots=True)
class _Run:
    """The bookkeeping of one probe: when each step happened, phase durations, the log."""

    log: ProbeLog
    marks: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    waiting: str = ""                  # set while waiting for a reply or a pong
    ws: aiohttp.ClientWebSocketResponse | None = None
    done: bool = False                 # every step passed: close the websocket cleanly

    def connect_phase(self) -> str:
        """The connection step in progress, from the trace marks."""
        if "connect_end" in self.marks:
            return "upgrade"
        if "resolve_start" in self.marks and "resolve_end" not in self.marks:
            return "resolve"
        return "connect"

    def connection_phases(self, started: float, upgraded: float) -> None:
        marks = self.marks
        resolve = marks.get("resolve_end", 0.0) - marks.get("resolve_start", 0.0)
        self.phases["resolve"] = resolve
        if "connect_start" in marks and "connect_end" in marks:
            self.phases["connect"] = marks["connect_end"] - marks["connect_start"] - resolve
            self.phases["upgrade"] = upgraded - marks["connect_end"]
        else:
            self.phases["connect"] = upgraded - started - resolve


@dataclass(slots=True)
class _Outcome:
    tls_version: str | None = None
    cert_expiry: float | None = None
    round_trip: float | None = None


class Collector:
    kind: ClassVar[str] = KIND

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        options: Options = target.options
        run = _Run(ProbeLog())
        outcome = _Outcome()
        failure: _Failed | None = None
        started = time.perf_counter()
        token = _MARKS.set(run.marks)
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                run.ws = await self._connect(target.url or "", options, run)
                await _converse(run.ws, options, run, outcome)
        except TimeoutError:
            failure = _Failed(Reason.TIMEOUT, f"timeout {run.waiting}" if run.waiting
                              else f"timeout during {run.connect_phase()}")
        except _Failed as exc:
            failure = exc
        finally:
            _MARKS.reset(token)
            if run.ws is not None:      # clean close after success, else drop the connection
                await _close(run.ws, deadline if run.done else None, run)
        if failure is not None:
            run.log(f"probe failed ({failure.reason.value}): {failure.detail}")
        return ProbeResult(
            success=failure is None,
            duration_seconds=time.perf_counter() - started,
            reason=None if failure is None else failure.reason,
            detail="" if failure is None else failure.detail,
            phases=dict(run.phases),
            tls_version=outcome.tls_version,
            cert_expiry=outcome.cert_expiry,
            round_trip_seconds=outcome.round_trip,
            log=run.log.freeze(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(force_close=True, limit=0, use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(), trace_configs=[_trace_config()])
        return self._session

    async def _connect(self, url: str, options: Options, run: _Run) -> aiohttp.ClientWebSocketResponse:
        problem = url_error(url)
        if problem:         # the config loader should have refused it (see url_error)
            raise _Failed(Reason.INTERNAL, problem)
        run.log(f"opening {url}")
        started = time.perf_counter()
        try:
            ws = await self._client().ws_connect(
                url, protocols=options.subprotocols, headers=options.headers or None,
                ssl=client_context(options.tls), server_hostname=options.tls.server_name,
                autoping=False, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=None))
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise _connect_failure(exc) from None
        except UnicodeError as exc:      # the resolver could not IDNA-encode the host (a 64-char label, ...)
            raise _Failed(Reason.RESOLVE, f"not a valid host name: {exc}") from None
        run.connection_phases(started, time.perf_counter())
        run.log(f"upgraded: HTTP 101, subprotocol {ws.protocol or '(none)'}")
        return ws


def url_error(url: str | None) -> str | None:
    """Why `url` cannot be a websocket target, or None: for the config loader to report."""
    if not url:
        return "a websocket target needs a url"
    if not url.startswith(("ws://", "wss://")):
        return f"must be a ws:// or wss:// URL, got {url!r}"
    return None


def _connect_failure(exc: Exception) -> _Failed:
    """The Reason for an error of the connect, TLS or upgrade step."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status != 101:
            return _Failed(Reason.PROTOCOL, f"websocket upgrade refused: HTTP {exc.status}")
        return _Failed(Reason.PROTOCOL, f"bad websocket upgrade: {exc.message}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        message = getattr(cert_error, "verify_message", None) or str(cert_error)
        return _Failed(Reason.TLS, f"certificate verification failed: {message}")
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch, ssl.SSLError)):
        return _Failed(Reason.TLS, f"TLS handshake failed: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):      # yarl could not IDNA-encode the host (a 64-char label, ...)
        return _Failed(Reason.RESOLVE, f"not a valid host name in {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _Failed(Reason.RESOLVE, f"cannot resolve {exc.host}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _Failed(Reason.CONNECT, f"{exc.host} port {exc.port}: {_os_message(exc.os_error)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _Failed(Reason.PROTOCOL, "server closed the connection during the upgrade")
    if isinstance(exc, (aiohttp.ClientOSError, ConnectionError)):
        return _Failed(Reason.CONNECT, f"connection failed: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return _Failed(Reason.PROTOCOL, f"bad upgrade response: {exc}")
    return _Failed(Reason.CONNECT, f"connection failed: {exc}")


async def _converse(ws: aiohttp.ClientWebSocketResponse, options: Options, run: _Run,
                    outcome: _Outcome) -> None:
    """TLS facts, then the message exchange and the ping the options ask for (into `outcome`,
    so a failed exchange still reports what was learnt)."""
    outcome.tls_version, outcome.cert_expiry = peer_info(ws.get_extra_info("ssl_object"))
    if outcome.tls_version:
        run.log(f"TLS: {outcome.tls_version}")
    try:
        if options.send is not None or options.expect is not None:
            outcome.round_trip = await _message_round_trip(ws, options, run)
        if options.ping:
            rtt = await _ping_round_trip(ws, run)
            outcome.round_trip = rtt if outcome.round_trip is None else outcome.round_trip
    except (aiohttp.ClientConnectionError, ConnectionError) as exc:
        raise _Failed(Reason.PROTOCOL, f"connection lost before the reply: {exc}") from None
    run.waiting = ""
    run.done = True


async def _message_round_trip(ws: aiohttp.ClientWebSocketResponse, options: Options,
                              run: _Run) -> float | None:
    started = time.perf_counter()
    if options.send is not None:
        run.log(f"sending {_excerpt(options.send)}")
        await ws.send_str(options.send)
    run.waiting = "waiting for reply"
    reply = await _next_message(ws)
    elapsed = time.perf_counter() - started
    run.phases["round_trip" if options.send is not None else "receive"] = elapsed
    run.log(f"received {_excerpt(reply)}")
    if options.expect is not None and not options.expect.search(reply):
        raise _Failed(Reason.BODY, f"reply did not match expect {options.expect.pattern!r}: {_excerpt(reply)}")
    return elapsed if options.send is not None else None


async def _ping_round_trip(ws: aiohttp.ClientWebSocketResponse, run: _Run) -> float:
    started = time.perf_counter()
    run.log("sending ping")
    await ws.ping(PING_PAYLOAD)
    run.waiting = "waiting for pong"
    for count in itertools.count(1):
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
    run.phases["ping"] = elapsed
    run.log("received pong")
    return elapsed


async def _next_message(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The next text or binary message (binary decoded as UTF-8), answering pings on the way."""
    for count in itertools.count(1):
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


def _closed_failure(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage, awaited: str) -> _Failed:
    if msg.type is aiohttp.WSMsgType.ERROR:
        return _Failed(Reason.PROTOCOL, f"websocket error before the {awaited}: {msg.data}")
    return _Failed(Reason.PROTOCOL, f"server closed the websocket before the {awaited} (code {ws.close_code})")


async def _close(ws: aiohttp.ClientWebSocketResponse, deadline: float | None, run: _Run) -> None:
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
        run.log(f"closed (code {ws.close_code})")
    except TimeoutError:
        run.log("connection dropped" if deadline is None else
                "close not acknowledged before the deadline; connection dropped")
    except (aiohttp.ClientError, ConnectionError) as exc:
        run.log(f"close failed: {exc}")


def _os_message(error: OSError) -> str:
    return os.strerror(error.errno).lower() if error.errno else str(error)


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT] + "...")
