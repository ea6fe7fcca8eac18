"""A tiny DNS responder for tests: UDP and TCP on the same 127.0.0.1 port.

    async with DnsServer({("example.test.", "A"): ["192.0.2.1"]}) as server:
        server.address        # "127.0.0.1:<port>"

It answers from `records` ((name, type) -> rdata texts), NOERROR with an empty answer for
a known name asked with another type, NXDOMAIN for an unknown name. `authority` and
`additional` ((name, type, rdata) tuples) are added to every NOERROR reply. Modes:
"answer" (default), "silent" (never replies; TCP connections are held open) and
"garbage" (replies with bytes that are not a DNS message).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterable, Mapping

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

TTL = 300
GARBAGE = b"\x12\x34not a dns message"

Records = Mapping[tuple[str, str], Iterable[str]]
Extra = Iterable[tuple[str, str, str]]


class DnsServer:
    def __init__(self, records: Records | None = None, *, mode: str = "answer",
                 authority: Extra = (), additional: Extra = ()):
        if mode not in ("answer", "silent", "garbage"):
            raise ValueError(f"unknown mode {mode!r}")
        self.records = {(name.lower(), rtype): list(values) for (name, rtype), values in (records or {}).items()}
        self.mode = mode
        self.authority = list(authority)
        self.additional = list(additional)
        self.queries: list[tuple[str, str, str, bool]] = []   # (transport, name, type, rd) seen
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        for _ in range(20):       # the UDP port may be taken for TCP; try another
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=("127.0.0.1", 0), family=socket.AF_INET)
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
                return self
            except OSError:
                self._udp.close()
        raise RuntimeError("no free port for both UDP and TCP")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for writer in list(self._held):
            writer.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def __aenter__(self) -> DnsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reply(self, wire: bytes, transport: str) -> bytes | None:
        """The reply to one query (None: stay silent)."""
        if self.mode == "silent":
            return None
        if self.mode == "garbage":
            return GARBAGE
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((transport, name, rtype, bool(query.flags & dns.flags.RD)))
        response = dns.message.make_response(query)
        if not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        values = self.records.get((name, rtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(name, TTL, "IN", rtype, values))
        response.authority.extend(_rrsets(self.authority))
        response.additional.extend(_rrsets(self.additional))
        return response.to_wire()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                answer = self.reply(await reader.readexactly(length), "tcp")
                if answer is None:
                    await reader.read()          # hold the connection until the client leaves
                    return
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._held.discard(writer)
            writer.close()


def _rrsets(extra: Extra) -> list[dns.rrset.RRset]:
    return [dns.rrset.from_text(name, TTL, "IN", rtype, rdata) for name, rtype, rdata in extra]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        answer = self.server.reply(data, "udp")
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)
