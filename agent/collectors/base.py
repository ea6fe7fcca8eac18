"""The collector contract: what a probe is given and what it returns.

Every probe kind (http, tcp, dns, tls, websocket) lives in its own module and exposes:

    KIND: str                                  # "http", ...
    Options                                    # frozen dataclass of its settings
    def parse_options(node: Node) -> Options   # read + validate at config load
    class Collector:                           # one instance per kind per running config
        kind: ClassVar[str]
        async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult
        async def close(self) -> None

A collector never raises for a failing target: a refused connection, a timeout, a bad
certificate or a wrong body are all a `ProbeResult` with `success=False` and a `Reason`.
Only bugs propagate; the scheduler catches and counts those. Collectors import neither
prometheus_client nor OpenTelemetry: the metrics and span layers read the result.

`deadline` is an absolute `time.monotonic()`-clock instant by which the probe must have
ended (the scheduler derives it from the target's timeout, `/probe` from the scrape
timeout); a collector reports `Reason.TIMEOUT` when it runs out, with the phase in `detail`.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit


class Reason(str, enum.Enum):  # noqa: UP042  (StrEnum would change str(reason) in logs and messages)
    """Why a probe failed: a closed set, so it is safe as a metric label."""

    RESOLVE = "resolve"        # name resolution failed
    CONNECT = "connect"        # TCP connect refused / unreachable / reset
    TLS = "tls"                # handshake failed, certificate invalid or expired
    TIMEOUT = "timeout"        # the deadline passed (phase in detail)
    STATUS = "status"          # HTTP status not in the valid set; gRPC: a code other than OK, or not SERVING
    BODY = "body"              # body / reply regex did (not) match
    REDIRECT = "redirect"      # too many redirects or a redirect loop
    PROTOCOL = "protocol"      # malformed answer: bad HTTP, bad WebSocket upgrade, bad DNS reply
    EXPECT = "expect"          # tcp send/expect exchange did not match
    RCODE = "rcode"            # DNS answered with an unexpected rcode
    ANSWER = "answer"          # DNS answer did not match the expected regexes
    PERMISSION = "permission"  # the agent may not probe this way (icmp: no ping socket, no raw socket)
    INTERNAL = "internal"      # a bug in the agent (counted by the scheduler)


PHASES = ("resolve", "connect", "tls", "processing", "transfer")


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A target fully resolved at config load: module settings merged, defaults applied."""

    name: str
    kind: str
    url: str | None            # http, websocket
    address: str | None        # tcp, tls: host:port; dns: the server (None = system resolver)
    interval: float
    timeout: float
    retries: int
    labels: Mapping[str, str]
    options: Any               # the kind module's Options instance
    module: str | None = None


@dataclass(frozen=True, slots=True)
class TlsLeaf:
    """What blackbox_exporter reports of a TLS peer besides the version and the earliest expiry: the leaf
    certificate's identity (labels of probe_ssl_last_chain_info) and the verified chain's expiry."""

    fingerprint_sha256: str                 # hex of the leaf's DER
    subject: str                            # RFC 4514, as Go's pkix.Name.String(): "CN=server,O=Example"
    issuer: str
    dns_names: str                          # the leaf's DNS subjectAltNames, comma separated
    chain_expiry: float                     # unix seconds: earliest NotAfter of the verified chain


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe. Optional fields are None when the kind has no such value."""

    success: bool
    duration_seconds: float
    reason: Reason | None = None
    detail: str = ""
    phases: Mapping[str, float] = field(default_factory=dict)   # phase -> seconds
    # http
    status_code: int | None = None
    content_length: int | None = None
    body_length: int | None = None
    http_version: float | None = None
    redirects: int | None = None
    # tls (http, tcp with tls, tls)
    tls_version: str | None = None          # "TLS 1.3"
    cert_expiry: float | None = None        # unix seconds of the earliest NotAfter
    # dns
    dns_rcode: str | None = None
    dns_answer_rrs: int | None = None
    dns_authority_rrs: int | None = None
    dns_additional_rrs: int | None = None
    dns_serial: int | None = None           # an SOA query's zone serial
    # websocket
    round_trip_seconds: float | None = None
    # grpc: the call's status code (None when no call was made) and the health answer (None without one)
    grpc_status_code: int | None = None
    grpc_serving_status: str | None = None  # "SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"
    # icmp: the reply's TTL (IPv4) or hop limit (IPv6), when the socket reported it
    icmp_hop_limit: int | None = None
    # all_addresses (collectors/every_address.py): each address probed and whether it succeeded
    addresses: tuple[tuple[str, bool], ...] = ()
    # the address probed (collectors/ipproto.py): blackbox's probe_ip_protocol and probe_ip_addr_hash
    ip_protocol: int | None = None          # 4 or 6
    ip_address: str | None = None
    # http: the final response's Last-Modified as unix seconds (probe_http_last_modified_timestamp_seconds)
    last_modified: float | None = None
    # the TLS peer's leaf certificate (probe_ssl_last_chain_info, probe_ssl_last_chain_expiry_timestamp_seconds)
    tls_leaf: TlsLeaf | None = None
    # human-readable trace of what happened, for /probe?debug=true
    log: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.success and self.reason is not None:
            raise ValueError("a successful result has no failure reason")
        if not self.success and self.reason is None:
            raise ValueError("a failed result needs a reason")

    @property
    def reason_value(self) -> str:
        """The failure reason's value ("" for a success): for logs, spans and the /probe debug text."""
        return self.reason.value if self.reason is not None else ""


class Collector(Protocol):
    kind: ClassVar[str]

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult: ...

    async def close(self) -> None: ...


class ProbeLog:
    """Collects timestamped lines for `/probe?debug=true` and the span, cheaply."""

    __slots__ = ("lines", "start")

    def __init__(self, start: float | None = None):
        self.start = time.monotonic() if start is None else start
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(f"+{(time.monotonic() - self.start) * 1000:8.3f}ms {message}")

    def freeze(self) -> tuple[str, ...]:
        return tuple(self.lines)


def split_host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    """'host:port', '[v6]:port' or (with a default port) 'host' -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"invalid address {address!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:          # bare IPv6 literal
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"invalid address {address!r}: no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"invalid address {address!r}: expected host:port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid address {address!r}: bad port {port_text!r}")
    return host, int(port_text)


@lru_cache(maxsize=1024)
def is_ip_literal(host: str) -> bool:
    """True for '127.0.0.1' or '::1' (no name resolution needed), False for a host name.

    Cached: every probe asks about its target's host, and a host name costs a ValueError each time."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def url_credentials_error(url: str) -> str | None:
    """URLs with user:password@ are refused: the credentials would show in /, spans and logs, and
    the probes take them from `basic_auth` (or `*_file`) instead."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None            # the kind's own URL check reports malformed URLs
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@); use basic_auth or bearer_token"
    return None


# ---------------------------------------------------------------- the plumbing every collector shares


class ProbeFailed(Exception):
    """Raised inside a probe to end it with a failed result; never leaves the collector.

    Why an exception: a probe is a sequence of steps (resolve, connect, handshake, exchange) each of which
    may fail for a reason of its own; raising from the step that knows the reason keeps the steps short,
    and the collector turns the failure into a `ProbeResult` at its boundary (`PhaseTrace.result`)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PhaseTrace:
    """What one probe has done so far: the phase in progress, the time spent in each phase, what TLS
    told it, and the debug log.

    Why one class: every kind reports phases, a `timeout during <phase>` detail and a log in the same
    way; only the phases differ. Phases are timed on `perf_counter()` (the finest clock); the deadline
    stays on `time.monotonic()`. `waiting` names a wait inside a phase that the timeout detail should
    name instead ("waiting for pong", "during send[1]")."""

    __slots__ = ("cert_expiry", "ip_address", "ip_protocol", "log", "phase", "phases", "started", "tls_leaf",
                 "tls_version", "waiting")

    def __init__(self, phase: str = "resolve", log: ProbeLog | None = None) -> None:
        self.started = time.perf_counter()
        self.phase = phase
        self.waiting = ""
        self.phases: dict[str, float] = {}
        self.log = ProbeLog() if log is None else log
        self.tls_version: str | None = None         # "TLS 1.3", once a handshake completed
        self.cert_expiry: float | None = None       # unix seconds of the earliest NotAfter
        self.ip_address: str | None = None          # the address probed, once chosen (ipproto.resolve)
        self.ip_protocol: int | None = None         # its family, 4 or 6
        self.tls_leaf: TlsLeaf | None = None        # the TLS peer's leaf certificate, once a handshake completed

    def enter(self, phase: str) -> float:
        """Start `phase`; returns its start (perf_counter) for `add` once the phase completed."""
        self.phase, self.waiting = phase, ""
        return time.perf_counter()

    def add(self, phase: str, seconds: float) -> None:
        """Add to a phase's time: phases repeated in one probe (an http redirect) are summed."""
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def done(self, phase: str, started: float) -> None:
        """`phase`, entered at `started`, completed now."""
        self.add(phase, time.perf_counter() - started)

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Enter `phase` for the block and count its time also when the block fails (the tcp and tls
        kinds report the time spent in the phase that failed; the others call `done` on success)."""
        started = self.enter(phase)
        try:
            yield
        finally:
            self.done(phase, started)

    def timeout(self) -> ProbeFailed:
        """The failure for a deadline that passed now: it names the wait or the phase in progress."""
        return ProbeFailed(Reason.TIMEOUT, f"timeout {self.waiting or 'during ' + self.phase}")

    def result(self, failure: ProbeFailed | None = None, **fields: Any) -> ProbeResult:
        """The probe's result: duration, phases, TLS facts and log, plus the kind's own `fields`
        (which may override the TLS facts, as http does with its final response's)."""
        if failure is not None:
            self.log(f"probe failed ({failure.reason.value}): {failure.detail}")
        facts: dict[str, Any] = {"tls_version": self.tls_version, "cert_expiry": self.cert_expiry,
                                 "ip_protocol": self.ip_protocol, "ip_address": self.ip_address,
                                 "tls_leaf": self.tls_leaf, **fields}
        return ProbeResult(success=failure is None, duration_seconds=time.perf_counter() - self.started,
                           reason=None if failure is None else failure.reason,
                           detail="" if failure is None else failure.detail,
                           phases=dict(self.phases), log=self.log.freeze(), **facts)


async def run_until(deadline: float, trace: PhaseTrace, work: Awaitable[None]) -> ProbeFailed | None:
    """Run a probe's steps until `deadline` (monotonic): the failure they raised, the timeout, or None.

    Why here: the deadline contract (see the module docstring) is the same for every kind, and a
    timeout must name what the probe was waiting on, which only the trace knows."""
    try:
        async with asyncio.timeout(deadline - time.monotonic()):
            await work
    except TimeoutError:
        return trace.timeout()
    except ProbeFailed as failure:
        return failure
    return None


async def resolve(host: str, port: int, log: ProbeLog, socktype: int = socket.SOCK_STREAM) -> str:
    """The IP address to connect to for `host` (the host itself when it is an IP literal).

    Why one resolver: a name the system cannot resolve, one the IDNA codec refuses (a 64-character
    label, a control character) and an empty answer are all `resolve` failures, with one wording for
    every kind. The caller times the resolve phase (see `PhaseTrace.timing` and `done`)."""
    if is_ip_literal(host):
        return host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socktype)
    except socket.gaierror as exc:
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}: {exc.strerror or exc}") from None
    except UnicodeError as exc:
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}: not a valid host name: {exc}") from None
    if not infos:
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}: no addresses")
    ip = str(infos[0][4][0])
    log(f"resolved {host} to {ip}")
    return ip
