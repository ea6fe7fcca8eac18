"""Beyond blackbox_exporter: probe every address of a target's host (`all_addresses: true`).

blackbox probes one address of a name (prometheus/blackbox_exporter#1512, its most persistent ask), so
a service behind several A/AAAA records reads as up or down by which address the resolver put first.
With `all_addresses: true` (on a target, a flat module, or in a blackbox module's prober block, beside
`preferred_ip_protocol`) the host is resolved once and each address is probed, concurrently and within
the target's one deadline, by the kind's own collector: each per-address probe resolves the host to its
address (`ipproto.PINNED`, so http's Host header, TLS's server name and every other use of the name stay
as they are; a redirect to another host resolves normally).

    all_addresses: true
    all_addresses_success: all     # all (default) | any

Which addresses: both families as DNS returns them (A and AAAA), unless `ip_protocol_fallback: false`
restricts them to `preferred_ip_protocol`'s family, as it does for one address. At most
`MAX_ADDRESSES` (16), the first in the resolver's order: each address is a probe running at the same
time and a `probe_success{ip=...}` series, so the count is bounded whatever DNS returns (a 512-byte UDP
answer alone holds ~29 A records). An IP literal is one address. The scheduler's `max_concurrency` counts
such a target once, whatever its number of addresses.

The result: the target's `probe_success` is 1 when all (the default: a client may be sent to any of
them, so one bad address is an outage for some) or any of the addresses succeeded; each address's own
outcome is `probe_success{ip="<address>"}` beside it. The other gauges, the reason and the detail are
those of one address: the first that failed when the target failed, else the first that succeeded
(the detail says how many failed). The duration is the whole fan-out's, the resolve phase the one
lookup's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any
from urllib.parse import urlsplit

from agent.collectors.base import (
    Collector,
    ProbeFailed,
    ProbeLog,
    ProbeResult,
    ProbeTarget,
    Reason,
    is_ip_literal,
    split_host_port,
)
from agent.collectors.ipproto import PINNED, IpOptions, addresses

MAX_ADDRESSES = 16


def options_of(target: ProbeTarget) -> IpOptions | None:
    """The target's IP options when it asks for every address, else None (every kind's Options has `ip`)."""
    ip: Any = getattr(target.options, "ip", None)
    return ip if isinstance(ip, IpOptions) and ip.all_addresses else None


def host_of(target: ProbeTarget) -> str | None:
    """The host name the target's kind resolves, or None (dns with the system resolver)."""
    if target.url is not None:
        return urlsplit(target.url).hostname  # lower case, as ipproto.PINNED compares it
    if target.address is None:
        return None
    host, _ = split_host_port(target.address, 0)
    return host.lower()


async def probe_every_address(collector: Collector, target: ProbeTarget, deadline: float,
                              options: IpOptions) -> ProbeResult:
    """Probe each address of the target's host with `collector`; one result (see the module docstring)."""
    started = time.perf_counter()
    log = ProbeLog()
    try:
        host = host_of(target)
    except ValueError as exc:
        return ProbeResult(False, 0.0, Reason.RESOLVE, str(exc))
    if host is None:
        return await collector.probe(target, deadline)
    try:
        found = await _addresses(host, options, deadline)
    except ProbeFailed as failure:
        return ProbeResult(False, time.perf_counter() - started, failure.reason, failure.detail,
                           phases={"resolve": time.perf_counter() - started})
    resolve_seconds = time.perf_counter() - started
    if len(found) > MAX_ADDRESSES:
        log(f"{host} has {len(found)} addresses; probing the first {MAX_ADDRESSES}")
        found = found[:MAX_ADDRESSES]
    log(f"probing {len(found)} address(es) of {host}: {', '.join(found)}")
    results = await asyncio.gather(*(_probe_at(collector, target, deadline, host, ip) for ip in found))
    return _combine(list(zip(found, results)), options, log, started, resolve_seconds)


async def _addresses(host: str, options: IpOptions, deadline: float) -> list[str]:
    if is_ip_literal(host):
        return [host]
    try:
        async with asyncio.timeout(deadline - time.monotonic()):
            found = await addresses(host, 0, options)
    except TimeoutError:
        raise ProbeFailed(Reason.TIMEOUT, "timeout during resolve") from None
    if not found:
        raise ProbeFailed(Reason.RESOLVE, f"cannot resolve {host}: no addresses")
    return found


async def _probe_at(collector: Collector, target: ProbeTarget, deadline: float, host: str, ip: str) -> ProbeResult:
    """One address's probe: the task's own context carries the pin, so only this probe sees it."""
    PINNED.set((host, ip))
    return await collector.probe(target, deadline)


def _combine(outcomes: list[tuple[str, ProbeResult]], options: IpOptions, log: ProbeLog, started: float,
             resolve_seconds: float) -> ProbeResult:
    failed = [(ip, r) for ip, r in outcomes if not r.success]
    succeeded = [(ip, r) for ip, r in outcomes if r.success]
    success = not failed if options.all_addresses_success == "all" else bool(succeeded)
    ip, chosen = (succeeded or failed)[0] if success else failed[0]
    lines = [*log.freeze()]
    for address, result in outcomes:
        outcome = "succeeded" if result.success else f"failed ({result.reason_value}: {result.detail})"
        lines.append(f"[{address}] {outcome}")
        lines.extend(f"[{address}] {line}" for line in result.log)
    summary = f"{len(failed)} of {len(outcomes)} addresses failed"
    lines.append(f"{summary}; success needs {options.all_addresses_success} of them")
    detail = "" if success else f"{ip}: {chosen.detail} ({summary})"
    return dataclasses.replace(
        chosen, success=success, reason=None if success else chosen.reason, detail=detail,
        duration_seconds=time.perf_counter() - started, phases={**chosen.phases, "resolve": resolve_seconds},
        addresses=tuple((address, result.success) for address, result in outcomes), log=tuple(lines))
