"""CORS for the ingest routes a browser SDK calls (PostHog's, Sentry's, the flags'): an
allowed origin gets `Access-Control-Allow-Origin: <that origin>` (never credentials), on answers and
refusals alike; another origin is refused with a 403 naming the setting to change; a request without
an `Origin` header (a server SDK) is not a CORS request and passes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.api.body import BodyError
from agent.api.problems import ApiError, Forbidden, body_refusal

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFLIGHT_MAX_AGE = "86400"


class Cors:
    """`allowed(request, origin)` says whether an origin may call; `setting` names where to allow it."""

    def __init__(self, allowed: Callable[[web.Request, str], bool], *, setting: str, api: str | None,
                 allow_headers: str, expose_headers: str = "retry-after", purpose: str = "",
                 gate: Callable[[web.Request], object] | None = None):
        """`purpose` completes the refusal ("... is not allowed to send to X: add it to ..."); `gate` runs
        before the origin is looked at, on requests and preflights alike (a disabled endpoint's 404)."""
        self.allowed, self.setting, self.api = allowed, setting, api
        self.allow_headers, self.expose_headers = allow_headers, expose_headers
        self.purpose, self.gate = purpose, gate

    def headers(self, request: web.Request) -> dict[str, str]:
        """The CORS headers of an answer to an allowed origin; none without an Origin or for another."""
        origin = request.headers.get("Origin")
        if origin is None or not self.allowed(request, origin):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": self.expose_headers,
                "Vary": "Origin"}

    def check(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and not self.allowed(request, origin):
            raise Forbidden(f"the origin {origin[:200]} is not allowed{self.purpose}: add it to {self.setting}",
                            api=self.api, reason="auth")

    def wrap(self, handler: Handler) -> Handler:
        """The handler behind the origin check, its answers and refusals carrying the CORS headers."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            cors = self.headers(request)
            try:
                if self.gate is not None:
                    self.gate(request)
                self.check(request)
                response = await handler(request)
            except BodyError as exc:
                refusal = body_refusal(exc)
                refusal.headers.update(cors)
                raise refusal from None
            except ApiError as exc:
                exc.headers.update(cors)
                raise
            response.headers.update(cors)
            return response
        return wrapped

    def preflight(self, methods: str) -> Handler:
        """The OPTIONS handler: 200 with the allowed methods and headers for an allowed origin (the
        browser then sends the request), 403 for another origin."""
        async def preflight(request: web.Request) -> web.Response:
            if self.gate is not None:
                self.gate(request)
            headers = {"Allow": f"{methods}, OPTIONS"}
            if request.headers.get("Origin") is not None:
                self.check(request)
                headers.update(self.headers(request))
                headers.update({"Access-Control-Allow-Methods": methods,
                                "Access-Control-Allow-Headers": self.allow_headers,
                                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE})
            return web.Response(status=200, headers=headers)
        return preflight
