"""Session recordings: posthog-js's `POST /s/` (`$snapshot` events), the admin API that serves them as
rrweb events, and the replay pages.

    POST /s, /s/                           posthog-js recordings (body encodings and CORS as /e/; the
                                           ingest key as capture's); 200 {"status": 1}
    GET  /api/recordings                   admin: sessions recorded in a time range (from, to, range),
                                           latest first, `limit` a page, `cursor` the next page
    GET  /api/recordings/{sessionId}       admin: the session's rrweb events in order (`windowId`: one tab)
    GET  /replay, /replay/{sessionId}      the replay pages (no data in them: their script asks the API
                                           with the admin token; agent/recordings/page.py)
    GET  /replay/player/{file}             rrweb-player from agent/replay/node_modules, when installed

Bounds and what is stored: agent/recordings/ingest.py; docs/posthog.md "Session recordings".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any

import orjson
from aiohttp import web

from agent.analytics.timerange import PARAMETERS, parse_time_range, values
from agent.api.analytics import event_store, refuse_unknown_parameters
from agent.api.auth import bearer_token, require_admin, require_ingest_key
from agent.api.events import parse_json
from agent.api.keys import EVENT_STORE, PIPELINE, POSTHOG, PRIVACY, RECORDINGS
from agent.api.posthog import API, CORS, read_decoded
from agent.api.problems import ApiError, BadRequest, NotFound, ServiceUnavailable, json_response, store_call
from agent.recordings.ingest import MAX_BODY_BYTES, MAX_DECODED_BYTES, MAX_INFLATED_BYTES
from agent.recordings.page import player_file, player_installed, render_list, render_replay
from agent.recordings.snapshots import MAX_ID_LENGTH, SnapshotError, parse_snapshots, snapshot_api_key
from agent.store.recordings import decode_events, get_session, list_sessions, session_chunks

PATHS = ("/s", "/s/")
LIST_PARAMETERS = (*PARAMETERS, "limit", "cursor")
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
OFFLOAD_BYTES = 256 * 1024          # a decoded body larger than this is worked on in a worker thread
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff"}


def add_routes(app: web.Application) -> None:
    for path in PATHS:
        app.router.add_post(path, CORS.wrap(post_snapshots))
        app.router.add_route("OPTIONS", path, CORS.preflight("POST"))
    app.router.add_get("/api/recordings", get_recordings)
    app.router.add_get("/api/recordings/{sessionId}", get_recording)
    app.router.add_get("/replay", replay_list)
    app.router.add_get("/replay/player/{file}", player_asset)
    app.router.add_get("/replay/{sessionId}", replay_page)


# --- ingest ----------------------------------------------------------------------------------------

async def post_snapshots(request: web.Request) -> web.Response:
    if not request.app[POSTHOG].config.enabled:
        raise NotFound("the PostHog endpoints are disabled (posthog.enabled: false)")
    pipeline, recordings = request.app[PIPELINE], request.app[RECORDINGS]
    body = await read_decoded(request, MAX_BODY_BYTES, MAX_DECODED_BYTES)
    # a large recording is parsed, inflated, scrubbed and compressed in a worker thread: ~0.7 s for 10 MB,
    # during which the event loop keeps answering the other requests
    offload = len(body) > OFFLOAD_BYTES
    obj = await asyncio.to_thread(parse_json, body, API) if offload else parse_json(body, API)
    del body
    # the key before the recording is read: nothing is inflated for a client without one
    require_ingest_key(pipeline.config.api_keys, snapshot_api_key(obj) or bearer_token(request), API)
    try:
        if offload:
            parsed = await asyncio.to_thread(parse_snapshots, obj, MAX_INFLATED_BYTES, recordings.scrub)
        else:
            parsed = parse_snapshots(obj, MAX_INFLATED_BYTES, recordings.scrub)
    except SnapshotError as exc:
        refused = [{"index": None, "field": exc.field, "message": exc.message}]
        raise ApiError.of_status(exc.status, str(exc), refused, api=API,
                                 reason="too_large" if exc.status == 413 else "invalid") from None
    store = request.app[EVENT_STORE].store
    if store is None:
        raise ServiceUnavailable("the event store is disabled (store.driver: none): recordings cannot be kept")
    with store_call("store the recording", api=API, detail=True):
        await recordings.record(store, parsed, time.time(), dnt=request.headers.get("DNT", "").strip() == "1",
                                offload=offload)
    return json_response({"status": 1})


# --- the admin API ---------------------------------------------------------------------------------

def _cursor(text: str) -> tuple[float, str]:
    try:
        start, _, session = base64.urlsafe_b64decode(text.encode("ascii") + b"==").decode().partition(":")
        return float(start), session
    except (UnicodeError, binascii.Error, ValueError):
        raise BadRequest.field("cursor", "is not a cursor of this list (use nextCursor as given)") from None


def _next_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{row['start_ts']!r}:{row['session_id']}".encode()).decode().rstrip("=")


def _limit(query: Any) -> int:
    given = values(query, "limit")
    if not given:
        return DEFAULT_LIMIT
    if len(given) > 1 or not given[0].isdigit() or not 1 <= int(given[0]) <= MAX_LIMIT:
        raise BadRequest.field("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(given[0])


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"sessionId": row["session_id"], "userId": row["user_id"], "start": row["start_ts"], "end": row["end_ts"],
            "durationSeconds": max(0.0, row["end_ts"] - row["start_ts"]), "snapshots": row["snapshots"],
            "bytes": row["raw_bytes"], "storedBytes": row["stored_bytes"], "receivedAt": row["received_at"]}


async def get_recordings(request: web.Request) -> web.Response:
    require_admin(request)
    refuse_unknown_parameters(request.query, LIST_PARAMETERS)
    time_range = parse_time_range(request.query, time.time())        # RangeError: a 400 naming it
    limit = _limit(request.query)
    cursor = values(request.query, "cursor")
    after = _cursor(cursor[0]) if cursor else None
    store = event_store(request)
    with store_call("answer"):
        rows = await list_sessions(store, time_range.start, time_range.end, limit + 1, after)
    page = rows[:limit]
    return json_response({**time_range.to_json(), "recordings": [_summary(row) for row in page],
                          "nextCursor": _next_cursor(page[-1]) if len(rows) > limit else None})


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["sessionId"]
    if not session_id.strip() or len(session_id) > MAX_ID_LENGTH:
        raise BadRequest.field("sessionId", f"must be a session id of 1 to {MAX_ID_LENGTH} characters")
    return session_id


def _stored(request: web.Request, given: str) -> str:
    """An id as the store holds it (an e-mail in it is its pseudonym, as at ingest)."""
    return request.app[PRIVACY].pseudonymize(given)


async def get_recording(request: web.Request) -> web.Response:
    require_admin(request)
    refuse_unknown_parameters(request.query, ("windowId",))
    session_id = _stored(request, _session_id(request))
    window = values(request.query, "windowId")
    if len(window) > 1 or (window and not window[0]):
        raise BadRequest.field("windowId", "must be one non-empty window id")
    window_id = _stored(request, window[0]) if window else None
    store = event_store(request)
    with store_call("answer"):
        row = await get_session(store, session_id)
        if row is None:
            raise NotFound(f"no recording of session {session_id[:200]}")
        chunks = await session_chunks(store, session_id)
    head = {**_summary(row), "windowId": window_id}
    if row["raw_bytes"] > OFFLOAD_BYTES:        # decompress, sort and encode a large one off the event loop
        body = await asyncio.to_thread(_recording_body, head, chunks, window_id)
    else:
        body = _recording_body(head, chunks, window_id)
    return web.Response(body=body, content_type="application/json")


def _recording_body(head: dict[str, Any], chunks: list[tuple[Any, ...]], window_id: str | None) -> bytes:
    events, windows = decode_events(chunks, window_id)
    return orjson.dumps({**head, "windows": windows, "events": events})


# --- the replay pages --------------------------------------------------------------------------------

async def replay_page(request: web.Request) -> web.Response:
    return web.Response(text=render_replay(_session_id(request), player_installed()), content_type="text/html",
                        headers=PAGE_HEADERS)


async def replay_list(request: web.Request) -> web.Response:
    return web.Response(text=render_list(), content_type="text/html", headers=PAGE_HEADERS)


async def player_asset(request: web.Request) -> web.StreamResponse:
    found = player_file(request.match_info["file"])
    if found is None:
        raise NotFound("no such player file (is rrweb-player installed? npm ci --prefix agent/replay)")
    path, content_type = found
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "public, max-age=3600",
                                           "X-Content-Type-Options": "nosniff"})
