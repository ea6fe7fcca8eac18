"""GET /openapi.json: the OpenAPI 3.0.3 description of every route, the checked-in `openapi.json`
beside this module (package data). It is read once, at import, and served as it is on disk;
tests/test_openapi.py keeps it true to the router and to the event validator."""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

OPENAPI_BODY: bytes = files("agent.api").joinpath("openapi.json").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_BODY, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
