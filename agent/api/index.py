"""`GET /`: the status page (HTML, no external assets), and `GET /api/status`: the same report as JSON.

Both are public like /metrics (they show what /metrics shows, plus failure details and the names of
active anomalies). Each load builds the report from memory; the one SQL query, the 24 h uptime, runs
at most every 30 s in the background (agent/status/uptime.py), so `/` stays fast with many targets.

`add_routes` also wires the page's own state: a ProbeHistory fed by the runtime's result observers
(pruned on reload) and the uptime cache, whose refresh is cancelled at shutdown before the store closes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from agent import __version__
from agent.api import EVENT_STORE, RUNTIME
from agent.api.anomalies import ANOMALIES
from agent.status.history import ProbeHistory
from agent.status.model import StatusReport, build_report
from agent.status.page import render_page
from agent.status.uptime import UptimeCache

HISTORY = web.AppKey("status_history", ProbeHistory)
UPTIME = web.AppKey("status_uptime", UptimeCache)


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
    store = app.get(EVENT_STORE)
    cache = app[UPTIME]
    rows = await cache.get(store) if store is not None else None
    runtime = app[RUNTIME]
    return build_report(version=__version__, now=time.time(), last_results=runtime.probe_metrics.last_results(),
                        history=app[HISTORY], uptime_rows=rows, store_configured=store is not None,
                        uptime_error=cache.error if store is not None else None, monitor=app[ANOMALIES])


def add_routes(app: web.Application) -> None:
    """The routes, and the history and uptime cache they read (call after the runtime is in the app)."""
    runtime = app[RUNTIME]
    history = app[HISTORY] = ProbeHistory()
    runtime.result_observers.append(history.observe)
    runtime.reload_hooks.append(history.reload_hook)
    app[UPTIME] = UptimeCache()
    app.cleanup_ctx.append(_uptime_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/api/status", status)


async def _uptime_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[UPTIME].close()
