"""Sentry's ingest protocol: `POST /api/{project_id}/envelope/` and the legacy `POST /api/{project_id}/store/`
(each with and without the trailing slash), and their CORS preflights, so that an application's own
Sentry SDK reports to the agent by changing only its DSN (`http://KEY@127.0.0.1:9464/1`).

The request, in order (agent/sentry/ holds the pure parts; docs/sentry.md is the user's version):

1. `sentry.enabled` (404 when false); a browser `Origin` must be in `sentry.allowed_origins` (403);
   no project in `sentry.projects`: 403 saying to configure one.
2. the body, bounded by `sentry.max_envelope_bytes` (agent/api/body.py). aiohttp itself undoes a
   single `Content-Encoding` of gzip, deflate, br (with the `brotli` module, which sentry-python's use
   implies) and zstd (with `backports.zstd`) while the body is read, so read_body's bound is on the
   decompressed bytes; agent/sentry/decode.py undoes, within the same bound, what aiohttp left: a chain
   of codings (`gzip, br`), `x-gzip`, or bytes that still look compressed (an application run with
   `auto_decompress=False`). 413 past the bound, 415 an unknown coding, 400 what does not decode.
3. the envelope split (agent/sentry/envelope.py): 400 naming the field of a body that cannot be split.
4. the key (agent/sentry/auth.py): 401 none presented, 403 malformed, disagreeing, another project's or
   not configured.
5. each item: `event` -> agent/sentry/events.py -> ErrorEvent -> the error sink (privacy, grouping,
   store, loom_errors_total, spans), all of the envelope's events in one commit; an item refused on its
   own (too large, an event that does not validate) is `rejected`, the rest go on. Once the events
   are committed (so a 429 leaves nothing of the envelope taken): `client_report` ->
   loom_agent_sdk_discarded_events_total, `log` / `otel_log` -> loom_agent_sentry_logs_total{level, logger},
   `session` / `sessions` -> release health (agent/sentry/sessions.py), `check_in` -> cron monitors
   (agent/sentry/crons.py),
   `transaction`, `span` and `otel_span` -> OTLP spans and loom_transactions_* (agent/sentry/transactions.py),
   `log` / `otel_log` records also -> OTLP log records (agent/sentry/logs.py),
   `trace_metric` and `statsd` -> the custom-metrics registry of POST /v1/metrics (agent/sentry/items.py
   reads them; a payload of the wrong shape is `rejected`); other types are `skipped`. Each item is
   counted in loom_agent_sentry_items_total{type, outcome}. An envelope that holds nothing but invalid
   events is a 400 naming their fields; beside other items they are `rejected` and the rest is taken.
6. the answer: 200 `{"id": "<event id>"}`; when the store cannot commit, 429 with `Retry-After` and
   `X-Sentry-Rate-Limits` (agent/sentry/ratelimit.py), so SDKs back off instead of dropping events.

Every answer to a browser origin carries the CORS headers, refusals included (a browser SDK must read
the 429's headers). Refusals are counted in loom_agent_ingest_rejected_total{api="sentry"}.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from agent.api.body import read_body
from agent.api.cors import Cors
from agent.api.keys import CUSTOM_METRICS, ERROR_SINK, EVENT_STORE, PIPELINE, PRIVACY, SENTRY
from agent.api.problems import ApiError, BadRequest, Forbidden, NotFound, TooManyRequests, json_response
from agent.custom_metrics.registry import CustomMetrics, MetricError
from agent.error_tracking.model import ErrorEvent
from agent.events.validate import EventError
from agent.sentry.auth import AuthError, authenticate, check_key
from agent.sentry.config import SentryConfig
from agent.sentry.crons import parse_check_in
from agent.sentry.decode import DecodeError, decode_body
from agent.sentry.envelope import Envelope, EnvelopeError, Item, parse_envelope, parse_item_json, parse_store_body
from agent.sentry.events import parse_sentry_event
from agent.sentry.ingest import ACCEPTED, REJECTED, SKIPPED, SentryIngest
from agent.sentry.items import ItemError, MetricBatch, discarded_events, log_levels, statsd_lines, trace_metrics
from agent.sentry.ratelimit import backoff_headers, categories_of
from agent.sentry.sessions import parse_session, parse_sessions
from agent.sentry.sourcemaps import debug_images
from agent.sentry.transactions import SPAN_ITEM_TYPES
from agent.store.errors import StoreError

API = "sentry"            # the `api` label of loom_agent_ingest_rejected_total
log = logging.getLogger("agent.api.sentry")
ROUTES = ("/api/{project_id}/envelope/", "/api/{project_id}/envelope", "/api/{project_id}/store/",
          "/api/{project_id}/store")
ALLOW_HEADERS = "content-type, content-encoding, x-sentry-auth, authorization, sentry-trace, baggage"
EXPOSE_HEADERS = "retry-after, x-sentry-rate-limits"
# single codings aiohttp undoes while the body is read (br and zstd when their modules are installed)
AIOHTTP_CODINGS = frozenset({"gzip", "deflate", "br", "zstd"})



def _allowed(request: web.Request, origin: str) -> bool:
    return request.app[SENTRY].config.origin_allowed(origin)


def _enabled(request: web.Request) -> SentryConfig:
    config = request.app[SENTRY].config
    if not config.enabled:
        raise NotFound("the Sentry endpoints are disabled (sentry.enabled: false)")
    return config


# browser SDKs: the origins of sentry.allowed_origins; a disabled endpoint answers 404 before any of it
CORS = Cors(_allowed, setting="sentry.allowed_origins", api=API, allow_headers=ALLOW_HEADERS,
            expose_headers=EXPOSE_HEADERS, purpose=" to send to the Sentry endpoints", gate=_enabled)


def add_routes(app: web.Application) -> None:
    for path in ROUTES:
        handler = post_envelope if "/envelope" in path else post_store
        app.router.add_post(path, CORS.wrap(handler))
        app.router.add_route("OPTIONS", path, CORS.preflight("POST"))


# --- the request -------------------------------------------------------------------------------------

def _admitted(request: web.Request) -> SentryIngest:
    """The Sentry component, once the endpoint is on, the origin allowed and a project configured."""
    ingest = request.app[SENTRY]
    config = _enabled(request)
    if not config.projects:
        raise Forbidden("no Sentry project is configured: list the project and its DSN keys in sentry.projects "
                        "(docs/sentry.md)", api=API, reason="auth")
    return ingest


def _remaining_codings(content_encoding: str | None, body: bytes) -> str | None:
    """The Content-Encoding still to undo after aiohttp read the body: None when aiohttp undid it (one
    coding it knows, and the bytes start as every envelope and event does, with a JSON object)."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in AIOHTTP_CODINGS and body.lstrip()[:1] in (b"{", b""):
        return None
    return content_encoding


async def _decoded_body(request: web.Request, limit: int) -> bytes:
    """The body, bounded by `limit` decompressed bytes (see the module docstring)."""
    body = await read_body(request, limit, api=API)
    remaining = _remaining_codings(request.headers.get("Content-Encoding"), body)
    if remaining is None:
        return body
    try:
        return decode_body(body, remaining, limit)
    except DecodeError as exc:
        reason = "too_large" if exc.status == 413 else "malformed"
        raise ApiError.of_status(exc.status, exc.message, api=API, reason=reason) from None


def _authenticated(request: web.Request, ingest: SentryIngest, header: Mapping[str, Any] | None) -> None:
    project_id = request.match_info["project_id"]
    try:
        key = authenticate(request.headers, request.query, header, project_id)
        check_key(key, project_id, ingest.keys)
    except AuthError as exc:
        cls = ApiError.by_status[exc.status]
        raise cls(exc.message, api=API, reason="auth") from None


def _envelope_error(exc: EnvelopeError) -> ApiError:
    return ApiError.of_status(exc.status, str(exc), [{"field": exc.field, "message": exc.message}], api=API,
                              reason="too_large" if exc.status == 413 else "malformed")


def _dnt(request: web.Request) -> bool:
    return request.headers.get("DNT", "").strip() == "1"


def _event_id(raw: Any) -> str | None:
    """An SDK's event id as it sent it, in Sentry's answer spelling (32 hex digits), else None."""
    if type(raw) is not str:
        return None
    try:
        return uuid.UUID(raw).hex
    except ValueError:
        return None


class _Events:
    """The error events of one request, mapped one item at a time."""

    def __init__(self, request: web.Request, ingest: SentryIngest):
        self.request, self.ingest = request, ingest
        self.pipeline, self.sink = request.app[PIPELINE], request.app[ERROR_SINK]
        self.now, self.dnt = time.time(), _dnt(request)
        self.errors: list[ErrorEvent] = []
        self.images: list[dict[str, str]] = []      # each error's source-map debug ids (debug_meta.images)
        self.invalid: list[EventError] = []

    def map(self, payload: Any, event_id: str | None, index: int | None) -> None:
        try:
            error = parse_sentry_event(payload, now=self.now, config=self.sink.config, limits=self.pipeline.limits,
                                        dnt_header=self.dnt, event_id=event_id, index=index)
        except EventError as err:
            self.invalid.append(err)
            self.ingest.count("event", REJECTED)
            return
        self.errors.append(error)
        self.images.append(debug_images(payload) if self.ingest.source_maps is not None else {})

    async def symbolicate(self) -> None:
        """Minified JavaScript frames -> original ones with the release's source maps, before privacy and
        grouping (the original file and function are what groups, and the source lines get scrubbed).
        Map files are read in a worker thread: the event loop never waits on the disk."""
        maps = self.ingest.source_maps
        if maps is None or not self.errors:
            return
        pairs = list(zip(self.errors, self.images))
        for outcomes in await asyncio.to_thread(lambda: [maps.resolve(error, images) for error, images in pairs]):
            for outcome, frames in outcomes.items():
                self.ingest.source_map_frames.inc((outcome,), frames)

    def refusal(self) -> BadRequest:
        """400 naming every invalid event's field; the client's own keys in a path pass through privacy."""
        privacy = self.request.app.get(PRIVACY)
        scrub = privacy.text if privacy is not None else str
        errors = [{"index": e.index, "field": scrub(e.field), "message": scrub(e.message)} for e in self.invalid]
        summary = scrub(str(self.invalid[0])) if len(self.invalid) == 1 else \
            f"{len(self.invalid)} invalid events; none was accepted"
        return BadRequest(summary, errors, api=API, reason="invalid")

    async def record(self, item_types: list[str]) -> None:
        """Commit the events (one transaction); a store that cannot commit is a 429 the SDKs back off on."""
        if not self.errors:
            return
        await self.symbolicate()
        try:
            await self.sink.record(self.errors, self.request.app[EVENT_STORE].store)
        except StoreError as exc:
            headers = backoff_headers(exc.retry_after, categories_of(item_types))
            raise TooManyRequests(f"the event store cannot take errors now ({type(exc).__name__}); retry after "
                                  f"{headers['Retry-After']} s", headers=headers, api=API,
                                  reason="store_unavailable") from exc
        self.ingest.count("event", ACCEPTED, len(self.errors))


async def post_envelope(request: web.Request) -> web.Response:
    ingest = _admitted(request)
    body = await _decoded_body(request, ingest.config.max_envelope_bytes)
    try:
        envelope = parse_envelope(body)
    except EnvelopeError as exc:
        raise _envelope_error(exc) from None
    _authenticated(request, ingest, envelope.header)
    events = _Events(request, ingest)
    header_id = _event_id(envelope.header.get("event_id"))
    for skipped in envelope.skipped:
        ingest.count(skipped.type, REJECTED)
    for item in envelope.items:
        if item.type == "event":
            _map_item(events, item, header_id)
    others = [item for item in envelope.items if item.type != "event"]
    if events.invalid and not events.errors and not others:
        raise events.refusal()          # nothing of the envelope could be taken: say why, field by field
    await events.record([item.type for item in envelope.items if item.type == "event"])
    registry = request.app[CUSTOM_METRICS]
    for item in others:             # read after the events' commit: a 429 above leaves nothing counted twice
        ingest.count(item.type, _read_item(ingest, registry, item))
    return json_response({"id": header_id or _first_event_id(envelope) or uuid.uuid4().hex})


def _map_item(events: _Events, item: Item, header_id: str | None) -> None:
    try:
        payload = parse_item_json(item)
    except EnvelopeError as exc:
        events.invalid.append(EventError(item.index, "payload", exc.message, array="items"))
        events.ingest.count(item.type, REJECTED)
        return
    events.map(payload, header_id, item.index)


READ_TYPES = frozenset({"client_report", "log", "otel_log", "trace_metric", "statsd", "session", "sessions",
                        "check_in"}) | SPAN_ITEM_TYPES
# acknowledged and counted by type, their payload not kept (docs/sentry.md says why): so an SDK that
# sends them sees them taken, and the operator sees how many arrive
COUNTED_TYPES = frozenset({"attachment", "replay_event", "replay_recording", "replay_video", "profile",
                           "profile_chunk", "feedback", "user_report"})


def _read_item(ingest: SentryIngest, registry: CustomMetrics, item: Item) -> str:
    """A non-event item into its metrics (agent/sentry/items.py); returns its outcome."""
    kind = item.type
    if kind in COUNTED_TYPES:
        return ACCEPTED
    if kind not in READ_TYPES:
        return SKIPPED
    try:
        if kind == "statsd":
            return _record_metrics(registry, statsd_lines(item.payload))
        payload = parse_item_json(item)
        if kind in SPAN_ITEM_TYPES:
            return _record_spans(ingest, kind, payload)
        if kind == "trace_metric":
            return _record_metrics(registry, trace_metrics(payload))
        if kind == "session":
            ingest.release_health.record_session(parse_session(payload))
        elif kind == "sessions":
            ingest.release_health.record_aggregates(parse_sessions(payload))
        elif kind == "check_in":
            ingest.crons.record(parse_check_in(payload))
        elif kind == "client_report":
            for (reason, category), quantity in discarded_events(payload).items():
                ingest.discarded.inc((reason, category), quantity)
        else:
            scrub = ingest.app_logs.privacy if ingest.app_logs is not None else None
            for (level, logger), records in log_levels(payload, kind).items():
                # the logger is the client's text on /metrics: no e-mail or card number, as transaction names
                ingest.logs.inc((level, scrub.text(logger) if scrub is not None else logger), records)
            if ingest.app_logs is not None:
                ingest.app_logs.export(payload, kind)          # OTLP log records, when exported
    except (EnvelopeError, ItemError):
        return REJECTED
    except Exception:       # an agent bug: the envelope's events are committed, its answer must stay 200
        log.exception("a Sentry %s item could not be read", kind)
        return REJECTED
    return ACCEPTED


def _record_metrics(registry: CustomMetrics, batch: MetricBatch) -> str:
    """Each metric recorded on its own, as a StatsD line is (one refused metric does not refuse the rest):
    the item is `accepted` when at least one was recorded or it had none, else `rejected`."""
    recorded = 0
    for _, sample in batch.samples:
        try:
            registry.record(sample)
        except MetricError:
            continue
        recorded += 1
    if recorded:
        for release in batch.releases:
            for observe in registry.release_observers:
                observe(release)
    return ACCEPTED if recorded or not (batch.samples or batch.errors) else REJECTED


def _record_spans(ingest: SentryIngest, kind: str, payload: Any) -> str:
    """A transaction, span or otel_span item -> RED metrics and OTLP spans (agent/sentry/transactions.py)."""
    if ingest.transactions is None:
        return SKIPPED
    ingest.transactions.record(kind, payload)
    return ACCEPTED


def _first_event_id(envelope: Envelope) -> str | None:
    for item in envelope.items:
        if item.type == "event":
            try:
                payload = parse_item_json(item)
            except EnvelopeError:
                continue
            if isinstance(payload, dict) and (found := _event_id(payload.get("event_id"))):
                return found
    return None


async def post_store(request: web.Request) -> web.Response:
    """The legacy endpoint: one JSON event (no envelope header: the key comes from the headers or query)."""
    ingest = _admitted(request)
    body = await _decoded_body(request, ingest.config.max_envelope_bytes)
    try:
        payload = parse_store_body(body)
    except EnvelopeError as exc:
        raise _envelope_error(exc) from None
    _authenticated(request, ingest, None)
    events = _Events(request, ingest)
    event_id = _event_id(payload.get("event_id"))
    events.map(payload, event_id, None)
    if events.invalid:
        raise events.refusal()
    await events.record(["event"])
    return json_response({"id": event_id or uuid.uuid4().hex})
