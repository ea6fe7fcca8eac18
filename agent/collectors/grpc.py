"""The `grpc` probe: the standard health check, `grpc.health.v1.Health/Check`, against host:port.

Options (blackbox_exporter 0.23's GRPCProbe keys, read from a module's `grpc:` block or flat):

    service: ""                    # the service asked about ("" = the server as a whole)
    tls: false                     # TLS to the server
    tls_config: {...}              # tlsinfo.parse_tls: ca_file, cert_file, key_file, server_name, min_version
    preferred_ip_protocol: ip6     # collectors/ipproto.py (blackbox's default ip6, with fallback)
    ip_protocol_fallback: true

Success means the check answered `OK` with status `SERVING`. Anything else is a failure with a reason:
a health status other than SERVING (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN from a watch-style server) or
a status code other than OK (grpcio's HealthServicer answers NOT_FOUND for a service it does not know)
is `status`; UNAVAILABLE is `connect` (refused, unreachable, reset), DEADLINE_EXCEEDED or the probe's
deadline is `timeout`, UNIMPLEMENTED (no health service) is `protocol`, a failed handshake `tls`.
The result carries the status code (`probe_grpc_status_code`: 14 for UNAVAILABLE, as blackbox reports
it) and the serving status (`probe_grpc_healthcheck_response{serving_status}`, all four, one at 1).

Phases are blackbox's: `resolve` and `check` (connection, TLS and the call).

Why a handshake of our own before the call for `tls: true`: grpcio's client exposes nothing of the
peer's certificates or TLS version, which blackbox reports for gRPC (`probe_ssl_earliest_cert_expiry`,
`probe_tls_version_info`). The probe first completes a TLS handshake to the same address with the
same settings (and ALPN h2, which Go gRPC servers since 1.67 require) using Python's ssl, which also
names a certificate problem precisely ("certificate verify failed: ...") where grpcio says only
UNAVAILABLE; then grpcio makes the call over its own connection. It costs one more handshake per
probe (~1 ms on loopback). `tls_config.verify: false` is refused for grpc: grpcio's client cannot
skip verification.

The call goes to the resolved address (blackbox 0.23 dials the host name again, so the address it
reports as `probe_ip_addr_hash` need not be the one it called), with the host as the :authority and
the TLS server name (or `tls_config.server_name`). One channel per probe, closed after it: a health
probe measures a fresh connection, as blackbox does.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.collectors.base import PhaseTrace, ProbeFailed, ProbeResult, ProbeTarget, Reason, run_until
from agent.collectors.ipproto import IpOptions, parse_ip_options, resolve
from agent.collectors.tcp import address_of
from agent.collectors.tlsinfo import TlsSettings, client_context, leaf_of, parse_blackbox_tls, parse_tls, peer_info
from agent.config.node import Node

KIND = "grpc"

# blackbox's probe_grpc_healthcheck_response label values: every status of the health proto
SERVING_STATUSES = tuple(health_pb2.HealthCheckResponse.ServingStatus.keys())
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]           # 14: what a failed connection answers


@dataclass(frozen=True, slots=True)
class Options:
    service: str = ""
    tls: bool = False
    tls_config: TlsSettings = TlsSettings()
    ip: IpOptions = IpOptions()


def parse_options(node: Node, blackbox: bool = False) -> Options:
    """The agent's form (`tls_config` as tlsinfo.parse_tls reads it) or, with `blackbox`, a module's `grpc:`
    block (`tls_config` with blackbox's keys: insecure_skip_verify, min_version TLS12, ...)."""
    service = node.str("service", "")
    tls = node.bool("tls", False)
    tls_config = parse_blackbox_tls(node.child("tls_config")) if blackbox else parse_tls(node.child("tls_config"))
    if not tls_config.verify:
        key = "insecure_skip_verify: true" if blackbox else "verify: false"
        node.error(f"{key} is not supported for grpc (grpcio's client always verifies; "
                   "give the server's CA as ca_file)", "tls_config")
    ip = parse_ip_options(node)
    return Options(service=service, tls=tls, tls_config=tls_config, ip=ip)


# ---------------------------------------------------------------- TLS


@lru_cache(maxsize=64)
def _h2_context(settings: TlsSettings) -> ssl.SSLContext:
    """The kinds' client context for these settings, offering ALPN h2 as a gRPC client does (a context of
    its own: the cached one of tlsinfo is shared with http, which must not offer h2)."""
    ctx = client_context.__wrapped__(settings)
    ctx.set_alpn_protocols(["h2"])
    return ctx


@lru_cache(maxsize=64)
def _credentials(settings: TlsSettings) -> grpc.ChannelCredentials:
    """grpcio's credentials for the same settings: the CA file, else the system's bundle (what Python's
    default context trusts; grpcio's own roots otherwise), and the client certificate if any."""
    paths = ssl.get_default_verify_paths()        # .cafile honours SSL_CERT_FILE, as Python's default context does
    ca_file = settings.ca_file or paths.cafile or paths.openssl_cafile
    roots = _read(ca_file) if ca_file and os.path.isfile(ca_file) else None
    key = _read(settings.key_file or settings.cert_file) if settings.cert_file else None
    chain = _read(settings.cert_file) if settings.cert_file else None
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read()


async def _handshake(ip: str, port: int, settings: TlsSettings, server_name: str, trace: PhaseTrace) -> None:
    """A TLS handshake of our own, for the facts grpcio does not expose (see the module docstring)."""
    try:
        _, writer = await asyncio.open_connection(ip, port)
    except OSError as exc:
        message = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        raise _Failed(Reason.CONNECT, f"connect {ip}:{port}: {message}", UNAVAILABLE) from None
    try:
        await writer.start_tls(_h2_context(settings), server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        raise _Failed(Reason.TLS, f"certificate verify failed: {exc.verify_message}", UNAVAILABLE) from None
    except (ssl.SSLError, OSError) as exc:
        message = exc.reason.lower().replace("_", " ") if isinstance(exc, ssl.SSLError) and exc.reason else str(exc)
        raise _Failed(Reason.TLS, f"tls handshake: {message or type(exc).__name__}", UNAVAILABLE) from None
    finally:
        writer.transport.abort()
    trace.tls_version, trace.cert_expiry = peer_info(writer.get_extra_info("ssl_object"))
    trace.tls_leaf = leaf_of(writer.get_extra_info("ssl_object"), settings.verify)
    trace.log(f"tls handshake done with {server_name}: {trace.tls_version}")


# ---------------------------------------------------------------- the check


class _Failed(ProbeFailed):
    """A failure that knows the gRPC status code to report (blackbox reports it on failures too)."""

    def __init__(self, reason: Reason, detail: str, code: int) -> None:
        super().__init__(reason, detail)
        self.code = code


_REASONS = {
    grpc.StatusCode.UNAVAILABLE: Reason.CONNECT,
    grpc.StatusCode.DEADLINE_EXCEEDED: Reason.TIMEOUT,
    grpc.StatusCode.UNIMPLEMENTED: Reason.PROTOCOL,
}


@dataclass(slots=True)
class _Outcome:
    code: int | None = None              # the call's status code, once it ended
    serving_status: str | None = None    # the health answer, when the call answered OK


def _channel(ip: str, port: int, host: str, options: Options) -> grpc.aio.Channel:
    address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    channel_options: list[tuple[str, str | int]] = [("grpc.default_authority", authority),
                                                    ("grpc.enable_retries", 0)]
    if not options.tls:
        return grpc.aio.insecure_channel(address, options=channel_options)
    server_name = options.tls_config.server_name or host
    channel_options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(address, _credentials(options.tls_config), options=channel_options)


async def _check(ip: str, port: int, host: str, options: Options, deadline_left: float, trace: PhaseTrace,
                 outcome: _Outcome) -> None:
    channel = _channel(ip, port, host, options)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=options.service)
        try:
            response = await stub.Check(request, timeout=max(deadline_left, 0.001))
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            outcome.code = code.value[0]
            detail = f"gRPC status {code.name}: {exc.details() or ''}".rstrip(": ")
            raise ProbeFailed(_REASONS.get(code, Reason.STATUS), detail) from None
    finally:
        await channel.close()
    outcome.code = grpc.StatusCode.OK.value[0]
    outcome.serving_status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    trace.log(f"health check of service {options.service!r}: {outcome.serving_status}")
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise ProbeFailed(Reason.STATUS, f"service {options.service!r} is {outcome.serving_status}")


async def _run(target: ProbeTarget, options: Options, deadline: float, trace: PhaseTrace,
               outcome: _Outcome) -> None:
    host, port = address_of(target)
    trace.add("resolve", 0.0)            # blackbox always reports the resolve phase
    ip = await resolve(host, port, options.ip, trace)
    started = trace.enter("check")
    try:
        if options.tls:
            try:
                await _handshake(ip, port, options.tls_config, options.tls_config.server_name or host, trace)
            except _Failed as failure:
                outcome.code = failure.code
                raise
            trace.phase = "check"
        await _check(ip, port, host, options, deadline - time.monotonic(), trace, outcome)
    finally:
        trace.done("check", started)


class Collector:
    kind: ClassVar[str] = KIND

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        trace = PhaseTrace()
        outcome = _Outcome()
        failure = await run_until(deadline, trace, _run(target, target.options, deadline, trace, outcome))
        if failure is not None and failure.reason is Reason.TIMEOUT and outcome.code is None \
                and "check" in trace.phases:
            outcome.code = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]   # what the call would have ended with
        return trace.result(failure, grpc_status_code=outcome.code, grpc_serving_status=outcome.serving_status)

    async def close(self) -> None:
        return None
