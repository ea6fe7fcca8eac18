"""The `tcp` probe: connect to host:port, optionally over TLS, and run a send/expect exchange.

Options (blackbox_exporter's tcp prober names):

    tls: false                  # wrap the connection in TLS right after connect
    tls_config: {...}           # tlsinfo.parse_tls: verify, ca_file, server_name, ...
    query_response:             # steps run in order, each with exactly one action
      - expect: "^220 "         # read lines until one matches (regex search, line ending stripped)
      - send: "EHLO loom\\r\\n"  # written as-is (YAML double quotes already turn \\r\\n into bytes)
      - starttls: true          # upgrade the connection to TLS here

A step is named in details by its index in `query_response`: "timeout waiting for
expect[2] /^250/", "expect[2] /^250/: connection closed before a match".

The connection helpers here (`address_of`, `resolve_address`, `connect`, `start_tls`) are also
what the `tls` probe runs: a TLS probe is a TCP probe that stops after the handshake.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from agent.collectors.base import (
    PhaseTrace,
    ProbeFailed,
    ProbeResult,
    ProbeTarget,
    Reason,
    run_until,
    split_host_port,
)
from agent.collectors.gosyntax import go_expand, go_regex
from agent.collectors.ipproto import IpOptions, parse_ip_options, resolve as resolve_ip
from agent.collectors.tlsinfo import TlsSettings, client_context, leaf_of, parse_blackbox_tls, parse_tls, peer_info
from agent.config.node import Node, join

KIND = "tcp"

MAX_LINE = 64 * 1024        # an expect step fails on a longer line (asyncio's StreamReader limit)
_LOGGED_CHARS = 200         # a read line is cut to this much in the debug log


@dataclass(frozen=True, slots=True)
class Step:
    """One query_response step: in the agent's own form exactly one action is set; in blackbox's form
    (a module's `tcp:` block) any of them, run in the order expect, send, starttls."""

    expect: re.Pattern[str] | None = None
    send: str | None = None
    starttls: bool = False
    blackbox: bool = False          # send + "\n", and with expect in the step ${1}/$name expanded from its match


@dataclass(frozen=True, slots=True)
class Options:
    tls: bool = False
    tls_config: TlsSettings = TlsSettings()
    query_response: tuple[Step, ...] = ()
    ip: IpOptions = IpOptions()


# ---------------------------------------------------------------- configuration

_ACTIONS = ("expect", "send", "starttls")


def parse_options(node: Node, blackbox: bool = False) -> Options:
    """The agent's form (`tls_config` as tlsinfo.parse_tls reads it) or, with `blackbox`, a module's
    `tcp:` block as blackbox_exporter 0.23 reads it (its tls_config keys, its query_response steps)."""
    tls = node.bool("tls", False)
    tls_config = parse_blackbox_tls(node.child("tls_config")) if blackbox else parse_tls(node.child("tls_config"))
    steps = _parse_steps(node, tls, blackbox)
    return Options(tls=tls, tls_config=tls_config, query_response=steps, ip=parse_ip_options(node, source_ip=True))


def _parse_steps(node: Node, tls: bool, blackbox: bool) -> tuple[Step, ...]:
    steps: list[Step] = []
    starttls_seen = False
    for index, item in node.items("query_response"):
        path = join(join(node.path, "query_response"), index)
        if item is not None and not isinstance(item, Mapping):
            Node(item, path, node.errors)       # records "must be a mapping"
            continue
        step_node = Node(item, path, node.errors)
        step = _parse_blackbox_step(step_node) if blackbox else _parse_step(step_node)
        if step is not None and step.starttls:
            if tls:
                step_node.error("cannot be used with tls: true (the connection is already TLS)", "starttls")
            elif starttls_seen:
                step_node.error("may appear only once", "starttls")
            starttls_seen = True
        if step is not None:
            steps.append(step)
    return tuple(steps)


def _parse_step(node: Node) -> Step | None:
    """One step, or None when it is invalid (the error is recorded)."""
    present = [key for key in _ACTIONS if node.data.get(key) is not None]
    expect = node.regex("expect")
    send = node.str("send")
    starttls = node.bool("starttls", False)
    node.finish()
    if len(present) > 1:
        node.error(f"set only one of expect, send or starttls in a step, got {', '.join(present)}")
        return None
    if not present:
        node.error("a step needs one of expect, send or starttls")
        return None
    if present == ["starttls"] and node.data["starttls"] is False:
        node.error("must be true (it is a step of its own)", "starttls")
        return None
    if expect is None and send is None and not starttls:
        return None          # the value was invalid and is already reported
    return Step(expect=expect, send=send, starttls=starttls)


def _parse_blackbox_step(node: Node) -> Step:
    """A blackbox step: expect (a Go regexp), send, starttls, each optional, as blackbox runs them."""
    expect_text = node.str("expect")
    expect = None
    if expect_text is not None:
        try:
            expect = go_regex(expect_text)
        except re.error as exc:
            node.error(f"invalid regular expression: {exc}", "expect")
    step = Step(expect=expect, send=node.str("send"), starttls=node.bool("starttls", False), blackbox=True)
    node.finish()
    return step


# ---------------------------------------------------------------- probe plumbing


def address_of(target: ProbeTarget) -> tuple[str, int]:
    """The target's host and port; a malformed address (refused at config load) fails as `resolve`."""
    try:
        return split_host_port(target.address or "")
    except ValueError as exc:
        raise ProbeFailed(Reason.RESOLVE, str(exc)) from None


def _ssl_message(exc: ssl.SSLError) -> str:
    """'wrong version number' from '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)'."""
    return exc.reason.lower().replace("_", " ") if exc.reason else str(exc)


def _os_message(exc: OSError) -> str:
    if exc.errno:
        return os.strerror(exc.errno)
    if str(exc):
        return str(exc)
    return "connection closed by the peer" if isinstance(exc, ConnectionResetError) else type(exc).__name__


async def resolve_address(host: str, port: int, ip: IpOptions, trace: PhaseTrace) -> str:
    """The IP address to connect to (ipproto: the preferred family), timed as the resolve phase (also
    when it fails)."""
    return await resolve_ip(host, port, ip, trace)


async def connect(ip: str, port: int, trace: PhaseTrace,
                  source_ip: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A fresh TCP connection (from `source_ip` when set); the caller must abort its transport."""
    with trace.timing("connect"):
        try:
            streams = await asyncio.open_connection(ip, port, limit=MAX_LINE,
                                                    local_addr=(source_ip, 0) if source_ip else None)
        except OSError as exc:
            raise ProbeFailed(Reason.CONNECT, f"connect {ip}:{port}: {_os_message(exc)}") from None
    trace.log(f"connected to {ip}:{port}")
    return streams


def refuse_early_bytes(reader: asyncio.StreamReader) -> None:
    """Before a TLS handshake that opens the connection: bytes the server already sent (an SSH or SMTP
    banner, garbage) stay in the plain reader, out of TLS's sight, and a server that then waits would hold
    the handshake until the deadline. They mean it does not speak TLS here: fail at once with `tls`.
    (Not for STARTTLS: lines an exchange left unread there are plaintext, legitimately.)"""
    early = len(getattr(reader, "_buffer", b""))       # asyncio.StreamReader's unread bytes
    if early:
        raise ProbeFailed(Reason.TLS, f"tls handshake: the server sent {early} bytes of something else first "
                                      "(not TLS?)")


async def start_tls(writer: asyncio.StreamWriter, settings: TlsSettings, host: str, trace: PhaseTrace) -> None:
    """Upgrade the connection to TLS and record the version and the earliest certificate expiry."""
    server_name = settings.server_name or host
    with trace.timing("tls"):
        try:
            await writer.start_tls(client_context(settings), server_hostname=server_name)
        except ssl.SSLCertVerificationError as exc:
            raise ProbeFailed(Reason.TLS, f"certificate verify failed: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ProbeFailed(Reason.TLS, f"tls handshake: {_ssl_message(exc)}") from None
        except OSError as exc:              # the peer closed or reset mid-handshake
            raise ProbeFailed(Reason.TLS, f"tls handshake: {_os_message(exc)}") from None
    ssl_object = writer.get_extra_info("ssl_object")
    trace.tls_version, trace.cert_expiry = peer_info(ssl_object)
    trace.tls_leaf = leaf_of(ssl_object, settings.verify)
    trace.log(f"tls handshake done with {server_name}: {trace.tls_version}")


# ---------------------------------------------------------------- the exchange


def _label(index: int, step: Step) -> str:
    assert step.expect is not None
    return f"expect[{index}] /{step.expect.pattern}/"


async def _read_line(reader: asyncio.StreamReader, label: str) -> str:
    try:
        raw = await reader.readline()
    except ValueError:                      # LimitOverrunError: no newline within MAX_LINE bytes
        raise ProbeFailed(Reason.EXPECT, f"{label}: line longer than {MAX_LINE} bytes") from None
    except ssl.SSLError as exc:
        raise ProbeFailed(Reason.TLS, f"{label}: {_ssl_message(exc)}") from None
    except OSError as exc:
        raise ProbeFailed(Reason.CONNECT, f"{label}: {_os_message(exc)}") from None
    if not raw:
        raise ProbeFailed(Reason.EXPECT, f"{label}: connection closed before a match")
    return raw.decode("utf-8", "replace").rstrip("\r\n")


async def _expect(reader: asyncio.StreamReader, index: int, step: Step, trace: PhaseTrace) -> re.Match[str]:
    assert step.expect is not None
    label = _label(index, step)
    trace.waiting = f"waiting for {label}"       # the timeout names the step, not the phase
    while True:
        line = await _read_line(reader, label)
        trace.log(f"read {line[:_LOGGED_CHARS]!r}")
        match = step.expect.search(line)
        if match:
            trace.log(f"{label} matched")
            return match


async def _send(writer: asyncio.StreamWriter, index: int, text: str, trace: PhaseTrace) -> None:
    trace.waiting = f"during send[{index}]"
    try:
        writer.write(text.encode())
        await writer.drain()
    except ssl.SSLError as exc:
        raise ProbeFailed(Reason.TLS, f"send[{index}]: {_ssl_message(exc)}") from None
    except OSError as exc:
        raise ProbeFailed(Reason.CONNECT, f"send[{index}]: {_os_message(exc)}") from None
    trace.log(f"sent {text[:_LOGGED_CHARS]!r}")


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, options: Options,
                    host: str, trace: PhaseTrace) -> None:
    for index, step in enumerate(options.query_response):
        if step.blackbox:
            await _blackbox_step(reader, writer, index, step, options, host, trace)
        elif step.expect is not None:
            await _expect(reader, index, step, trace)
        elif step.send is not None:
            await _send(writer, index, step.send, trace)
        else:
            await start_tls(writer, options.tls_config, host, trace)


async def _blackbox_step(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int, step: Step,
                         options: Options, host: str, trace: PhaseTrace) -> None:
    """As blackbox's ProbeTCP runs a step: expect, then send (expanded from the expect's match, a newline
    added; an empty send sends nothing), then starttls."""
    send = step.send or ""
    if step.expect is not None:
        send = go_expand(send, await _expect(reader, index, step, trace))
    if send:
        await _send(writer, index, send + "\n", trace)
    if step.starttls:
        await start_tls(writer, options.tls_config, host, trace)


async def _run(target: ProbeTarget, options: Options, trace: PhaseTrace) -> None:
    host, port = address_of(target)
    ip = await resolve_address(host, port, options.ip, trace)
    reader, writer = await connect(ip, port, trace, options.ip.source_ip)
    try:
        if options.tls:
            refuse_early_bytes(reader)
            await start_tls(writer, options.tls_config, host, trace)
        await _exchange(reader, writer, options, host, trace)
    finally:
        writer.transport.abort()


class Collector:
    kind: ClassVar[str] = KIND

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        trace = PhaseTrace()
        return trace.result(await run_until(deadline, trace, _run(target, target.options, trace)))

    async def close(self) -> None:
        return None
