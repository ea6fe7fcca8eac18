"""The Sentry benchmark's side processes (bench/sentry.py starts them, pinned):

    python bench/sentry_load.py ceiling [--parse-event]
        core 0: the parse-only ceiling, an aiohttp app on uvloop that reads the body (aiohttp undoes the
        gzip, as it does for the agent), splits the envelope (header and item headers parsed as JSON,
        each payload cut by its `length`) and answers {"id": event_id}; with --parse-event it also
        orjson.loads each event payload. Prints "PORT n".
    python bench/sentry_load.py load --url URL --start-at UNIX --warmup S --window S --connections N --base T
        core 1: the load generator; prints one JSON object when done.

The load generator: bench/ingest_load.py's closed loop (bench/load.py's lean keep-alive HttpConnection on
uvloop), N connections, each POSTing one gzip envelope of one error event (bench/sentry_events.py: the real
sentry-python's envelope, a new event id each time) to /api/1/envelope/ with the headers sentry-python
sends. An event counts when its request is answered 200 inside [start-at + warmup, start-at + warmup + window].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.ingest_load import add_load_arguments  # noqa: E402

KEY = "0123456789abcdef0123456789abcdef"
PATH = "/api/1/envelope/"


def split_envelope(body: bytes, parse_event: bool) -> str:
    """The envelope's items cut by their lengths (what any Sentry server must do first); the event id."""
    end = body.index(b"\n")
    header = orjson.loads(body[:end])
    pos = end + 1
    while pos < len(body):
        end = body.find(b"\n", pos)
        item = orjson.loads(body[pos:end])
        length = item["length"]
        payload = body[end + 1:end + 1 + length]
        if parse_event and item["type"] == "event":
            orjson.loads(payload)
        pos = end + 1 + length + 1
    return header["event_id"]


async def ceiling_server(parse_event: bool) -> None:
    import gc

    from aiohttp import web

    from bench.ingest_load import serve

    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)

    async def handle(request: web.Request) -> web.Response:
        event_id = split_envelope(await request.read(), parse_event)
        return web.Response(body=orjson.dumps({"id": event_id}), content_type="application/json")

    app = web.Application(client_max_size=20 * 1024 * 1024)
    app.router.add_post(PATH, handle)
    await serve(app)


async def load(args: argparse.Namespace) -> dict:
    from bench.ingest_load import closed_loop, host_port
    from bench.sentry_events import Bodies

    host, port = host_port(args.url)
    bodies = Bodies()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-sentry-envelope\r\n"
            "Content-Encoding: gzip\r\nUser-Agent: sentry.python/2.76.0\r\n"
            f"X-Sentry-Auth: Sentry sentry_key={KEY}, sentry_version=7, sentry_client=sentry.python/2.76.0\r\n"
            "Content-Length: {}\r\n\r\n")

    def request_of(n: int) -> bytes:
        body = bodies.body(n)
        return head.format(len(body)).encode() + body

    stats = await closed_loop(args, host, port, request_of, lambda answer: 1)    # one event per envelope
    return {**stats, "body_bytes": bodies.uncompressed, "body_gzip_bytes": bodies.compressed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("ceiling", "load"))
    parser.add_argument("--parse-event", action="store_true")
    add_load_arguments(parser)
    args = parser.parse_args()
    import uvloop

    if args.role == "ceiling":
        uvloop.run(ceiling_server(args.parse_event))
    else:
        json.dump(uvloop.run(load(args)), sys.stdout)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
