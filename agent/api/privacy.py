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

from agent.api.auth import bearer_token, require_admin, token_matches
from agent.api.body import read_body
from agent.api.keys import ADMIN_TOKENS, EVENT_STORE, OPT_OUTS, PIPELINE, PRIVACY
from agent.api.nul_guard import MESSAGE as NUL_MESSAGE, body_nul_field
from agent.api.problems import BadRequest, Forbidden, NotFound, Unauthorized, json_response, store_call
from agent.store.base import Store
from agent.store.gdpr import (
    anonymous_ids,
    erase_user,
    export_user,
    is_opted_out,
    rfc3339,
    set_opt_out,
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


def _store(request: web.Request) -> Store:
    """The event store; without one (store.driver: none) the user has no data here: a 404."""
    store = request.app[EVENT_STORE].store
    if store is None:
        raise NotFound("the event store is off (store.driver: none): the agent holds no user data")
    return store


def _user_id(value: Any) -> str:
    """`value` as a user id; raises the 400 naming userId."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest.field("userId", "is required: a non-empty string")
    if len(value) > MAX_USER_ID_LENGTH:
        raise BadRequest.field("userId", f"must be at most {MAX_USER_ID_LENGTH} characters")
    return value


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
    require_admin(request)
    user_id = _user_id(request.query.get("userId"))
    store = _store(request)
    stored, shown = _ids(request.app, user_id)
    with store_call("answer"):            # 503 with Retry-After; retry it whole
        tables = await export_user(store, [stored])
        seen_as = await anonymous_ids(store, [stored])
    body = {**shown, "exportedAt": rfc3339(time.time()), "optedOut": bool(tables["opt_outs"]),
            "anonymousIds": seen_as, "tables": tables}
    filename = "loom-export-" + _FILENAME_UNSAFE.sub("_", stored)[:64] + ".json"
    return json_response(body, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def erase(request: web.Request) -> web.Response:
    require_admin(request)
    user_id = _user_id(request.match_info["userId"])
    include_opt_out = _flag(request.query, "includeOptOut")
    if include_opt_out is None:
        raise BadRequest.field("includeOptOut", "must be true or false")
    store = _store(request)
    stored, shown = _ids(request.app, user_id)
    with store_call("answer"):            # 503 with Retry-After; retry it whole
        deleted = await erase_user(store, [stored], include_opt_out=include_opt_out)
        if include_opt_out:
            request.app[OPT_OUTS].apply(stored, False)
            opted_out = False
        else:
            opted_out = await is_opted_out(store, stored)
    log.info("user data erased", extra={"rows_deleted": sum(deleted.values()), "opt_out_erased": include_opt_out})
    return json_response({**shown, "deleted": deleted, "deletedAt": rfc3339(time.time()), "optedOut": opted_out})


def _opt_out_source(request: web.Request) -> str:
    """'admin' or 'ingest_key', from the token presented; raises the 401 (none) or 403 (wrong)."""
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("an admin token or an ingest API key is required (Authorization: Bearer <token>)",
                           headers={"WWW-Authenticate": 'Bearer realm="loom-agent"'})
    if token_matches(presented, request.app[ADMIN_TOKENS].tokens):
        return "admin"
    if token_matches(presented, request.app[PIPELINE].config.api_keys):
        return "ingest_key"
    raise Forbidden("the token is neither an admin token nor an ingest API key")


async def _read_object(request: web.Request) -> dict[str, Any]:
    """The body's JSON object, bounded in size and time (agent/api/body.py); raises the 4xx naming `body`
    (or the field holding a NUL)."""
    body = await read_body(request, MAX_BODY_BYTES, field="body")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest.field("body", f"is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest.field("body", "must be a JSON object {\"userId\": ..., \"optOut\": true|false}")
    if (field := body_nul_field(body, obj)) is not None:       # PostgreSQL cannot store it
        raise BadRequest.field(request.app[PRIVACY].text(field), NUL_MESSAGE)
    return obj


def parse_opt_out(obj: dict[str, Any], scrub: Callable[[str], str] = str) -> tuple[str, bool]:
    """(userId, optOut); raises the 400 naming the field. Unknown fields are refused: a misspelt
    `optout: false` must not silently opt the user out (the default)."""
    for name in obj:
        if name not in ("userId", "optOut"):
            raise BadRequest.field(scrub(str(name)), "unknown field (expected userId and optOut)")
    user_id = _user_id(obj.get("userId"))
    opt = obj.get("optOut", True)
    if type(opt) is not bool:
        raise BadRequest.field("optOut", "must be true or false")
    return user_id, opt


async def opt_out(request: web.Request) -> web.Response:
    source = _opt_out_source(request)
    user_id, opted_out = parse_opt_out(await _read_object(request), request.app[PRIVACY].text)
    store = _store(request)
    stored, shown = _ids(request.app, user_id)
    now = time.time()
    with store_call("answer"):            # 503 with Retry-After; retry it whole
        await set_opt_out(store, stored, opted_out, source, now)
    request.app[OPT_OUTS].apply(stored, opted_out)    # the running rules follow the commit at once
    log.info("opt-out updated", extra={"opted_out": opted_out, "source": source})
    return json_response({**shown, "optedOut": opted_out, "updatedAt": rfc3339(now)})
