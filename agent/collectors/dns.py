"""The `dns` probe: send one query to a DNS server and check the reply.

Like blackbox_exporter's DNS prober: the target's `address` is the server ("host:port",
port 53 by default; unset means the first nameserver of /etc/resolv.conf). The reply's
rcode must be in `valid_rcodes`, and every resource record of the answer, authority and
additional sections is checked against that section's regexes. A record is matched in
the text form blackbox uses, tab separated: "name<TAB>ttl<TAB>class<TAB>type<TAB>rdata",
e.g. "example.test.\t300\tIN\tA\t192.0.2.1" (regexes search, they are not anchored).

Phases: resolve (server name -> IP; ~0 for an IP literal), connect (tcp only), request.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass, field
from typing import ClassVar

import dns.asyncbackend
import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from agent.collectors.base import ProbeLog, ProbeResult, ProbeTarget, Reason, split_host_port
from agent.config.node import Node

KIND = "dns"
QUERY_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV")
TRANSPORTS = ("udp", "tcp")
SECTIONS = ("answer", "authority", "additional")


@dataclass(frozen=True, slots=True)
class RRValidation:
    """One `validate_<section>_rrs:` block."""

    fail_if_matches_regexp: tuple[re.Pattern[str], ...] = ()
    fail_if_not_matches_regexp: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class Options:
    query_name: str = ""
    query_type: str = "A"
    transport: str = "udp"
    recursion_desired: bool = True
    valid_rcodes: tuple[str, ...] = ("NOERROR",)
    validate_answer_rrs: RRValidation = field(default_factory=RRValidation)
    validate_authority_rrs: RRValidation = field(default_factory=RRValidation)
    validate_additional_rrs: RRValidation = field(default_factory=RRValidation)


def parse_options(node: Node) -> Options:
    return Options(
        query_name=_query_name(node),
        query_type=node.str("query_type", "A", choices=QUERY_TYPES),
        transport=node.str("transport", "udp", choices=TRANSPORTS),
        recursion_desired=node.bool("recursion_desired", True),
        valid_rcodes=_rcodes(node, "valid_rcodes"),
        validate_answer_rrs=_rr_validation(node.child("validate_answer_rrs")),
        validate_authority_rrs=_rr_validation(node.child("validate_authority_rrs")),
        validate_additional_rrs=_rr_validation(node.child("validate_additional_rrs")),
    )


def _query_name(node: Node) -> str:
    text = node.str("query_name", None, required=True)
    if text is None:
        return ""
    if not text:
        node.error("must not be empty", "query_name")
        return ""
    try:
        dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        node.error(f"invalid DNS name {text!r}: {exc}", "query_name")
    return text


def _rcodes(node: Node, key: str) -> tuple[str, ...]:
    out = []
    for i, text in enumerate(node.str_list(key, ("NOERROR",))):
        try:
            out.append(dns.rcode.to_text(dns.rcode.from_text(text.upper())))
        except dns.rcode.UnknownRcode:
            node.error(f"unknown rcode {text!r} (use e.g. NOERROR, NXDOMAIN, SERVFAIL)", f"{key}[{i}]")
    return tuple(out)


def _rr_validation(node: Node) -> RRValidation:
    validation = RRValidation(
        fail_if_matches_regexp=node.regex_list("fail_if_matches_regexp"),
        fail_if_not_matches_regexp=node.regex_list("fail_if_not_matches_regexp"),
    )
    node.finish()
    return validation


class _Failed(Exception):
    """A probe step failed; turned into a ProbeResult at the probe boundary."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class _Run:
    """The bookkeeping of one probe: where it is, how long each phase took, the log."""

    log: ProbeLog
    phase: str = "resolve"
    phases: dict[str, float] = field(default_factory=dict)

    def begin(self, phase: str) -> float:
        self.phase = phase
        return time.perf_counter()

    def end(self, phase: str, started: float) -> None:
        self.phases[phase] = time.perf_counter() - started


class Collector:
    kind: ClassVar[str] = KIND

    def __init__(self) -> None:
        self._backend = dns.asyncbackend.get_backend("asyncio")

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        options: Options = target.options
        run = _Run(ProbeLog())
        started = time.perf_counter()
        reply: dns.message.Message | None = None
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                server = await self._server(target.address, run)
                reply = await self._exchange(_make_query(options), server, options.transport, run)
            failure = _validate(reply, options, run.log)
        except TimeoutError:
            failure = _Failed(Reason.TIMEOUT, f"timeout during {run.phase}")
        except _Failed as exc:
            failure = exc
        if failure is not None:
            run.log(f"probe failed ({failure.reason.value}): {failure.detail}")
        return _result(reply, failure, run, time.perf_counter() - started)

    async def close(self) -> None:
        return None

    async def _server(self, address: str | None, run: _Run) -> tuple[str, int]:
        """The server's (IP, port): from the target address, or the system resolver's first."""
        t0 = run.begin("resolve")
        if address is None:
            ip, port = _system_nameserver()
            run.log(f"using system resolver {ip} port {port}")
        else:
            try:
                host, port = split_host_port(address, 53)
            except ValueError as exc:
                raise _Failed(Reason.RESOLVE, str(exc)) from None
            ip = await _resolve(host, port, run.log)
            run.log(f"server {ip} port {port}")
        run.end("resolve", t0)
        return ip, port

    async def _exchange(self, query: dns.message.Message, server: tuple[str, int], transport: str,
                        run: _Run) -> dns.message.Message:
        ip, port = server
        af = dns.inet.af_for_address(ip)
        try:
            if transport == "tcp":
                t0 = run.begin("connect")
                sock = await self._backend.make_socket(af, socket.SOCK_STREAM, 0, None, (ip, port))
                run.end("connect", t0)
                run.log(f"connected to {ip} port {port} over tcp")
            else:
                sock = await self._backend.make_socket(af, socket.SOCK_DGRAM, 0, None, (ip, port))
            async with sock:
                t0 = run.begin("request")
                run.log(f"sending query {query.question[0].to_text()} over {transport}")
                send = dns.asyncquery.tcp if transport == "tcp" else dns.asyncquery.udp
                reply = await send(query, ip, port=port, sock=sock)
                run.end("request", t0)
                return reply
        except ConnectionRefusedError:
            raise _Failed(Reason.CONNECT, f"connection refused by {ip} port {port}") from None
        except EOFError:
            raise _Failed(Reason.PROTOCOL, "server closed the connection before replying") from None
        except dns.query.BadResponse:
            raise _Failed(Reason.PROTOCOL, "reply does not answer the query") from None
        except dns.exception.Timeout:
            raise _Failed(Reason.TIMEOUT, f"timeout during {run.phase}") from None
        except dns.exception.DNSException as exc:
            raise _Failed(Reason.PROTOCOL, f"malformed reply: {exc}") from None
        except OSError as exc:
            raise _Failed(Reason.CONNECT, f"{ip} port {port}: {exc.strerror or exc}") from None


def _system_nameserver() -> tuple[str, int]:
    try:
        resolver = dns.asyncresolver.Resolver()
    except dns.exception.DNSException as exc:
        raise _Failed(Reason.RESOLVE, f"no system resolver: {exc}") from None
    for nameserver in resolver.nameservers:
        if isinstance(nameserver, str) and dns.inet.is_address(nameserver):
            return nameserver, resolver.nameserver_ports.get(nameserver, resolver.port)
    raise _Failed(Reason.RESOLVE, "no system resolver: /etc/resolv.conf lists no nameserver address")


async def _resolve(host: str, port: int, log: ProbeLog) -> str:
    if dns.inet.is_address(host):
        return host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise _Failed(Reason.RESOLVE, f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError as exc:          # not encodable as an IDNA name (a 64-char label, a control char)
        raise _Failed(Reason.RESOLVE, f"cannot resolve {host}: not a valid host name: {exc}") from None
    if not infos:
        raise _Failed(Reason.RESOLVE, f"cannot resolve {host}: no address")
    ip = infos[0][4][0]
    log(f"resolved {host} to {ip}")
    return ip


def _make_query(options: Options) -> dns.message.Message:
    query = dns.message.make_query(options.query_name, options.query_type, dns.rdataclass.IN)
    if not options.recursion_desired:
        query.flags &= ~dns.flags.RD
    return query


def rr_lines(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """Each resource record as blackbox prints it: name, ttl, class, type, rdata, tab separated."""
    lines = []
    for rrset in rrsets:
        head = (f"{rrset.name.to_text()}\t{rrset.ttl}\t{dns.rdataclass.to_text(rrset.rdclass)}"
                f"\t{dns.rdatatype.to_text(rrset.rdtype)}\t")
        lines.extend(head + rdata.to_text() for rdata in rrset)
    return lines


def _validate(reply: dns.message.Message, options: Options, log: ProbeLog) -> _Failed | None:
    rcode = dns.rcode.to_text(reply.rcode())
    log(f"reply rcode {rcode}: {_count(reply.answer)} answer, {_count(reply.authority)} authority, "
        f"{_count(reply.additional)} additional")
    lines = {section: rr_lines(getattr(reply, section)) for section in SECTIONS}
    for section in SECTIONS:
        for line in lines[section]:
            log(f"{section}: {line}")
    if rcode not in options.valid_rcodes:
        return _Failed(Reason.RCODE, f"rcode {rcode} is not one of {', '.join(options.valid_rcodes)}")
    for section in SECTIONS:
        problem = _check_rrs(lines[section], getattr(options, f"validate_{section}_rrs"))
        if problem:
            return _Failed(Reason.ANSWER, f"{section} {problem}")
    return None


def _check_rrs(lines: list[str], validation: RRValidation) -> str | None:
    """Blackbox semantics: no RR may match a fail_if_matches regexp; every RR must match
    each fail_if_not_matches regexp (vacuously true for an empty section)."""
    for line in lines:
        for pattern in validation.fail_if_matches_regexp:
            if pattern.search(line):
                return f"record matched fail_if_matches_regexp {pattern.pattern!r}: {line!r}"
        for pattern in validation.fail_if_not_matches_regexp:
            if not pattern.search(line):
                return f"record did not match fail_if_not_matches_regexp {pattern.pattern!r}: {line!r}"
    return None


def _count(rrsets: list[dns.rrset.RRset]) -> int:
    return sum(len(rrset) for rrset in rrsets)


def _result(reply: dns.message.Message | None, failure: _Failed | None, run: _Run,
            duration: float) -> ProbeResult:
    counts: dict[str, object] = {}
    if reply is not None:
        counts = {"dns_rcode": dns.rcode.to_text(reply.rcode()),
                  "dns_answer_rrs": _count(reply.answer),
                  "dns_authority_rrs": _count(reply.authority),
                  "dns_additional_rrs": _count(reply.additional)}
    return ProbeResult(
        success=failure is None,
        duration_seconds=duration,
        reason=None if failure is None else failure.reason,
        detail="" if failure is None else failure.detail,
        phases=dict(run.phases),
        log=run.log.freeze(),
        **counts,  # type: ignore[arg-type]
    )
