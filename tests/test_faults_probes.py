"""Hostile probe targets against a running agent: each probe ends by its own timeout (or earlier, for a
reason the target gave) with the right failure reason, and the rest of the agent is unaffected.

The servers live in this test process, on 127.0.0.1, in one asyncio loop on a thread of their own:
- slowloris: reads the request, then dribbles a response head one byte per second, forever
  (HTTP; and a TLS "ServerHello" dribbled the same way);
- an endless body: a 200 without a length, then bytes as fast as the socket takes them
  (with the default body_size_limit: `body` long before the timeout; with no limit: `timeout`);
- garbage instead of a TLS handshake, for the tls, https and wss probes;
- a DNS server that never answers (tests/support/dns_server.py, UDP and TCP);
- a WebSocket that floods text frames from the upgrade on (a ping never gets its pong: `timeout`; a
  message exchange gets a flood frame as its reply: `body`).

While all of them are probed together, a healthy HTTP target is probed every second: it must succeed
every time with no slot missed, /metrics must keep answering, and the agent's open file descriptors
must not grow with the probes (every hostile connection is closed at its deadline). The figures are
printed (pytest -s) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.dns_server import DnsServer
from tests.support.loopback import Handler, serve
from tests.support.procs import AgentProcess, http_get, loopback_http_server, wait_until

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

HOSTILE_INTERVAL, HOSTILE_TIMEOUT = 3.0, 2.0
HEALTHY_INTERVAL = 1.0
WINDOW = 10.0                 # seconds of observation: three rounds of every hostile probe
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GARBAGE = b"\x00\xff this is not TLS, it never will be \r\n" * 64
_sample = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
_label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --- the hostile servers ------------------------------------------------------------------------------

async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def dribbler(prefix: bytes, then: bytes) -> Handler:
    """Wait for the client to speak (an HTTP request head, a TLS ClientHello), then send `prefix` and
    `then` one byte a second."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if prefix.startswith(b"HTTP/"):
            await read_head(reader)
        else:
            await reader.read(1)
        for byte in prefix + then * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)
    return handler


async def endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    chunk = b"x" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def tls_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(GARBAGE)
    await writer.drain()
    await reader.read()               # hold the connection until the client leaves


async def websocket_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A valid upgrade, then unmasked text frames "flood" as fast as the socket takes them."""
    head = await read_head(reader)
    key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head)
    accept = base64.b64encode(hashlib.sha1((key.group(1) if key else b"") + WS_GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    burst = b"\x81\x05flood" * 4096
    while True:
        writer.write(burst)
        await writer.drain()


class ServerThread:
    """An asyncio loop on a daemon thread holding async context managers (servers) until close()."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = self._run(self._new_stack())

    async def _new_stack(self) -> contextlib.AsyncExitStack:
        return contextlib.AsyncExitStack()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(15)

    def enter(self, manager: contextlib.AbstractAsyncContextManager) -> Any:
        return self._run(self.stack.enter_async_context(manager))

    def close(self) -> None:
        try:
            self._run(self.stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@contextlib.asynccontextmanager
async def silent_dns() -> AsyncIterator[DnsServer]:
    async with DnsServer(mode="silent") as server:
        yield server


# --- the agent's side ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hostile:
    """A hostile target: its config, and the reason its probes must fail with."""

    name: str
    config: dict[str, Any]
    reason: str

    @property
    def ends_at_timeout(self) -> bool:
        return self.reason == "timeout"


def hostile_targets(servers: ServerThread) -> list[Hostile]:
    def port(handler: Handler) -> int:
        return servers.enter(serve(handler))

    slow_http = port(dribbler(b"HTTP/1.1 200 OK\r\n", b"X-Dribble: y\r\n"))
    slow_tls = port(dribbler(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", b"\x00"))
    endless = port(endless_body)
    garbage = port(tls_garbage)
    flood = port(websocket_flood)
    dns = servers.enter(silent_dns()).address
    return [
        Hostile("slowloris-http", {"kind": "http", "url": f"http://127.0.0.1:{slow_http}/"}, "timeout"),
        Hostile("slowloris-tls", {"kind": "tls", "address": f"127.0.0.1:{slow_tls}"}, "timeout"),
        Hostile("endless-body", {"kind": "http", "url": f"http://127.0.0.1:{endless}/"}, "body"),
        Hostile("endless-body-unlimited", {"kind": "http", "url": f"http://127.0.0.1:{endless}/",
                                           "body_size_limit": 0}, "timeout"),
        Hostile("garbage-tls", {"kind": "tls", "address": f"127.0.0.1:{garbage}"}, "tls"),
        Hostile("garbage-https", {"kind": "http", "url": f"https://127.0.0.1:{garbage}/"}, "tls"),
        Hostile("garbage-wss", {"kind": "websocket", "url": f"wss://127.0.0.1:{garbage}/"}, "tls"),
        Hostile("silent-dns-udp", {"kind": "dns", "address": dns, "query_name": "example.test."}, "timeout"),
        Hostile("silent-dns-tcp", {"kind": "dns", "address": dns, "query_name": "example.test.",
                                   "transport": "tcp"}, "timeout"),
        Hostile("websocket-flood-ping", {"kind": "websocket", "url": f"ws://127.0.0.1:{flood}/", "ping": True},
                "timeout"),
        Hostile("websocket-flood-expect", {"kind": "websocket", "url": f"ws://127.0.0.1:{flood}/",
                                           "send": "hello", "expect": "^hello$"}, "body"),
    ]


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a text exposition."""
    found = []
    for line in text.splitlines():
        match = _sample.match(line)
        if match and not line.startswith("#"):
            found.append((match[1], dict(_label.findall(match[2] or "")), float(match[3])))
    return found


def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(value for n, have, value in found if n == name and all(have.get(k) == v for k, v in labels.items()))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Watch:
    """What a scraper saw every 0.5 s: /metrics answer times and the agent's open descriptors."""

    scrape_seconds: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    failed_scrapes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def watching(agent: AgentProcess) -> Iterator[Watch]:
    watch = Watch()
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = http_get(agent.url + "/metrics", timeout=10)[0]
            except OSError as exc:
                status = str(exc)
            watch.scrape_seconds.append(time.monotonic() - started)
            if status != 200:
                watch.failed_scrapes.append(str(status))
            watch.fds.append(open_fds(agent.proc.pid))
            stop.wait(0.5)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join(15)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def status_by_target(agent: AgentProcess) -> dict[str, dict[str, Any]]:
    status, _, body = http_get(agent.url + "/api/status")
    assert status == 200, body
    return {target["name"]: target for target in orjson.loads(body)["targets"]}


def test_hostile_targets_end_at_their_timeout_with_the_right_reason_and_hurt_nothing(tmp_path: Path) -> None:
    servers = ServerThread()
    agent: AgentProcess | None = None
    try:
        hostile = hostile_targets(servers)
        with loopback_http_server() as healthy_url:
            targets = [{"name": "healthy", "kind": "http", "url": healthy_url, "interval": f"{HEALTHY_INTERVAL:g}s",
                        "timeout": "500ms"}]
            targets += [{"name": h.name, "interval": f"{HOSTILE_INTERVAL:g}s", "timeout": f"{HOSTILE_TIMEOUT:g}s",
                         **h.config} for h in hostile]
            agent = AgentProcess(tmp_path, {"targets": targets, "store": {"driver": "none"}})
            started = time.monotonic()
            wait_until(lambda: total(samples(agent.metrics()), "loom_probes_total", target="healthy") >= 1, 10,
                       what="the healthy target's first probe")
            first, first_at = samples(agent.metrics()), time.monotonic()
            with watching(agent) as watch:
                time.sleep(WINDOW)
            last, window = samples(agent.metrics()), time.monotonic() - first_at
            elapsed = time.monotonic() - started
            report = status_by_target(agent)
            check_hostile(hostile, last, report)
            check_unaffected(first, last, watch, window, elapsed)
    finally:
        if agent is not None:
            agent.stop()
        servers.close()


def check_hostile(hostile: list[Hostile], found: list[tuple[str, dict[str, str], float]],
                  report: dict[str, dict[str, Any]]) -> None:
    lines, wrong = [], []
    for target in hostile:
        failures = {labels["reason"]: value for name, labels, value in found
                    if name == "loom_probe_failures_total" and labels.get("target") == target.name and value}
        successes = total(found, "loom_probes_total", target=target.name, result="success")
        last = report[target.name]
        latency, failure = last["lastLatencySeconds"], last["lastFailure"] or {"reason": None, "detail": ""}
        if target.ends_at_timeout:       # ended by the collector's deadline, not the scheduler's safety net
            in_time = HOSTILE_TIMEOUT - 0.1 <= latency < HOSTILE_TIMEOUT + 0.5 and "overran" not in failure["detail"]
        else:
            in_time = latency < HOSTILE_TIMEOUT
        line = f"{target.name}: {failure['reason']} in {latency:.2f}s ({failure['detail'][:80]}); counts {failures}"
        lines.append(line)
        if set(failures) != {target.reason} or failures[target.reason] < 2 or successes or not in_time \
                or failure["reason"] != target.reason:
            wrong.append(f"{line}, expected {target.reason}")
    print("\nFIGURE probes.hostile:\n  " + "\n  ".join(lines))
    assert not wrong, "\n".join(wrong)


def check_unaffected(first: list[tuple[str, dict[str, str], float]], last: list[tuple[str, dict[str, str], float]],
                     watch: Watch, window: float, elapsed: float) -> None:
    def grew(name: str, **labels: str) -> float:
        return total(last, name, **labels) - total(first, name, **labels)

    probed = grew("loom_probes_total", target="healthy")
    succeeded = grew("loom_probes_total", target="healthy", result="success")
    assert probed == succeeded, f"the healthy target failed {probed - succeeded} of {probed} probes"
    assert succeeded >= window / HEALTHY_INTERVAL - 2, f"{succeeded} healthy probes in {window:.1f}s"
    assert total(last, "loom_agent_probe_slots_missed_total") == 0, "a probe slot was missed"
    assert total(last, "loom_agent_probe_internal_errors_total") == 0
    assert not watch.failed_scrapes, watch.failed_scrapes
    assert max(watch.scrape_seconds) < 2.0, f"/metrics took {max(watch.scrape_seconds):.2f}s"
    # up to ~12 hostile connections are open at a time; a leak would add ~11 every 3 s round (30+ here)
    assert watch.fds[-1] <= min(watch.fds) + 20, watch.fds
    lag_sum, lag_count = grew("loom_agent_scheduler_lag_seconds_sum"), grew("loom_agent_scheduler_lag_seconds_count")
    cpu = grew("process_cpu_seconds_total") / window
    print(f"FIGURE probes.unaffected: healthy target {succeeded:.0f}/{probed:.0f} probes succeeded in "
          f"{window:.1f}s (interval {HEALTHY_INTERVAL:g}s), 0 slots missed; scheduler lag mean "
          f"{lag_sum / max(lag_count, 1) * 1000:.1f} ms (1.5 ms without the hostile targets); agent CPU {cpu:.0%} of a core; "
          f"/metrics p50 {percentile(watch.scrape_seconds, 50) * 1000:.0f}"
          f" ms, max {max(watch.scrape_seconds) * 1000:.0f} ms over {len(watch.scrape_seconds)} scrapes; open fds "
          f"{min(watch.fds)}..{max(watch.fds)} (last {watch.fds[-1]}); agent ran {elapsed:.0f}s")
