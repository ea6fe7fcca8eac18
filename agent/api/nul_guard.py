"""U+0000 is refused in every string a request carries: JSON bodies, the path, the query.

PostgreSQL stores U+0000 neither in text nor (as the \\u0000 escape) in jsonb: a request holding one
failed the whole group commit it was part of, so every request committed with it was answered 500, and
a query with one in a parameter was a 500. SQLite stores it, so the two stores did not even agree. The
character means nothing in analytics data: a request holding one is a 400 naming where it is, on both
stores. Bodies are searched for the escape first (a memchr-speed scan); the parsed value is walked only
when it is there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.api.keys import PRIVACY
from agent.api.problems import BadRequest

ESCAPE = b"\\u0000"
MESSAGE = "must not contain U+0000 (the NUL character)"


def nul_field(value: Any, path: str = "") -> str | None:
    """The path of the first string or object key of `value` holding U+0000, else None."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return child.replace("\x00", "\\u0000")
            if (found := nul_field(item, child)) is not None:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := nul_field(item, f"{path}[{i}]")) is not None:
                return found
    return None


def body_nul_field(raw: bytes, parsed: Any) -> str | None:
    """nul_field of a parsed JSON body, looked for only when its bytes hold the escape."""
    return nul_field(parsed) if ESCAPE in raw else None


@web.middleware
async def refuse_nul_in_url(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    field = "path" if "\x00" in request.path else next(
        (name for name, value in request.query.items() if "\x00" in name or "\x00" in value), None)
    if field is None:
        return await handler(request)
    privacy = request.app.get(PRIVACY)
    field = privacy.text(field.replace("\x00", "\\u0000")) if privacy is not None else "query"
    raise _refusal(request, field)


def _refusal(request: web.Request, field: str) -> BadRequest:
    """The 400 in the shape the route documents for its own bad input: /probe answers text like
    blackbox_exporter; a query (GET, DELETE) names the parameter; a body-taking route names the field
    with the index its batch errors carry. Raised here, answered by the error middleware (which must
    come before this one in the application's list)."""
    if request.path == "/probe":
        return BadRequest(f"{field}: {MESSAGE}", plain=True)
    error: dict[str, object] = {"field": field, "message": MESSAGE}
    if request.method not in ("GET", "HEAD", "DELETE"):
        error = {"index": None, **error}
    return BadRequest(f"{field}: {MESSAGE}", [error])
