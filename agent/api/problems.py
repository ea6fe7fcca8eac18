"""The one HTTP error model of the agent: handlers raise, one middleware answers.

Why: every route module used to write its refusals by hand (five error helpers, three `_json` helpers,
the StoreError -> 503 block six times), so the same refusal could differ in shape, header or counting
from one route to the next, and each new endpoint copied the lot. Here, as httpx maps its errors in one
place, a refusal is an `ApiError` (status, message, field errors, headers) and `problem_middleware`
turns it into the documented body:

    {"error": "<message>", "errors": [{"index"?, "field", "message"}, ...]}      ("errors" only when any)

or, for the routes that answer text like the exporters they imitate (/probe, /-/ready), the message and
a newline. The middleware also answers the exceptions of the layers below the HTTP edge, so handlers
need not translate them:

- `StoreError` (the store cannot commit or read now): 503 with Retry-After; `store_call` names what
  the request was doing for the routes whose message says it;
- `RangeError` (a bad time-range or query parameter): 400 naming the parameter;
- `BodyError` (a body refused by agent/api/body.py's reader): 413, 408 or 400, in the route's shape
  (the field it names, if any), closing the connection when the rest of the body was left unread.

An error that carries `api` and `reason` is counted in loom_agent_ingest_rejected_total{api,reason}
here, once, as it is answered. Anything else (aiohttp's own 404/405, a bug) passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import orjson
from aiohttp import web

from agent.analytics.timerange import RangeError
from agent.api.body import BodyError
from agent.api.keys import PIPELINE
from agent.store.errors import StoreError

log = logging.getLogger("agent.api.problems")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FieldErrors = Sequence[Mapping[str, Any]]


class ApiError(Exception):
    """A refusal to answer with `status`: `message` for people, `errors` naming each bad field, extra
    `headers` (Retry-After, WWW-Authenticate); `api` and `reason` label the ingest rejection counter when
    the route counts its rejections; `plain` answers text instead of JSON; `close` closes the connection
    after the answer (the request body was left unread, its parser state unknown)."""

    status: ClassVar[int] = 500
    by_status: ClassVar[dict[int, type[ApiError]]] = {}

    def __init__(self, message: str, errors: FieldErrors = (), *, headers: Mapping[str, str] | None = None,
                 api: str | None = None, reason: str | None = None, plain: bool = False,
                 close: bool = False) -> None:
        super().__init__(message)
        self.message, self.errors = message, [dict(error) for error in errors]
        self.headers = dict(headers or {})
        self.api, self.reason, self.plain, self.close = api, reason, plain, close

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each status-named subclass registers itself, so `of_status` finds it for a computed status."""
        super().__init_subclass__(**kwargs)
        if "status" in cls.__dict__:
            ApiError.by_status.setdefault(cls.status, cls)

    @staticmethod
    def of_status(status: int, message: str, errors: FieldErrors = (), **options: Any) -> ApiError:
        """The error for a status known only at run time (a body's 413 or 408, a metric's 400 or 409)."""
        return ApiError.by_status.get(status, ApiError)(message, errors, **options)

    @classmethod
    def field(cls, field: str, message: str, **options: Any) -> ApiError:
        """One bad field or parameter: {"error": "field: message", "errors": [{"field", "message"}]}."""
        return cls(f"{field}: {message}", [{"field": field, "message": message}], **options)

    @classmethod
    def fields(cls, errors: FieldErrors, **options: Any) -> ApiError:
        """Several bad parameters, every one named in the summary ("a: ...; b: ...")."""
        return cls("; ".join(f"{error['field']}: {error['message']}" for error in errors), errors, **options)

    def body(self) -> dict[str, Any]:
        """The JSON document of the answer; a route with its own documented shape overrides this."""
        document: dict[str, Any] = {"error": self.message}
        if self.errors:
            document["errors"] = self.errors
        return document

    def response(self) -> web.Response:
        if self.plain:
            return web.Response(status=self.status, text=self.message + "\n", headers=self.headers)
        return json_response(self.body(), self.status, self.headers)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class RequestTimeout(ApiError):
    status = 408


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class TooManyRequests(ApiError):
    status = 429


class ServiceUnavailable(ApiError):
    status = 503


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """The one JSON answer of the API (orjson: the handlers' documents hold datetimes-as-strings, big
    lists, and the ingest path is hot)."""
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def store_unavailable(exc: StoreError, action: str | None = None, *, api: str | None = None,
                      detail: bool = False) -> ServiceUnavailable:
    """The 503 for a store that cannot commit or read now, with Retry-After: nothing of the request was
    acknowledged, the client retries. `action` says what the route was doing ("take events"); without it
    the message is the read routes' one, which never holds the driver's text (it may name the database).
    `detail` adds the driver's text for the ingest routes, whose clients act on it. Counted under `api`."""
    if action is None:
        state = "is unavailable"
    else:
        cause = f"{type(exc).__name__}: {exc}" if detail else type(exc).__name__
        state = f"cannot {action} now ({cause})"
    return ServiceUnavailable(f"the event store {state}; retry after {exc.retry_after} s",
                              headers={"Retry-After": str(exc.retry_after)}, api=api,
                              reason="store_unavailable" if api is not None else None)


@contextmanager
def store_call(action: str, *, api: str | None = None, detail: bool = False) -> Iterator[None]:
    """Run a store call whose failure the client should read as `action` ("take traits"), counted under
    `api` when given; a StoreError raised inside becomes that 503 (see `store_unavailable`)."""
    try:
        yield
    except StoreError as exc:
        raise store_unavailable(exc, action, api=api, detail=detail) from exc


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every refusal raised below in its documented shape, and count it once."""
    try:
        return await handler(request)
    except ApiError as exc:
        return answer(request, exc)
    except StoreError as exc:
        # the driver's message may name the database; the log has it, the response does not
        log.warning("event store query failed", extra={"path": request.path, "error": str(exc)})
        return answer(request, store_unavailable(exc))
    except BodyError as exc:
        return answer(request, body_refusal(exc))
    except RangeError as exc:
        return answer(request, BadRequest.field(exc.field, exc.message))


def body_refusal(exc: BodyError) -> ApiError:
    """A refused body: counted as too_large or malformed under the route's api. After a 413 aiohttp reads
    and drops what the client goes on sending for its lingering time (10 s) before closing, so that a
    client still sending sees the 413 rather than a reset connection; after a 408 or a 400 the rest of
    the body is never read and the connection is closed."""
    options: dict[str, Any] = {"api": exc.api, "reason": exc.reason, "close": exc.status != 413}
    if exc.field is not None:
        return ApiError.by_status[exc.status].field(exc.field, exc.message, **options)
    return ApiError.of_status(exc.status, exc.message, **options)


def answer(request: web.Request, exc: ApiError) -> web.Response:
    """The response for `exc`, after counting it. After a refusal that left the body unread (408, an
    undecodable body) the connection is closed with the answer: aiohttp would otherwise drain the body
    after the response, and log a decoding error as unhandled."""
    pipeline = request.app.get(PIPELINE)
    if exc.api is not None and exc.reason is not None and pipeline is not None:
        pipeline.rejected(exc.api, exc.reason)
    response = exc.response()
    if exc.close:
        request.content.feed_eof()
        response.force_close()
    return response
