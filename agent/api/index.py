"""`GET /`: the status page (HTML, no external assets), and `GET /api/status`: the same report as JSON.

Both are public like /metrics (they show what /metrics shows, plus failure details and the names of
active anomalies). Each load builds the report from memory; the one SQL query, the 24 h uptime, runs
at most every 30 s in the background (agent/status/uptime.py), so `/` stays fast with many targets.

The page's own state (a ProbeHistory fed by the probe results, the uptime cache) is built by the
composition root.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from agent import __version__
from agent.api.keys import ANOMALIES, EVENT_STORE, RUNTIME, STATUS_HISTORY, UPTIME_CACHE
from agent.status.model import StatusReport, build_report
from agent.status.page import render_page


async def index(request: web.Request) -> web.Response:
    report = await current_report(request.app)
    response = web.Response(text=render_page(report), content_type="text/html",
                            headers={"Cache-Control": "no-store"})
    response.enable_compression()          # ~10x smaller for a phone, when the client accepts it
    return response


async def status(request: web.Request) -> web.Response:
    report = await current_report(request.app)
    return web.Response(body=orjson.dumps(report.to_json()), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def current_report(app: web.Application) -> StatusReport:
    store = app[EVENT_STORE].store
    cache = app[UPTIME_CACHE]
    rows = await cache.get(store) if store is not None else None
    runtime = app[RUNTIME]
    return build_report(version=__version__, now=time.time(), last_results=runtime.probe_metrics.last_results(),
                        history=app[STATUS_HISTORY], uptime_rows=rows, store_configured=store is not None,
                        uptime_error=cache.error if store is not None else None, monitor=app[ANOMALIES])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/api/status", status)

