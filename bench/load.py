"""Load driver: issues blackbox-style `/probe` requests to an exporter, run as its own process.

    python bench/load.py --exporter http://127.0.0.1:PORT --target URL --mode MODE
                         --start-at UNIX --warmup S --window S [--rate R] [--concurrency C]

A lean keep-alive HTTP/1.1 client (an asyncio Protocol on uvloop), so the driver spends as
little of its core as possible. Requests start at --start-at; only those COMPLETED inside the
window [start-at + warmup, start-at + warmup + window] are counted, so the caller can read the
exporter's CPU from /proc at exactly those instants. Modes:

  serial  one connection, one request at a time, paced at --rate
  burst   --concurrency connections; every concurrency/rate seconds all of them fire at once
          (what a Prometheus with that many synchronised /probe jobs does); mean rate --rate
  open    open loop at --rate: each request goes out at its slot on an idle connection
          (a new one when none is idle); used for latency
  max     --concurrency closed-loop workers, as fast as the exporter answers

`{id}` in --target is replaced by the request's sequence number (to match server-side records).
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from urllib.parse import quote, urlsplit

_DURATION = re.compile(rb"^probe_duration_seconds ([0-9.eE+-]+)$", re.M)


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; `request()` sends a GET and returns (status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.buf = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is not None and self.waiter is not None and not self.waiter.done():
            status, body, used = parsed
            del self.buf[:used]
            self.waiter.set_result((status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def parse_response(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the complete response at the start of buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    start = end + 4
    marker = head.find(b"content-length:")
    if marker >= 0:
        line_end = head.find(b"\r\n", marker)
        length = int(head[marker + 15:line_end if line_end > 0 else len(head)])
        if len(buf) < start + length:
            return None
        return status, bytes(buf[start:start + length]), start + length
    if b"transfer-encoding: chunked" in head:
        return _parse_chunked(buf, status, start)
    raise ValueError("response without Content-Length or chunked encoding")


def _parse_chunked(buf: bytearray, status: int, pos: int) -> tuple[int, bytes, int] | None:
    body = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:                                  # last chunk: then trailers, ended by an empty line
            if buf[pos:pos + 2] == b"\r\n":
                return status, bytes(body), pos + 2
            end = buf.find(b"\r\n\r\n", pos)
            return None if end < 0 else (status, bytes(body), end + 4)
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos:pos + size]
        pos += size + 2


class Driver:
    def __init__(self, args: argparse.Namespace):
        url = urlsplit(args.exporter)
        self.host, self.port = url.hostname, url.port
        self.target = args.target
        self.module = args.module
        self.window_start = args.start_at + args.warmup
        self.window_end = self.window_start + args.window
        self.parse = args.durations
        self.seq = 0
        self.issued = 0
        self.completed = self.ok = self.failed = self.late = 0
        self.durations: list[tuple[str, float]] = []
        self.errors: list[str] = []
        self.idle: list[HttpConnection] = []

    def next_request(self) -> tuple[bytes, str]:
        self.seq += 1
        ident = str(self.seq)
        target = self.target.replace("{id}", ident)
        path = f"/probe?target={quote(target, safe='')}&module={self.module}"
        return (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUser-Agent: loom-bench\r\n"
                f"Accept: text/plain\r\n\r\n").encode(), ident

    async def connect(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(HttpConnection, self.host, self.port)
        return conn

    async def one(self, conn: HttpConnection) -> None:
        raw, ident = self.next_request()
        self.issued += 1
        try:
            status, body = await conn.request(raw)
        except (OSError, ValueError) as exc:
            self._record(False, ident, None, f"{type(exc).__name__}: {exc}")
            return
        ok = status == 200 and b"\nprobe_success 1" in body
        duration = None
        if self.parse:
            match = _DURATION.search(body)
            duration = float(match.group(1)) if match else None
        self._record(ok, ident, duration, None if ok else f"status {status}: {body[:200]!r}")

    def _record(self, ok: bool, ident: str, duration: float | None, error: str | None) -> None:
        now = time.time()
        if not self.window_start <= now <= self.window_end:
            return
        self.completed += 1
        if ok:
            self.ok += 1
        else:
            self.failed += 1
            if len(self.errors) < 5 and error:
                self.errors.append(error)
        if duration is not None:
            self.durations.append((ident, duration))

    async def conn(self) -> HttpConnection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        return await self.connect()

    async def one_pooled(self) -> None:
        conn = await self.conn()
        await self.one(conn)
        if not conn.closed:
            self.idle.append(conn)


async def sleep_until(unix: float) -> None:
    delay = unix - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_serial(d: Driver, rate: float) -> None:
    slot = time.time()
    while slot < d.window_end:
        await sleep_until(slot)
        if time.time() > slot + 1 / rate:
            d.late += 1
        await d.one_pooled()
        slot += 1 / rate


async def run_burst(d: Driver, rate: float, size: int) -> None:
    conns = [await d.connect() for _ in range(size)]
    d.idle.extend(conns)
    slot = time.time()
    while slot < d.window_end:
        await sleep_until(slot)
        if time.time() > slot + size / rate:
            d.late += 1
        await asyncio.gather(*(d.one_pooled() for _ in range(size)))
        slot += size / rate


async def run_open(d: Driver, rate: float) -> None:
    tasks = set()
    slot = time.time()
    while slot < d.window_end:
        await sleep_until(slot)
        task = asyncio.create_task(d.one_pooled())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        slot += 1 / rate
    if tasks:
        await asyncio.wait(tasks, timeout=10)


async def run_max(d: Driver, concurrency: int) -> None:
    async def worker() -> None:
        conn = await d.connect()
        while time.time() < d.window_end:
            if conn.closed:
                conn = await d.connect()
            await d.one(conn)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def drive(args: argparse.Namespace) -> dict:
    d = Driver(args)
    await sleep_until(args.start_at)
    if args.mode == "serial":
        await run_serial(d, args.rate)
    elif args.mode == "burst":
        await run_burst(d, args.rate, args.concurrency)
    elif args.mode == "open":
        await run_open(d, args.rate)
    else:
        await run_max(d, args.concurrency)
    return {"mode": args.mode, "issued": d.issued, "completed": d.completed, "ok": d.ok, "failed": d.failed,
            "late_slots": d.late, "window_seconds": args.window, "durations": d.durations, "errors": d.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", required=True, help="base URL of the exporter (blackbox or agent)")
    parser.add_argument("--target", required=True, help="URL to probe; {id} becomes a sequence number")
    parser.add_argument("--module", default="http_2xx")
    parser.add_argument("--mode", choices=("serial", "burst", "open", "max"), required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--durations", action="store_true", help="parse probe_duration_seconds of each reply")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(drive(args))
    json.dump(result, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
