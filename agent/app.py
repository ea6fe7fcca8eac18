"""The aiohttp application: routes, and the runtime started and stopped through cleanup_ctx."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.api import RUNTIME, health, index, probe
from agent.config import Config
from agent.runtime import ProbeRuntime
from agent.telemetry import build_tracer_provider

# how long in-flight probes may finish after SIGTERM before they are cancelled
STOP_GRACE_SECONDS = 3.0


def build_app(config: Config, registry: CollectorRegistry | None = None) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    runtime = ProbeRuntime(config, registry or CollectorRegistry(auto_describe=True),
                           build_tracer_provider(config.telemetry))
    app[RUNTIME] = runtime
    app.cleanup_ctx.append(_runtime_ctx)
    for module in (health, probe, index):
        module.add_routes(app)
    return app


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.start()
    yield
    await runtime.stop(STOP_GRACE_SECONDS)
