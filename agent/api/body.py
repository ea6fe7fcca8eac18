"""Reading a request body within a size limit and a time limit: the one body reader of every handler
that takes one (events, PostHog, identify, custom metrics, errors, opt-out).

aiohttp bounds the request line and the headers (8,190 bytes a line, 128 headers: 400 beyond), and its
keep-alive timer closes a connection that has not sent a whole request line and headers within
`keepalive_timeout` of connecting or of its previous answer (agent/__main__.py). Nothing bounds how long a
body may take once the handler reads it: a client that declares a body and sends it a byte now and then,
or never, would hold the handler, its buffer and its socket for as long as it likes. Here:

- a declared Content-Length above the limit is refused before a byte of the body is read;
- a chunked or compressed body is refused as soon as what arrived passes the limit (decompressed size);
- no byte for `IDLE_SECONDS`, or the whole body not in `TOTAL_SECONDS` after reading started, ends the
  read: a slow mobile client still has a minute for a 1 MB batch, a stalled one gets 408 after 10 s;
- a body aiohttp cannot decode (broken chunking, a Content-Encoding that does not decode) is a 400.

Each refusal is a `BodyError` with the status, the message, the rejection reason the ingest counters
use, and the caller's `api` label and `field` name; the error middleware (agent/api/problems.py) answers
it in the route's shape and closes the connection when its state is unknown.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

IDLE_SECONDS = 10.0
TOTAL_SECONDS = 60.0


class BodyError(Exception):
    """A body that will not be read: `status` 413 (too large), 408 (too slow) or 400 (undecodable);
    `reason` is the loom_agent_ingest_rejected_total reason (too_large or malformed), counted under `api`
    when the route counts its rejections; `field` names the body in the answer of a route whose errors
    name fields (the opt-out's "body")."""

    def __init__(self, status: int, message: str, *, api: str | None = None, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.api, self.field = status, message, api, field

    @property
    def reason(self) -> str:
        return "too_large" if self.status == 413 else "malformed"


async def read_body(request: web.Request, limit: int, *, api: str | None = None, field: str | None = None,
                    idle: float | None = None, total: float | None = None) -> bytes:
    """The whole body, at most `limit` bytes; raises BodyError carrying `api` and `field` (see BodyError).
    `idle` and `total` default to the module's IDLE_SECONDS and TOTAL_SECONDS (read at call time, so a
    test may lower them)."""
    try:
        return await _read(request, limit, idle, total)
    except BodyError as exc:
        exc.api, exc.field = api, field
        raise


async def _read(request: web.Request, limit: int, idle: float | None, total: float | None) -> bytes:
    too_large = f"request body is larger than {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, too_large)
    content = request.content
    if content.is_eof() and content.exception() is None:   # all of it arrived with the head: no wait to bound
        body = content.read_nowait()                       # (no timeout scope per read: ~10 CPU-µs of a /flags)
        if len(body) > limit:
            raise BodyError(413, too_large)
        return body
    idle = IDLE_SECONDS if idle is None else idle
    total = TOTAL_SECONDS if total is None else total
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total
    chunks: list[bytes] = []
    size = 0
    while True:
        wait = min(idle, deadline - loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                chunk = await request.content.readany()
        except TimeoutError:
            raise BodyError(408, _slow_message(size, idle, total)) from None
        except (ValueError, OSError, HttpProcessingError, web.RequestPayloadError) as exc:   # e.g. broken gzip
            raise BodyError(400, "cannot read the request body: " + " ".join(str(exc).split())) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyError(413, too_large)
        chunks.append(chunk)


def _slow_message(received: int, idle: float, total: float) -> str:
    return (f"the request body did not arrive in time ({received} bytes received): a body must keep "
            f"arriving, with no pause of {idle:g} s, and be complete within {total:g} s")

