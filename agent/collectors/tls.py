"""The `tls` probe: connect to host:port and complete a TLS handshake.

Options:

    tls: {...}                      # tlsinfo.parse_tls; verify defaults to true
    fail_if_expires_within: 14d     # optional: fail when the earliest certificate expires sooner

Success means the handshake (and, with verify on, chain and hostname verification against
`tls.server_name` or the host) succeeded. The result carries the negotiated version and the
earliest NotAfter over the presented chain, also when the expiry check fails.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import ClassVar

from agent.collectors.base import PhaseTrace, ProbeFailed, ProbeResult, ProbeTarget, Reason, run_until
from agent.collectors.ipproto import IpOptions, parse_ip_options
from agent.collectors.tcp import address_of, connect, refuse_early_bytes, resolve_address, start_tls
from agent.collectors.tlsinfo import TlsSettings, parse_tls
from agent.config.node import Node

KIND = "tls"


@dataclass(frozen=True, slots=True)
class Options:
    tls: TlsSettings = TlsSettings()
    fail_if_expires_within: float | None = None     # seconds
    ip: IpOptions = IpOptions()


def parse_options(node: Node) -> Options:
    return Options(tls=parse_tls(node.child("tls")),
                   fail_if_expires_within=node.duration("fail_if_expires_within"),
                   ip=parse_ip_options(node, source_ip=True))


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f}d"


def _check_expiry(options: Options, trace: PhaseTrace) -> None:
    """Fail with Reason.TLS when the earliest certificate expires within the configured window."""
    within, expiry = options.fail_if_expires_within, trace.cert_expiry
    if within is None or expiry is None:
        return
    left = expiry - time.time()
    if left >= within:
        return
    at = dt.datetime.fromtimestamp(expiry, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    when = f"expired {_days(-left)} ago" if left < 0 else f"expires in {_days(left)}"
    raise ProbeFailed(Reason.TLS, f"certificate {when} (at {at}), "
                                  f"within fail_if_expires_within {_days(within)}")


async def _handshake(target: ProbeTarget, options: Options, trace: PhaseTrace) -> None:
    host, port = address_of(target)
    ip = await resolve_address(host, port, options.ip, trace)
    reader, writer = await connect(ip, port, trace, options.ip.source_ip)
    try:
        refuse_early_bytes(reader)
        await start_tls(writer, options.tls, host, trace)
    finally:
        writer.transport.abort()
    _check_expiry(options, trace)


class Collector:
    kind: ClassVar[str] = KIND

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        trace = PhaseTrace()
        return trace.result(await run_until(deadline, trace, _handshake(target, target.options, trace)))

    async def close(self) -> None:
        return None
