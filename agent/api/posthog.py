"""PostHog's ingest protocol on the agent's listener, so posthog-js, posthog-node and posthog-python
send to the agent with nothing but their host changed (docs/posthog.md):

- events: `/e/`, `/i/v0/e/`, `/capture/`, `/batch/`, `/track/`, `/engage/` (each with and without the
  trailing slash; `?ver=`, `?retry_count=`, `?ip=` are accepted and ignored, `?_=` is the send time of
  posthog-js: clock-skew correction, agent/posthog/skew.py), answered `200 {"status": 1}`;
- posthog-python's `capture_mode="v1"`: `POST /i/v1/analytics/events` (Bearer project key,
  `{created_at, batch}`), answered `200 {"results": {uuid: {"result": "ok"}}}`;
- remote config for posthog-js: `GET /array/{token}/config` and `/array/{token}/config.js`
  (agent/posthog/remote.py);
- CORS on all of them (OPTIONS preflights, `posthog.allowed_origins`; agent/api/cors.py).

A body is decoded by agent/api/posthog_wire.py (gzip by its magic bytes, `?compression=gzip-js`, base64
`data=` forms, `Content-Encoding` undone by aiohttp within read_body's bound), then its shape is read:
`{api_key, batch: [...], sent_at}`, a bare array of events, one event, or any of them inside
`{"data": ...}`; `/engage/`'s `{$distinct_id, $token, $set, $set_once}` becomes a `$set` event. The
events then take the path of every PostHog event (agent/api/events.py: agent/events/posthog.py ->
the pipeline), all or nothing. Refusals are counted in loom_agent_ingest_rejected_total{api="posthog"}.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from agent.api.auth import bearer_token, require_ingest_key
from agent.api.body import read_body
from agent.api.cors import Cors
from agent.api.events import _invalid, _posthog_batch, _posthog_capture_one, parse_json
from agent.api.keys import FLAGS, PIPELINE, POSTHOG
from agent.api.nul_guard import MESSAGE, body_nul_field
from agent.api.posthog_wire import PayloadError, decode_posthog_body
from agent.api.problems import ApiError, BadRequest, NotFound, json_response
from agent.events.pipeline import EventPipeline
from agent.events.posthog import capture_api_key
from agent.events.validate import EventError
from agent.posthog.config import PosthogConfig
from agent.posthog.remote import remote_config, remote_config_js
from agent.posthog.skew import SkewError, correct, sent_at_of

API = "posthog"
EVENT_PATHS = ("/e", "/i/v0/e", "/capture", "/batch", "/track", "/engage")
V1_PATH = "/i/v1/analytics/events"
CONFIG_PATHS = ("/array/{token}/config", "/array/{token}/config.js")
ALLOW_HEADERS = ("content-type, content-encoding, authorization, posthog-sdk-info, posthog-attempt, "
                 "posthog-request-id, posthog-request-timestamp, x-requested-with")
_TOKEN = re.compile(r"[A-Za-z0-9_.~+-]{1,256}")
_SDK_INFO = re.compile(r"([A-Za-z0-9_.@/-]{1,64})/([A-Za-z0-9_.+-]{1,64})")
CONFIG_CACHE = "public, max-age=300"


def _allowed(request: web.Request, origin: str) -> bool:
    return request.app[POSTHOG].config.origin_allowed(origin)


CORS = Cors(_allowed, setting="posthog.allowed_origins", api=API, allow_headers=ALLOW_HEADERS)


def add_routes(app: web.Application) -> None:
    for base in EVENT_PATHS:
        for path in (base, base + "/"):
            app.router.add_post(path, CORS.wrap(capture))
            app.router.add_route("OPTIONS", path, CORS.preflight("POST"))
    for path in (V1_PATH, V1_PATH + "/"):
        app.router.add_post(path, CORS.wrap(capture_v1))
        app.router.add_route("OPTIONS", path, CORS.preflight("POST"))
    for path in CONFIG_PATHS:
        app.router.add_get(path, CORS.wrap(get_remote_config))
        app.router.add_route("OPTIONS", path, CORS.preflight("GET"))


def _config(request: web.Request) -> PosthogConfig:
    config: PosthogConfig = request.app[POSTHOG].config
    if not config.enabled:
        raise NotFound("the PostHog endpoints are disabled (posthog.enabled: false)")
    return config


async def _read_json(request: web.Request, pipeline: EventPipeline) -> Any:
    """The JSON value of a PostHog body, decoded within events.max_body_bytes; raises the 4xx."""
    body = await read_decoded(request, pipeline.config.max_body_bytes)
    obj = parse_json(body, API)
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        raise _invalid(pipeline, API, [EventError(None, field, MESSAGE)])
    return obj


async def read_decoded(request: web.Request, limit: int, decoded_limit: int | None = None) -> bytes:
    """A PostHog body of at most `limit` bytes, its gzip or base64 undone (at most `decoded_limit`, default
    `limit`, bytes); raises the 4xx, counted under the posthog api (also the recordings' /s/)."""
    body = await read_body(request, limit, api=API)
    try:
        return decode_posthog_body(body, request.query, request.content_type, decoded_limit or limit)
    except PayloadError as exc:
        raise ApiError.of_status(exc.status, str(exc), api=API,
                                 reason="too_large" if exc.status == 413 else "malformed") from None


def _unwrap(obj: Any) -> Any:
    """`{"data": ...}` (an object, an array, or the JSON of one as a string) -> what it holds."""
    if type(obj) is dict and "data" in obj and "event" not in obj and "batch" not in obj:
        data = obj["data"]
        if type(data) is str:
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise BadRequest("data: must be a JSON object or array (or its JSON text)", api=API,
                                 reason="malformed") from None
        if type(data) not in (dict, list):
            raise BadRequest("data: must be a JSON object or array", api=API, reason="malformed")
        return data
    return obj


def _engage(obj: Any) -> Any:
    """Older SDKs' `/engage/` people update -> a `$set` event carrying `$set` / `$set_once`."""
    if type(obj) is list:
        return [_engage(item) for item in obj]
    if type(obj) is not dict or "event" in obj:
        return obj
    event: dict[str, Any] = {"event": "$set", "distinct_id": obj.get("$distinct_id", obj.get("distinct_id")),
                             "api_key": obj.get("$token", obj.get("token", obj.get("api_key")))}
    for key in ("$set", "$set_once"):
        if key in obj:
            event[key] = obj[key]
    if "$time" in obj:
        event["timestamp"] = obj["$time"] / 1000.0 if type(obj["$time"]) in (int, float) else obj["$time"]
    return event


def _skew(config: PosthogConfig, pipeline: EventPipeline, items: list[Any], sent_at: Any,
          query_ms: str | None, now: float, field: str = "sent_at") -> None:
    if not config.skew_correction:
        return
    try:
        sent = sent_at_of(sent_at, query_ms)
    except SkewError as err:
        raise _invalid(pipeline, API, [EventError(None, field, err.message)]) from None
    if sent is not None:
        correct(items, sent, now, pipeline.limits.max_future_skew)


async def capture(request: web.Request) -> web.Response:
    """Every PostHog event route: one event or a batch, in any of the shapes and encodings above."""
    config = _config(request)
    pipeline = request.app[PIPELINE]
    obj = _unwrap(await _read_json(request, pipeline))
    if request.path.rstrip("/") == "/engage":
        obj = _engage(obj)
    now = time.time()
    header_key = bearer_token(request)
    query_ms = request.query.get("_")
    if type(obj) is list:                                   # posthog-js's batches: a bare array
        if not obj:
            raise _invalid(pipeline, API, [EventError(None, "batch", "must not be empty")])
        obj = {"api_key": capture_api_key(obj[0]), "batch": obj}
    if type(obj) is dict and "batch" in obj:
        if type(obj["batch"]) is list:
            _skew(config, pipeline, obj["batch"], obj.get("sent_at"), query_ms, now)
        if obj.get("api_key") is None and obj.get("token") is None and type(obj["batch"]) is list and obj["batch"]:
            obj["api_key"] = capture_api_key(obj["batch"][0])
        return await _posthog_batch(request.app, pipeline, obj, now, header_key)
    if type(obj) is dict:
        _skew(config, pipeline, [obj], obj.get("sent_at"), query_ms, now)
    return await _posthog_capture_one(request.app, pipeline, obj, now, header_key)


def _v1_event(item: Any, lib: tuple[str, str] | None) -> Any:
    """A v1 wire event -> the v0 shape: `session_id` / `window_id` back into properties, the
    PostHog-Sdk-Info header as `$lib` / `$lib_version`, `options.disable_skew_correction` as
    `$ignore_sent_at`."""
    if type(item) is not dict:
        return item
    props = item.get("properties")
    props = dict(props) if type(props) is dict else ({} if props is None else props)
    if type(props) is dict:
        for source, target in (("session_id", "$session_id"), ("window_id", "$window_id")):
            if type(item.get(source)) is str:
                props.setdefault(target, item[source])
        if lib is not None:
            props.setdefault("$lib", lib[0])
            props.setdefault("$lib_version", lib[1])
        options = item.get("options")
        if type(options) is dict and options.get("disable_skew_correction") is True:
            props["$ignore_sent_at"] = True
    return {key: value for key, value in item.items() if key not in ("options", "session_id", "window_id")} | \
        {"properties": props}


async def capture_v1(request: web.Request) -> web.Response:
    """posthog-python's capture_mode="v1": Bearer key, `{created_at, batch}`, per-event results."""
    config = _config(request)
    pipeline = request.app[PIPELINE]
    key = bearer_token(request)
    require_ingest_key(pipeline.config.api_keys, key, API)
    obj = await _read_json(request, pipeline)
    if type(obj) is not dict or type(obj.get("batch")) is not list:
        got = "an object without batch" if type(obj) is dict else type(obj).__name__
        raise _invalid(pipeline, API, [EventError(None, "batch", f"must be an array of events (got {got})")])
    info = _SDK_INFO.fullmatch(request.headers.get("PostHog-Sdk-Info", ""))
    items = [_v1_event(item, (info[1], info[2]) if info else None) for item in obj["batch"]]
    now = time.time()
    _skew(config, pipeline, items, request.headers.get("PostHog-Request-Timestamp"), None, now,
          "PostHog-Request-Timestamp")
    await _posthog_batch(request.app, pipeline, {"api_key": key, "batch": items}, now, key)
    results = {item["uuid"]: {"result": "ok"} for item in items if type(item.get("uuid")) is str}
    return json_response({"results": results})


async def get_remote_config(request: web.Request) -> web.Response:
    """posthog-js's remote config for a project token (public, as the token in a web page is)."""
    config = _config(request)
    token = request.match_info["token"]
    if not _TOKEN.fullmatch(token):
        raise BadRequest("token: must be a project key of 1 to 256 letters, digits, '.', '_', '~', '+' or '-'",
                         [{"index": None, "field": "token", "message": "not a project key"}])
    headers = {"Cache-Control": CONFIG_CACHE}
    flags = request.app[FLAGS].flags.config           # posthog-js asks /flags/ only when flags are said to exist
    has_flags = flags.enabled and bool(flags.definitions)
    if request.path.endswith(".js"):
        return web.Response(text=remote_config_js(config, token, has_flags), content_type="application/javascript",
                            headers=headers)
    return json_response(remote_config(config, token, has_flags), headers=headers)
