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

import enum
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class Reason(str, enum.Enum):
    """Why a probe failed: a closed set, so it is safe as a metric label."""

    RESOLVE = "resolve"        # name resolution failed
    CONNECT = "connect"        # TCP connect refused / unreachable / reset
    TLS = "tls"                # handshake failed, certificate invalid or expired
    TIMEOUT = "timeout"        # the deadline passed (phase in detail)
    STATUS = "status"          # HTTP status not in the valid set
    BODY = "body"              # body / reply regex did (not) match
    REDIRECT = "redirect"      # too many redirects or a redirect loop
    PROTOCOL = "protocol"      # malformed answer: bad HTTP, bad WebSocket upgrade, bad DNS reply
    EXPECT = "expect"          # tcp send/expect exchange did not match
    RCODE = "rcode"            # DNS answered with an unexpected rcode
    ANSWER = "answer"          # DNS answer did not match the expected regexes
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
    # websocket
    round_trip_seconds: float | None = None
    # human-readable trace of what happened, for /probe?debug=true
    log: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.success and self.reason is not None:
            raise ValueError("a successful result has no failure reason")
        if not self.success and self.reason is None:
            raise ValueError("a failed result needs a reason")


class Collector(Protocol):
    kind: ClassVar[str]

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult: ...

    async def close(self) -> None: ...


class ProbeLog:
    """Collects timestamped lines for `/probe?debug=true` and the span, cheaply."""

    __slots__ = ("start", "lines")

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


def is_ip_literal(host: str) -> bool:
    """True for '127.0.0.1' or '::1' (no name resolution needed), False for a host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def url_credentials_error(url: str) -> str | None:
    """URLs with user:password@ are refused: the credentials would show in /, spans and logs, and
    the probes take them from `basic_auth` (or `*_file`) instead."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return None            # the kind's own URL check reports malformed URLs
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (user:password@); use basic_auth or bearer_token"
    return None
