"""PostHog's feature-flag endpoints, answered from the `flags:` block (agent/flags/), so posthog-js,
posthog-node and posthog-python get their flags from the agent with nothing but their host changed
(docs/flags.md):

- `POST /flags` and `/flags/`: `?v=2` (or higher, as posthog-node and posthog-python send `v=4`) answers
  `{flags: {key: {key, enabled, variant, reason, metadata: {id, version, description, payload}}},
  errorsWhileComputingFlags, requestId}`; without a version the v1 shape `{featureFlags,
  featureFlagPayloads, errorsWhileComputingFlags}`;
- the legacy `POST /decide/` (`?v=3`: the v1 shape, `?v=4`: the v2 shape);
- local evaluation, for server SDKs with a personal API key (`Authorization: Bearer`, from
  `flags.personal_api_keys`): `GET /flags/definitions` and `GET /api/feature_flag/local_evaluation`
  answer PostHog's definitions document, with an ETag (`If-None-Match` -> 304).

A request body is decoded as a capture body is (gzip by its magic bytes, base64 forms: agent/api/posthog.py
read_decoded): `{token | api_key, distinct_id, groups, person_properties, group_properties,
flag_keys_to_evaluate}`. The key is checked like an event's (events.api_keys). Person properties are
the request's over the traits identify stored for the person (read only when a flag filters on a
property the request did not send; kept in memory until a write changes them, misses read together:
agent/store/person_traits.py). CORS as for capture (posthog.allowed_origins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from agent.api.auth import bearer_token, require_ingest_key, token_matches
from agent.api.events import parse_json
from agent.api.keys import EVENT_STORE, FLAGS, PIPELINE, PRIVACY
from agent.api.posthog import CORS, read_decoded
from agent.api.problems import BadRequest, Forbidden, NotFound, Unauthorized, json_response
from agent.events.identify import SIGNUP
from agent.flags.evaluate import Evaluation, FlagSet
from agent.store.errors import StoreError
from agent.store.gdpr import rfc3339
from agent.store.person_traits import stored_traits

API = "flags"
MAX_BODY = 1024 * 1024
MAX_PROPERTIES = 1000
FLAG_PATHS = ("/flags", "/flags/", "/decide", "/decide/")
DEFINITION_PATHS = ("/flags/definitions", "/flags/definitions/", "/api/feature_flag/local_evaluation",
                    "/api/feature_flag/local_evaluation/")


def add_routes(app: web.Application) -> None:
    for path in FLAG_PATHS:
        app.router.add_post(path, CORS.wrap(post_flags))
        app.router.add_route("OPTIONS", path, CORS.preflight("POST"))
    for path in DEFINITION_PATHS:
        app.router.add_get(path, get_definitions)


def _running(request: web.Request) -> FlagSet:
    flags: FlagSet = request.app[FLAGS].flags
    if not flags.config.enabled:
        raise NotFound("the feature-flag endpoints are disabled (flags.enabled: false)")
    return flags


def _version(request: web.Request) -> int:
    raw = request.query.get("v", "")
    if not raw:
        return 1
    if not raw.isdigit() or len(raw) > 3:
        raise BadRequest("v: must be an API version number (2, 3 or 4)",
                         [{"index": None, "field": "v", "message": "not a number"}],
                         api=API, reason="invalid")
    version = int(raw)
    if request.path.rstrip("/") == "/decide":
        return 2 if version >= 4 else 1
    return 2 if version >= 2 else 1


def _object(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if type(value) is not dict:
        raise BadRequest(f"{name}: must be an object",
                         [{"index": None, "field": name, "message": "must be an object"}],
                         api=API, reason="invalid")
    if len(value) > MAX_PROPERTIES:
        raise BadRequest(f"{name}: must have at most {MAX_PROPERTIES} keys",
                         [{"index": None, "field": name, "message": "too many keys"}], api=API, reason="invalid")
    return value


def _distinct_id(obj: Mapping[str, Any]) -> str:
    value = obj.get("distinct_id")
    if type(value) is int and type(value) is not bool:
        value = str(value)
    if type(value) is not str or not value or len(value) > 400:
        raise BadRequest("distinct_id: is required, a string of 1 to 400 characters",
                         [{"index": None, "field": "distinct_id", "message": "required"}], api=API, reason="invalid")
    return value


def _stored_traits(row: tuple[Any, ...]) -> dict[str, Any]:
    """A users row -> the person properties it holds (the sign-up date as RFC 3339, as $set sends it)."""
    raw, role, plan, signed_up_at = row
    decoded = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    traits = dict(decoded) if isinstance(decoded, dict) else {}
    for name, value in (("role", role), ("plan", plan),
                        (SIGNUP, None if signed_up_at is None else rfc3339(float(signed_up_at)))):
        if value is not None:
            traits[name] = value
    return traits


async def _person(request: web.Request, flags: FlagSet, distinct_id: str, given: dict[str, Any]) -> dict[str, Any]:
    """The request's person properties over the stored traits (read only when a filter needs a key the
    request did not send; a store that cannot answer leaves the request's alone)."""
    if flags.person_keys <= given.keys():
        return given
    store = request.app[EVENT_STORE].store
    privacy = request.app.get(PRIVACY)
    if store is None or privacy is None:
        return given
    person = privacy.pseudonymize(distinct_id)
    known = stored_traits(store)
    stored = known.cached(person)
    hit, counted = stored is not None, request.app[FLAGS].metrics
    if stored is None:
        try:
            stored = await known.read(store, person, _stored_traits)
        except StoreError:
            return given
    if counted is not None:
        counted.traits_looked_up(hit, len(known))
    return {**stored, **given} if stored else given


def _v1(flags: FlagSet, results: list[Evaluation]) -> dict[str, Any]:
    payloads = {r.key: p for r in results if (p := flags.payload(flags.by_key[r.key], r)) is not None}
    return {"featureFlags": {r.key: r.value for r in results}, "featureFlagPayloads": payloads,
            "errorsWhileComputingFlags": False}


async def post_flags(request: web.Request) -> web.Response:
    flags = _running(request)
    version = _version(request)
    pipeline = request.app[PIPELINE]
    obj = parse_json(await read_decoded(request, MAX_BODY), API)
    if type(obj) is not dict:
        raise BadRequest("the body must be a JSON object",
                         [{"index": None, "field": "", "message": "must be an object"}],
                         api=API, reason="invalid")
    key = obj.get("token") if obj.get("token") is not None else obj.get("api_key")
    require_ingest_key(pipeline.config.api_keys, key if isinstance(key, str) else bearer_token(request), API)
    distinct_id = _distinct_id(obj)
    groups = {str(k): v for k, v in _object(obj, "groups").items() if isinstance(v, (str, int))}
    group_properties = {k: v for k, v in _object(obj, "group_properties").items() if isinstance(v, dict)}
    person = await _person(request, flags, distinct_id, _object(obj, "person_properties"))
    wanted = obj.get("flag_keys_to_evaluate")
    chosen = [flags.by_key[k] for k in dict.fromkeys(k for k in wanted if isinstance(k, str) and k in flags.by_key)] \
        if isinstance(wanted, list) else flags.config.definitions
    results = flags.evaluate_many(chosen, distinct_id, person, groups, group_properties)
    if (counted := request.app[FLAGS].metrics) is not None:
        counted.served(results)
    if version >= 2:            # orjson's text of the v2 document, from the outcomes' fragments (FlagSet.v2_body)
        return web.Response(body=flags.v2_body(results), content_type="application/json")
    return json_response(_v1(flags, results))


async def get_definitions(request: web.Request) -> web.Response:
    """Local evaluation: the definitions for a personal API key, 304 when the client's ETag is current."""
    flags = _running(request)
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("a personal API key is required (Authorization: Bearer; flags.personal_api_keys)",
                           api=API, reason="auth")
    if not flags.config.personal_api_keys or not token_matches(presented, flags.config.personal_api_keys):
        raise Forbidden("the personal API key is not valid (flags.personal_api_keys)", api=API, reason="auth")
    headers = {"ETag": flags.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == flags.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=flags.document, content_type="application/json", headers=headers)
