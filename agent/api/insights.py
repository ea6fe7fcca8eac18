"""POST /api/insights/trends, /api/insights/funnels and /api/insights/retention (admin token): PostHog's
three insights over the event store (agent/analytics/trends.py, funnels.py, retention.py; the body:
agent/analytics/insight_query.py; docs/insights.md).

Order of the checks: the admin token (401/403), the body (at most 64 KiB, JSON: 413 / 400), its fields
(400 naming the field by its path), then the store: 503 when it is disabled or failing, and 503 with
Retry-After when the query has not finished within QUERY_SECONDS (read at call time, so a test may
lower it). A store error is never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agent.analytics.deadline import RETRY_AFTER, QueryTimeout, within
from agent.analytics.funnels import funnel
from agent.analytics.insight_query import funnel_query, retention_query, trends_query
from agent.analytics.retention import retention
from agent.analytics.trends import trends
from agent.api.analytics import event_store
from agent.api.auth import require_admin
from agent.api.body import read_body
from agent.api.problems import BadRequest, ServiceUnavailable, json_response
from agent.store.base import Store
from agent.store.rollup_fold import settled_once

MAX_BODY_BYTES = 64 * 1024
QUERY_SECONDS = 10.0

Parse = Callable[[Any, float], Any]
Build = Callable[[Store, Any], Awaitable[dict[str, Any]]]


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/insights/trends", post_trends)
    app.router.add_post("/api/insights/funnels", post_funnels)
    app.router.add_post("/api/insights/retention", post_retention)


async def post_trends(request: web.Request) -> web.Response:
    return await _insight(request, trends_query, trends)


async def post_funnels(request: web.Request) -> web.Response:
    return await _insight(request, funnel_query, funnel)


async def post_retention(request: web.Request) -> web.Response:
    return await _insight(request, retention_query, retention)


async def read_json(request: web.Request) -> Any:
    body = await read_body(request, MAX_BODY_BYTES, field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest.field("body", f"is not valid JSON: {exc}") from None


async def _insight(request: web.Request, parse: Parse, build: Build) -> web.Response:
    require_admin(request)
    query = parse(await read_json(request), time.time())        # RangeError: a 400 naming the field
    store = event_store(request)
    seconds = QUERY_SECONDS
    try:
        with settled_once():        # the rollups folded for the first read only (agent/store/rollup_fold.py)
            document = await within(seconds, build(store, query))
    except QueryTimeout as exc:
        raise ServiceUnavailable(f"{exc}; narrow the range or the events, or retry after {RETRY_AFTER} s",
                                 headers={"Retry-After": str(RETRY_AFTER)}) from exc
    return json_response(document)
