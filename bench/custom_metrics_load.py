"""The custom-metrics benchmark's side processes (bench/custom_metrics.py starts them, pinned):

    python bench/custom_metrics_load.py http-ceiling   # core 0: aiohttp + orjson.loads + a counter; prints "PORT n"
    python bench/custom_metrics_load.py udp-ceiling    # core 0: asyncio UDP server that splits and parses StatsD
                                                       # lines and counts them; prints "PORT udp http"
    python bench/custom_metrics_load.py http-load --url URL --start-at T --warmup S --window S --connections N
    python bench/custom_metrics_load.py udp-send --port P --start-at T --warmup S --window S --lines-per-datagram N

The HTTP load generator keeps N keep-alive connections busy (closed loop) POSTing the same batches
of 100 mixed metrics to /v1/metrics and counts `accepted` from the answers completed inside the
window. The UDP sender writes datagrams of StatsD lines as fast as it can (open loop: what the server
cannot take, the kernel drops) and reports what it sent; what was processed is read from the server.
Both print one JSON object when done. Every server binds 127.0.0.1 on port 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import promtext  # noqa: E402
from bench.processes import cpu_seconds  # noqa: E402

BATCH = 100
DATAGRAM_BYTES = 1432        # DogStatsD clients' default buffer: one Ethernet MTU of payload
PLANS, SOURCES = ("free", "pro", "team"), ("ads", "organic", "referral", "partner")
ROUTES = ("/api/goals", "/api/sessions", "/api/resources", "/api/tasks", "/api/files")


def metric_batch(seed: int) -> list[dict]:
    """100 metrics as an application would send them: tagged counters, gauges and distributions in ms/kB."""
    out = []
    for i in range(BATCH):
        n = seed * BATCH + i
        plan, source, route = PLANS[n % 3], SOURCES[n % 4], ROUTES[n % 5]
        kind = n % 5
        if kind == 0:
            out.append({"name": "checkout.completed", "type": "counter", "value": 1,
                        "tags": {"plan": plan, "source": source}})
        elif kind == 1:
            out.append({"name": "api.latency", "type": "distribution", "value": 5 + n % 400, "unit": "millisecond",
                        "tags": {"route": route, "method": "GET" if n % 2 else "POST"}})
        elif kind == 2:
            out.append({"name": "queue.depth", "type": "gauge", "value": n % 50, "tags": {"queue": "emails"}})
        elif kind == 3:
            out.append({"name": "upload.size", "type": "distribution", "value": 1 + n % 900, "unit": "kilobyte"})
        else:
            out.append({"name": "conversions", "type": "counter", "value": 1, "tags": {"type": f"trial_{plan}"}})
    return out


def statsd_lines(count: int) -> list[bytes]:
    """StatsD/DogStatsD lines with the same names and shapes as `metric_batch` (one registry for both)."""
    out = []
    for n in range(count):
        plan, source, route = PLANS[n % 3], SOURCES[n % 4], ROUTES[n % 5]
        kind = n % 5
        if kind == 0:
            line = f"checkout.completed:1|c|#plan:{plan},source:{source}"
        elif kind == 1:
            line = f"api.latency:{5 + n % 400}|ms|#route:{route},method:{'GET' if n % 2 else 'POST'}"
        elif kind == 2:
            line = f"queue.depth:{n % 50}|g|#queue:emails"
        elif kind == 3:
            line = f"render.time:{1 + n % 90}|ms|@0.5"
        else:
            line = f"conversions:1|c|#type:trial_{plan}"
        out.append(line.encode())
    return out


def datagrams(lines_per_datagram: int) -> list[tuple[bytes, int]]:
    """(datagram, lines in it): `lines_per_datagram` lines each, or (0) as many as fit DATAGRAM_BYTES."""
    lines = statsd_lines(1000)
    out, chunk = [], []
    for line in lines:
        full = len(chunk) == lines_per_datagram if lines_per_datagram else \
            sum(len(x) + 1 for x in chunk) + len(line) > DATAGRAM_BYTES
        if chunk and full:
            out.append((b"\n".join(chunk), len(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        out.append((b"\n".join(chunk), len(chunk)))
    return out


# --- the ceilings (core 0) ---------------------------------------------------------------------------

async def http_ceiling() -> None:
    from aiohttp import web

    count = [0]

    async def handle(request: web.Request) -> web.Response:
        n = len(orjson.loads(await request.read())["metrics"])
        count[0] += n
        return web.Response(body=orjson.dumps({"accepted": n}), content_type="application/json")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)   # type: ignore[union-attr]
    await asyncio.Event().wait()


class ParseOnly(asyncio.DatagramProtocol):
    """Decode, split lines, split each line's fields and tags, parse the value; count. Nothing else."""

    def __init__(self) -> None:
        self.lines = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        for line in data.decode("utf-8", "replace").split("\n"):
            if not line:
                continue
            name, _, rest = line.partition(":")
            fields = rest.split("|")
            float(fields[0])
            for field in fields[2:]:
                if field.startswith("#"):
                    [tag.partition(":") for tag in field[1:].split(",")]
            self.lines += 1


async def udp_ceiling() -> None:
    from aiohttp import web

    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)    # as the agent does
    sock.bind(("127.0.0.1", 0))
    _, protocol = await loop.create_datagram_endpoint(ParseOnly, sock=sock)

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(protocol.lines))

    app = web.Application()
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]       # type: ignore[union-attr]
    print(f"PORT {sock.getsockname()[1]} {http_port}", flush=True)
    await asyncio.Event().wait()


# --- the load (core 1) ------------------------------------------------------------------------------

async def http_load(args: argparse.Namespace) -> dict:
    from bench.load import HttpConnection

    host, port = args.url.split("//", 1)[1].split(":")
    port = int(port.split("/")[0])
    head = (f"POST /v1/metrics HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "User-Agent: loom-bench\r\nContent-Length: {}\r\n\r\n")
    bodies = [orjson.dumps({"metrics": metric_batch(seed)}) for seed in range(20)]
    raws = [head.format(len(b)).encode() + b for b in bodies]
    window_start, window_end = args.start_at + args.warmup, args.start_at + args.warmup + args.window
    stats = {"metrics": 0, "requests": 0, "failed": 0, "errors": [], "latencies_ms": []}
    seq = [0]
    loop = asyncio.get_running_loop()

    async def client() -> None:
        _, conn = await loop.create_connection(HttpConnection, host, port)
        while time.time() < window_end:
            raw = raws[seq[0] % len(raws)]
            seq[0] += 1
            sent = time.perf_counter()
            status, body = await conn.request(raw)
            done = time.time()
            if not window_start <= done <= window_end:
                continue
            if status == 200:
                stats["metrics"] += orjson.loads(body)["accepted"]
                stats["requests"] += 1
                stats["latencies_ms"].append((time.perf_counter() - sent) * 1000)
            else:
                stats["failed"] += 1
                if len(stats["errors"]) < 3:
                    stats["errors"].append(f"{status}: {body[:300]!r}")

    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    cpu0 = cpu_seconds(os.getpid())
    await asyncio.gather(*(client() for _ in range(args.connections)))
    lat = stats.pop("latencies_ms")
    stats.update(window_seconds=args.window, connections=args.connections, batch=BATCH,
                 metrics_per_second=stats["metrics"] / args.window,
                 batch_ms_p50=promtext.percentile(lat, 0.5), batch_ms_p99=promtext.percentile(lat, 0.99),
                 generator_core_use=(cpu_seconds(os.getpid()) - cpu0) / (time.time() - args.start_at))
    return stats


def udp_send(args: argparse.Namespace) -> dict:
    """Blast datagrams until the window ends; count what was sent inside it."""
    grams = datagrams(args.lines_per_datagram)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", args.port))
    window_start, window_end = args.start_at + args.warmup, args.start_at + args.warmup + args.window
    time.sleep(max(0.0, args.start_at - time.time()))
    sent_lines = sent_datagrams = refused = 0
    i, now = 0, time.time()
    send = sock.send
    while now < window_end:
        for _ in range(64):                 # read the clock once per 64 datagrams
            gram, lines = grams[i % len(grams)]
            i += 1
            try:
                send(gram)
            except OSError:                 # ECONNREFUSED after an ICMP error, ENOBUFS: the server's side
                refused += 1
                continue
            if now >= window_start:
                sent_lines += lines
                sent_datagrams += 1
        now = time.time()
    sock.close()
    per = sum(n for _, n in grams) / len(grams)
    return {"sent_lines": sent_lines, "sent_datagrams": sent_datagrams, "send_errors": refused,
            "lines_per_datagram": round(per, 2), "bytes_per_datagram": round(sum(len(g) for g, _ in grams) / len(grams)),
            "sent_lines_per_second": sent_lines / args.window, "window_seconds": args.window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("http-ceiling", "udp-ceiling", "http-load", "udp-send"))
    parser.add_argument("--url")
    parser.add_argument("--port", type=int)
    parser.add_argument("--start-at", type=float)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--window", type=float)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--lines-per-datagram", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    if args.role == "http-ceiling":
        uvloop.run(http_ceiling())
    elif args.role == "udp-ceiling":
        uvloop.run(udp_ceiling())
    elif args.role == "http-load":
        json.dump(uvloop.run(http_load(args)), sys.stdout)
    else:
        json.dump(udp_send(args), sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
