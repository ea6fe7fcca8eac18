"""/-/healthy, /-/ready, /-/reload and /metrics: the Prometheus-style lifecycle endpoints."""

from __future__ import annotations

from aiohttp import web

from agent.api.keys import METRICS, REGISTRY, RELOADER, RUNTIME
from agent.api.exposition import exposition_response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.scheduler is None:
        return web.Response(status=503, text="Not ready: starting.\n")
    return web.Response(text="Ready.\n")


async def reload(request: web.Request) -> web.Response:
    reloader = request.app[RELOADER]
    if await reloader.reload():
        return web.json_response({"status": "success", "targets": len(reloader.config.targets)})
    return web.json_response(
        {"status": "error", "error": "the new configuration is invalid; the running one is kept",
         "errors": reloader.last_errors}, status=400)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return exposition_response(request, request.app[REGISTRY], request.app.get(METRICS),
                               renderers=(runtime.probe_metrics.render,))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/metrics", metrics)
