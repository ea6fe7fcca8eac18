"""/metrics and /probe bodies: the text format, or OpenMetrics when the scraper's Accept asks for it; gzip.

The format is chosen with prometheus_client's `choose_encoder()` rules (OpenMetrics for
`application/openmetrics-text` without a version or with version >= 1.0.0, else text 0.0.4);
the body comes from `agent.metrics.exposition.render`, which writes OpenMetrics 1.0.0 and text 0.0.4.
Prometheus sends `Accept-Encoding: gzip`; the body is compressed at zlib level 1: at 100k series
about 11 ms against level 6's 30 ms, for a body 1.2x larger (bench/RESULTS.md, "Exposition").
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

from agent.metrics.exposition import render
from agent.metrics.store import MetricStore

GZIP_LEVEL = 1
GZIP_WBITS = 31            # zlib's gzip container


def negotiate(accept: str) -> tuple[bool, str]:
    """(OpenMetrics?, Content-Type) for an Accept header."""
    _, content_type = choose_encoder(accept)
    if content_type.startswith("application/openmetrics-text"):
        return True, OPENMETRICS_CONTENT_TYPE
    return False, CONTENT_TYPE_PLAIN_0_0_4


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether `gzip` is listed in Accept-Encoding with a non-zero quality."""
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def gzip(body: bytes) -> bytes:
    return zlib.compress(body, GZIP_LEVEL, wbits=GZIP_WBITS)


def exposition_response(request: web.Request, registry: CollectorRegistry | None,
                        store: MetricStore | None = None,
                        renderers: Sequence[Callable[[bool], str]] = ()) -> web.Response:
    openmetrics, content_type = negotiate(request.headers.get("Accept", ""))
    body = render(store, registry, openmetrics=openmetrics, renderers=renderers)
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body = gzip(body)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)
