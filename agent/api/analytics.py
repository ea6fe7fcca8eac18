"""GET /api/analytics/dashboard and GET /api/monitoring/business-metrics (admin token).

Order of the checks: the admin token (401/403), then, on business-metrics, the rate limit (429 with
Retry-After: only callers holding a valid token are counted), then the query (400 naming the
parameter), then the store (503 when it is disabled or failing, with Retry-After when it is worth
retrying). A store error is never a 500.

Parameters: the time range (agent/analytics/timerange.py) and `release`, which keeps one release's
events (the rules of an event's `release`: agent/events/validate.py parse_release).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.analytics.business import business_metrics
from agent.analytics.dashboard import dashboard
from agent.analytics.timerange import PARAMETERS, RangeError, TimeRange, parse_time_range, unknown_parameters, values
from agent.api.auth import require_admin
from agent.api.keys import BUSINESS_RATE_LIMITER, EVENT_STORE
from agent.api.problems import BadRequest, ServiceUnavailable, json_response
from agent.api.ratelimit import enforce_rate_limit
from agent.events.properties import FieldError
from agent.events.validate import parse_release
from agent.store.base import Store

Report = Callable[[Store, TimeRange, str | None], Awaitable[dict[str, Any]]]
REPORT_PARAMETERS = (*PARAMETERS, "release")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/analytics/dashboard", get_dashboard)
    app.router.add_get("/api/monitoring/business-metrics", get_business_metrics)


async def get_dashboard(request: web.Request) -> web.Response:
    require_admin(request)
    return await _report(request, dashboard)


async def get_business_metrics(request: web.Request) -> web.Response:
    require_admin(request)
    enforce_rate_limit(request.app[BUSINESS_RATE_LIMITER], request)
    return await _report(request, business_metrics)


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
    refuse_unknown_parameters(request.query, REPORT_PARAMETERS)
    time_range = parse_time_range(request.query, time.time())        # RangeError: a 400 naming it
    release = release_parameter(request.query)
    return await answer_from_store(request, lambda store: build(store, time_range, release))


async def answer_from_store(request: web.Request,
                            build: Callable[[Store], Awaitable[dict[str, Any]]]) -> web.Response:
    """The JSON document `build` reads from the event store. A disabled store is a 503; a failing one
    raises StoreError, which the error middleware answers with 503 and Retry-After (the driver's message,
    which may name the database, goes to the log only)."""
    return json_response(await build(event_store(request)))


def event_store(request: web.Request) -> Store:
    """The event store of a read route; raises the 503 when store.driver is none."""
    store = request.app[EVENT_STORE].store
    if store is None:
        raise ServiceUnavailable("the event store is disabled")
    return store


def refuse_unknown_parameters(query: Any, known: tuple[str, ...]) -> None:
    """Raises the 400 naming every query parameter not in `known`."""
    unknown = unknown_parameters(query, known)
    if unknown:
        raise BadRequest.fields([{"field": name, "message": f"unknown parameter; known: {', '.join(known)}"}
                                 for name in unknown])
