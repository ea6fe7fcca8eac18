"""/-/healthy, /-/ready, /-/reload and /metrics: the Prometheus-style lifecycle endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from agent.api.exposition import exposition_response
from agent.api.keys import METRICS, OTLP_METRICS, REGISTRY, RELOADER, RUNTIME
from agent.api.problems import BadRequest, ServiceUnavailable


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.scheduler is None:
        raise ServiceUnavailable("Not ready: starting.", plain=True)
    return web.Response(text="Ready.\n")


async def reload(request: web.Request) -> web.Response:
    reloader = request.app[RELOADER]
    if await reloader.reload():
        return web.json_response({"status": "success", "targets": len(reloader.config.targets)})
    raise ReloadRefused("the new configuration is invalid; the running one is kept", reloader.last_errors)


class ReloadRefused(BadRequest):
    """The reload endpoint's documented 400: `{"status": "error", "error", "errors": [config errors]}`
    (the same "status" field as its 200), the errors one line each as check-config prints them."""

    def __init__(self, message: str, config_errors: Sequence[str]) -> None:
        super().__init__(message)
        self.config_errors = list(config_errors)

    def body(self) -> dict[str, Any]:
        return {"status": "error", "error": self.message, "errors": self.config_errors}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)        # as its 200 is written


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    received = request.app.get(OTLP_METRICS)          # OTLP metric points as Prometheus series
    renderers = (runtime.probe_metrics.render,) if received is None else (runtime.probe_metrics.render,
                                                                          received.render)
    return exposition_response(request, request.app[REGISTRY], request.app.get(METRICS), renderers=renderers)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/metrics", metrics)
