"""Demo probe targets: stand-ins for the services the Loom documentation monitors (authentication,
payment callbacks, MFA flows, notification delivery, the database, the realtime channel), each in a
known state, so every Service Uptime panel shows something real:

    auth-api               http       healthy
    payment-callbacks      http       slow (0.6-1.6 s: above the 1 s latency alert threshold)
    mfa-flows              http       flapping (up, then 500s, on a fixed period)
    notification-provider  http       failing (503)
    database               tcp        healthy (a banner the probe expects)
    reports-db             tcp        failing (nothing listens: connection refused)
    realtime               websocket  healthy (send "ping", expect "pong")
    auth-tls               tls        healthy, with a certificate that expires in `cert_days` days

One HTTP server (with the WebSocket route), one HTTPS server and one TCP server, on `host` at the
given base port and the next ones (port 0: any free ports). The reports-db port is kept free.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from agent.demo.certs import self_signed

HEALTHY = "Healthy"
SLOW_SECONDS = (0.6, 1.6)
BANNER = b"LOOMDB 15.0 ready\r\n"


@dataclass(frozen=True, slots=True)
class DemoTarget:
    name: str
    state: str                 # healthy | slow | flapping | failing
    service: str
    endpoint: str              # what is probed, for the console
    entry: dict[str, Any]      # the agent's `targets:` entry, without interval and timeout

    def config(self, interval: float, timeout: float) -> dict[str, Any]:
        """The agent's target entry with its schedule (seconds)."""
        return {"name": self.name, **self.entry, "interval": f"{interval:g}s", "timeout": f"{timeout:g}s",
                "labels": {"service": self.service}}


@dataclass
class Flapping:
    """Up for the first `up_share` of every `period` seconds, down (HTTP 500) for the rest."""

    period: float
    up_share: float = 0.6
    started: float = field(default_factory=time.monotonic)

    def up(self) -> bool:
        return ((time.monotonic() - self.started) % self.period) < self.period * self.up_share


class DemoTargets:
    """`targets = await DemoTargets(workdir).start()`; `await demo.stop()` closes every server."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int = 0, advertise: str | None = None,
                 flap_period: float = 120.0, cert_days: float = 10.0, slow_seconds: tuple[float, float] = SLOW_SECONDS):
        self.workdir, self.host, self.port = workdir, host, port
        self.advertise = advertise or ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host)
        self.flapping = Flapping(flap_period)
        self.cert_days, self.slow_seconds = cert_days, slow_seconds
        self._runners: list[web.AppRunner] = []
        self._tcp: asyncio.AbstractServer | None = None
        self._random = random.Random()

    def _port(self, offset: int) -> int:
        return self.port + offset if self.port else 0

    async def start(self) -> list[DemoTarget]:
        http_port = await self._serve_http(self._http_app(), self._port(0), None)
        cert, key = self_signed(self.workdir, [self.advertise, "localhost", "127.0.0.1"], self.cert_days)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        tls_port = await self._serve_http(self._tls_app(), self._port(1), context)
        self._tcp = await asyncio.start_server(self._database, self.host, self._port(2))
        tcp_port = self._tcp.sockets[0].getsockname()[1]
        closed_port = self._port(3) or _unused_port(self.host)
        return self._targets(http_port, tls_port, tcp_port, closed_port, cert)

    def _targets(self, http_port: int, tls_port: int, tcp_port: int, closed_port: int, cert: Path) -> list[DemoTarget]:
        base, host = f"http://{self.advertise}:{http_port}", self.advertise
        healthy_body = {"fail_if_body_not_matches_regexp": [HEALTHY]}
        return [
            DemoTarget("auth-api", "healthy", "auth", f"{base}/auth/healthz",
                       {"kind": "http", "url": f"{base}/auth/healthz", "valid_status_codes": [200], **healthy_body}),
            DemoTarget("payment-callbacks", "slow", "payments", f"{base}/payments/healthz",
                       {"kind": "http", "url": f"{base}/payments/healthz", **healthy_body}),
            DemoTarget("mfa-flows", "flapping", "mfa", f"{base}/mfa/healthz",
                       {"kind": "http", "url": f"{base}/mfa/healthz", **healthy_body}),
            DemoTarget("notification-provider", "failing", "notifications", f"{base}/notifications/healthz",
                       {"kind": "http", "url": f"{base}/notifications/healthz"}),
            DemoTarget("database", "healthy", "database", f"{host}:{tcp_port}",
                       {"kind": "tcp", "address": f"{host}:{tcp_port}", "query_response": [{"expect": "ready"}]}),
            DemoTarget("reports-db", "failing", "database", f"{host}:{closed_port}",
                       {"kind": "tcp", "address": f"{host}:{closed_port}"}),
            DemoTarget("realtime", "healthy", "realtime", f"ws://{host}:{http_port}/realtime",
                       {"kind": "websocket", "url": f"ws://{host}:{http_port}/realtime", "send": "ping",
                        "expect": "pong"}),
            DemoTarget("auth-tls", "healthy", "auth", f"{host}:{tls_port} (certificate expires in "
                       f"{self.cert_days:g} days)",
                       {"kind": "tls", "address": f"{host}:{tls_port}", "tls": {"ca_file": str(cert)}}),
        ]

    async def stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def _serve_http(self, app: web.Application, port: int, context: ssl.SSLContext | None) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, ssl_context=context)
        await site.start()
        self._runners.append(runner)
        return runner.addresses[0][1]

    # --- the services --------------------------------------------------------------------------
    def _http_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/auth/healthz", _healthy)
        app.router.add_get("/payments/healthz", self._slow)
        app.router.add_get("/mfa/healthz", self._flapping)
        app.router.add_get("/notifications/healthz", _failing)
        app.router.add_get("/realtime", _realtime)
        return app

    def _tls_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", _healthy)
        return app

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self._random.uniform(*self.slow_seconds))
        return web.Response(text=HEALTHY)

    async def _flapping(self, request: web.Request) -> web.Response:
        if self.flapping.up():
            return web.Response(text=HEALTHY)
        return web.Response(status=500, text="Internal Server Error: MFA provider timeout")

    async def _database(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(BANNER)
            await writer.drain()
            await asyncio.wait_for(reader.read(64), 5)
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text=HEALTHY)


async def _failing(request: web.Request) -> web.Response:
    return web.Response(status=503, text="Service Unavailable: notification provider unreachable")


async def _realtime(request: web.Request) -> web.WebSocketResponse:
    """Answers "ping" with "pong" and echoes anything else (aiohttp answers ping frames itself)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str("pong" if message.data == "ping" else message.data)
    return ws


def _unused_port(host: str) -> int:
    """A port nothing listens on a moment ago: the failing reports-db target's (connection refused)."""
    with socket.socket() as s:
        s.bind((host if host not in ("", "::") else "0.0.0.0", 0))
        return s.getsockname()[1]
