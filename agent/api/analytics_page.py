"""The admin analytics page and its sign-in (HTML; agent/analytics_page renders it, docs/analytics-page.md):

    GET  /analytics                  the dashboard (?range=7d|30d|90d, &release=), signed in
    GET  /analytics/insights         trend, funnel and retention of the GET form's events, signed in
    GET  /analytics/sign-in          the form (?next=/analytics...: where to go after it)
    POST /analytics/sign-in          form fields token (an admin token) and next: a session cookie, 303 to next
    POST /analytics/sign-out         form field csrf (the session's): the session ends, 303 to the sign-in

Signed out, a GET of a page is a 303 to the sign-in. The cookie (`loom_admin_session`) is `Secure;
HttpOnly; SameSite=Strict; Path=/` and holds a random session id, never the token
(agent/api/admin_sessions.py says why in-memory sessions). A token in a URL is refused outright (400),
before it is looked at. A wrong token is a 401 page; sign-in attempts are limited per client address
(SIGN_IN_ATTEMPTS a minute: 429 with Retry-After beyond). A post whose Origin is another site's is a
403; sign-out also needs the session's CSRF token.

The pages answer what the JSON endpoints answer, by the same functions: the dashboard of
agent/analytics/dashboard.py, the insights of agent/analytics/{trends,funnels,retention}.py with the
bodies the insights API reads; a bad parameter is a 400 page naming it, a store that cannot answer
(disabled, failing, past its time limit) a 503 page with the reason, never a 500.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from aiohttp import web

from agent.analytics.dashboard import dashboard
from agent.analytics.deadline import RETRY_AFTER, QueryTimeout, within
from agent.analytics.funnels import funnel
from agent.analytics.insight_query import funnel_query, retention_query, trends_query
from agent.analytics.retention import retention
from agent.analytics.timerange import RangeError, parse_time_range
from agent.analytics.trends import trends
from agent.analytics_page.dashboard_html import DEFAULT_RANGE, RANGES, render_dashboard
from agent.analytics_page.insights_form import InsightsForm, form_field, read_form
from agent.analytics_page.insights_html import render_insights
from agent.analytics_page.layout import PAGE_HEADERS
from agent.analytics_page.signin_html import render_refusal, render_sign_in
from agent.api.admin_sessions import COOKIE, AdminSessions, Session, csrf_matches
from agent.api.analytics import release_parameter
from agent.api.auth import token_matches
from agent.api.body import BodyError, read_body
from agent.api.keys import ADMIN_SESSIONS, ADMIN_TOKENS, EVENT_STORE, RELEASES, SIGN_IN_LIMITER
from agent.api.ratelimit import RateLimiter
from agent.store.base import Store
from agent.store.errors import StoreError
from agent.store.rollup_fold import settled_once

SIGN_IN = "/analytics/sign-in"
HOME = "/analytics"
MAX_FORM_BYTES = 4096
QUERY_SECONDS = 10.0           # each insight's time limit (as the insights API's)
SECRET_PARAMETERS = ("token", "access_token", "admin_token", "api_key")


def add_routes(app: web.Application) -> None:
    app.router.add_get(HOME, get_dashboard)
    app.router.add_get(HOME + "/insights", get_insights)
    app.router.add_get(SIGN_IN, get_sign_in)
    app.router.add_post(SIGN_IN, post_sign_in)
    app.router.add_post(HOME + "/sign-out", post_sign_out)


def html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html",
                            headers={**PAGE_HEADERS, **(headers or {})})
    response.enable_compression()          # when the client accepts it: the demo dashboard's 52 kB become 5 kB
    return response


def safe_next(value: str | None) -> str:
    """Where signing in may lead: a path of this agent under /analytics, else /analytics (never another
    site: no scheme, no host, no `//`, no backslash)."""
    if not value or len(value) > 2000 or "\\" in value or any(ord(c) < 0x20 for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not (parts.path == HOME or parts.path.startswith(HOME + "/")):
        return HOME
    if parts.path in (SIGN_IN, HOME + "/sign-out"):
        return HOME
    return value


def _refuse_secret_in_url(request: web.Request) -> web.Response | None:
    """A 400 page for a URL carrying a token-like parameter: never read, never accepted."""
    named = [name for name in request.query if name.lower() in SECRET_PARAMETERS]
    if not named:
        return None
    return html(render_refusal("Bad request", f"{named[0][:32]}: a token is never taken from a URL; sign in with "
                                              "the form (POST)"), 400)


def current_session(request: web.Request) -> Session | None:
    return request.app[ADMIN_SESSIONS].get(request.cookies.get(COOKIE), request.app[ADMIN_TOKENS].tokens)


def see_other(location: str) -> web.Response:
    """A 303 to `location` (a path of this agent), as a response the handler returns."""
    return web.Response(status=303, headers={**PAGE_HEADERS, "Location": location})


def _to_sign_in(request: web.Request) -> web.Response:
    return see_other(f"{SIGN_IN}?next={quote(request.path_qs, safe='')}")


# --- the pages --------------------------------------------------------------------------------------

def _signed_in(request: web.Request) -> Session | web.Response:
    """The admin session of a page request, or the answer instead of the page: the refusal of a secret in
    its URL, else the way to the sign-in form."""
    refused = _refuse_secret_in_url(request)
    if refused is not None:
        return refused
    session = current_session(request)
    return _to_sign_in(request) if session is None else session


async def get_dashboard(request: web.Request) -> web.Response:
    session = _signed_in(request)
    if isinstance(session, web.Response):
        return session
    releases = request.app[RELEASES].releases()
    try:
        unknown = sorted(set(request.query) - {"range", "release"})
        if unknown:
            raise RangeError(unknown[0][:64], "unknown parameter; known: range, release")
        range_ = _range_choice(request.query.getall("range", []))
        release = release_parameter(request.query) or None
    except RangeError as exc:
        return html(render_dashboard(None, range_=DEFAULT_RANGE, release=None, releases=releases, csrf=session.csrf,
                                     error=str(exc)), 400)
    time_range = parse_time_range({"range": range_}, time.time())
    store = request.app[EVENT_STORE].store
    status, doc, error, headers = 200, None, None, {}
    if store is None:
        status, error = 503, "The event store is disabled (store.driver: none): the dashboard reads it."
    else:
        try:
            doc = await within(QUERY_SECONDS, dashboard(store, time_range, release))
        except (StoreError, QueryTimeout) as exc:
            status, error, headers = 503, _store_message(exc), {"Retry-After": str(RETRY_AFTER)}
    return html(render_dashboard(doc, range_=range_, release=release, releases=releases, csrf=session.csrf,
                                 error=error), status, headers)


def _range_choice(given: list[str]) -> str:
    if len(given) > 1:
        raise RangeError("range", "given more than once")
    if not given or not given[0]:
        return DEFAULT_RANGE
    if given[0] not in RANGES:
        raise RangeError("range", f"must be one of {', '.join(RANGES)}")
    return given[0]


def _store_message(exc: Exception) -> str:
    if isinstance(exc, QueryTimeout):
        return f"The store did not answer within {exc.seconds:g} s; retry in a moment, or choose a shorter range."
    return "The event store cannot answer now (see the agent's log); retry in a moment."


async def get_insights(request: web.Request) -> web.Response:
    session = _signed_in(request)
    if isinstance(session, web.Response):
        return session
    try:
        form = read_form(request.query)
    except RangeError as exc:
        return html(render_insights(InsightsForm(), trend=None, funnel=None, retention=None, errors={},
                                    csrf=session.csrf, form_error=str(exc)), 400)
    now = time.time()
    try:
        queries = (("trends", trends_query(form.trends_body(), now), trends),
                   ("funnel", funnel_query(form.funnel_body(), now), funnel),
                   ("retention", retention_query(form.retention_body(), now), retention))
    except RangeError as exc:
        insight = "trends" if exc.field.startswith(("series", "interval", "breakdown")) else \
            "funnel" if exc.field.startswith(("steps", "window", "order")) else "retention"
        name = form_field(insight, exc.field)
        return html(render_insights(form, trend=None, funnel=None, retention=None, errors={}, csrf=session.csrf,
                                    form_error=f"{name}: {exc.message}"), 400)
    store = request.app[EVENT_STORE].store
    answers: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, str] = {}
    for name, query, build in queries:
        answers[name], why = await _answer(store, build, query)
        if why is not None:
            errors[name] = why
    status = 503 if errors else 200
    return html(render_insights(form, trend=answers["trends"], funnel=answers["funnel"],
                                retention=answers["retention"], errors=errors, csrf=session.csrf), status,
                {"Retry-After": str(RETRY_AFTER)} if errors else None)


async def _answer(store: Store | None, build: Any, query: Any) -> tuple[dict[str, Any] | None, str | None]:
    if store is None:
        return None, "The event store is disabled (store.driver: none): the insights read it."
    try:
        with settled_once():        # the rollups folded for the first read only (agent/store/rollup_fold.py)
            return await within(QUERY_SECONDS, build(store, query)), None
    except (StoreError, QueryTimeout) as exc:
        return None, _store_message(exc)


# --- sign-in and sign-out ---------------------------------------------------------------------------

async def get_sign_in(request: web.Request) -> web.Response:
    refused = _refuse_secret_in_url(request)
    if refused is not None:
        return refused
    next_path = safe_next(request.query.get("next"))
    if current_session(request) is not None:
        return see_other(next_path)
    note = None
    if not secure_context(request):
        note = (f"This page came over plain http from {request.host}: browsers keep the session's Secure cookie "
                "only over HTTPS or from 127.0.0.1 / localhost, so signing in here will not last. Serve the agent "
                "behind HTTPS.")
    return html(render_sign_in(next_path, note=note))


def secure_context(request: web.Request) -> bool:
    """Whether a browser keeps a Secure cookie from this request's origin: HTTPS (here, or at a proxy that
    says so in X-Forwarded-Proto), or a loopback host, which Chromium and Firefox treat as trustworthy."""
    if request.scheme == "https" or request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return True
    host = urlsplit("//" + request.host).hostname or ""
    return host == "localhost" or host.endswith(".localhost") or host == "::1" or host.startswith("127.")


def _cross_site(request: web.Request) -> bool:
    """A post that a browser says comes from another site: Sec-Fetch-Site other than same-origin or none
    (typed, bookmarked), or an Origin that is not this agent's own (or `null`: a sandboxed or data: page).
    The pages send their origin along (Referrer-Policy same-origin: with no-referrer, Chromium would send
    `Origin: null` with their own forms)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower()


async def _form(request: web.Request) -> dict[str, str] | web.Response:
    """The posted form's fields (the first value of each), or the refusal to answer."""
    if request.content_type != "application/x-www-form-urlencoded":
        return html(render_refusal("Bad request", "the form must be posted as application/x-www-form-urlencoded"),
                    415)
    try:
        body = await read_body(request, MAX_FORM_BYTES, field="body")
    except BodyError as exc:
        refusal = html(render_refusal("Bad request", exc.message), exc.status)
        if exc.status != 413:           # the body left unread (408, undecodable): closed with the answer, as the API's
            request.content.feed_eof()
            refusal.force_close()
        return refusal
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return html(render_refusal("Bad request", "the form is not valid"), 400)
    return {name: values[0] for name, values in fields.items()}


async def post_sign_in(request: web.Request) -> web.Response:
    if _refuse_secret_in_url(request) is not None or _cross_site(request):
        return html(render_refusal("Forbidden", "sign in from this agent's own sign-in form"), 403)
    wait = _sign_in_attempt(request.app[SIGN_IN_LIMITER], request)
    if wait is not None:
        return html(render_sign_in(HOME, f"Too many sign-in attempts from this address; retry in {wait} s."), 429,
                    {"Retry-After": str(wait)})
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    next_path = safe_next(form.get("next"))
    tokens = request.app[ADMIN_TOKENS].tokens
    if not tokens:
        return html(render_sign_in(next_path, "No admin token is configured (api.admin_tokens or "
                                              "LOOM_AGENT_ADMIN_TOKENS): the analytics page is disabled."), 403)
    token = form.get("token", "")
    if not token or not token_matches(token, tokens):
        return html(render_sign_in(next_path, "That is not an admin token of this agent."), 401)
    cookie, _ = request.app[ADMIN_SESSIONS].open(token)
    response = see_other(next_path)
    set_session_cookie(response, cookie, int(request.app[ADMIN_SESSIONS].seconds))
    return response


def set_session_cookie(response: web.StreamResponse, value: str, max_age: int) -> None:
    response.set_cookie(COOKIE, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict")


def _sign_in_attempt(limiter: RateLimiter, request: web.Request) -> int | None:
    """Count one attempt of the client's address: None when allowed, else the whole seconds to wait."""
    wait = limiter.acquire("addr:" + (request.remote or "unknown"))
    return None if wait is None else max(1, math.ceil(wait))


async def post_sign_out(request: web.Request) -> web.Response:
    if _cross_site(request):
        return html(render_refusal("Forbidden", "sign out from this agent's own page"), 403)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    sessions: AdminSessions = request.app[ADMIN_SESSIONS]
    cookie = request.cookies.get(COOKIE)
    session = sessions.get(cookie, request.app[ADMIN_TOKENS].tokens)
    if session is not None and not csrf_matches(session, form.get("csrf")):
        return html(render_refusal("Forbidden", "this sign-out form is not this session's; reload the page"), 403)
    sessions.close(cookie)
    response = see_other(SIGN_IN)
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response
