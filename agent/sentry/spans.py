"""Sentry's performance items, parsed: `transaction` (an event of type "transaction" with its child
`spans`), `span` (a standalone span, or the v2 container `{"items": [...]}` of span streaming,
content type `application/vnd.sentry.items.span.v2+json`) and `otel_span` (one OTLP JSON span).
Pure functions over parsed JSON; agent/sentry/transactions.py turns what they return into spans and
RED metrics.

Why each reads as it does:

- A `transaction`'s own span is `contexts.trace` (trace_id, span_id, parent_span_id, op, status,
  data) timed by `start_timestamp` .. `timestamp`, named `transaction`; its `spans[]` are its
  children (a child without a trace id takes the transaction's). The item is refused (`ItemError`)
  when its own span cannot be read (no valid ids, no times, an end before the start); a child
  that cannot be read is dropped alone and counted (`SpanBatch.invalid`).
- Span v2 (sentry-python `trace_lifecycle="stream"`, sentry-javascript span streaming): `{trace_id,
  span_id, parent_span_id, name, status ("ok" | "error"), is_segment, start_timestamp,
  end_timestamp, attributes: {key: {value, type}}}`; `sentry.op` is its op; a segment span
  (`is_segment`) is what a transaction was: it counts in the RED metrics, named by
  `sentry.segment.name` with `sentry.segment.name.source`. The v1 standalone span is the shape of a
  transaction's child (`op`, `description`, `timestamp`, `data`, `tags`).
- The release, environment and SDK name the application (its resource): a transaction's
  `release`, `environment`, `sdk`; a v2 span's `sentry.release`, `sentry.environment`,
  `sentry.sdk.name` / `.version` attributes (taken out of the span's attributes).
- RED names: Sentry's `transaction_info.source` says where a name came from; "url" names are raw
  paths (`/users/4711/orders/9f86d081...`), one per user or object. `transaction_name` folds them:
  the query string and fragment go, and every path segment that looks like an id (digits, a UUID,
  hex of 8 or more, a token of 12 or more with a digit, an e-mail, anything over 64 characters)
  becomes `*`, at most 10 segments (`/users/*/orders/*`). Other sources (route, view, component,
  task, custom) are names the application chose; the metrics' series limit bounds them.
- Kinds from the op (OTel's): `http.server` and other `*.server`, serverless functions -> SERVER;
  `http.client`, `db*`, `cache*`, `rpc.client`/`grpc.client` -> CLIENT; `queue.publish`/`submit`/
  `message.publish` -> PRODUCER; `queue.process`/`receive`/`task` -> CONSUMER; else INTERNAL. An
  `otel_span`'s own kind wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind

from agent.sentry.items import MAX_RECORDS, ItemError
from agent.sentry.otel import MAX_NAME, otlp_attributes, span_id, text, timestamp_ns, trace_id, typed, unix_nanos

# Sentry's span statuses (relay-base-schema SpanStatus) plus "error" (span v2), the `status` label's set
STATUSES = frozenset({"ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
                      "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
                      "aborted", "out_of_range", "unimplemented", "internal_error", "unavailable", "data_loss",
                      "unauthenticated", "error"})
UNKNOWN = "unknown"
URL_SOURCE = "url"
MAX_SEGMENTS = 10
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_RESOURCE_ATTRIBUTES = {"sentry.release": "release", "sentry.environment": "environment",
                        "sentry.sdk.name": "sdk_name", "sentry.sdk.version": "sdk_version"}
_OTLP_KINDS = {0: SpanKind.INTERNAL, 1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT,
               4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}


@dataclass(slots=True)
class SentrySpan:
    """One span as read: ids as integers, times in nanoseconds, attributes not yet scrubbed."""

    trace_id: int
    span_id: int
    parent_id: int | None
    parent_remote: bool
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    status: str | None               # Sentry's status text ("ok", "internal_error", ...); None: unset
    op: str | None = None
    description: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None  # an otel_span's status message


@dataclass(frozen=True, slots=True)
class Transaction:
    """One RED sample: a transaction (or a segment span) by name, op and status, and its duration."""

    name: str
    op: str
    status: str
    duration: float


@dataclass(slots=True)
class SpanBatch:
    spans: list[SentrySpan] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    release: Any = None
    environment: Any = None
    sdk_name: Any = None
    sdk_version: Any = None
    source: str | None = None        # transaction_info.source of a transaction item
    invalid: int = 0                 # child spans dropped for their shape

    def add(self, span: SentrySpan | None) -> None:
        """A span read, or None for one that could not be (counted)."""
        if span is None:
            self.invalid += 1
        else:
            self.spans.append(span)


# --- names, kinds, statuses ------------------------------------------------------------------------------

def _id_like(segment: str) -> bool:
    if segment.isdigit() or len(segment) > 64 or "@" in segment or "%40" in segment:
        return True
    if _UUID.fullmatch(segment) or (_HEX.fullmatch(segment) and any(c.isdigit() for c in segment)):
        return True
    return len(segment) >= 12 and any(c.isdigit() for c in segment)


def url_name(name: str) -> str:
    """A raw URL path as a low-cardinality name (see the module docstring)."""
    path = name.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    method, sep, rest = path.partition(" ")
    prefix = ""
    if sep and method.isupper() and rest.startswith("/"):          # "GET /users/42"
        prefix, path = method + " ", rest
    segments = path.split("/")
    folded = ["*" if segment and _id_like(segment) else segment for segment in segments[:MAX_SEGMENTS + 1]]
    if len(segments) > MAX_SEGMENTS + 1:
        folded.append("**")
    return prefix + "/".join(folded)


def transaction_name(name: str, source: str | None) -> str:
    return url_name(name) if source == URL_SOURCE else name


def kind_of(op: str | None) -> SpanKind:
    if not op:
        return SpanKind.INTERNAL
    if op.endswith(".server") or op.startswith(("http.server", "function.", "serverless.")):
        return SpanKind.SERVER
    if op.startswith(("http.client", "db", "cache", "rpc.client", "grpc.client")):
        return SpanKind.CLIENT
    if op.startswith(("queue.publish", "queue.submit", "message.publish")):
        return SpanKind.PRODUCER
    if op.startswith(("queue.process", "queue.receive", "queue.task", "message.process")):
        return SpanKind.CONSUMER
    return SpanKind.INTERNAL


def status_label(status: str | None) -> str:
    if status is None:
        return UNKNOWN
    return status if status in STATUSES else "other"


def _status(raw: Any) -> str | None:
    return raw.strip().lower()[:64] if type(raw) is str and raw.strip() else None


def _object(raw: Any) -> dict[str, Any]:
    return raw if type(raw) is dict else {}


def _end(raw: dict[str, Any]) -> int | None:
    return timestamp_ns(raw.get("timestamp", raw.get("end_timestamp")))


# --- transaction -----------------------------------------------------------------------------------------

def _child(raw: Any, default_trace: int) -> SentrySpan | None:
    """A transaction's child span (or a v1 standalone span); None when it cannot be read."""
    if type(raw) is not dict:
        return None
    sid = span_id(raw.get("span_id"))
    start, end = timestamp_ns(raw.get("start_timestamp")), _end(raw)
    tid = trace_id(raw.get("trace_id")) if raw.get("trace_id") is not None else default_trace
    if sid is None or tid is None or start is None or end is None or end < start:
        return None
    op, description = text(raw.get("op"), MAX_NAME), text(raw.get("description"), MAX_NAME)
    return SentrySpan(tid, sid, span_id(raw.get("parent_span_id")), False, description or op or "span",
                      kind_of(op), start, end, _status(raw.get("status")), op, description,
                      _object(raw.get("data")), _object(raw.get("tags")))


def parse_transaction(payload: Any) -> SpanBatch:
    """A `transaction` item -> its spans (its own first) and one RED sample; raises ItemError."""
    if type(payload) is not dict:
        raise ItemError("a transaction must be a JSON object")
    context = _object(_object(payload.get("contexts")).get("trace"))
    tid, sid = trace_id(context.get("trace_id")), span_id(context.get("span_id"))
    if tid is None or sid is None:
        raise ItemError("contexts.trace must have a trace_id (32 hex digits) and a span_id (16)")
    start, end = timestamp_ns(payload.get("start_timestamp")), timestamp_ns(payload.get("timestamp"))
    if start is None or end is None or end < start:
        raise ItemError("start_timestamp and timestamp must be times, the end not before the start")
    name = text(payload.get("transaction"), MAX_NAME)
    if not name:
        raise ItemError("transaction must be a name")
    children = payload.get("spans", [])
    if children is None:
        children = []
    if type(children) is not list or len(children) > MAX_RECORDS:
        raise ItemError(f"spans must be an array of at most {MAX_RECORDS} spans")
    source = text(_object(payload.get("transaction_info")).get("source"), 32)
    op = text(context.get("op"), MAX_NAME)
    status = _status(context.get("status"))
    parent = span_id(context.get("parent_span_id"))
    sdk = _object(payload.get("sdk"))
    batch = SpanBatch(release=payload.get("release"), environment=payload.get("environment"),
                      sdk_name=sdk.get("name"), sdk_version=sdk.get("version"), source=source)
    batch.spans.append(SentrySpan(tid, sid, parent, parent is not None, transaction_name(name, source), kind_of(op),
                                  start, end, status, op, None, _object(context.get("data")),
                                  _object(payload.get("tags"))))
    batch.transactions.append(Transaction(transaction_name(name, source), op or "default", status_label(status),
                                          (end - start) / 1e9))
    for raw in children:
        batch.add(_child(raw, tid))
    return batch


# --- span (v1, v2) ---------------------------------------------------------------------------------------

def _v2_span(raw: Any, batch: SpanBatch) -> SentrySpan | None:
    if type(raw) is not dict:
        return None
    tid, sid = trace_id(raw.get("trace_id")), span_id(raw.get("span_id"))
    start, end = timestamp_ns(raw.get("start_timestamp")), _end(raw)
    if tid is None or sid is None or start is None or end is None or end < start:
        return None
    attributes = {key: typed(value) for key, value in _object(raw.get("attributes")).items()}
    for key, slot in _RESOURCE_ATTRIBUTES.items():
        value = attributes.pop(key, None)
        if value is not None and getattr(batch, slot) is None:
            setattr(batch, slot, value)
    op = text(attributes.pop("sentry.op", None), MAX_NAME)
    name = text(raw.get("name"), MAX_NAME) or op or "span"
    status = _status(raw.get("status"))
    if raw.get("is_segment") is True:
        source = text(attributes.get("sentry.segment.name.source"), 32)
        segment = text(attributes.get("sentry.segment.name"), MAX_NAME) or name
        name = transaction_name(segment, source)
        batch.transactions.append(Transaction(name, op or "default", status_label(status), (end - start) / 1e9))
    return SentrySpan(tid, sid, span_id(raw.get("parent_span_id")), False, name, kind_of(op), start, end, status,
                      op, None, attributes)


def parse_spans(payload: Any) -> SpanBatch:
    """A `span` item: the v2 container (`items`) or one v1 span -> its spans; raises ItemError when
    nothing in it is a span."""
    batch = SpanBatch()
    if type(payload) is dict and "items" in payload:
        records = payload["items"]
        if type(records) is not list or len(records) > MAX_RECORDS:
            raise ItemError(f"a span container's items must be an array of at most {MAX_RECORDS} spans")
        for raw in records:
            batch.add(_v2_span(raw, batch))
        if records and not batch.spans:
            raise ItemError("no span of the container could be read")
        return batch
    if type(payload) is not dict:
        raise ItemError("a span must be a JSON object")
    span = _child(payload, trace_id(payload.get("trace_id")) or 0)
    if span is None or not span.trace_id:
        raise ItemError("a span must have trace_id, span_id, start_timestamp and timestamp")
    batch.release, batch.environment = payload.get("release"), payload.get("environment")
    if payload.get("is_segment") is True:
        name = transaction_name(span.name, text(payload.get("segment_name_source"), 32))
        batch.transactions.append(Transaction(name, span.op or "default", status_label(span.status),
                                              (span.end_ns - span.start_ns) / 1e9))
    batch.spans.append(span)
    return batch


# --- otel_span -------------------------------------------------------------------------------------------

def _otlp_kind(raw: Any) -> SpanKind:
    if type(raw) is str:
        raw = {"SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4,
               "SPAN_KIND_CONSUMER": 5}.get(raw, 1)
    return _OTLP_KINDS.get(raw, SpanKind.INTERNAL) if type(raw) is int else SpanKind.INTERNAL


def parse_otel_span(payload: Any) -> SpanBatch:
    """An `otel_span` item (OTLP JSON: traceId, spanId, parentSpanId, name, kind, startTimeUnixNano,
    endTimeUnixNano, attributes, status {code, message}) -> its span; raises ItemError."""
    if type(payload) is not dict:
        raise ItemError("an otel_span must be a JSON object")
    tid, sid = trace_id(payload.get("traceId")), span_id(payload.get("spanId"))
    start, end = unix_nanos(payload.get("startTimeUnixNano")), unix_nanos(payload.get("endTimeUnixNano"))
    if tid is None or sid is None or start is None or end is None or end < start:
        raise ItemError("an otel_span must have traceId, spanId, startTimeUnixNano and endTimeUnixNano")
    status = _object(payload.get("status"))
    code = status.get("code")
    code = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, code) \
        if type(code) is str else code
    message = text(status.get("message"), 256)
    sentry_status = "ok" if code == 1 else ("error" if code == 2 else None)
    attributes = otlp_attributes(payload.get("attributes"))
    batch = SpanBatch()
    for key, slot in _RESOURCE_ATTRIBUTES.items():
        setattr(batch, slot, attributes.pop(key, None))
    name = text(payload.get("name"), MAX_NAME) or "span"
    batch.spans.append(SentrySpan(tid, sid, span_id(payload.get("parentSpanId")), False, name,
                                  _otlp_kind(payload.get("kind")), start, end, sentry_status, None, None,
                                  attributes, error_message=message))
    return batch
