"""GET /api/analytics/dashboard and GET /api/monitoring/business-metrics (admin token).

Order of the checks: the admin token (401/403), then, on business-metrics, the rate limit (429 with
Retry-After: only callers holding a valid token are counted), then the query (400 naming the
parameter), then the store (503 when it is disabled or failing, with Retry-After when it is worth
retrying). A store error is never a 500.

Parameters: the time range (agent/analytics/timerange.py) and `release`, which keeps one release's
events (the rules of an event's `release`: agent/events/validate.py parse_release).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agent.analytics.business import business_metrics
from agent.analytics.dashboard import dashboard
from agent.analytics.timerange import (PARAMETERS, RangeError, TimeRange, parse_time_range, unknown_parameters,
                                      values)
from agent.api.keys import BUSINESS_RATE_LIMITER, EVENT_STORE
from agent.api.auth import admin_denied
from agent.api.ratelimit import limited
from agent.events.properties import FieldError
from agent.events.validate import parse_release
from agent.store.base import Store
from agent.store.errors import StoreError

log = logging.getLogger("agent.api.analytics")
Report = Callable[[Store, TimeRange, str | None], Awaitable[dict[str, Any]]]
REPORT_PARAMETERS = (*PARAMETERS, "release")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/analytics/dashboard", get_dashboard)
    app.router.add_get("/api/monitoring/business-metrics", get_business_metrics)


async def get_dashboard(request: web.Request) -> web.Response:
    return admin_denied(request) or await _report(request, dashboard)


async def get_business_metrics(request: web.Request) -> web.Response:
    return (admin_denied(request) or limited(request.app[BUSINESS_RATE_LIMITER], request)
            or await _report(request, business_metrics))


def release_parameter(query: Any) -> str | None:
    """The `release` query parameter, checked as an event's release is; raises RangeError naming it."""
    given = values(query, "release")
    if len(given) > 1:
        raise RangeError("release", "given more than once")
    if not given:
        return None
    try:
        return parse_release(given[0])
    except FieldError as exc:
        raise RangeError("release", exc.message) from None


async def _report(request: web.Request, build: Report) -> web.Response:
    unknown = unknown_parameters(request.query, REPORT_PARAMETERS)
    if unknown:
        return unknown_parameters_error(unknown, REPORT_PARAMETERS)
    try:
        time_range = parse_time_range(request.query, time.time())
        release = release_parameter(request.query)
    except RangeError as exc:
        return query_error(exc.field, exc.message)
    return await answer_from_store(request, lambda store: build(store, time_range, release))


async def answer_from_store(request: web.Request,
                            build: Callable[[Store], Awaitable[dict[str, Any]]]) -> web.Response:
    """The JSON document `build` reads from the event store, or its 503: the store is disabled, or failing
    (with Retry-After; the driver's message, which may name the database, goes to the log only)."""
    store = request.app.get(EVENT_STORE)
    if store is None:
        return _error(503, "the event store is disabled")
    try:
        document = await build(store)
    except StoreError as exc:
        # the driver's message may name the database; the log has it, the response does not
        log.warning("analytics query failed", extra={"path": request.path, "error": str(exc)})
        return _error(503, f"the event store is unavailable; retry after {exc.retry_after} s",
                      headers={"Retry-After": str(exc.retry_after)})
    return web.Response(body=orjson.dumps(document), content_type="application/json")


def unknown_parameters_error(unknown: list[str], known: tuple[str, ...]) -> web.Response:
    errors = [{"field": name, "message": f"unknown parameter; known: {', '.join(known)}"} for name in unknown]
    return _error(400, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)


def query_error(field: str, message: str) -> web.Response:
    """400 naming the query parameter: {"error": "field: message", "errors": [{"field", "message"}]}."""
    return _error(400, f"{field}: {message}", [{"field": field, "message": message}])


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
