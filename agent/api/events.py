"""Event ingestion endpoints: /v1/events, /v1/events/batch, and the ingest of PostHog's events (the
PostHog routes, bodies and shapes are agent/api/posthog.py's).

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

from agent.api.auth import bearer_token, require_ingest_key
from agent.api.body import read_body
from agent.api.keys import ERROR_SINK, EVENT_STORE, OPT_OUTS, PIPELINE
from agent.api.nul_guard import MESSAGE, body_nul_field
from agent.api.problems import BadRequest, json_response, store_call
from agent.error_tracking.posthog import posthog_errors
from agent.events.pipeline import EventPipeline, IngestResult
from agent.events.posthog import capture_api_key, posthog_items, read_posthog
from agent.events.validate import BatchError, EventError, parse_batch, parse_event
from agent.store.gdpr import set_opt_out

# JSON nesting accepted in a body; an event needs 8 (batch, event, properties, 5 levels of value).
# orjson before 3.9.15 has no recursion limit (CVE-2024-27454): ~150,000 nested arrays, a 300 kB
# body, overflow the C stack and kill the process, so the depth is checked before parsing.
MAX_JSON_DEPTH = 64
# 3.9.15 and later stop at 1,024 levels themselves; the pre-check (~0.3 us an event) is for older ones
ORJSON_LIMITS_DEPTH = tuple(int(part) for part in orjson.__version__.split(".")[:3]) >= (3, 9, 15)
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_DEPTH_STEP = [1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256)]


def _accepted(result: IngestResult) -> web.Response:
    return json_response({"accepted": result.accepted, "stored": result.stored, "duplicates": result.duplicates,
                          "dropped": result.dropped})


async def _ingest(pipeline: EventPipeline, events: Any, api: str) -> IngestResult:
    """Hand the events over; a store that cannot commit them is a 503 with Retry-After: nothing of the
    request was acknowledged, the client retries (with event ids, a retry is never stored twice)."""
    with store_call("take events", api=api, detail=True):
        return await pipeline.ingest(events, api)


async def _read_json(request: web.Request, pipeline: EventPipeline, api: str) -> Any:
    """The parsed JSON body; raises the 4xx, counted under `api`. The body is read within the size and
    time limits of agent/api/body.py (PostHog bodies: agent/api/posthog.py)."""
    limit = pipeline.config.max_body_bytes
    body = await read_body(request, limit, api=api)
    obj = parse_json(body, api)
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        raise _invalid(pipeline, api, [EventError(None, field, MESSAGE)])
    return obj


def parse_json(body: bytes, api: str) -> Any:
    """The JSON value of an ingest body; raises the 400, counted as malformed under `api`."""
    if not ORJSON_LIMITS_DEPTH and not json_nesting_within(body):
        raise BadRequest(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels (or unbalanced)",
                         api=api, reason="malformed")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}", api=api, reason="malformed") from None


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


def _invalid(pipeline: EventPipeline, api: str, errors: list[EventError]) -> BadRequest:
    """The 400 naming every invalid field, counted as invalid under `api`. A field path may hold the
    client's own keys (an e-mail or card number used as a property name): they go through privacy like
    event data, never echoed in clear."""
    scrub = pipeline.privacy.text if pipeline.privacy is not None else str
    summary = scrub(str(errors[0])) if len(errors) == 1 else f"{len(errors)} invalid events; none was accepted"
    return BadRequest(summary, [{"index": e.index, "field": scrub(e.field), "message": scrub(e.message)}
                                for e in errors], api=api, reason="invalid")


async def _authorized_json(request: web.Request) -> tuple[EventPipeline, Any]:
    """The pipeline and the parsed body of a /v1/events request; raises the 4xx."""
    pipeline = request.app[PIPELINE]
    require_ingest_key(pipeline.config.api_keys, bearer_token(request), "events")
    return pipeline, await _read_json(request, pipeline, "events")


async def post_event(request: web.Request) -> web.Response:
    pipeline, obj = await _authorized_json(request)
    try:
        event = parse_event(obj, now=time.time(), limits=pipeline.limits, dnt_header=_dnt(request))
    except EventError as err:
        raise _invalid(pipeline, "events", [err]) from None
    return _accepted(await _ingest(pipeline, (event,), "events"))


async def post_batch(request: web.Request) -> web.Response:
    pipeline, obj = await _authorized_json(request)
    if isinstance(obj, dict) and set(obj) == {"events"}:
        obj = obj["events"]
    try:
        events = parse_batch(obj, now=time.time(), limits=pipeline.limits, dnt_header=_dnt(request))
    except BatchError as err:
        raise _invalid(pipeline, "events", err.errors) from None
    return _accepted(await _ingest(pipeline, events, "events"))


async def _posthog_capture_one(app: web.Application, pipeline: EventPipeline, obj: Any, now: float,
                               header_key: str | None) -> web.Response:
    """One PostHog event (agent/api/posthog.py reads the request and its shape)."""
    require_ingest_key(pipeline.config.api_keys, capture_api_key(obj) or header_key, "posthog")
    return await _posthog_ingest(app, pipeline, [obj], now, batch=False)


async def _posthog_batch(app: web.Application, pipeline: EventPipeline, obj: Any, now: float,
                         header_key: str | None) -> web.Response:
    require_ingest_key(pipeline.config.api_keys, capture_api_key(obj) or header_key, "posthog")
    try:
        _, items = posthog_items(obj, pipeline.limits)
    except BatchError as err:
        raise _invalid(pipeline, "posthog", err.errors) from None
    return await _posthog_ingest(app, pipeline, items, now)


async def _posthog_ingest(app: web.Application, pipeline: EventPipeline, items: list[Any], now: float,
                          batch: bool = True) -> web.Response:
    """What each PostHog event becomes (agent/events/posthog.py read_posthog), all or nothing: the
    persons first (aliases merged, groups, `$set` / `$set_once` / `$unset` traits: upserts, a retry
    rewrites them harmlessly), opt-in / opt-out as POST /api/analytics/opt-out does, then `$exception`s
    through the errors pipeline and the events through the event pipeline."""
    sink = app[ERROR_SINK]
    invalid: list[EventError] = []
    try:
        read = read_posthog(items, now=now, limits=pipeline.limits, batch=batch)
    except BatchError as err:
        invalid, read = err.errors, None
    exceptions = read.exceptions if read is not None else \
        [(i if batch else None, item) for i, item in enumerate(items)
         if type(item) is dict and item.get("event") == "$exception"]
    errors, bad = posthog_errors(exceptions, now, sink.config, pipeline.limits)
    if read is None or bad:
        raise _invalid(pipeline, "posthog", sorted(invalid + bad, key=lambda e: e.index or 0))
    for kind, count in read.dropped.items():
        pipeline.posthog_dropped(kind, count)
    store = app[EVENT_STORE].store
    with store_call("take traits", api="events"):      # counted as the events api's, on every route
        await pipeline.load_aliases(store)
        await pipeline.merge_aliases(read.aliases, store)
        await pipeline.store_groups(read.groups, store)
        if read.people:
            await pipeline.identify(read.people, store)
        for change in read.opt_changes:
            stored = pipeline.privacy.pseudonymize(change.user_id) if pipeline.privacy is not None else change.user_id
            if store is not None:
                await set_opt_out(store, stored, change.opted_out, "ingest_key", now)
            app[OPT_OUTS].apply(stored, change.opted_out)
    if errors:
        with store_call("take errors", api="errors", detail=True):
            await sink.record(errors, store)
    if read.events:
        await _ingest(pipeline, read.events, "posthog")
    return json_response({"status": 1})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_event)
    app.router.add_post("/v1/events/batch", post_batch)
