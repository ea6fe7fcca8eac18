"""Reference probers: the CPU a plain Python HTTP prober costs, with nothing else in the process.

    python bench/reference.py --client aiohttp|protocol --url URL --rate R
                              --start-at UNIX --warmup S --window S [--event-loop uvloop|asyncio]

  aiohttp   the obvious way: one aiohttp.ClientSession with `force_close=True` (a new
            connection per request), read the body, check the status
  protocol  the floor: `loop.create_connection()` with a bare asyncio Protocol that writes a
            GET and waits for the server to close; no parsing, timers, timeouts or metrics

Requests are fired open-loop at --rate; completions inside the window are counted so the
caller can read this process's CPU from /proc at the window edges. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit


class _BareProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future):
        self.request, self.done, self.received = request, done, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)        # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.received.startswith(b"HTTP/1.1 200 "))


def protocol_client(url: str) -> tuple[Callable[[], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
               f"Host: {parts.netloc}\r\nConnection: close\r\n\r\n").encode()

    async def one() -> bool:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        await loop.create_connection(lambda: _BareProtocol(request, done), parts.hostname, parts.port)
        return await done

    async def close() -> None:
        return None

    return one, close


def aiohttp_client(url: str) -> tuple[Callable[[], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0),
                                    timeout=aiohttp.ClientTimeout(total=5))

    async def one() -> bool:
        async with session.get(url) as response:
            await response.read()
            return response.status == 200

    return one, session.close


async def run(args: argparse.Namespace) -> dict:
    window_start = args.start_at + args.warmup
    window_end = window_start + args.window
    counts = {"completed": 0, "ok": 0, "failed": 0}
    one, close = (aiohttp_client if args.client == "aiohttp" else protocol_client)(args.url)

    async def probe() -> None:
        try:
            ok = await one()
        except (OSError, asyncio.TimeoutError, Exception):     # noqa: BLE001 - any failure is a failed probe
            ok = False
        if window_start <= time.time() <= window_end:
            counts["completed"] += 1
            counts["ok" if ok else "failed"] += 1

    tasks: set[asyncio.Task] = set()
    slot = args.start_at
    while slot < window_end:
        delay = slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(probe())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        slot += 1 / args.rate
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    await close()
    return {**counts, "client": args.client, "window_seconds": args.window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("aiohttp", "protocol"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.event_loop == "uvloop":
        import uvloop

        result = uvloop.run(run(args))
    else:
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
