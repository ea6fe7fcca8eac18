"""The PostHog benchmark's side processes (bench/posthog.py starts them, pinned):

    python bench/posthog_load.py ceiling
        core 0: the parse-only ceiling, an aiohttp app on uvloop that reads the body, gunzips it (bounded,
        as the agent does) and orjson.loads the 50 events, answers {"status": 1}. Prints "PORT n".
    python bench/posthog_load.py load --url URL --start-at UNIX --warmup S --window S --connections N --base T
        core 1: the load generator; prints one JSON object when done.

The load generator: bench/ingest_load.py's closed loop (bench/load.py's keep-alive HttpConnection on uvloop),
N connections, each POSTing a posthog-js-shaped batch (bench/posthog_events.py: 50 events of ~40 properties,
new uuids each time, gzip) to /e/ as text/plain without ?compression=, as posthog-js >= 1.398.2 does. The
50 events of a request count when it is answered 200 inside [start-at + warmup, start-at + warmup + window].
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.ingest_load import run_role  # noqa: E402

PATH = "/e/"
LIMIT = 10 * 1024 * 1024


async def ceiling_server() -> None:
    import gc
    import zlib

    from aiohttp import web

    from bench.ingest_load import serve

    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)

    async def handle(request: web.Request) -> web.Response:
        inflater = zlib.decompressobj(wbits=31)
        orjson.loads(inflater.decompress(await request.read(), LIMIT + 1))
        return web.Response(body=b'{"status":1}', content_type="application/json")

    app = web.Application(client_max_size=LIMIT)
    app.router.add_post(PATH, handle)
    await serve(app)


async def load(args: argparse.Namespace) -> dict:
    from bench.ingest_load import closed_loop, host_port
    from bench.posthog_events import EVENTS_PER_BATCH, Batches

    host, port = host_port(args.url)
    batches = Batches()
    head = (f"POST {PATH}?ver=1.449.2&_={{}} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/plain\r\n"
            "Origin: https://app.example.com\r\nContent-Length: {}\r\n\r\n")

    def request_of(n: int) -> bytes:
        body = batches.body(n)
        return head.format(int(time.time() * 1000), len(body)).encode() + body

    stats = await closed_loop(args, host, port, request_of, lambda answer: EVENTS_PER_BATCH)
    return {**stats, "body_bytes": batches.uncompressed, "body_gzip_bytes": batches.compressed}


def main() -> None:
    run_role(__doc__ or "", ceiling_server, load)


if __name__ == "__main__":
    main()
