"""Splitting a Sentry envelope into its items, and reading a legacy /store/ body.

An envelope is newline-separated: one line of envelope header JSON (`event_id`, `dsn`, `sdk`,
`sent_at`, `trace`), then items, each a header JSON line (`type`, optional `length` in bytes) and a
payload of `length` bytes, or up to the next "\\n" when `length` is absent. A trailing newline, and
blank lines between items, are tolerated.

Why the split is separate from what the items mean: the route must answer for the whole envelope
(one 4xx for a body that cannot be split) while judging each item on its own (an oversized or
invalid item is skipped and counted, never losing its siblings). So this module only cuts bytes and
never parses payloads; an unknown item type is returned like any other (the caller skips and counts
it), never an error.

Malformed input (a header that is not a JSON object, a truncated item, a `length` that does not
land on a newline, too many items) raises `EnvelopeError(field, message)`, `field` naming where it
failed ("header", "items[3].length"). Bounds: items per envelope (past it the envelope is refused at
once, without reading the rest) and bytes per item by type (Sentry's: 1 MiB per event, transaction,
span, log and metric item, 100 KiB per check-in; past it the item is skipped with its reason), at
most `max_sessions` `session` items (Sentry's 100; the rest are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

MIB = 1024 * 1024
KIB = 1024
DEFAULT_MAX_ITEMS = 1000
DEFAULT_MAX_ITEM_BYTES = MIB
DEFAULT_MAX_SESSIONS = 100
MAX_HEADER_BYTES = 64 * KIB              # one header line (envelope or item)
MAX_TYPE_LENGTH = 64
# Sentry's own per-item limits (Relay's defaults); a type not listed gets `max_item_bytes`
SENTRY_ITEM_BYTES: Mapping[str, int] = MappingProxyType({
    "event": MIB, "transaction": MIB, "span": MIB, "log": MIB, "otel_log": MIB, "trace_metric": MIB,
    "statsd": MIB, "check_in": 100 * KIB, "session": 100 * KIB, "sessions": MIB, "client_report": 100 * KIB,
})

TOO_LARGE = "too_large"
TOO_MANY_SESSIONS = "too_many_sessions"


class EnvelopeError(ValueError):
    """A body that cannot be split into items: `field` names where ("header", "items[2].length"),
    `status` is the answer (400, or 413 for more items than allowed). The message never echoes input."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(field, message)
        self.field, self.message, self.status = field, message, status

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class Item:
    """One item as it came: `headers` is its header object (with `type`, maybe `length`), `payload`
    its raw bytes (JSON for most types; the caller parses it)."""

    index: int
    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """An item refused on its own (`reason`: too_large, too_many_sessions), its siblings kept."""

    index: int
    type: str
    size: int
    reason: str


@dataclass(slots=True)
class Envelope:
    header: dict[str, Any]
    items: list[Item] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EnvelopeLimits:
    """The bounds of one envelope. `item_bytes` maps an item type to its largest payload; other types
    get `max_item_bytes`."""

    max_items: int = DEFAULT_MAX_ITEMS
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    item_bytes: Mapping[str, int] = field(default_factory=lambda: SENTRY_ITEM_BYTES)
    max_sessions: int = DEFAULT_MAX_SESSIONS

    def limit_for(self, item_type: str) -> int:
        return self.item_bytes.get(item_type, self.max_item_bytes)


DEFAULT_LIMITS = EnvelopeLimits()


def _json_object(data: bytes, start: int, end: int, where: str) -> dict[str, Any]:
    """The header line data[start:end] -> its object; anything else is an EnvelopeError naming
    `where`. The length is checked before the line is copied."""
    if end - start > MAX_HEADER_BYTES:
        raise EnvelopeError(where, f"a header line must be at most {MAX_HEADER_BYTES} bytes")
    try:
        value = orjson.loads(data[start:end])
    except orjson.JSONDecodeError:
        raise EnvelopeError(where, "is not JSON") from None
    if type(value) is not dict:
        raise EnvelopeError(where, "must be a JSON object")
    return value


def _line_end(data: bytes, start: int) -> int:
    end = data.find(b"\n", start)
    return len(data) if end < 0 else end


def _item_type(headers: dict[str, Any], where: str) -> str:
    kind = headers.get("type")
    if type(kind) is not str or not kind or len(kind) > MAX_TYPE_LENGTH:
        raise EnvelopeError(f"{where}.type", f"must be a string of 1 to {MAX_TYPE_LENGTH} characters")
    return kind


def _payload_span(data: bytes, start: int, headers: dict[str, Any], where: str) -> tuple[int, int]:
    """(payload end, where the next item starts). With `length` the payload must be followed by a
    newline or the end of the body (else the length is wrong); without it, it runs to the next newline."""
    length = headers.get("length")
    if length is None:
        end = _line_end(data, start)
        return end, end + 1
    if type(length) is not int or length < 0:
        raise EnvelopeError(f"{where}.length", "must be a non-negative integer")
    end = start + length
    if end > len(data):
        raise EnvelopeError(f"{where}.length", f"says {length} bytes but the body ends after {len(data) - start}")
    if end < len(data) and data[end] != 0x0A:
        raise EnvelopeError(f"{where}.length", f"the {length} bytes it says are not followed by a newline")
    return end, end + 1


def parse_envelope(data: bytes, limits: EnvelopeLimits = DEFAULT_LIMITS) -> Envelope:
    """Decompressed envelope bytes -> its header and items (see the module docstring)."""
    if not data or data.isspace():
        raise EnvelopeError("header", "the envelope is empty")
    end = _line_end(data, 0)
    envelope = Envelope(header=_json_object(data, 0, end, "header"))
    position, index, sessions = end + 1, 0, 0
    while position < len(data):
        end = _line_end(data, position)
        if end - position <= MAX_HEADER_BYTES and not data[position:end].strip():
            position = end + 1                # a trailing newline, or a blank line between items
            continue
        where = f"items[{index}]"
        if index >= limits.max_items:
            raise EnvelopeError("items", f"an envelope must have at most {limits.max_items} items", 413)
        headers = _json_object(data, position, end, f"{where}.header")
        kind = _item_type(headers, where)
        payload_end, position = _payload_span(data, end + 1, headers, where)
        size = payload_end - (end + 1)
        if kind == "session":
            sessions += 1
        if size > limits.limit_for(kind):
            envelope.skipped.append(SkippedItem(index, kind, size, TOO_LARGE))
        elif kind == "session" and sessions > limits.max_sessions:
            envelope.skipped.append(SkippedItem(index, kind, size, TOO_MANY_SESSIONS))
        else:
            envelope.items.append(Item(index, kind, headers, data[end + 1:payload_end]))
        index += 1
    return envelope


def parse_item_json(item: Item) -> Any:
    """An item's payload as JSON (the caller checks its shape); EnvelopeError naming the item."""
    try:
        return orjson.loads(item.payload)
    except orjson.JSONDecodeError:
        raise EnvelopeError(f"items[{item.index}].payload", "is not JSON") from None


def parse_store_body(data: bytes, limit: int = MIB) -> dict[str, Any]:
    """A legacy `POST /api/{project}/store/` body: one JSON event object (decompressed), at most
    `limit` bytes. The raven-era base64+zlib body is not supported."""
    if len(data) > limit:
        raise EnvelopeError("body", f"an event must be at most {limit} bytes", 413)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise EnvelopeError("body", "is not JSON") from None
    if type(value) is not dict:
        raise EnvelopeError("body", "must be a JSON object (one event)")
    return value
