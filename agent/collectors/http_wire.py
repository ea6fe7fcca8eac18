"""A lean HTTP/1.1 client for the http collector: one request per fresh connection.

`exchange()` resolves, connects, upgrades to TLS for https, sends one request with
`Connection: close`, reads one response and closes, timing blackbox_exporter's phases into
a `PhaseTrace` (processing = request written -> first byte; transfer = first byte -> body end).
`ResponseReader`, an asyncio Protocol with no StreamReader layer, parses the response as
it arrives and drops body bytes unless asked to keep them. Protocol and resolve failures raise
`ProbeFailed`; OS and ssl errors propagate for the caller to map by the trace's phase.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from agent.collectors.base import PhaseTrace, ProbeFailed, Reason, TlsLeaf
from agent.collectors.ipproto import IpOptions, resolve
from agent.collectors.tlsinfo import leaf_of, peer_info

MAX_HEAD_BYTES = 65536
MAX_CHUNK_LINE = 4096
_VERSIONS = {b"HTTP/1.1": 1.1, b"HTTP/1.0": 1.0}
TlsFacts = tuple[str | None, float | None]      # (TLS version, earliest certificate NotAfter)
# body framing modes of ResponseReader
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)


def encode_request(method: str, target: str, host: str, header_block: bytes, body: bytes | None) -> bytes:
    """The request bytes. `header_block` holds the other header lines, CRLF-terminated."""
    parts = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n".encode(), header_block]
    if body is not None:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"Connection: close\r\n\r\n")
    if body:
        parts.append(body)
    return b"".join(parts)


@dataclass(slots=True)
class Response:
    version: float                      # 1.0 / 1.1
    version_text: str                   # "HTTP/1.1"
    status: int
    headers: dict[bytes, bytes]         # lower-case names; repeated headers joined by ", "
    content_length: int = -1            # the Content-Length header, -1 when absent (or chunked)
    body_length: int = 0                # body bytes received (after de-chunking)
    body: bytes | None = None           # only when asked to keep it
    tls_version: str | None = None
    cert_expiry: float | None = None
    tls_leaf: TlsLeaf | None = None


def parse_head(head: bytes) -> tuple[float, str, int, dict[bytes, bytes]]:
    """Status line and header lines (without the final blank line) -> (version, text, status, headers)."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    parts = status_line.split(b" ", 2)
    version = _VERSIONS.get(parts[0])
    if version is None or len(parts) < 2:
        raise ProbeFailed(Reason.PROTOCOL, f"malformed status line {status_line[:80]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or code[0] == 0x30:
        raise ProbeFailed(Reason.PROTOCOL, f"malformed status code in {status_line[:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
            raise ProbeFailed(Reason.PROTOCOL, f"malformed header line {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        old = headers.get(name)
        headers[name] = value if old is None else old + b", " + value
    return version, parts[0].decode(), int(code), headers


def _content_length(value: bytes) -> int:
    texts = {v.strip() for v in value.split(b",")}
    text = texts.pop()
    if texts or not text.isdigit():
        raise ProbeFailed(Reason.PROTOCOL, f"invalid Content-Length {value[:40]!r}")
    return int(text)


class ChunkedDecoder:
    """Transfer-Encoding: chunked. `feed()` passes payload pieces to a sink; True when done."""

    __slots__ = ("_buf", "_left", "_state")
    _SIZE, _DATA_END, _TRAILER = range(3)

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0                  # chunk data bytes still to come
        self._state = self._SIZE        # which line is expected once the data is through

    def feed(self, data: bytes, sink: Callable[[bytearray], None]) -> bool:
        buf = self._buf
        buf += data
        pos = 0
        while True:
            if self._left:
                take = min(self._left, len(buf) - pos)
                if not take:
                    break
                sink(buf[pos:pos + take])
                pos += take
                self._left -= take
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > MAX_CHUNK_LINE:
                    raise ProbeFailed(Reason.PROTOCOL, "malformed chunked body: line too long")
                break
            line, pos = bytes(buf[pos:end]), end + 2
            if self._state == self._SIZE:
                self._left = _chunk_size(line)
                self._state = self._DATA_END if self._left else self._TRAILER
            elif self._state == self._DATA_END:
                if line:
                    raise ProbeFailed(Reason.PROTOCOL, "malformed chunked body: no CRLF after chunk data")
                self._state = self._SIZE
            elif not line:              # the blank line after the trailers
                return True
        del buf[:pos]
        return False


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    try:
        if not text or text[:1] in b"+-" or b"_" in text:
            raise ValueError
        return int(text, 16)
    except ValueError:
        raise ProbeFailed(Reason.PROTOCOL, f"malformed chunk size line {line[:40]!r}") from None


class ResponseReader(asyncio.Protocol):
    """Receives one response. `done` resolves (to None) when the body is complete or on
    failure; then `response` or `error` is set. Timestamps are perf_counter() values."""

    def __init__(self, done: asyncio.Future[None], *, head_request: bool, keep_body: bool, body_limit: int,
                 trace: PhaseTrace | None = None) -> None:
        self.done = done
        self._trace = trace
        self.response: Response | None = None
        self.error: BaseException | None = None
        self.first_byte_at = 0.0
        self.finished_at = 0.0
        self._head_request = head_request
        self._limit = body_limit
        self._chunks: list[bytes] | None = [] if keep_body else None
        self._buf = bytearray()
        self._mode = _HEAD
        self._left = 0
        self._decoder: ChunkedDecoder | None = None

    def data_received(self, data: bytes) -> None:
        if self._mode == _DONE or self.done.done():
            return
        if not self.first_byte_at:
            self.first_byte_at = perf_counter()
            if self._trace is not None:     # a timeout from now on is one during transfer
                self._trace.waiting = "during transfer"
        try:
            if self._mode == _HEAD:
                data = self._feed_head(data)
                if self._mode in (_HEAD, _DONE):
                    return
            self._feed_body(data)
        except ProbeFailed as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._end_of_stream()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._fail(exc)
        else:
            self._end_of_stream()

    def _feed_head(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProbeFailed(Reason.PROTOCOL, f"response head larger than {MAX_HEAD_BYTES} bytes")
                return b""
            version, text, status, headers = parse_head(bytes(buf[:end]))
            del buf[:end + 4]
            if 100 <= status < 200 and status != 101:       # interim response: the real one follows
                continue
            self.response = Response(version, text, status, headers)
            self._start_body(self.response)
            return bytes(buf)

    def _start_body(self, response: Response) -> None:
        headers = response.headers
        encoding = headers.get(b"transfer-encoding")
        length = headers.get(b"content-length")
        if length is not None and encoding is None:
            response.content_length = _content_length(length)
        if self._head_request or response.status in (101, 204, 304):
            self._finish()
        elif encoding is not None:
            if encoding.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
                self._mode, self._decoder = _CHUNKED, ChunkedDecoder()
            else:
                self._mode = _UNTIL_CLOSE
        elif length is not None:
            self._mode, self._left = _LENGTH, response.content_length
            if not self._left:
                self._finish()
        else:
            self._mode = _UNTIL_CLOSE

    def _feed_body(self, data: bytes) -> None:
        if self._mode == _LENGTH:
            take = min(len(data), self._left)
            self._count(data if take == len(data) else data[:take])
            self._left -= take
            if not self._left:
                self._finish()
        elif self._mode == _CHUNKED:
            assert self._decoder is not None          # set with the mode, in _start_body
            if self._decoder.feed(data, self._count):
                self._finish()
        else:
            self._count(data)

    def _count(self, piece: bytes | bytearray) -> None:
        size = len(piece)
        if not size:
            return
        assert self.response is not None          # the body is counted only once the head is parsed
        total = self.response.body_length + size
        if self._limit and total > self._limit:
            raise ProbeFailed(Reason.BODY, f"body larger than body_size_limit ({self._limit} bytes)")
        self.response.body_length = total
        if self._chunks is not None:
            self._chunks.append(bytes(piece))

    def _end_of_stream(self) -> None:
        if self._mode == _DONE or self.done.done():
            return
        if self._mode == _UNTIL_CLOSE:
            self._finish()
        elif self._mode == _HEAD:
            where = "inside the response head" if self.first_byte_at else "without a response"
            self._fail(ProbeFailed(Reason.PROTOCOL, f"connection closed {where}"))
        else:
            assert self.response is not None
            self._fail(ProbeFailed(Reason.PROTOCOL, f"connection closed after {self.response.body_length} "
                                                  "body bytes, before the end of the body"))

    def _finish(self) -> None:
        self._mode = _DONE
        self.finished_at = perf_counter()
        if self._chunks is not None:
            assert self.response is not None
            self.response.body = b"".join(self._chunks)
        if not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._mode = _DONE
        if not self.done.done():
            self.error = exc
            self.done.set_result(None)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to send: where, the bytes, and how to read the answer."""

    host: str                           # a name, or an IP literal (then nothing is resolved)
    port: int
    is_ip: bool
    request: bytes
    tls: ssl.SSLContext | None = None   # None: plain http
    server_name: str | None = None      # SNI and certificate name; default `host`
    head_request: bool = False
    keep_body: bool = False
    body_limit: int = 0                 # 0: no limit
    ip: IpOptions = IpOptions()         # which address of the host (preferred_ip_protocol, ...)


async def exchange(how: Exchange, trace: PhaseTrace, keep: Callable[[Response | None], None]) -> Response:
    """One request on a fresh connection; phases are added to `trace`. The response (complete, or
    partial when the body failed or the deadline passed) is handed to `keep` before this returns or
    raises, so that a failed probe still reports the status it saw."""
    loop = asyncio.get_running_loop()
    address = await _resolve(how, trace)
    reader = ResponseReader(loop.create_future(), head_request=how.head_request, keep_body=how.keep_body,
                            body_limit=how.body_limit, trace=trace)
    transport: asyncio.Transport | None = None
    tls_facts: TlsFacts = (None, None)
    leaf: list[TlsLeaf | None] = [None]
    try:
        transport, tls_facts = await _connect(loop, address, how, reader, trace, leaf)
        trace.enter("processing")
        transport.write(how.request)
        sent = perf_counter()
        await reader.done
    finally:
        response = reader.response
        if response is not None:
            response.tls_version, response.cert_expiry = tls_facts
            response.tls_leaf = leaf[0]
        keep(response)
        if transport is not None and reader.finished_at:
            transport.close()
        elif transport is not None:
            transport.abort()           # no waiting for a TLS close_notify on a failed exchange
    if reader.error is not None:
        raise reader.error
    assert response is not None         # done without an error: the response is complete
    trace.add("processing", reader.first_byte_at - sent)
    trace.add("transfer", reader.finished_at - reader.first_byte_at)
    trace.log(f"response {response.version_text} {response.status}, {response.body_length} body bytes")
    return response


async def _connect(loop: asyncio.AbstractEventLoop, address: str, how: Exchange, reader: ResponseReader,
                   trace: PhaseTrace, leaf: list[TlsLeaf | None]) -> tuple[asyncio.Transport, TlsFacts]:
    """TCP connect, then the TLS handshake for https: (transport, (tls version, cert expiry)); the leaf
    certificate lands in leaf[0].
    On failure or cancellation asyncio closes the half-made connection itself."""
    started = trace.enter("connect")
    transport, _ = await loop.create_connection(lambda: reader, address, how.port)
    trace.done("connect", started)
    trace.log(f"connected to {address} port {how.port}")
    if how.tls is None:
        return transport, (None, None)
    trace.enter("tls")
    if reader.first_byte_at:
        # an SSH or SMTP banner, garbage: bytes TLS will never see, and a server that then waits would
        # hold the handshake until the deadline. Not a TLS server: fail now, and close what we opened.
        transport.abort()
        raise ProbeFailed(Reason.TLS, "TLS handshake: the server sent something else before the handshake (not TLS?)")
    started = perf_counter()
    tls_transport = await loop.start_tls(transport, reader, how.tls, server_hostname=how.server_name or how.host)
    assert tls_transport is not None
    trace.done("tls", started)
    ssl_object = tls_transport.get_extra_info("ssl_object")
    facts = peer_info(ssl_object)
    leaf[0] = leaf_of(ssl_object, how.tls.verify_mode != ssl.CERT_NONE)
    trace.log(f"TLS handshake done: {facts[0]}")
    return tls_transport, facts


async def _resolve(how: Exchange, trace: PhaseTrace) -> str:
    """The address to connect to (an IP literal too goes through ipproto, for its family), timed as the
    resolve phase."""
    return await resolve(how.host, how.port, how.ip, trace)
