"""Event ingestion endpoints: /v1/events, /v1/events/batch, and PostHog's /capture and /batch.

The handlers parse, authenticate and hand over to the EventPipeline. Every rejection is a 4xx
JSON body `{"error": ..., "errors": [{"index", "field", "message"}]}`; a batch is all or nothing.
"""

from __future__ import annotations

import re
import time
from itertools import accumulate
from typing import Any

import orjson
from aiohttp import web

from agent.api.keys import PIPELINE
from agent.api.auth import API_KEY_HEADER, bearer_token, token_matches
from agent.api.body import BodyError, read_body, refusal
from agent.api.identify_writes import write_identifies
from agent.api.nul_guard import MESSAGE, body_nul_field
from agent.api.posthog_wire import PayloadError, decode_posthog_body
from agent.events.identify import Identify, posthog_identifies, posthog_identify
from agent.events.pipeline import EventPipeline
from agent.events.posthog import capture_api_key, parse_capture, parse_posthog_batch
from agent.events.pipeline import IngestResult
from agent.events.properties import FieldError
from agent.events.validate import BatchError, EventError, parse_batch, parse_event
from agent.store.errors import StoreError

# JSON nesting accepted in a body; an event needs 8 (batch, event, properties, 5 levels of value).
# orjson before 3.9.15 has no recursion limit (CVE-2024-27454): ~150,000 nested arrays, a 300 kB
# body, overflow the C stack and kill the process, so the depth is checked before parsing.
MAX_JSON_DEPTH = 64
# 3.9.15 and later stop at 1,024 levels themselves; the pre-check (~0.3 us an event) is for older ones
ORJSON_LIMITS_DEPTH = tuple(int(part) for part in orjson.__version__.split(".")[:3]) >= (3, 9, 15)
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_DEPTH_STEP = [1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256)]


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = errors
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _ok(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _ingest(pipeline: EventPipeline, events: Any, api: str) -> IngestResult | web.Response:
    """Hand the events over; a store that cannot commit them is a 503 with Retry-After: nothing of the
    request was acknowledged, the client retries (with event ids, a retry is never stored twice)."""
    try:
        return await pipeline.ingest(events, api)
    except StoreError as exc:
        pipeline.rejected(api, "store_unavailable")
        response = _error(503, f"the event store cannot take events now ({type(exc).__name__}: {exc}); "
                               f"retry after {exc.retry_after} s")
        response.headers["Retry-After"] = str(exc.retry_after)
        return response


def _accepted(result: IngestResult | web.Response) -> web.Response:
    if isinstance(result, web.Response):
        return result
    return _ok({"accepted": result.accepted, "stored": result.stored, "duplicates": result.duplicates,
                "dropped": result.dropped})


def _posthog_ok(result: IngestResult | web.Response) -> web.Response:
    return result if isinstance(result, web.Response) else _ok({"status": 1})


def _check_key(pipeline: EventPipeline, presented: str | None, api: str) -> web.Response | None:
    keys = pipeline.config.api_keys
    if not keys:
        return None
    if presented is None:
        pipeline.rejected(api, "auth")
        return _error(401, f"an ingest API key is required (Authorization: Bearer or {API_KEY_HEADER})")
    if not token_matches(presented, keys):
        pipeline.rejected(api, "auth")
        return _error(403, "the ingest API key is not valid")
    return None


async def _read_json(request: web.Request, pipeline: EventPipeline, api: str) -> Any | web.Response:
    """The parsed JSON body, or the 4xx response to answer instead. The body is read within the size
    and time limits of agent/api/body.py; PostHog bodies may be gzip-js or base64 form encoded
    (agent/api/posthog_wire.py)."""
    limit = pipeline.config.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyError as exc:
        pipeline.rejected(api, exc.reason)
        return refusal(request, exc, _error)
    if api == "posthog":
        try:
            body = decode_posthog_body(body, request.query, request.content_type, limit)
        except PayloadError as exc:
            pipeline.rejected(api, "too_large" if exc.status == 413 else "malformed")
            return _error(exc.status, str(exc))
    if not ORJSON_LIMITS_DEPTH and not json_nesting_within(body):
        pipeline.rejected(api, "malformed")
        return _error(400, f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels (or unbalanced)")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        pipeline.rejected(api, "malformed")
        return _error(400, f"invalid JSON: {exc}")
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        return _invalid(pipeline, api, [EventError(None, field, MESSAGE)])
    return obj


def json_nesting_within(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether valid JSON `body` nests arrays/objects at most `limit` deep (invalid JSON may answer
    either way; the parser rejects it). C-speed passes: drop escapes, keep only quotes and brackets,
    drop strings, then the running depth of what is left (~0.2 ms for a 1,000-event batch)."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = body.translate(None, _NOT_STRUCTURE).replace(b'""', b"")   # strings without brackets go here
    if b'"' in text:
        text = _STRING.sub(b"", text)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, text)), default=0) <= limit


def _dnt(request: web.Request) -> bool:
    return request.headers.get("DNT", "").strip() == "1"


def _invalid(pipeline: EventPipeline, api: str, errors: list[EventError]) -> web.Response:
    """400 naming every invalid field. A field path may hold the client's own keys (an e-mail or card
    number used as a property name): they go through privacy like event data, never echoed in clear."""
    pipeline.rejected(api, "invalid")
    scrub = pipeline.privacy.text if pipeline.privacy is not None else str
    summary = scrub(str(errors[0])) if len(errors) == 1 else f"{len(errors)} invalid events; none was accepted"
    return _error(400, summary, [{"index": e.index, "field": scrub(e.field), "message": scrub(e.message)}
                                 for e in errors])


async def _authorized_json(request: web.Request) -> tuple[EventPipeline, Any]:
    """The pipeline and the parsed body of a /v1/events request, or a 4xx response in its place."""
    pipeline = request.app[PIPELINE]
    denied = _check_key(pipeline, bearer_token(request), "events")
    return pipeline, denied if denied is not None else await _read_json(request, pipeline, "events")


async def post_event(request: web.Request) -> web.Response:
    pipeline, obj = await _authorized_json(request)
    if isinstance(obj, web.Response):
        return obj
    try:
        event = parse_event(obj, now=time.time(), limits=pipeline.limits, dnt_header=_dnt(request))
    except EventError as err:
        return _invalid(pipeline, "events", [err])
    return _accepted(await _ingest(pipeline, (event,), "events"))


async def post_batch(request: web.Request) -> web.Response:
    pipeline, obj = await _authorized_json(request)
    if isinstance(obj, web.Response):
        return obj
    if isinstance(obj, dict) and set(obj) == {"events"}:
        obj = obj["events"]
    try:
        events = parse_batch(obj, now=time.time(), limits=pipeline.limits, dnt_header=_dnt(request))
    except BatchError as err:
        return _invalid(pipeline, "events", err.errors)
    return _accepted(await _ingest(pipeline, events, "events"))


async def posthog_capture(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    obj = await _read_json(request, pipeline, "posthog")
    if isinstance(obj, web.Response):
        return obj
    now = time.time()
    if isinstance(obj, dict) and "batch" in obj:          # posthog-js also posts batches to /capture
        return await _posthog_batch(request.app, pipeline, obj, now, bearer_token(request))
    if (denied := _check_key(pipeline, capture_api_key(obj) or bearer_token(request), "posthog")) is not None:
        return denied
    try:
        event = parse_capture(obj, now=now, limits=pipeline.limits)
        person = posthog_identify(obj, now, pipeline.limits)
    except EventError as err:
        return _invalid(pipeline, "posthog", [err])
    except FieldError as err:
        return _invalid(pipeline, "posthog", [EventError(None, err.field, err.message)])
    return await _posthog_ingest(request.app, pipeline, [event], [person] if person is not None else [])


async def posthog_batch(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    obj = await _read_json(request, pipeline, "posthog")
    if isinstance(obj, web.Response):
        return obj
    return await _posthog_batch(request.app, pipeline, obj, time.time(), bearer_token(request))


async def _posthog_batch(app: web.Application, pipeline: EventPipeline, obj: Any, now: float,
                         header_key: str | None) -> web.Response:
    if (denied := _check_key(pipeline, capture_api_key(obj) or header_key, "posthog")) is not None:
        return denied
    try:
        _, events = parse_posthog_batch(obj, now=now, limits=pipeline.limits)
        people = posthog_identifies(obj["batch"], now, pipeline.limits)
    except BatchError as err:
        return _invalid(pipeline, "posthog", err.errors)
    return await _posthog_ingest(app, pipeline, events, people)


async def _posthog_ingest(app: web.Application, pipeline: EventPipeline, events: list[Any],
                          people: list[Identify]) -> web.Response:
    """The `$set` / `$set_once` traits first (an upsert: a retry rewrites them harmlessly), then the events."""
    if people:
        written = await write_identifies(app, people)
        if isinstance(written, web.Response):
            return written
    return _posthog_ok(await _ingest(pipeline, events, "posthog"))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_event)
    app.router.add_post("/v1/events/batch", post_batch)
    for path in ("/capture", "/capture/", "/e", "/e/"):
        app.router.add_post(path, posthog_capture)
    for path in ("/batch", "/batch/"):
        app.router.add_post(path, posthog_batch)
