"""Bearer-token checks shared by the admin endpoints and the ingest endpoints.

Tokens are compared in constant time against every configured token, so neither the answer nor its
timing tells which token, or how much of one, matched. Tokens are never logged: the access log
records the path, never the Authorization header.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web

from agent.api.keys import ADMIN_TOKENS
from agent.api.problems import Forbidden, Unauthorized
from agent.config.api import ApiConfig

API_KEY_HEADER = "X-Loom-Api-Key"


class AdminTokens:
    """The admin tokens in force (`api.admin_tokens`); replaced on reload."""

    def __init__(self, tokens: tuple[str, ...] = ()):
        self.tokens = tokens

    def prepare(self, config: ApiConfig) -> Callable[[], None]:
        """Reloadable: the new tokens apply from the next request."""
        return lambda: setattr(self, "tokens", config.admin_tokens)


def token_matches(presented: str | None, tokens: tuple[str, ...] | list[str]) -> bool:
    """Constant-time comparison of `presented` against every token."""
    if presented is None:
        return False
    given = presented.encode("utf-8", "surrogateescape")      # a header's non-UTF-8 bytes, as sent
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode())
    return found


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, else of the X-Loom-Api-Key header."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get(API_KEY_HEADER)


ADMIN_REALM = {"WWW-Authenticate": 'Bearer realm="loom-agent admin"'}


def require_admin(request: web.Request) -> None:
    """Raises the 401 (no token) or 403 (wrong token, or no admin token configured) unless the request
    carries a valid admin token."""
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("an admin token is required (Authorization: Bearer <token>)", headers=ADMIN_REALM)
    tokens = request.app[ADMIN_TOKENS].tokens
    if not tokens:
        raise Forbidden("the admin API is disabled: no admin token is configured (api.admin_tokens or "
                        "LOOM_AGENT_ADMIN_TOKENS)")
    if not token_matches(presented, tokens):
        raise Forbidden("the admin token is not valid")


def require_ingest_key(keys: tuple[str, ...] | list[str], presented: str | None, api: str) -> None:
    """Raises the 401 (no key) or 403 (wrong key), counted as `auth` rejections of `api`, when ingest keys
    are configured (events.api_keys) and `presented` is none of them."""
    if not keys:
        return
    if presented is None:
        raise Unauthorized(f"an ingest API key is required (Authorization: Bearer or {API_KEY_HEADER})",
                           api=api, reason="auth")
    if not token_matches(presented, keys):
        raise Forbidden("the ingest API key is not valid", api=api, reason="auth")
