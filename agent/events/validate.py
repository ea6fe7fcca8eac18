"""Event validation, the ingest hot path: untyped JSON (as orjson returns it) -> a typed `Event`.

The envelope of one event (unknown keys are errors; a `null` value counts as absent):

    event          required; ^[A-Za-z][A-Za-z0-9_.:$-]*$, at most `max_name_length` characters
    timestamp      RFC 3339 string ("2025-11-14T10:00:00Z", "...T10:00:00.123+02:00") or a number of unix
                   seconds; absent: the agent's clock. Rejected more than `max_future_skew` seconds in the
                   future or more than `max_past_age` seconds in the past.
    user_id | userId, anonymous_id | anonymousId     one of the two is required (string, or an integer
                   which is kept as its decimal string); at most 256 characters
    session_id | sessionId                           the browsing session, at most 256 characters
    event_id | eventId | message_id | messageId      client id for idempotent retries, at most 128
    properties     object; keys in camelCase or snake_case (stored snake_case), typed per the catalog
    release        the application release that sent the event (Sentry's `package@version+build`), 1 to 128
                   letters, digits and . _ - + @ : ~, starting with a letter or digit; see `parse_release`
    context        object: page, user_agent | userAgent, dnt (boolean), trace_id | traceId (32 hex digits,
                   not all zero), span_id | spanId (16 hex digits, not all zero), ip, library (string, or
                   {name, version}), private (an array of property names, camelCase or snake_case, that
                   privacy masks as "[private]"; stored snake_case); unknown keys are errors.

Properties of a catalog event are typed by its `Prop`s (integer also takes an integral float; number
takes integers and floats, never booleans, and is stored as float; `null` means absent); properties
the catalog does not list are kept, typed generically (JSON scalars, or objects/arrays nested at most
`max_depth` levels). `properties.user_id` (`userId`) is moved to the envelope when the envelope has
none, and never stays in properties: a user id must not become a label.

A validator per catalog event (a table of precompiled checks) is built at import for the default
`Limits`, and once per other `Limits` value on first use.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from agent.events.limits import DEFAULT_LIMITS, Limits
from agent.events.model import Context, Event
from agent.events.properties import (
    PROPERTY_NAME,
    TIMESTAMP_HINT,
    FieldError,
    SpecValidator,
    fmt_number,
    parse_properties,
    parse_timestamp,
    snake_case,
    type_error,
    validators,
)

__all__ = [
    "DEFAULT_LIMITS",
    "TIMESTAMP_HINT",
    "BatchError",
    "EventError",
    "FieldError",
    "Limits",
    "build_event",
    "parse_batch",
    "parse_event",
    "parse_event_time",
    "parse_identifier",
    "parse_release",
]

EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:$-]*")
ID_MAX = 256
EVENT_ID_MAX = 128
RELEASE_MAX = 128
RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@:~-]*")
_HEX = re.compile(r"[0-9a-fA-F]+")


class EventError(ValueError):
    """One invalid event: `index` in its batch (None for a single event), `field` a dotted path.
    str(): "events[3].properties.scroll_depth_percent: must be at most 100"."""

    def __init__(self, index: int | None, field: str, message: str, array: str = "events"):
        super().__init__(index, field, message)
        self.index, self.field, self.message, self.array = index, field, message, array

    def __str__(self) -> str:
        where = f"{self.array}[{self.index}]" if self.index is not None else ""
        path = f"{where}.{self.field}" if where and self.field else (where or self.field)
        return f"{path}: {self.message}" if path else self.message

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class BatchError(ValueError):
    """A rejected batch; `errors` lists every invalid event (or one error about the batch itself)."""

    def __init__(self, errors: list[EventError]):
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


# --- envelope --------------------------------------------------------------------------------------

_ENVELOPE = {"event": "event", "timestamp": "timestamp", "properties": "properties", "context": "context",
             "user_id": "user_id", "userId": "user_id", "anonymous_id": "anonymous_id",
             "anonymousId": "anonymous_id", "session_id": "session_id", "sessionId": "session_id",
             "event_id": "event_id", "eventId": "event_id", "message_id": "event_id", "messageId": "event_id",
             "release": "release"}
_CONTEXT = {"page": "page", "user_agent": "user_agent", "userAgent": "user_agent", "dnt": "dnt",
            "trace_id": "trace_id", "traceId": "trace_id", "span_id": "span_id", "spanId": "span_id",
            "ip": "ip", "library": "library", "private": "private"}


def _fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The envelope's keys -> canonical names; unknown or repeated keys are errors."""
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        name = _ENVELOPE.get(key)
        if name is None:
            raise FieldError(str(key), "unknown key")
        if name in fields:
            first = next(k for k in obj if _ENVELOPE.get(k) == name)
            raise FieldError(key, f"given twice (as {first} too)")
        fields[name] = value
    return fields


def parse_identifier(value: Any, field: str, longest: int = ID_MAX) -> str:
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        raise type_error("a string", value, field)
    if not value or len(value) > longest:
        raise FieldError(field, f"must be 1 to {longest} characters")
    return value


def _text(value: Any, field: str, longest: int) -> str:
    if type(value) is not str:
        raise type_error("a string", value, field)
    if len(value) > longest:
        raise FieldError(field, f"must be at most {longest} characters (got {len(value)})")
    return value


def parse_release(value: Any, field: str = "release") -> str:
    """A release name, checked once at the edge for events, errors and metrics alike.

    A release names a build of the application, not a person: it is stored and becomes the `release`
    label of loom_release_info as it is, without privacy's e-mail pseudonyms (which would turn Sentry's
    `loom-web@2.3.1` into a pseudonym). To keep personal data out all the same, a value shaped like an
    e-mail address (after its last `@`, two or more dot-separated labels that each hold a letter, the
    last all letters: `me@example.com`) is refused; versions have digit-only labels (`web@2.3.1`)."""
    if type(value) is not str:
        raise type_error("a string", value, field)
    if not value or len(value) > RELEASE_MAX:
        raise FieldError(field, f"must be 1 to {RELEASE_MAX} characters")
    if not RELEASE.fullmatch(value):
        raise FieldError(field, "must start with a letter or digit and hold only letters, digits and . _ - + @ : ~")
    local, at, host = value.rpartition("@")
    labels = host.split(".")
    if at and local and len(labels) >= 2 and labels[-1].isalpha() and all(
            any(ch.isalpha() for ch in label) for label in labels):
        raise FieldError(field, "must name a release, not an e-mail address")
    return value


def _hex_id(value: Any, field: str, digits: int) -> str:
    if type(value) is not str or len(value) != digits or not _HEX.fullmatch(value) or not value.strip("0"):
        raise FieldError(field, f"must be {digits} hex digits, not all zero")
    return value.lower()


def _library(value: Any, field: str) -> str:
    if type(value) is dict and type(value.get("name")) is str:      # {"name": ..., "version": ...}
        version = value.get("version")
        value = f"{value['name']}/{version}" if type(version) is str and version else value["name"]
    return _text(value, field, ID_MAX)


def _ip(value: Any, field: str) -> str:
    try:
        return str(ipaddress.ip_address(_text(value, field, 64)))
    except ValueError:
        raise FieldError(field, "must be an IP address") from None


def _private(value: Any, field: str, limits: Limits) -> tuple[str, ...]:
    """The property names a client marks private, snake_case as properties are stored."""
    if type(value) is not list:
        raise type_error("an array of property names", value, field)
    if len(value) > limits.max_properties:
        raise FieldError(field, f"must have at most {limits.max_properties} names (got {len(value)})")
    names: list[str] = []
    for i, name in enumerate(value):
        if type(name) is not str:
            raise type_error("a string", name, f"{field}[{i}]")
        if len(name) > limits.max_name_length or not PROPERTY_NAME.fullmatch(name):
            raise FieldError(f"{field}[{i}]", f"must be a property name (at most {limits.max_name_length} "
                                              "letters, digits, _ . : $ -)")
        names.append(snake_case(name))
    return tuple(dict.fromkeys(names))


def _twice(raw: dict[str, Any], key: str, name: str) -> FieldError:
    first = next(k for k in raw if _CONTEXT.get(k) == name)
    return FieldError(f"context.{key}", f"given twice (as {first} too)")


def parse_context(raw: Any, limits: Limits, dnt_header: bool) -> Context:
    if type(raw) is not dict:
        raise type_error("an object", raw, "context")
    context = Context(dnt=dnt_header)
    for key, value in raw.items():
        name = _CONTEXT.get(key)
        if name is None:
            raise FieldError(f"context.{key}", "unknown key")
        if value is None:
            continue
        if name == "page":
            context.page = _text(value, "context.page", limits.max_string_length)
        elif name == "user_agent":
            if context.user_agent is not None:
                raise _twice(raw, key, name)
            context.user_agent = _text(value, "context.user_agent", limits.max_string_length)
        elif name == "dnt":
            if type(value) is not bool:
                raise type_error("a boolean", value, "context.dnt")
            context.dnt = value or dnt_header
        elif name == "trace_id":
            if context.trace_id is not None:
                raise _twice(raw, key, name)
            context.trace_id = _hex_id(value, "context.trace_id", 32)
        elif name == "span_id":
            if context.span_id is not None:
                raise _twice(raw, key, name)
            context.span_id = _hex_id(value, "context.span_id", 16)
        elif name == "ip":
            context.ip = _ip(value, "context.ip")
        elif name == "private":
            context.private = _private(value, "context.private", limits)
        else:
            context.library = _library(value, "context.library")
    return context


def _event_name(value: Any, limits: Limits, pattern: re.Pattern[str]) -> str:
    if value is None:
        raise FieldError("event", "is required")
    if type(value) is not str:
        raise type_error("a string", value, "event")
    if not value:
        raise FieldError("event", "must not be empty")
    if len(value) > limits.max_name_length:
        raise FieldError("event", f"must be at most {limits.max_name_length} characters")
    if not pattern.fullmatch(value):
        raise FieldError("event", f"must match ^{pattern.pattern}$")
    return value


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{fmt_number(seconds)} s"


def parse_event_time(value: Any, now: float, limits: Limits) -> float:
    try:
        ts = parse_timestamp(value)
    except FieldError as err:
        raise FieldError("timestamp", err.message) from None
    if ts > now + limits.max_future_skew:
        raise FieldError("timestamp", f"must not be more than {_span(limits.max_future_skew)} in the future")
    if ts < now - limits.max_past_age:
        raise FieldError("timestamp", f"must not be more than {_span(limits.max_past_age)} in the past")
    return ts


def build_event(obj: Any, now: float, limits: Limits, dnt_header: bool = False,
                name_pattern: re.Pattern[str] = EVENT_NAME) -> Event:
    """One envelope (see the module docstring) -> Event; raises FieldError (no event index)."""
    if type(obj) is not dict:
        raise type_error("an object", obj)
    fields = _fields(obj)
    get = fields.get
    value = get("event")
    compiled = validators(limits)
    spec: SpecValidator | None
    if type(value) is str and (spec := compiled.events.get(value)) is not None:
        event: str = value
    else:                                 # catalog names are valid: only other names are checked
        event = _event_name(value, limits, name_pattern)
        if limits.strict:
            raise FieldError("event", f"unknown event {event!r} (strict mode)")
        spec = compiled.custom
    value = get("timestamp")
    ts = now if value is None else parse_event_time(value, now, limits)
    value = get("properties")
    properties = {} if value is None else parse_properties(value, spec, limits)
    value = get("user_id")
    user_id = None if value is None else parse_identifier(value, "user_id")
    if "user_id" in properties:           # a user id never stays a property (it must not become a label)
        value = properties.pop("user_id")
        if user_id is None:
            user_id = parse_identifier(value, "properties.user_id")
    value = get("anonymous_id")
    anonymous_id = None if value is None else parse_identifier(value, "anonymous_id")
    if user_id is None and anonymous_id is None:
        raise FieldError("user_id", "one of user_id, anonymous_id is required")
    value = get("session_id")
    session_id = None if value is None else parse_identifier(value, "session_id")
    value = get("event_id")
    event_id = None if value is None else parse_identifier(value, "event_id", EVENT_ID_MAX)
    value = get("context")
    context = Context(dnt=dnt_header) if value is None else parse_context(value, limits, dnt_header)
    value = get("release")
    release = None if value is None else parse_release(value)
    return Event(event, spec.category, ts, now, properties, user_id, anonymous_id, session_id, event_id,
                 context, spec.known, release)


def parse_event(obj: Any, *, index: int | None = None, now: float, limits: Limits = DEFAULT_LIMITS,
                dnt_header: bool = False) -> Event:
    """Validate one event; raises EventError(index, field, message). `now`: the agent's clock (unix
    seconds); `dnt_header`: the request carried `DNT: 1` (sets context.dnt)."""
    try:
        return build_event(obj, now, limits, dnt_header)
    except FieldError as err:
        raise EventError(index, err.field, err.message) from None


def parse_batch(objs: Any, *, now: float, limits: Limits = DEFAULT_LIMITS, dnt_header: bool = False) -> list[Event]:
    """Validate a batch, all or nothing: when any event is invalid, BatchError lists EVERY invalid
    event (index, field, message) and the caller must accept none of the batch — a client fixes and
    resends the whole batch, so nothing is counted twice. An empty batch, one larger than
    `limits.max_batch`, or a value that is not an array is a BatchError with one error, index None."""
    if type(objs) is not list:
        raise BatchError([EventError(None, "events", type_error("an array", objs).message)])
    if not objs:
        raise BatchError([EventError(None, "events", "must not be empty")])
    if len(objs) > limits.max_batch:
        raise BatchError([EventError(None, "events", f"must have at most {limits.max_batch} events (got {len(objs)})")])
    events: list[Event] = []
    errors: list[EventError] = []
    for index, obj in enumerate(objs):
        try:
            events.append(build_event(obj, now, limits, dnt_header))
        except FieldError as err:
            errors.append(EventError(index, err.field, err.message))
    if errors:
        raise BatchError(errors)
    return events
