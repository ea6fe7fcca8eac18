"""The probe target of the benchmark: a raw-asyncio HTTP/1.1 server, run as its own process.

    python bench/targets.py [--event-loop uvloop|asyncio]

Prints `PORT <n>` on stdout once it listens on 127.0.0.1:<port 0>. Every request gets one
response and the connection is closed (the probers under test use a fresh connection per
probe anyway):

  GET /delay/<ms>[?...]  sleeps <ms> milliseconds, then answers 200 "ok"; the server records
                         the request's handling time (complete request head received ->
                         response handed to the socket), its arrival (unix time) and query
  GET /__stats[?reset=1] JSON {"requests": n, "by_key": {first query parameter name: n},
                         "delayed": [[arrival, handling_s, query], ...]}; reset=1 clears the
                         delayed records (the request counters never reset)
  GET anything else      200 "ok" at once

The /__stats request itself is not counted in `requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 16384


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.by_key: dict[str, int] = {}          # requests by the name of their first query parameter
        self.delayed: list[tuple[float, float, str]] = []

    def count(self, query: str) -> None:
        self.requests += 1
        key = query.partition("=")[0]
        self.by_key[key] = self.by_key.get(key, 0) + 1

    def body(self, reset: bool) -> bytes:
        text = json.dumps({"requests": self.requests, "by_key": self.by_key, "delayed": self.delayed}).encode()
        if reset:
            self.delayed = []
        return text


class Handler(asyncio.Protocol):
    def __init__(self, stats: Stats):
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._send(BAD)
            return
        self.answered = True
        received = time.perf_counter()
        line = self.buf[:self.buf.find(b"\r\n")].split(b" ")
        target = line[1].decode("latin-1") if len(line) == 3 else ""
        path, _, query = target.partition("?")
        if path == "/__stats":
            body = self.stats.body("reset=1" in query)
            self._send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                       b"Connection: close\r\n\r\n%s" % (len(body), body))
            return
        self.stats.count(query)
        if path.startswith("/delay/"):
            try:
                delay = int(path[len("/delay/"):]) / 1000
            except ValueError:
                self._send(BAD)
                return
            asyncio.get_running_loop().call_later(delay, self._delayed, received, time.time(), query)
        else:
            self._send(OK)

    def _delayed(self, received: float, arrival: float, query: str) -> None:
        self._send(OK)
        self.stats.delayed.append((arrival, time.perf_counter() - received, query))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve() -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Handler(stats), "127.0.0.1", 0, backlog=4096, reuse_address=True)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
