"""Error events: POST /v1/errors and /v1/errors/batch (the ingest key), GET /api/errors (admin token).

Ingest answers as /v1/events does: 400 `{"error", "errors": [{index, field, message}]}` naming every
invalid field (a batch is all or nothing), 401/403 for the key, 413 past errors.max_body_bytes, 503 with
Retry-After when the store cannot commit (nothing was acknowledged: retry, with event ids a retry is
never stored or counted twice), and 200 only once the errors are committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from agent.analytics.timerange import PARAMETERS, RangeError, parse_time_range, unknown_parameters, values
from agent.api.keys import ERROR_SINK, EVENT_STORE, PIPELINE, PRIVACY
from agent.api.auth import API_KEY_HEADER, admin_denied, bearer_token, token_matches
from agent.api.body import BodyError, read_body, refusal
from agent.api.events import MAX_JSON_DEPTH, ORJSON_LIMITS_DEPTH, json_nesting_within
from agent.api.nul_guard import MESSAGE as NUL_MESSAGE, body_nul_field
from agent.error_tracking.queries import DEFAULT_LIMIT, FILTERS, MAX_LIMIT, IssueFilter, list_issues
from agent.error_tracking.sink import ErrorSink
from agent.error_tracking.validate import parse_error, parse_error_batch
from agent.events.pipeline import EventPipeline
from agent.events.properties import FieldError
from agent.events.validate import BatchError, EventError, parse_release
from agent.store.errors import StoreError

API = "errors"            # the `api` label of loom_agent_ingest_rejected_total
QUERY_PARAMETERS = (*PARAMETERS, *FILTERS, "limit")
log = logging.getLogger("agent.api.error_events")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/errors", post_error)
    app.router.add_post("/v1/errors/batch", post_error_batch)
    app.router.add_get("/api/errors", get_errors)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    return _json(status, body, headers)


# --- ingest -----------------------------------------------------------------------------------------

def _key_refused(pipeline: EventPipeline, request: web.Request) -> web.Response | None:
    """The ingest keys of /v1/events (events.api_keys) guard errors too."""
    keys = pipeline.config.api_keys
    if not keys:
        return None
    presented = bearer_token(request)
    if presented is None:
        pipeline.rejected(API, "auth")
        return _error(401, f"an ingest API key is required (Authorization: Bearer or {API_KEY_HEADER})")
    if not token_matches(presented, keys):
        pipeline.rejected(API, "auth")
        return _error(403, "the ingest API key is not valid")
    return None


async def _read_json(request: web.Request, pipeline: EventPipeline, limit: int) -> Any | web.Response:
    try:
        body = await read_body(request, limit)          # bounded in size and time (agent/api/body.py)
    except BodyError as exc:
        pipeline.rejected(API, exc.reason)
        return refusal(request, exc, _error)
    if not ORJSON_LIMITS_DEPTH and not json_nesting_within(body):
        pipeline.rejected(API, "malformed")
        return _error(400, f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels (or unbalanced)")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        pipeline.rejected(API, "malformed")
        return _error(400, f"invalid JSON: {exc}")
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        pipeline.rejected(API, "invalid")
        field = pipeline.privacy.text(field) if pipeline.privacy is not None else field
        return _error(400, f"{field}: {NUL_MESSAGE}", [{"index": None, "field": field, "message": NUL_MESSAGE}])
    return obj


def _invalid(request: web.Request, pipeline: EventPipeline, errors: list[EventError]) -> web.Response:
    """400 naming every invalid field; a field path may hold the client's own keys (an e-mail used as
    a tag name): they pass through privacy, as stored data does."""
    pipeline.rejected(API, "invalid")
    privacy = request.app.get(PRIVACY)
    scrub = privacy.text if privacy is not None else str
    summary = scrub(str(errors[0])) if len(errors) == 1 else f"{len(errors)} invalid errors; none was accepted"
    return _error(400, summary, [{"index": e.index, "field": scrub(e.field), "message": scrub(e.message)}
                                 for e in errors])


async def _record(request: web.Request, pipeline: EventPipeline, sink: ErrorSink, errors: list) -> web.Response:
    try:
        result = await sink.record(errors, request.app.get(EVENT_STORE))
    except StoreError as exc:
        pipeline.rejected(API, "store_unavailable")
        return _error(503, f"the event store cannot take errors now ({type(exc).__name__}); retry after "
                           f"{exc.retry_after} s", headers={"Retry-After": str(exc.retry_after)})
    return _json(200, result.to_json())


def _dnt(request: web.Request) -> bool:
    return request.headers.get("DNT", "").strip() == "1"


async def post_error(request: web.Request) -> web.Response:
    pipeline, sink = request.app[PIPELINE], request.app[ERROR_SINK]
    if (refused := _key_refused(pipeline, request)) is not None:
        return refused
    obj = await _read_json(request, pipeline, sink.config.max_body_bytes)
    if isinstance(obj, web.Response):
        return obj
    try:
        error = parse_error(obj, now=time.time(), config=sink.config, limits=pipeline.limits, dnt_header=_dnt(request))
    except EventError as err:
        return _invalid(request, pipeline, [err])
    return await _record(request, pipeline, sink, [error])


async def post_error_batch(request: web.Request) -> web.Response:
    pipeline, sink = request.app[PIPELINE], request.app[ERROR_SINK]
    if (refused := _key_refused(pipeline, request)) is not None:
        return refused
    obj = await _read_json(request, pipeline, sink.config.max_body_bytes)
    if isinstance(obj, web.Response):
        return obj
    if isinstance(obj, dict) and set(obj) == {"errors"}:
        obj = obj["errors"]
    try:
        errors = parse_error_batch(obj, now=time.time(), config=sink.config, limits=pipeline.limits,
                                   dnt_header=_dnt(request))
    except BatchError as err:
        return _invalid(request, pipeline, err.errors)
    return await _record(request, pipeline, sink, errors)


# --- the issues list ---------------------------------------------------------------------------------

class QueryError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


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
    if (denied := admin_denied(request)) is not None:
        return denied
    unknown = unknown_parameters(request.query, QUERY_PARAMETERS)
    if unknown:
        errors = [{"field": name, "message": f"unknown parameter; known: {', '.join(QUERY_PARAMETERS)}"}
                  for name in unknown]
        return _error(400, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    privacy = request.app.get(PRIVACY)
    try:
        time_range = parse_time_range(request.query, time.time())
        filters, limit = parse_filters(request.query, privacy.text if privacy is not None else str)
    except (RangeError, QueryError) as exc:
        return _error(400, str(exc), [{"field": exc.field, "message": exc.message}])
    store = request.app.get(EVENT_STORE)
    if store is None:
        return _error(503, "the event store is disabled")
    try:
        document = await list_issues(store, time_range, filters, limit)
    except StoreError as exc:
        log.warning("errors query failed", extra={"path": request.path, "error": str(exc)})
        return _error(503, f"the event store is unavailable; retry after {exc.retry_after} s",
                      headers={"Retry-After": str(exc.retry_after)})
    return _json(200, document)
