"""The GDPR endpoints: access / portability, erasure, objection.

    GET    /api/analytics/export?userId=…        admin token: everything held about the user, as JSON
                                                  (with `anonymousIds`: the device ids seen on the
                                                  user's events; their pre-login events are another
                                                  export/erasure by that id, as a device may be shared)
    DELETE /api/analytics/user/{userId}           admin token: erase it everywhere, in one transaction
    POST   /api/analytics/opt-out                 admin token OR an ingest API key: object / withdraw

The id a caller gives is the application's id; the store holds ids after privacy (an e-mail used as an
id is stored as its keyed pseudonym), so every handler passes it through `Privacy.pseudonymize` first.

Why an ingest API key may opt a user out: the application's server holds that key and can already
send any user's events with it; a user's "stop tracking me" is naturally relayed by that server. It
can only stop data being collected, never read or erase it (those need the admin token).

Erasure does not opt the user out (a new event would be stored again): send both requests to honour an
erasure together with an objection. The opt-out row itself survives an erasure unless
`?includeOptOut=true`, because deleting it would start tracking someone who objected.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from agent.api.keys import ADMIN_TOKENS, EVENT_STORE, OPT_OUTS, PIPELINE, PRIVACY
from agent.api.auth import admin_denied, bearer_token, token_matches
from agent.api.body import BodyError, read_body, refusal
from agent.api.nul_guard import MESSAGE as NUL_MESSAGE, body_nul_field
from agent.store.errors import StoreError
from agent.store.gdpr import (
    anonymous_ids, erase_user, export_user, is_opted_out, rfc3339, set_opt_out,
)

log = logging.getLogger("agent.gdpr")

MAX_USER_ID_LENGTH = 512
MAX_BODY_BYTES = 64 * 1024
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/analytics/export", export)
    # an id may hold a "/" (sent as %2F), and a line break: "." would miss "\n" (404, never erased)
    app.router.add_delete(r"/api/analytics/user/{userId:[\s\S]+}", erase)
    app.router.add_post("/api/analytics/opt-out", opt_out)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _bad(field: str, message: str, status: int = 400) -> web.Response:
    return _json({"error": f"{field}: {message}", "errors": [{"field": field, "message": message}]}, status)


def _store_failed(exc: StoreError) -> web.Response:
    return _json({"error": f"the event store cannot answer now ({type(exc).__name__}); "
                           f"retry after {exc.retry_after} s"},
                 status=503, headers={"Retry-After": str(exc.retry_after)})


def _no_store() -> web.Response:
    return _json({"error": "the event store is off (store.driver: none): the agent holds no user data"}, 404)


def _user_id_error(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "is required: a non-empty string"
    if len(value) > MAX_USER_ID_LENGTH:
        return f"must be at most {MAX_USER_ID_LENGTH} characters"
    return None


def _ids(app: web.Application, user_id: str) -> tuple[str, dict[str, str]]:
    """The stored id, and the response's id fields (`pseudonymousId` only when it differs)."""
    stored = app[PRIVACY].pseudonymize(user_id)
    shown = {"userId": user_id}
    if stored != user_id:
        shown["pseudonymousId"] = stored
    return stored, shown


def _flag(query: Any, name: str) -> bool | None:
    value = query.get(name, "false").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


async def export(request: web.Request) -> web.Response:
    if (denied := admin_denied(request)) is not None:
        return denied
    user_id = request.query.get("userId")
    if (problem := _user_id_error(user_id)) is not None:
        return _bad("userId", problem)
    store = request.app.get(EVENT_STORE)
    if store is None:
        return _no_store()
    stored, shown = _ids(request.app, user_id)
    try:
        tables = await export_user(store, [stored])
        seen_as = await anonymous_ids(store, [stored])
    except StoreError as exc:
        return _store_failed(exc)
    body = {**shown, "exportedAt": rfc3339(time.time()), "optedOut": bool(tables["opt_outs"]),
            "anonymousIds": seen_as, "tables": tables}
    filename = "loom-export-" + _FILENAME_UNSAFE.sub("_", stored)[:64] + ".json"
    return _json(body, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def erase(request: web.Request) -> web.Response:
    if (denied := admin_denied(request)) is not None:
        return denied
    user_id = request.match_info["userId"]
    if (problem := _user_id_error(user_id)) is not None:
        return _bad("userId", problem)
    include_opt_out = _flag(request.query, "includeOptOut")
    if include_opt_out is None:
        return _bad("includeOptOut", "must be true or false")
    store = request.app.get(EVENT_STORE)
    if store is None:
        return _no_store()
    stored, shown = _ids(request.app, user_id)
    try:
        deleted = await erase_user(store, [stored], include_opt_out=include_opt_out)
        if include_opt_out:
            request.app[OPT_OUTS].apply(stored, False)
            opted_out = False
        else:
            opted_out = await is_opted_out(store, stored)
    except StoreError as exc:
        return _store_failed(exc)
    log.info("user data erased", extra={"rows_deleted": sum(deleted.values()), "opt_out_erased": include_opt_out})
    return _json({**shown, "deleted": deleted, "deletedAt": rfc3339(time.time()), "optedOut": opted_out})


def _opt_out_source(request: web.Request) -> tuple[str | None, web.Response | None]:
    """'admin' or 'ingest_key', from the token presented; else the 401 (none) or 403 (wrong)."""
    presented = bearer_token(request)
    if presented is None:
        return None, _json({"error": "an admin token or an ingest API key is required "
                                     "(Authorization: Bearer <token>)"}, 401,
                           headers={"WWW-Authenticate": 'Bearer realm="loom-agent"'})
    if token_matches(presented, request.app[ADMIN_TOKENS].tokens):
        return "admin", None
    if token_matches(presented, request.app[PIPELINE].config.api_keys):
        return "ingest_key", None
    return None, _json({"error": "the token is neither an admin token nor an ingest API key"}, 403)


async def _read_object(request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
    try:
        body = await read_body(request, MAX_BODY_BYTES)       # bounded in size and time (agent/api/body.py)
    except BodyError as exc:
        return None, refusal(request, exc, lambda status, message: _bad("body", message, status))
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return None, _bad("body", f"is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return None, _bad("body", "must be a JSON object {\"userId\": ..., \"optOut\": true|false}")
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        return None, _bad(request.app[PRIVACY].text(field), NUL_MESSAGE)
    return obj, None


def parse_opt_out(obj: dict[str, Any], scrub: Callable[[str], str] = str) -> tuple[str, bool] | web.Response:
    """(userId, optOut) or the 400 naming the field. Unknown fields are refused: a misspelt `optout: false`
    must not silently opt the user out (the default)."""
    for name in obj:
        if name not in ("userId", "optOut"):
            return _bad(scrub(str(name)), "unknown field (expected userId and optOut)")
    if (problem := _user_id_error(obj.get("userId"))) is not None:
        return _bad("userId", problem)
    opt = obj.get("optOut", True)
    if type(opt) is not bool:
        return _bad("optOut", "must be true or false")
    return obj["userId"], opt


async def opt_out(request: web.Request) -> web.Response:
    source, denied = _opt_out_source(request)
    if denied is not None:
        return denied
    obj, refused = await _read_object(request)
    if refused is not None:
        return refused
    parsed = parse_opt_out(obj, request.app[PRIVACY].text)
    if isinstance(parsed, web.Response):
        return parsed
    user_id, opted_out = parsed
    store = request.app.get(EVENT_STORE)
    if store is None:
        return _no_store()
    stored, shown = _ids(request.app, user_id)
    now = time.time()
    try:
        await set_opt_out(store, stored, opted_out, source, now)
    except StoreError as exc:
        return _store_failed(exc)
    request.app[OPT_OUTS].apply(stored, opted_out)    # the running rules follow the commit at once
    log.info("opt-out updated", extra={"opted_out": opted_out, "source": source})
    return _json({**shown, "optedOut": opted_out, "updatedAt": rfc3339(now)})
