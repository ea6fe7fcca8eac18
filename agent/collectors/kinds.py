"""The registry of probe kinds: what the config loader, `/probe`, the runtime and the probe metrics
need to know about each kind, in one typed table.

Why a table: before it, the kinds were reached through an untyped module lookup, and `kind == "http"`
checks outside agent/collectors decided which kinds take a URL, which default port an address has and
which gauges a result carries. A new kind (gRPC, ICMP) is its module plus one line in `KINDS`.

This module imports the kind modules directly; they never import it (no cycle, no importlib).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent.collectors import dns, grpc, http, icmp, tcp, tls, websocket
from agent.collectors.base import PHASES, Collector, split_host_port, url_credentials_error
from agent.config.node import Node


@dataclass(frozen=True, slots=True)
class PhaseGauge:
    """blackbox_exporter's per-phase duration gauge of a kind: its name, and the phases it always
    carries (0 when a phase did not happen), or () for the phases the probe measured."""

    name: str
    every_phase: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeKind:
    """One probe kind.

    Endpoint: a target of a URL kind has `url` (one of `url_schemes`, the first being what `/probe`
    prepends to a bare host, then `check_url`'s own test), otherwise `address` (host:port, or host alone
    with `default_port`; optional when `address_optional`; a host with no port when `host_only`: see
    `address_problem`). `/probe`: `builtin_module` is the stock
    blackbox module of the kind that answers with no config. Gauges: blackbox's view of a result.

    Options: `parse_options` reads the agent's flat form (a target, a `kind:` module). A module in
    blackbox_exporter's form (`prober: <kind>` + a `<kind>:` block, config/modules.py) has its `<kind>:`
    block's Node read by `blackbox_options`: `blackbox_parser` when blackbox's keys or semantics differ
    from the flat form's (http, tcp, dns), else `parse_options` itself, which then reads blackbox's key
    names (grpc, icmp). Either is given the block's Node and leaves `finish()` to the caller."""

    name: str
    parse_options: Callable[[Node], Any]
    collector_factory: Callable[[], Collector]
    url_schemes: tuple[str, ...] = ()               # non-empty: the target is a URL
    check_url: Callable[[str], str | None] | None = None
    default_port: int | None = None
    address_optional: bool = False                  # dns: no address means the system resolver
    host_only: bool = False                         # icmp: the address is a host, with no port
    builtin_module: str | None = None               # /probe?module=<this> works with no config
    regex_gauge: bool = False                       # probe_failed_due_to_regex
    phase_gauge: PhaseGauge | None = None
    ssl_gauge: bool = False                         # probe_http_ssl
    grpc_gauges: bool = False                       # probe_grpc_{ssl,status_code,healthcheck_response}
    dns_gauges: bool = False                        # probe_dns_{answer,authority,additional}_rrs, _query_succeeded
    blackbox_parser: Callable[[Node], Any] | None = None    # blackbox's `<kind>:` block, when it differs
    with_hostname: Callable[[Any, str], Any] | None = None  # /probe?hostname=: options with that Host (http)

    def blackbox_options(self, node: Node) -> Any:
        return (self.blackbox_parser or self.parse_options)(node)

    @property
    def target_is_url(self) -> bool:
        return bool(self.url_schemes)

    @property
    def address_form(self) -> str:
        """How the kind's address is written, for messages."""
        return "a host name or IP address, no port" if self.host_only else "host:port"

    def address_problem(self, address: str) -> str | None:
        """Why `address` cannot be a target of this kind, or None."""
        try:
            _, port = split_host_port(address, self.default_port if not self.host_only else 0)
        except ValueError as exc:
            return str(exc)
        if self.host_only and port:
            return f"invalid address {address!r}: {self.name} takes a host with no port"
        return None

    def url_problem(self, url: str) -> str | None:
        """Why `url`, which starts with one of the kind's schemes, cannot be probed, or None."""
        if self.check_url is not None and (problem := self.check_url(url)):
            return problem
        return url_credentials_error(url)


KINDS: dict[str, ProbeKind] = {kind.name: kind for kind in (
    ProbeKind(http.KIND, http.parse_options, http.Collector, url_schemes=("http://", "https://"),
              check_url=http.check_url, builtin_module="http_2xx", regex_gauge=True,
              phase_gauge=PhaseGauge("probe_http_duration_seconds", PHASES), ssl_gauge=True,
              blackbox_parser=partial(http.parse_options, blackbox=True), with_hostname=http.with_hostname),
    ProbeKind(tcp.KIND, tcp.parse_options, tcp.Collector, builtin_module="tcp_connect", regex_gauge=True,
              blackbox_parser=partial(tcp.parse_options, blackbox=True)),
    ProbeKind(dns.KIND, dns.parse_options, dns.Collector, default_port=53, address_optional=True,
              regex_gauge=True, phase_gauge=PhaseGauge("probe_dns_duration_seconds", dns.PHASES),
              blackbox_parser=partial(dns.parse_options, blackbox=True), dns_gauges=True),
    ProbeKind(tls.KIND, tls.parse_options, tls.Collector, builtin_module="tls_connect"),
    ProbeKind(websocket.KIND, websocket.parse_options, websocket.Collector, url_schemes=("ws://", "wss://"),
              builtin_module="websocket_connect", regex_gauge=True),
    ProbeKind(grpc.KIND, grpc.parse_options, grpc.Collector, builtin_module="grpc",
              phase_gauge=PhaseGauge("probe_grpc_duration_seconds"), grpc_gauges=True,
              blackbox_parser=partial(grpc.parse_options, blackbox=True)),
    ProbeKind(icmp.KIND, icmp.parse_options, icmp.Collector, host_only=True, builtin_module="icmp",
              phase_gauge=PhaseGauge("probe_icmp_duration_seconds", icmp.PHASES)),
)}
