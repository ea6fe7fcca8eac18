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

import re
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

from agent.collectors.base import (
    PhaseTrace,
    ProbeFailed,
    ProbeLog,
    ProbeResult,
    ProbeTarget,
    Reason,
    run_until,
    split_host_port,
)
from agent.collectors.ipproto import IpOptions, parse_ip_options, protocol_of, resolve
from agent.config.node import Node

KIND = "dns"
QUERY_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV")
TRANSPORTS = ("udp", "tcp")
SECTIONS = ("answer", "authority", "additional")
PHASES = ("resolve", "connect", "request")      # probe_dns_duration_seconds carries all three, as blackbox's


@dataclass(frozen=True, slots=True)
class RRValidation:
    """One `validate_<section>_rrs:` block."""

    fail_if_matches_regexp: tuple[re.Pattern[str], ...] = ()
    fail_if_not_matches_regexp: tuple[re.Pattern[str], ...] = ()
    # blackbox's form only: fail unless every RR matches each (sic) / unless some RR matches one of them, and
    # an empty section fails fail_if_not_matches_regexp and fail_if_none_matches_regexp (blackbox's validRRs)
    fail_if_all_match_regexp: tuple[re.Pattern[str], ...] = ()
    fail_if_none_matches_regexp: tuple[re.Pattern[str], ...] = ()
    blackbox: bool = False


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
    ip: IpOptions = IpOptions()
    query_class: str = "IN"


def parse_options(node: Node, blackbox: bool = False) -> Options:
    """The agent's form, or with `blackbox` a module's `dns:` block as blackbox_exporter 0.23 reads it
    (transport_protocol, query_class, query_type ANY by default and any type, validate_*_rrs's four lists)."""
    if blackbox:
        return _parse_blackbox(node)
    return Options(
        query_name=_query_name(node),
        query_type=node.str("query_type", "A", choices=QUERY_TYPES),
        transport=node.str("transport", "udp", choices=TRANSPORTS),
        recursion_desired=node.bool("recursion_desired", True),
        valid_rcodes=_rcodes(node, "valid_rcodes"),
        validate_answer_rrs=_rr_validation(node.child("validate_answer_rrs")),
        validate_authority_rrs=_rr_validation(node.child("validate_authority_rrs")),
        validate_additional_rrs=_rr_validation(node.child("validate_additional_rrs")),
        ip=parse_ip_options(node, source_ip=True),
    )


def _parse_blackbox(node: Node) -> Options:
    for key in ("dns_over_tls", "tls_config"):
        value = node.raw(key)
        if value not in (None, False):
            node.error("not supported by loom-agent (blackbox_exporter key)", key)
    query_type = node.str("query_type", "ANY")
    if not _known(dns.rdatatype.from_text, query_type):
        node.error(f"unknown query type {query_type!r}", "query_type")
        query_type = "ANY"
    query_class = node.str("query_class", "IN")
    if not _known(dns.rdataclass.from_text, query_class):
        node.error(f"unknown query class {query_class!r}", "query_class")
        query_class = "IN"
    return Options(
        query_name=_query_name(node),
        query_type=query_type,
        query_class=query_class,
        transport=node.str("transport_protocol", "udp", choices=TRANSPORTS),
        recursion_desired=node.bool("recursion_desired", True),
        valid_rcodes=_rcodes(node, "valid_rcodes"),
        validate_answer_rrs=_rr_validation(node.child("validate_answer_rrs"), blackbox=True),
        validate_authority_rrs=_rr_validation(node.child("validate_authority_rrs"), blackbox=True),
        validate_additional_rrs=_rr_validation(node.child("validate_additional_rrs"), blackbox=True),
        ip=parse_ip_options(node, source_ip=True),
    )


def _known(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except (dns.exception.DNSException, ValueError):
        return False
    return True


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


def _rr_validation(node: Node, blackbox: bool = False) -> RRValidation:
    validation = RRValidation(
        fail_if_matches_regexp=node.regex_list("fail_if_matches_regexp"),
        fail_if_not_matches_regexp=node.regex_list("fail_if_not_matches_regexp"),
        fail_if_all_match_regexp=node.regex_list("fail_if_all_match_regexp") if blackbox else (),
        fail_if_none_matches_regexp=node.regex_list("fail_if_none_matches_regexp") if blackbox else (),
        blackbox=blackbox,
    )
    node.finish()
    return validation


class Collector:
    kind: ClassVar[str] = KIND

    def __init__(self) -> None:
        self._backend = dns.asyncbackend.get_backend("asyncio")

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        options: Options = target.options
        trace = PhaseTrace()
        replies: list[dns.message.Message] = []
        failure = await run_until(deadline, trace, self._query(target.address, options, trace, replies))
        reply = replies[0] if replies else None
        if failure is None and reply is not None:
            failure = _validate(reply, options, trace.log)
        return trace.result(failure, **_counts(reply, options))

    async def close(self) -> None:
        return None

    async def _query(self, address: str | None, options: Options, trace: PhaseTrace,
                     replies: list[dns.message.Message]) -> None:
        """Find the server and exchange the query; the reply is appended to `replies` (the caller reads
        it after the deadline's scope, which a return value could not leave)."""
        server = await _server(address, options.ip, trace)
        replies.append(await self._exchange(_make_query(options), server, options, trace))

    async def _exchange(self, query: dns.message.Message, server: tuple[str, int], options: Options,
                        trace: PhaseTrace) -> dns.message.Message:
        ip, port = server
        transport = options.transport
        af = dns.inet.af_for_address(ip)
        source = (options.ip.source_ip, 0) if options.ip.source_ip else None
        try:
            if transport == "tcp":
                started = trace.enter("connect")
                sock = await self._backend.make_socket(af, socket.SOCK_STREAM, 0, source, (ip, port))
                trace.done("connect", started)
                trace.log(f"connected to {ip} port {port} over tcp")
            else:
                sock = await self._backend.make_socket(af, socket.SOCK_DGRAM, 0, source, (ip, port))
            async with sock:
                started = trace.enter("request")
                trace.log(f"sending query {query.question[0].to_text()} over {transport}")
                send = dns.asyncquery.tcp if transport == "tcp" else dns.asyncquery.udp
                reply = await send(query, ip, port=port, sock=sock)
                trace.done("request", started)
                return reply
        except ConnectionRefusedError:
            raise ProbeFailed(Reason.CONNECT, f"connection refused by {ip} port {port}") from None
        except EOFError:
            raise ProbeFailed(Reason.PROTOCOL, "server closed the connection before replying") from None
        except dns.query.BadResponse:
            raise ProbeFailed(Reason.PROTOCOL, "reply does not answer the query") from None
        except dns.exception.Timeout:
            raise trace.timeout() from None
        except dns.exception.DNSException as exc:
            raise ProbeFailed(Reason.PROTOCOL, f"malformed reply: {exc}") from None
        except OSError as exc:
            raise ProbeFailed(Reason.CONNECT, f"{ip} port {port}: {exc.strerror or exc}") from None


def _system_nameserver() -> tuple[str, int]:
    try:
        resolver = dns.asyncresolver.Resolver()
    except dns.exception.DNSException as exc:
        raise ProbeFailed(Reason.RESOLVE, f"no system resolver: {exc}") from None
    for nameserver in resolver.nameservers:
        if isinstance(nameserver, str) and dns.inet.is_address(nameserver):
            return nameserver, resolver.nameserver_ports.get(nameserver, resolver.port)
    raise ProbeFailed(Reason.RESOLVE, "no system resolver: /etc/resolv.conf lists no nameserver address")


async def _server(address: str | None, ip_options: IpOptions, trace: PhaseTrace) -> tuple[str, int]:
    """The server's (IP, port): from the target address (ipproto: the preferred family), or the system
    resolver's first. Timed as the resolve phase."""
    if address is None:
        with trace.timing("resolve"):
            ip, port = _system_nameserver()
        trace.ip_address, trace.ip_protocol = ip, protocol_of(ip)
        trace.log(f"using system resolver {ip} port {port}")
        return ip, port
    try:
        host, port = split_host_port(address, 53)
    except ValueError as exc:
        raise ProbeFailed(Reason.RESOLVE, str(exc)) from None
    ip = await resolve(host, port, ip_options, trace, socket.SOCK_DGRAM)
    trace.log(f"server {ip} port {port}")
    return ip, port


def _make_query(options: Options) -> dns.message.Message:
    query = dns.message.make_query(options.query_name, options.query_type, options.query_class)
    if not options.recursion_desired:
        query.flags &= ~dns.flags.RD
    return query


def rr_lines(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """Each resource record as blackbox prints it: name, ttl, class, type, rdata, tab separated."""
    lines: list[str] = []
    for rrset in rrsets:
        head = (f"{rrset.name.to_text()}\t{rrset.ttl}\t{dns.rdataclass.to_text(rrset.rdclass)}"
                f"\t{dns.rdatatype.to_text(rrset.rdtype)}\t")
        lines.extend(head + rdata.to_text() for rdata in rrset)
    return lines


def _validate(reply: dns.message.Message, options: Options, log: ProbeLog) -> ProbeFailed | None:
    rcode = dns.rcode.to_text(reply.rcode())
    log(f"reply rcode {rcode}: {_count(reply.answer)} answer, {_count(reply.authority)} authority, "
        f"{_count(reply.additional)} additional")
    lines = {section: rr_lines(getattr(reply, section)) for section in SECTIONS}
    for section in SECTIONS:
        for line in lines[section]:
            log(f"{section}: {line}")
    if rcode not in options.valid_rcodes:
        return ProbeFailed(Reason.RCODE, f"rcode {rcode} is not one of {', '.join(options.valid_rcodes)}")
    for section in SECTIONS:
        problem = _check_rrs(lines[section], getattr(options, f"validate_{section}_rrs"))
        if problem:
            return ProbeFailed(Reason.ANSWER, f"{section} {problem}")
    return None


def _check_rrs(lines: list[str], validation: RRValidation) -> str | None:
    """Blackbox semantics: no RR may match a fail_if_matches regexp; every RR must match
    each fail_if_not_matches regexp (vacuously true for an empty section in the agent's own form; in
    blackbox's form an empty section fails it, and fail_if_all_match / fail_if_none_matches apply)."""
    if validation.blackbox and not lines and (validation.fail_if_not_matches_regexp
                                              or validation.fail_if_none_matches_regexp):
        return "section is empty but a regexp match is required"
    for pattern in validation.fail_if_all_match_regexp:       # blackbox fails unless ALL match, despite the name
        if any(not pattern.search(line) for line in lines):
            return f"not every record matched fail_if_all_match_regexp {pattern.pattern!r}"
    if validation.fail_if_none_matches_regexp and lines and not any(
            pattern.search(line) for line in lines for pattern in validation.fail_if_none_matches_regexp):
        return "no record matched fail_if_none_matches_regexp"
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


def _counts(reply: dns.message.Message | None, options: Options) -> dict[str, Any]:
    """The result fields read from the reply, when there is one (also for a failed check); an SOA query's
    zone serial (the answer's last SOA, 0 without one: blackbox's probe_dns_serial)."""
    if reply is None:
        return {}
    counts = {"dns_rcode": dns.rcode.to_text(reply.rcode()),
              "dns_answer_rrs": _count(reply.answer),
              "dns_authority_rrs": _count(reply.authority),
              "dns_additional_rrs": _count(reply.additional)}
    if options.query_type == "SOA":
        serials = [rdata.serial for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SOA for rdata in rrset]
        counts["dns_serial"] = serials[-1] if serials else 0
    return counts
