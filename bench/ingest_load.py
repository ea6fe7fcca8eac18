"""The ingest benchmark's side processes (bench/ingest.py starts them, pinned):

    python bench/ingest_load.py ceiling      # core 0: aiohttp + orjson.loads + a counter; prints "PORT n"
    python bench/ingest_load.py load --url URL --start-at UNIX --warmup S --window S --connections N --base T
                                             # core 1: prints one JSON object when done

The load generator: bench/load.py's lean keep-alive HttpConnection on uvloop, N connections in a
closed loop, each POSTing pre-built requests of 100 events (bench/ingest_events.py) to
/v1/events/batch. Accepted events are read from each response ({"accepted": n}); only responses
completed inside [start-at + warmup, start-at + warmup + window] count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import promtext  # noqa: E402
from bench.ingest_events import bodies, fill  # noqa: E402
from bench.processes import cpu_seconds  # noqa: E402


async def ceiling_server() -> None:
    from aiohttp import web

    count = [0]

    async def handle(request: web.Request) -> web.Response:
        n = len(orjson.loads(await request.read()))
        count[0] += n
        return web.Response(body=orjson.dumps({"accepted": n}), content_type="application/json")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/events/batch", handle)
    await serve(app)


async def serve(app) -> None:
    """Serve the aiohttp `app` on 127.0.0.1:<port 0> for ever, after printing "PORT n"."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)   # type: ignore[union-attr]
    await asyncio.Event().wait()


async def load(args: argparse.Namespace) -> dict:
    host, port = host_port(args.url)
    head = (f"POST /v1/events/batch HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "User-Agent: loom-bench\r\nContent-Length: {}\r\n\r\n")
    raws = [head.format(len(b)).encode() + b for b in bodies(args.base)]
    return await closed_loop(args, host, port, lambda n: fill(raws[n % len(raws)], n // len(raws)),
                             lambda body: orjson.loads(body)["accepted"])


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split(":")
    return host, int(port.split("/")[0])


async def closed_loop(args: argparse.Namespace, host: str, port: int, request_of: Callable[[int], bytes],
                      events_of: Callable[[bytes], int]) -> dict:
    """`args.connections` keep-alive connections each sending request_of(n) (the whole raw request, n counting
    up across them) until the window's end; the events of each 200 answered inside the window (events_of its
    body) are counted, with its latency. Returns the figures as JSON-ready values."""
    from bench.load import HttpConnection

    window_start, window_end = args.start_at + args.warmup, args.start_at + args.warmup + args.window
    stats = {"events": 0, "requests": 0, "failed": 0, "errors": [], "latencies_ms": []}
    seq = [0]
    loop = asyncio.get_running_loop()

    async def client() -> None:
        _, conn = await loop.create_connection(HttpConnection, host, port)
        while time.time() < window_end:
            n = seq[0]
            seq[0] += 1
            raw = request_of(n)
            sent = time.perf_counter()
            status, body = await conn.request(raw)
            done = time.time()
            if not window_start <= done <= window_end:
                continue
            if status == 200:
                stats["events"] += events_of(body)
                stats["requests"] += 1
                stats["latencies_ms"].append((time.perf_counter() - sent) * 1000)
            else:
                stats["failed"] += 1
                if len(stats["errors"]) < 3:
                    stats["errors"].append(f"{status}: {body[:300]!r}")

    delay = args.start_at - time.time()
    await asyncio.sleep(max(0.0, delay))
    cpu0 = cpu_seconds(os.getpid())
    await asyncio.gather(*(client() for _ in range(args.connections)))
    lat = stats.pop("latencies_ms")
    stats.update(window_seconds=args.window, connections=args.connections, sent=seq[0],
                 events_per_second=stats["events"] / args.window,
                 batch_ms_p50=promtext.percentile(lat, 0.5), batch_ms_p99=promtext.percentile(lat, 0.99),
                 generator_core_use=(cpu_seconds(os.getpid()) - cpu0) / (time.time() - args.start_at))
    return stats


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The load role's options, as bench/ingest.py's drive() passes them."""
    parser.add_argument("--url")
    parser.add_argument("--start-at", type=float)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--window", type=float)
    parser.add_argument("--connections", type=int)
    parser.add_argument("--base", type=float)


def run_role(doc: str, ceiling: Callable[[], Awaitable[None]], load: Callable[[argparse.Namespace], Awaitable[dict]],
             extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """The command line of a load process (this one, posthog_load, otlp_load, flags_load): `ceiling` serves the
    parse-only peer; `load` drives a server and prints its figures as JSON on stdout for the bench to read."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("role", choices=("ceiling", "load"))
    if extra_arguments is not None:
        extra_arguments(parser)
    add_load_arguments(parser)
    args = parser.parse_args()
    import uvloop

    if args.role == "ceiling":
        uvloop.run(ceiling())
    else:
        json.dump(uvloop.run(load(args)), sys.stdout)
        sys.stdout.flush()


def main() -> None:
    run_role(__doc__ or "", ceiling_server, load)


if __name__ == "__main__":
    main()
