"""The one HTTP error model (agent/api/problems.py) on a bare app: handlers raise, the middleware answers
in the documented shape and counts rejections once.

Why a test of its own: every route's refusals now go through these few lines; the API tests check them
route by route, this checks the contract a new endpoint relies on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.analytics.timerange import RangeError
from agent.api.keys import PIPELINE
from agent.api.problems import (
    ApiError,
    BadRequest,
    Conflict,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    problem_middleware,
    store_call,
)
from agent.store.errors import StoreFull, StoreUnavailable


class Pipeline:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []

    def rejected(self, api: str, reason: str) -> None:
        self.counted.append((api, reason))


def answers(raised: BaseException) -> tuple[int, dict[str, str], Any, list[tuple[str, str]]]:
    async def handler(request: web.Request) -> web.Response:
        raise raised

    async def scenario() -> tuple[int, dict[str, str], Any, list[tuple[str, str]]]:
        app = web.Application(middlewares=[problem_middleware])
        app[PIPELINE] = pipeline = Pipeline()      # type: ignore[assignment]
        app.router.add_get("/", handler)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/")
            body = await (response.json() if response.content_type == "application/json" else response.text())
            return response.status, dict(response.headers), body, pipeline.counted
    return asyncio.run(scenario())


def test_an_api_error_is_its_status_message_field_errors_and_headers_counted_once() -> None:
    status, headers, body, counted = answers(TooManyRequests("slow down", headers={"Retry-After": "7"},
                                                             api="events", reason="auth"))
    assert (status, headers["Retry-After"], body, counted) == (429, "7", {"error": "slow down"}, [("events", "auth")])
    status, _, body, counted = answers(BadRequest.field("limit", "must be positive"))
    assert (status, body, counted) == (400, {"error": "limit: must be positive",
                                             "errors": [{"field": "limit", "message": "must be positive"}]}, [])
    assert answers(BadRequest("Target parameter is missing", plain=True))[2] == "Target parameter is missing\n"


def test_of_status_finds_the_subclass() -> None:
    assert type(ApiError.of_status(409, "x")) is Conflict and type(ApiError.of_status(413, "x")) is PayloadTooLarge


def test_store_errors_are_503_with_retry_after_and_never_the_drivers_text_on_reads() -> None:
    status, headers, body, _ = answers(StoreFull("/var/lib/loom/events.db: disk full"))
    assert (status, headers["Retry-After"]) == (503, "30")
    assert body == {"error": "the event store is unavailable; retry after 30 s"}

    def failing_write() -> None:
        with store_call("take traits", api="events"):
            raise StoreUnavailable("locked")
    try:
        failing_write()
    except ServiceUnavailable as exc:
        status, headers, body, counted = answers(exc)
    assert body == {"error": "the event store cannot take traits now (StoreUnavailable); retry after 5 s"}
    assert (status, headers["Retry-After"], counted) == (503, "5", [("events", "store_unavailable")])


def test_a_range_error_names_the_parameter() -> None:
    assert answers(RangeError("from", "must be before to"))[:3:2] == (
        400, {"error": "from: must be before to", "errors": [{"field": "from", "message": "must be before to"}]})


def test_anything_else_passes_through() -> None:
    assert answers(web.HTTPNotFound())[0] == 404
    assert answers(ValueError("a bug"))[0] == 500
