"""StatsD and DogStatsD lines over UDP, into the same registry as POST /v1/metrics.

    name:value|type[|@rate][|#tag:value,tag2:value2][|c:container][|T<timestamp>]

types: `c` counter (value / rate is added; negative increments are refused), `g` gauge (a value
with a sign, `+3` or `-3`, moves it; else sets it), `ms` timer in milliseconds (observed in seconds,
name suffix `_seconds`), `h` and `d` histogram / distribution (observed as sent, no unit), as
statsd_exporter does. A timer or histogram sampled at `@0.1` is observed 10 times. DogStatsD's
packed values (`name:1:2:3|d`) are several samples. Tags may also come InfluxDB-style
(`name,tag=v:1|c`), Librato-style (`name#tag=v:1|c`) or SignalFX-style (`name[tag=v]:1|c`).
Refused, each counted in loom_agent_statsd_lines_total{result}: sets `|s` (counting distinct
values means keeping them, and what is counted distinct is mostly user ids), DogStatsD events and
service checks (`unsupported`); anything malformed (`invalid`); a type or tag set other than the
metric's first (`conflict`); a new name past custom_metrics.max_metrics (`limit`).

A bad line never stops the datagram's other lines, and nothing a sender writes can raise out of
`datagram_received`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from agent.custom_metrics.config import StatsdConfig
from agent.custom_metrics.registry import CustomMetrics, MetricError, Sample, check_value

log = logging.getLogger("agent.statsd")
LINES_FAMILY = "loom_agent_statsd_lines"
RESULTS = ("accepted", "invalid", "unsupported", "conflict", "limit", "error")
MIN_RATE = 0.001                 # a timer sampled more sparsely would cost > 1,000 observations a line
RECEIVE_BUFFER = 4 * 1024 * 1024     # bursts wait in the kernel instead of being dropped (capped by rmem_max)
LOG_EVERY_SECONDS = 60.0
# type -> (kind, unit, op)
TYPES = {"c": ("counter", "none", "inc"), "g": ("gauge", "none", "set"),
         "ms": ("distribution", "millisecond", "observe"), "h": ("distribution", "none", "observe"),
         "d": ("distribution", "none", "observe")}


class LineError(Exception):
    """A line refused before it reached the registry; `result` is its loom_agent_statsd_lines_total label."""

    def __init__(self, message: str, result: str = "invalid"):
        super().__init__(message)
        self.result = result


def parse_line(line: str) -> list[Sample]:
    """The samples of one line; raises LineError."""
    if line.startswith(("_e{", "_sc|")):
        raise LineError("DogStatsD events and service checks are not metrics", "unsupported")
    name, sep, rest = line.partition(":")
    if not sep or not name:
        raise LineError("expected name:value|type")
    fields = rest.split("|")
    if len(fields) < 2:
        raise LineError("expected name:value|type")
    spec = TYPES.get(fields[1])
    if spec is None:
        if fields[1] == "s":
            raise LineError("sets (|s) are not supported: counting distinct values means keeping them", "unsupported")
        raise LineError(f"unknown type {fields[1][:10]!r} (c, g, ms, h, d)")
    kind, unit, op = spec
    rate = 1.0
    keys: list[str] = []
    values: list[str] = []
    if "," in name or "#" in name or "[" in name:
        name = _name_tags(name, keys, values)
    for field in fields[2:]:
        if field.startswith("@"):
            rate = _rate(field[1:])
        elif field.startswith("#"):
            _tags(field[1:], ":", keys, values)
        elif not field.startswith(("c:", "T", "e:")):        # container id, timestamp, external data: ignored
            raise LineError(f"unknown field {field[:10]!r}")
    keys_t, values_t = tuple(keys), tuple(values)
    out = []
    repeat = round(1.0 / rate) if kind == "distribution" else 1
    for text in fields[0].split(":"):
        sample_op = "add" if kind == "gauge" and text[:1] in ("+", "-") else op
        value = _number(text)
        if kind == "counter" and rate != 1.0:
            value /= rate
        problem = check_value(value, sample_op)
        if problem is not None:
            raise LineError(f"value {problem}")
        out.append(Sample(name, kind, unit, value, keys_t, values_t, sample_op, repeat))
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LineError("the value is not a number") from None


def _rate(text: str) -> float:
    rate = _number(text)
    if not MIN_RATE <= rate <= 1.0:
        raise LineError(f"the sample rate must be between {MIN_RATE} and 1")
    return rate


def _tags(text: str, separator: str, keys: list[str], values: list[str]) -> None:
    for tag in text.split(","):
        key, sep, value = tag.partition(separator)
        if not sep or not key:
            raise LineError("a tag without a value (write tag:value)")
        keys.append(key)
        values.append(value)


def _name_tags(name: str, keys: list[str], values: list[str]) -> str:
    """The metric name without InfluxDB (`,`), Librato (`#`) or SignalFX (`[...]`) tags, which go to keys/values."""
    if "[" in name:
        start, end = name.find("["), name.find("]")
        if end < start:
            raise LineError("unbalanced [ ] in the name")
        _tags(name[start + 1:end], "=", keys, values)
        return name[:start] + name[end + 1:]
    cut = min(i for i in (name.find(","), name.find("#")) if i >= 0)
    _tags(name[cut + 1:], "=", keys, values)
    return name[:cut]


class StatsdProtocol(asyncio.DatagramProtocol):
    """Every line of every datagram into the registry; results counted per datagram."""

    def __init__(self, registry: CustomMetrics):
        self.registry = registry
        self.lines = registry.store.counter(LINES_FAMILY, "StatsD lines received, by result.", ("result",),
                                   allow={"result": frozenset(RESULTS)})
        for result in RESULTS:
            self.lines.inc((result,), 0.0)
        self._last_log = 0.0
        self._refused_since_log: dict[str, int] = {}
        self.closed = asyncio.Event()            # set once the socket is closed (the port is free again)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def datagram_received(self, data: bytes, addr: object) -> None:
        counts = dict.fromkeys(RESULTS, 0)
        record = self.registry.record
        first_problem = None
        for line in data.decode("utf-8", "replace").split("\n"):
            line = line.strip()
            if not line:
                continue
            try:
                for sample in parse_line(line):
                    record(sample)
            except LineError as exc:
                counts[exc.result] += 1
                first_problem = first_problem or str(exc)
            except MetricError as exc:
                counts[exc.reason] += 1
                first_problem = first_problem or str(exc)
            except Exception:                           # a bug must not stop the listener
                counts["error"] += 1
                log.exception("statsd: a line could not be recorded")
            else:
                counts["accepted"] += 1
        inc = self.lines.inc
        for result, count in counts.items():
            if count:
                inc((result,), count)
        if first_problem is not None:
            self._note_refusals(counts, first_problem)

    def _note_refusals(self, counts: dict[str, int], problem: str) -> None:
        """One log line a minute at most: a sender with a bug would otherwise flood the log."""
        for result, count in counts.items():
            if result != "accepted" and count:
                self._refused_since_log[result] = self._refused_since_log.get(result, 0) + count
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY_SECONDS:
            return
        self._last_log = now
        summary = ", ".join(f"{result} {count}" for result, count in sorted(self._refused_since_log.items()))
        self._refused_since_log.clear()
        privacy = self.registry.privacy
        log.warning("statsd: lines refused since the last report: %s; for example: %s", summary,
                    privacy.text(problem) if privacy is not None else problem)

    def error_received(self, exc: Exception) -> None:
        log.debug("statsd: receive error: %s", exc)


class StatsdServer:
    """The UDP endpoint; `address` is the bound (host, port) once started."""

    def __init__(self, registry: CustomMetrics, host: str, port: int):
        self.protocol = StatsdProtocol(registry)
        self.host, self.port = host, port
        self.address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self.protocol, sock=sock)
        self.address = sock.getsockname()[:2]
        log.info("statsd: listening on udp %s:%d", *self.address)

    async def stop(self) -> None:
        """Close the socket and wait until it is closed, so a restart can bind the port again."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await self.protocol.closed.wait()


def statsd_ctx(registry: CustomMetrics, config: StatsdConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx running the StatsD endpoint when `custom_metrics.statsd.enabled`; a port that cannot
    be bound stops the agent at start with the reason."""
    async def statsd(app: web.Application) -> AsyncIterator[None]:
        if not config.enabled:
            yield
            return
        server = StatsdServer(registry, *config.listen)
        try:
            await server.start()
        except OSError as exc:
            log.error("statsd: cannot listen on udp %s:%d (custom_metrics.statsd.listen): %s", *config.listen,
                      exc.strerror or exc)
            raise
        try:
            yield
        finally:
            await server.stop()
    return statsd
