"""The `icmp` probe: one echo request to a host, success when its echo reply comes back.

Options (blackbox_exporter 0.23's ICMPProbe keys, read from a module's `icmp:` block or flat):

    payload_size: 0                # bytes of data (0: the 28 bytes "Prometheus Blackbox Exporter", as blackbox)
    ttl: 64                        # the request's TTL / hop limit (1-255; 0 = 64)
    dont_fragment: false           # set DF (IPv4) / IPV6_DONTFRAG: a payload above the path MTU fails
    source_ip_address: 192.0.2.7   # send from this local address
    preferred_ip_protocol: ip6     # collectors/ipproto.py (blackbox's default ip6, with fallback)
    ip_protocol_fallback: true

The target's address is a host name or an IP address, with no port. Phases are blackbox's, always all
three: `resolve`, `setup` (the socket), `rtt` (request sent to reply received). The reply's TTL (IPv4)
or hop limit (IPv6) is `probe_icmp_reply_hop_limit` on success.

Sockets: the packets are icmplib's (ICMPv4Socket / ICMPv6Socket build the echo request with its checksum
and parse the reply, ICMP errors included). Like blackbox, the probe first tries an unprivileged ping
socket (SOCK_DGRAM, IPPROTO_ICMP: the kernel owns the echo identifier and hands the socket only its own
replies; allowed when the process's group is in net.ipv4.ping_group_range), then a raw socket (root or
CAP_NET_RAW; it sees every ICMP packet of the host, so replies are matched by identifier and sequence).
Unprivileged first because it needs no privilege and filters in the kernel; a raw socket is the way
when the sysctl excludes the agent's group (Debian's default "1 0" excludes everyone) and it runs as
root. When neither is allowed the result is a failure with reason `permission` saying so, never an
exception. Each probe has a socket of its own, closed after it (blackbox does the same).

What icmplib has no option for is set on its socket (`ICMPSocket.sock`, which icmplib offers for this):
`dont_fragment` is IP_MTU_DISCOVER = IP_PMTUDISC_DO (IPv4; the kernel then sets DF and refuses to send
a datagram above the route's MTU, EMSGSIZE) or IPV6_DONTFRAG; for the reply's TTL the socket asks for it
as ancillary data (IP_RECVTTL / IPV6_RECVHOPLIMIT) and the reply is read with recvmsg, since icmplib's
receive reads only the bytes. Both work the same on ping and raw sockets (so, unlike blackbox, which
must build IPv4 headers itself for DF, `dont_fragment` does not force a raw socket). Linux only.

An ICMP error about our request (destination unreachable, time exceeded: a `ttl` too small) ends the
probe at once as a `connect` failure naming it (blackbox waits for its timeout); on a ping socket
the kernel reports such errors as a failed receive, which ends it the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPError, ICMPSocketError, SocketAddressError, SocketPermissionError

from agent.collectors.base import PhaseTrace, ProbeFailed, ProbeResult, ProbeTarget, Reason, run_until
from agent.collectors.ipproto import IpOptions, parse_ip_options, resolve
from agent.config.node import Node

KIND = "icmp"
PHASES = ("resolve", "setup", "rtt")

DEFAULT_PAYLOAD = b"Prometheus Blackbox Exporter"     # blackbox's, so a capture reads the same
MAX_PAYLOAD = 65507          # 65535 less the IPv4 and ICMP headers
DEFAULT_TTL = 64             # blackbox's DefaultICMPTTL

# Linux <linux/in.h> values the socket module does not export
_IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
_IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
_IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
_ANCILLARY = socket.CMSG_SPACE(4) * 2
_ECHO_REPLY = {4: 0, 6: 129}

# blackbox's echo identifier: the PID (a random one as PID 1, in a container), and a sequence that
# starts at random; raw sockets see every reply of the host, so (identifier, sequence) must be ours
_ID = os.getpid() & 0xFFFF if os.getpid() != 1 else random.randrange(1 << 16)
_sequence = random.randrange(1 << 16)


def _next_sequence() -> int:
    global _sequence
    _sequence = (_sequence + 1) & 0xFFFF
    return _sequence


@dataclass(frozen=True, slots=True)
class Options:
    payload_size: int = 0
    ttl: int = DEFAULT_TTL
    dont_fragment: bool = False
    ip: IpOptions = IpOptions()

    @property
    def payload(self) -> bytes:
        """blackbox's data: its name, cut or zero-padded to payload_size."""
        if not self.payload_size:
            return DEFAULT_PAYLOAD
        return DEFAULT_PAYLOAD[:self.payload_size].ljust(self.payload_size, b"\0")


def parse_options(node: Node) -> Options:
    payload_size = node.int("payload_size", 0, minimum=0, maximum=MAX_PAYLOAD)
    ttl = node.int("ttl", DEFAULT_TTL, minimum=0, maximum=255)
    dont_fragment = node.bool("dont_fragment", False)
    ip = parse_ip_options(node, source_ip=True)
    return Options(payload_size=payload_size if payload_size is not None else 0,
                   ttl=ttl or DEFAULT_TTL, dont_fragment=dont_fragment, ip=ip)


# ---------------------------------------------------------------- the socket


def _not_permitted(protocol: int) -> ProbeFailed:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", encoding="ascii") as fh:
            low, high = (int(part) for part in fh.read().split())
        group = os.getgid()
        ping = (f"net.ipv4.ping_group_range is {low} {high}, which "
                f"{'includes' if low <= group <= high else 'excludes'} the agent's group {group}")
    except (OSError, ValueError):
        ping = "the kernel has none"
    return ProbeFailed(Reason.PERMISSION, f"ICMP not permitted: no unprivileged ping socket for IPv{protocol} "
                                          f"({ping}), and a raw socket needs root or CAP_NET_RAW")


def open_socket(protocol: int, source_ip: str | None) -> ICMPv4Socket | ICMPv6Socket:
    """An unprivileged ping socket, else a raw one (see the module docstring)."""
    kind = ICMPv4Socket if protocol == 4 else ICMPv6Socket
    for privileged in (False, True):
        try:
            return kind(address=source_ip, privileged=privileged)
        except SocketPermissionError:
            continue
        except SocketAddressError:
            raise ProbeFailed(Reason.CONNECT, f"source_ip_address {source_ip}: not an address of this host "
                                              f"(or not IPv{protocol})") from None
        except ICMPSocketError as exc:
            raise ProbeFailed(Reason.CONNECT, f"cannot open an ICMP socket: {exc}") from None
    raise _not_permitted(protocol)


def _configure(sock: socket.socket, protocol: int, options: Options) -> None:
    """What icmplib has no option for: don't-fragment, and the reply's TTL as ancillary data."""
    if protocol == 4:
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        if options.dont_fragment:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        if options.dont_fragment:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DONTFRAG, 1)


async def _recvmsg(sock: socket.socket) -> tuple[bytes, list[tuple[int, int, bytes]], Any]:
    """One datagram with its ancillary data, waiting on the event loop (asyncio has no sock_recvmsg)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, ancillary, _flags, address = sock.recvmsg(MAX_PAYLOAD + 128, _ANCILLARY)
            return data, ancillary, address
        except (BlockingIOError, InterruptedError):
            pass
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(sock.fileno())


def _wake(readable: asyncio.Future[None]) -> None:
    if not readable.done():
        readable.set_result(None)


def _hop_limit(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            return int.from_bytes(data[:4], sys.byteorder)
    return None


# ---------------------------------------------------------------- the echo


async def _echo(icmp: ICMPv4Socket | ICMPv6Socket, ip: str, protocol: int, options: Options,
                trace: PhaseTrace) -> int | None:
    """Send the request and wait for its reply; the reply's hop limit (None when not reported)."""
    request = ICMPRequest(ip, _ID, _next_sequence(), payload=options.payload, ttl=options.ttl)
    try:
        icmp.send(request)
    except ICMPSocketError as exc:
        raise ProbeFailed(Reason.CONNECT, f"send to {ip}: {exc}") from None
    trace.log(f"echo request sent to {ip}: id {request.id}, sequence {request.sequence}, "
              f"{len(options.payload)} bytes, ttl {options.ttl}")
    trace.waiting = "waiting for the echo reply"
    sock = icmp.sock
    while True:
        try:
            data, ancillary, address = await _recvmsg(sock)
        except OSError as exc:        # a ping socket's ICMP error (unreachable, ...)
            raise ProbeFailed(Reason.CONNECT, f"echo to {ip}: {os.strerror(exc.errno) if exc.errno else exc}") \
                from None
        reply = icmp._parse_reply(data, address[0], time.time())    # icmplib's parser of its replies
        if reply is None or reply.id != request.id or reply.sequence != request.sequence:
            continue                    # someone else's packet (a raw socket sees them all)
        if reply.type != _ECHO_REPLY[protocol]:
            try:
                reply.raise_for_status()
            except ICMPError as exc:
                raise ProbeFailed(Reason.CONNECT, f"echo to {ip}: {exc} (from {reply.source})") from None
            continue                    # our own request, looped back to a raw socket
        if ipaddress.ip_address(reply.source.partition("%")[0]) != ipaddress.ip_address(ip.partition("%")[0]):
            continue
        hop_limit = _hop_limit(ancillary)
        trace.log(f"echo reply from {ip}: {reply.bytes_received} bytes, hop limit {hop_limit}")
        return hop_limit


async def _run(target: ProbeTarget, options: Options, trace: PhaseTrace, found: list[int | None]) -> None:
    host = (target.address or "").strip().strip("[]")
    ip = await resolve(host, 0, options.ip, trace)
    protocol = trace.ip_protocol or (6 if ":" in ip else 4)
    with trace.timing("setup"):
        icmp = open_socket(protocol, options.ip.source_ip)
        try:
            _configure(icmp.sock, protocol, options)
            icmp.blocking = False
        except BaseException:
            icmp.close()
            raise
    trace.log(f"{'raw' if icmp.is_privileged else 'unprivileged ping'} socket for IPv{protocol}")
    try:
        with trace.timing("rtt"):
            found.append(await _echo(icmp, ip, protocol, options, trace))
    finally:
        icmp.close()


class Collector:
    kind: ClassVar[str] = KIND

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        trace = PhaseTrace()
        found: list[int | None] = []
        failure = await run_until(deadline, trace, _run(target, target.options, trace, found))
        return trace.result(failure, icmp_hop_limit=found[0] if failure is None and found else None)

    async def close(self) -> None:
        return None
