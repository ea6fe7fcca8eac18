"""POST /v1/identify: a user's traits (role, sign-up date, plan, e-mail, ...), with the ingest key.

The body is one identify object or an array of them (all or nothing), agent/events/identify.py says
what each holds. Authentication, body limits and JSON errors are the event endpoints' own (the same
key, `events.max_body_bytes`, the same 400/401/403/413 bodies, counted in
loom_agent_ingest_rejected_total{api="events"}). Privacy runs before the store: a Do-Not-Track request
(`DNT: 1`) or an opted-out user is dropped (counted in loom_agent_events_dropped_total{reason}). The 200
is sent once the traits are committed; a store that cannot commit them is a 503 with Retry-After
(nothing was stored; an identify is idempotent, retry it).

The PostHog endpoints store the `$set` / `$set_once` of the events they receive the same way
(EventPipeline.identify, agent/events/pipeline.py).
"""

from __future__ import annotations

import time

from aiohttp import web

from agent.api.events import _authorized_json, _dnt
from agent.api.keys import EVENT_STORE
from agent.api.problems import BadRequest, ServiceUnavailable, json_response, store_call
from agent.events.identify import parse_identifies
from agent.events.pipeline import EventPipeline
from agent.events.validate import BatchError


async def post_identify(request: web.Request) -> web.Response:
    pipeline, obj = await _authorized_json(request)
    try:
        identifies = parse_identifies(obj, now=time.time(), limits=pipeline.limits)
    except BatchError as err:
        raise _invalid_identifies(pipeline, err) from None
    if request.app[EVENT_STORE].store is None:
        raise ServiceUnavailable("the event store is disabled: traits have nowhere to go")
    with store_call("take traits", api="events"):        # counted as the events api's, on every route
        stored, dropped = await pipeline.identify(identifies, request.app[EVENT_STORE].store, dnt=_dnt(request))
    return json_response({"accepted": len(identifies), "stored": stored, "dropped": dropped})


def _invalid_identifies(pipeline: EventPipeline, err: BatchError) -> BadRequest:
    """The 400 naming every invalid field, counted as the events api's. A message may quote a trait's
    name (an e-mail address as a key): through privacy, as for events."""
    summary = str(err.errors[0]) if len(err.errors) == 1 else \
        f"{len(err.errors)} invalid identifies; none was accepted"
    scrub = pipeline.privacy.text if pipeline.privacy is not None else str
    return BadRequest(scrub(summary), [{"index": e.index, "field": scrub(e.field), "message": scrub(e.message)}
                                       for e in err.errors], api="events", reason="invalid")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/identify", post_identify)
