"""Error events: POST /v1/errors and /v1/errors/batch (the ingest key), GET /api/errors (admin token).

Ingest answers as /v1/events does: 400 `{"error", "errors": [{index, field, message}]}` naming every
invalid field (a batch is all or nothing), 401/403 for the key, 413 past errors.max_body_bytes, 503 with
Retry-After when the store cannot commit (nothing was acknowledged: retry, with event ids a retry is
never stored or counted twice), and 200 only once the errors are committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from agent.analytics.timerange import PARAMETERS, RangeError, parse_time_range, values
from agent.api.analytics import answer_from_store, refuse_unknown_parameters
from agent.api.auth import bearer_token, require_admin, require_ingest_key
from agent.api.body import read_body
from agent.api.events import parse_json
from agent.api.keys import ERROR_SINK, EVENT_STORE, PIPELINE, PRIVACY
from agent.api.nul_guard import MESSAGE as NUL_MESSAGE, body_nul_field
from agent.api.problems import BadRequest, json_response, store_call
from agent.error_tracking.queries import DEFAULT_LIMIT, FILTERS, MAX_LIMIT, IssueFilter, list_issues
from agent.error_tracking.sink import ErrorSink
from agent.error_tracking.validate import parse_error, parse_error_batch
from agent.events.pipeline import EventPipeline
from agent.events.properties import FieldError
from agent.events.validate import BatchError, EventError, parse_release

API = "errors"            # the `api` label of loom_agent_ingest_rejected_total
QUERY_PARAMETERS = (*PARAMETERS, *FILTERS, "limit")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/errors", post_error)
    app.router.add_post("/v1/errors/batch", post_error_batch)
    app.router.add_get("/api/errors", get_errors)


# --- ingest -----------------------------------------------------------------------------------------

async def _read_json(request: web.Request, pipeline: EventPipeline, limit: int) -> Any:
    """The parsed body, bounded in size and time (agent/api/body.py); raises the 4xx, counted."""
    body = await read_body(request, limit, api=API)
    obj = parse_json(body, API)
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        field = pipeline.privacy.text(field) if pipeline.privacy is not None else field
        raise BadRequest(f"{field}: {NUL_MESSAGE}", [{"index": None, "field": field, "message": NUL_MESSAGE}],
                         api=API, reason="invalid")
    return obj


def _invalid(request: web.Request, errors: list[EventError]) -> BadRequest:
    """400 naming every invalid field, counted; a field path may hold the client's own keys (an e-mail
    used as a tag name): they pass through privacy, as stored data does."""
    privacy = request.app.get(PRIVACY)
    scrub = privacy.text if privacy is not None else str
    summary = scrub(str(errors[0])) if len(errors) == 1 else f"{len(errors)} invalid errors; none was accepted"
    return BadRequest(summary, [{"index": e.index, "field": scrub(e.field), "message": scrub(e.message)}
                                for e in errors], api=API, reason="invalid")


async def _record(request: web.Request, sink: ErrorSink, errors: list) -> web.Response:
    with store_call("take errors", api=API):
        result = await sink.record(errors, request.app[EVENT_STORE].store)
    return json_response(result.to_json())


def _dnt(request: web.Request) -> bool:
    return request.headers.get("DNT", "").strip() == "1"


async def _authorized_json(request: web.Request) -> tuple[EventPipeline, ErrorSink, Any]:
    """The pipeline, the sink and the parsed body; the ingest keys of /v1/events (events.api_keys)
    guard errors too."""
    pipeline, sink = request.app[PIPELINE], request.app[ERROR_SINK]
    require_ingest_key(pipeline.config.api_keys, bearer_token(request), API)
    return pipeline, sink, await _read_json(request, pipeline, sink.config.max_body_bytes)


async def post_error(request: web.Request) -> web.Response:
    pipeline, sink, obj = await _authorized_json(request)
    try:
        error = parse_error(obj, now=time.time(), config=sink.config, limits=pipeline.limits, dnt_header=_dnt(request))
    except EventError as err:
        raise _invalid(request, [err]) from None
    return await _record(request, sink, [error])


async def post_error_batch(request: web.Request) -> web.Response:
    pipeline, sink, obj = await _authorized_json(request)
    if isinstance(obj, dict) and set(obj) == {"errors"}:
        obj = obj["errors"]
    try:
        errors = parse_error_batch(obj, now=time.time(), config=sink.config, limits=pipeline.limits,
                                   dnt_header=_dnt(request))
    except BatchError as err:
        raise _invalid(request, err.errors) from None
    return await _record(request, sink, errors)


# --- the issues list ---------------------------------------------------------------------------------

class QueryError(RangeError):
    """A bad filter of the issues list, answered as a bad time-range parameter is (a 400 naming it)."""


def parse_filters(query: Any, scrub: Callable[[str], str]) -> tuple[IssueFilter, int]:
    """The release/feature/environment filters and the limit; raises QueryError naming the parameter.
    A release is checked as an error's release is; feature and environment are compared with the stored,
    scrubbed values, so they are scrubbed the same way."""
    found: dict[str, str] = {}
    for name in (*FILTERS, "limit"):
        given = values(query, name)
        if len(given) > 1:
            raise QueryError(name, "given more than once")
        if given:
            if not given[0]:
                raise QueryError(name, "must not be empty")
            found[name] = given[0]
    limit = DEFAULT_LIMIT
    if "limit" in found:
        text = found.pop("limit")
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise QueryError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
        limit = int(text)
    if "release" in found:
        try:
            found["release"] = parse_release(found["release"])
        except FieldError as exc:
            raise QueryError("release", exc.message) from None
    return IssueFilter(**{name: value if name == "release" else scrub(value) for name, value in found.items()}), limit


async def get_errors(request: web.Request) -> web.Response:
    require_admin(request)
    refuse_unknown_parameters(request.query, QUERY_PARAMETERS)
    privacy = request.app.get(PRIVACY)
    time_range = parse_time_range(request.query, time.time())        # RangeError, QueryError: a 400
    filters, limit = parse_filters(request.query, privacy.text if privacy is not None else str)
    return await answer_from_store(request, lambda store: list_issues(store, time_range, filters, limit))
