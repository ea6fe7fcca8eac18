"""The OTLP benchmark's side processes (bench/otlp.py starts them, pinned):

    python bench/otlp_load.py ceiling
        core 0: the protobuf-parse-only ceiling, an aiohttp app on uvloop with /v1/metrics and /v1/traces that
        read the body, ParseFromString it into the Export*ServiceRequest and answer the empty Export*Response
        (application/x-protobuf). Prints "PORT n".
    python bench/otlp_load.py load --url URL/v1/metrics|/v1/traces --start-at UNIX --warmup S --window S ...
        core 1: the load generator (bench/ingest_load.py's closed loop); the URL's path says the signal.

The bodies are what an SDK's OTLP/HTTP exporter sends without compression (its default): 1,000 metric points
or 512 spans (bench/otlp_payloads.py), a pool of 32 built before the window and sent in turn. The metric
bodies share their timestamps (a cumulative point as new as its series' last is accepted: the whole path
runs for every point, as for a retried export). A request's items count when it is answered 200 inside the
window, minus the items its partial_success says were rejected.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb  # noqa: E402

from bench.ingest_load import run_role  # noqa: E402

POOL = 32
LIMIT = 64 * 1024 * 1024
SIGNALS = {"/v1/metrics": (mpb.ExportMetricsServiceRequest, mpb.ExportMetricsServiceResponse),
           "/v1/traces": (tpb.ExportTraceServiceRequest, tpb.ExportTraceServiceResponse)}


async def ceiling_server() -> None:
    import gc

    from aiohttp import web

    from bench.ingest_load import serve

    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)

    def handler(request_type, response_type):
        answer = response_type().SerializeToString()

        async def handle(request: web.Request) -> web.Response:
            request_type().ParseFromString(await request.read())
            return web.Response(body=answer, content_type="application/x-protobuf")
        return handle

    app = web.Application(client_max_size=LIMIT)
    for path, (request_type, response_type) in SIGNALS.items():
        app.router.add_post(path, handler(request_type, response_type))
    await serve(app)


def bodies(path: str) -> tuple[list[bytes], int]:
    from bench.otlp_payloads import POINTS_PER_REQUEST, SPANS_PER_REQUEST, MetricBodies, spans_body

    if path == "/v1/metrics":
        metrics = MetricBodies()
        return [metrics.body(0, value_seed=i) for i in range(POOL)], POINTS_PER_REQUEST
    return [spans_body(i) for i in range(POOL)], SPANS_PER_REQUEST


async def load(args: argparse.Namespace) -> dict:
    from bench.ingest_load import closed_loop, host_port

    host, port = host_port(args.url)
    path = "/" + args.url.split("//", 1)[1].split("/", 1)[1]
    pool, items = bodies(path)
    response_type = SIGNALS[path][1]
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-protobuf\r\n"
            "User-Agent: OTel-OTLP-Exporter-Python/1.45.2\r\nContent-Length: {}\r\n\r\n")
    requests = [head.format(len(body)).encode() + body for body in pool]

    def accepted(answer: bytes) -> int:
        partial = response_type.FromString(answer).partial_success
        return items - (partial.rejected_data_points if path == "/v1/metrics" else partial.rejected_spans)

    stats = await closed_loop(args, host, port, lambda n: requests[n % len(requests)], accepted)
    return {**stats, "body_bytes": sum(map(len, pool)) // len(pool), "items_per_request": items}


def main() -> None:
    run_role(__doc__ or "", ceiling_server, load)


if __name__ == "__main__":
    main()
