"""IP protocol selection, shared by every probe kind: which address of a host name a probe connects to.

blackbox_exporter's semantics (prober/utils.go `chooseProtocol`, 0.23), so that a module file written
for it picks the same address here:

    preferred_ip_protocol: ip6      # ip4 | ip6; blackbox's default is ip6 for every prober
    ip_protocol_fallback: true      # the other family when the preferred one has no address
    source_ip_address: 192.0.2.7    # the local address to probe from (tcp, dns, icmp; not http)
    all_addresses: false            # beyond blackbox: probe every address (collectors/every_address.py)
    all_addresses_success: all      # with all_addresses: the target succeeds when all / any of them do

With the fallback (the default) the host is resolved once for both families and the first address of
the preferred family wins, else the first of the other; without it only the preferred family is asked
for, and a host (or an IP literal) without such an address is a `resolve` failure. The result carries
the family (`probe_ip_protocol`: 4 or 6) and the address, whose FNV-1a 32-bit hash over the 4 or 16
address bytes is blackbox's `probe_ip_addr_hash` (the same value for the same address; it tells when
a name starts resolving elsewhere).

Why one module: before it each kind resolved on its own (the first getaddrinfo answer, whatever its
family), so `probe_ip_protocol` could not be reported and `preferred_ip_protocol` had no one place to
live. A kind's `parse_options` calls `parse_ip_options(node)` on the node its other keys come from
(the `<prober>:` block of a blackbox module, or the flat target/module mapping), and its probe calls
`resolve(host, port, options, trace)` instead of `base.resolve`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from agent.collectors.base import PhaseTrace, ProbeFailed, Reason, is_ip_literal
from agent.config.node import Node

PROTOCOLS = {"ip4": 4, "ip6": 6}
ADDRESS_SUCCESS = ("all", "any")
# (host, address): a probe of one of a host's addresses (collectors/every_address.py) resolves the host to it
PINNED: ContextVar[tuple[str, str] | None] = ContextVar("loom_pinned_address", default=None)
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


@dataclass(frozen=True, slots=True)
class IpOptions:
    """How a probe picks the address it connects to (blackbox's defaults: ip6, with fallback)."""

    preferred: int = 6                  # 4 or 6
    fallback: bool = True
    source_ip: str | None = None        # local address to bind before connecting
    # beyond blackbox (collectors/every_address.py): probe each address of the host, success any or all
    all_addresses: bool = False
    all_addresses_success: str = "all"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The address a probe connects to, and what blackbox reports of it."""

    ip: str
    protocol: int                       # 4 or 6

    @property
    def hash(self) -> int:
        return ip_hash(self.ip)


def parse_ip_options(node: Node, *, source_ip: bool = False) -> IpOptions:
    """`preferred_ip_protocol`, `ip_protocol_fallback` and (where the kind binds one) `source_ip_address`
    from `node`; errors are recorded on it. A kind without `source_ip` support leaves that key unread, so
    `finish()` reports it as an unknown key of that kind (blackbox has it for tcp, dns and icmp only)."""
    text = node.str("preferred_ip_protocol", "ip6", choices=tuple(PROTOCOLS))
    fallback = node.bool("ip_protocol_fallback", True)
    source = node.str("source_ip_address") if source_ip else None
    if source is not None and not is_ip_literal(source):
        node.error(f"must be an IP address, got {source!r}", "source_ip_address")
        source = None
    every = node.bool("all_addresses", False)
    success = node.str("all_addresses_success", "all", choices=ADDRESS_SUCCESS)
    if node.has("all_addresses_success") and not every:
        node.error("needs all_addresses: true", "all_addresses_success")
    return IpOptions(preferred=PROTOCOLS.get(text, 6), fallback=fallback, source_ip=source, all_addresses=every,
                     all_addresses_success=success or "all")


@lru_cache(maxsize=4096)
def ip_hash(ip: str) -> int:
    """blackbox's `ipHash`: FNV-1a (32 bit) over the address bytes, 4 for IPv4 (also an IPv4-mapped IPv6
    address, as Go's `To4` sees it) and 16 for IPv6."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    value = FNV32_OFFSET
    for byte in address.packed:
        value = ((value ^ byte) * FNV32_PRIME) & 0xFFFFFFFF
    return value


def protocol_of(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def choose(addresses: list[str], options: IpOptions) -> str | None:
    """The first address of the preferred family, else (with the fallback) the first of the other."""
    for ip in addresses:
        if protocol_of(ip) == options.preferred:
            return ip
    if options.fallback and addresses:
        return addresses[0]
    return None


async def lookup(host: str, port: int, options: IpOptions, socktype: int = socket.SOCK_STREAM) -> Resolved:
    """The address to probe for `host` (an IP literal is taken as it is, if its family is allowed).
    Raises ProbeFailed(RESOLVE) naming the host and the family that was asked for."""
    wanted = f"ip{options.preferred}"
    pinned = PINNED.get()
    if pinned is not None and pinned[0] == host.lower():
        return Resolved(pinned[1], protocol_of(pinned[1]))
    if is_ip_literal(host):
        chosen = choose([host], options)
        if chosen is None:
            raise ProbeFailed(Reason.RESOLVE, f"{host} is not an {wanted} address "
                                              "(preferred_ip_protocol, ip_protocol_fallback: false)")
        return Resolved(chosen, protocol_of(chosen))
    chosen = choose(await addresses(host, port, options, socktype), options)
    if chosen is None:
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}: no {wanted} address")
    return Resolved(chosen, protocol_of(chosen))


async def addresses(host: str, port: int, options: IpOptions, socktype: int = socket.SOCK_STREAM) -> list[str]:
    """Every address of the host name in the resolver's order, once each: both families with the fallback,
    else the preferred one's only. Raises ProbeFailed(RESOLVE)."""
    family = socket.AF_UNSPEC if options.fallback else _FAMILIES[options.preferred]
    try:
        infos = await getaddrinfo(host, port, family, socktype)
    except socket.gaierror as exc:
        detail = "" if options.fallback else f" as ip{options.preferred}"
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}{detail}: {exc.strerror or exc}") from None
    except UnicodeError as exc:
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}: not a valid host name: {exc}") from None
    found = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    return list(dict.fromkeys(found))


async def getaddrinfo(host: str, port: int, family: int, socktype: int) -> list[Any]:
    """The system resolver, through the event loop (the one place probes ask it; tests stand in for it
    with names of their own)."""
    return await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socktype)


async def resolve(host: str, port: int, options: IpOptions, trace: PhaseTrace,
                  socktype: int = socket.SOCK_STREAM) -> str:
    """`lookup`, timed as the resolve phase (also when it fails, as blackbox's lookup time is), the
    choice recorded on the trace for the result's `ip_protocol` / `ip_address`. Only the probe's first
    resolve is recorded (an http redirect to another host resolves again): blackbox reports the address
    of the target itself."""
    with trace.timing("resolve"):
        resolved = await lookup(host, port, options, socktype)
    if trace.ip_address is None:
        trace.ip_address, trace.ip_protocol = resolved.ip, resolved.protocol
    if resolved.ip != host:
        trace.log(f"resolved {host} to {resolved.ip} (ip{resolved.protocol})")
    return resolved.ip
