"""Error-event validation: untyped JSON (as orjson returns it) -> a typed `ErrorEvent`.

The envelope, Sentry-like (camelCase or snake_case; unknown keys are errors; `null` counts as absent):

    type           required: the exception's type ("TypeError"), 1 to 256 characters
    message        the exception's message; longer than errors.max_message_length: cut, and the
                   sample says `messageTruncated`
    stacktrace     {"frames": [frame, ...]}, or `frames` directly (not both). Frames are ordered as
                   Sentry sends them, the outermost call first and the frame that raised last. A frame:
                   filename, abs_path | absPath, function, module (strings, "" counting as absent; at
                   least one of them),
                   lineno, colno (integers >= 0), in_app | inApp (boolean), the source around the line
                   as Sentry SDKs send it: pre_context | preContext and post_context | postContext
                   (arrays of strings; the CONTEXT_LINES nearest the line kept, each cut to the string
                   limit), context_line | contextLine (a string, cut), and vars (the frame's local
                   variables: an object within the event limits, scrubbed like `extra`). More than errors.max_frames
                   frames: the first half and the last half are kept (the raising frames always are),
                   the sample says how many were omitted (`framesOmitted`).
    tags           {name: value}: at most 50; names 1 to 64 of letters, digits, _ . : $ -; values strings
                   of at most 200 characters (numbers and booleans are kept as their text).
                   `tags.feature` is the error's feature (a label of loom_errors_total, a filter).
    extra          an object of any JSON, within the event limits (depth, string length, finite numbers)
    user_id | userId, or user {id, email, ...}     the user: an id (string, or an integer kept as its
                   decimal text) of at most 256 characters; of `user` only `id` (else `email`) is
                   read, the rest is discarded unread
    release        as on events (agent/events/validate.py parse_release): "web@1.4.2", 1 to 128 letters,
                   digits and . _ - + @ : ~; nothing shaped like an e-mail address
    environment    1 to 64 characters without whitespace ("production")
    level          fatal | error | warning | info | debug (default error)
    fingerprint    a string or an array of 1 to 32 strings: the client's own grouping ("{{ default }}"
                   in it stands for the derived fingerprint, as in Sentry)
    event_id | eventId    client id for idempotent retries, at most 128 characters
    timestamp      RFC 3339 or unix seconds, within events.max_future_skew / max_past_age; absent: now
    context        as on events: page, user_agent, dnt, trace_id, span_id, ip, library, private

Every rejection is a `FieldError` naming the field; no message echoes a value.
"""

from __future__ import annotations

import math
import re
from typing import Any

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.model import LEVELS, ErrorEvent, Frame
from agent.events.limits import Limits
from agent.events.model import Context
from agent.events.properties import FieldError, check_generic, join_path, type_error
from agent.events.validate import (
    EVENT_ID_MAX,
    BatchError,
    EventError,
    parse_context,
    parse_event_time,
    parse_identifier,
    parse_release,
)

TYPE_MAX = 256
ENVIRONMENT_MAX = 64
MAX_TAGS = 50
TAG_VALUE_MAX = 200
MAX_FINGERPRINT_PARTS = 32
FINGERPRINT_PART_MAX = 256
_INT_MAX = 2**31
_TAG_NAME = re.compile(r"[A-Za-z0-9_.:$-]{1,64}")
_NO_SPACE = re.compile(r"[^\s\x00-\x1f\x7f]+")

_ENVELOPE = {"type": "type", "message": "message", "stacktrace": "stacktrace", "frames": "frames",
             "tags": "tags", "extra": "extra", "user_id": "user_id", "userId": "user_id", "user": "user",
             "release": "release", "environment": "environment", "level": "level",
             "fingerprint": "fingerprint", "event_id": "event_id", "eventId": "event_id",
             "timestamp": "timestamp", "context": "context"}
_FRAME = {"filename": "filename", "abs_path": "abs_path", "absPath": "abs_path", "function": "function",
          "module": "module", "lineno": "lineno", "colno": "colno", "in_app": "in_app", "inApp": "in_app",
          "pre_context": "pre_context", "preContext": "pre_context", "context_line": "context_line",
          "contextLine": "context_line", "post_context": "post_context", "postContext": "post_context",
          "vars": "vars"}
_FRAME_TEXT = ("filename", "abs_path", "function", "module")
CONTEXT_LINES = 10                  # source lines kept on each side of a frame's line (Sentry's SDKs send 5)


def _fields(obj: dict[str, Any], names: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """Keys -> canonical names, `null` values left out; unknown or repeated keys are errors."""
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in obj.items():
        name = names.get(key)
        if name is None:
            raise FieldError(join_path(prefix, key) if prefix else key, "unknown key")
        if name in seen:
            raise FieldError(join_path(prefix, key) if prefix else key,
                             f"given twice (as {_first(obj, names, name)} too)")
        seen.add(name)
        if value is not None:
            fields[name] = value
    return fields


def _first(obj: dict[str, Any], names: dict[str, str], name: str) -> str:
    return next(k for k in obj if names.get(k) == name)


def _text(value: Any, field: str, longest: int, *, empty: bool = False) -> str:
    if type(value) is not str:
        raise type_error("a string", value, field)
    if not empty and not value.strip():
        raise FieldError(field, "must not be empty")
    if len(value) > longest:
        raise FieldError(field, f"must be at most {longest} characters (got {len(value)})")
    return value


def _environment(value: Any, field: str, longest: int) -> str:
    """An environment: a filter and a span attribute, so no whitespace or control characters."""
    text = _text(value, field, longest)
    if not _NO_SPACE.fullmatch(text):
        raise FieldError(field, "must not contain whitespace or control characters")
    return text


def _count(value: Any, field: str) -> int:
    if type(value) is float and math.isfinite(value) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        if type(value) is float and not math.isfinite(value):
            raise FieldError(field, "must be a finite number")
        raise type_error("an integer", value, field)
    if not 0 <= value < _INT_MAX:
        raise FieldError(field, f"must be 0 to {_INT_MAX - 1}")
    return value


def parse_frame(raw: Any, field: str, limits: Limits) -> Frame:
    if type(raw) is not dict:
        raise type_error("an object", raw, field)
    fields = _fields(raw, _FRAME, field)
    frame = Frame()
    longest = limits.max_string_length
    for name in _FRAME_TEXT:
        value = fields.get(name)
        if value is not None:         # "" (an anonymous function) counts as absent
            if type(value) is not str or len(value) > longest:
                _text(value, f"{field}.{name}", longest, empty=True)       # raises, naming the field
            setattr(frame, name, value or None)
    if frame.filename is None and frame.abs_path is None and frame.function is None and frame.module is None:
        raise FieldError(field, "needs at least one of filename, abs_path, function, module")
    if "lineno" in fields:
        frame.lineno = _count(fields["lineno"], f"{field}.lineno")
    if "colno" in fields:
        frame.colno = _count(fields["colno"], f"{field}.colno")
    if "in_app" in fields:
        if type(fields["in_app"]) is not bool:
            raise type_error("a boolean", fields["in_app"], f"{field}.in_app")
        frame.in_app = fields["in_app"]
    if "context_line" in fields:
        line = fields["context_line"]
        if type(line) is not str:
            raise type_error("a string", line, f"{field}.context_line")
        frame.context_line = line[:longest]
    if "pre_context" in fields:
        frame.pre_context = _context_lines(fields["pre_context"], f"{field}.pre_context", longest, keep_last=True)
    if "post_context" in fields:
        frame.post_context = _context_lines(fields["post_context"], f"{field}.post_context", longest, keep_last=False)
    if "vars" in fields:
        frame.vars = _object_within_limits(fields["vars"], f"{field}.vars", limits)
    return frame


def _context_lines(value: Any, field: str, longest: int, keep_last: bool) -> tuple[str, ...]:
    """Source lines: strings (null reads as an empty line); the CONTEXT_LINES nearest the frame's line
    kept (the last ones before it, the first ones after it), each cut to `longest`: long minified
    lines are normal, not an error."""
    if type(value) is not list:
        raise type_error("an array of strings", value, field)
    chosen = value[-CONTEXT_LINES:] if keep_last else value[:CONTEXT_LINES]
    if all(type(line) is str for line in chosen) and max(map(len, chosen), default=0) <= longest:
        return tuple(chosen)          # the common case: every line a string within the limit
    offset = len(value) - len(chosen) if keep_last else 0
    lines: list[str] = []
    for i, line in enumerate(chosen):
        if line is not None and type(line) is not str:
            raise type_error("a string", line, f"{field}[{offset + i}]")
        lines.append((line or "")[:longest])
    return tuple(lines)


def _object_within_limits(raw: Any, field: str, limits: Limits) -> dict[str, Any]:
    """An object of any JSON within the event limits (key count, depth, string length, finite numbers)."""
    if type(raw) is not dict:
        raise type_error("an object", raw, field)
    if len(raw) > limits.max_properties:
        raise FieldError(field, f"must have at most {limits.max_properties} keys (got {len(raw)})")
    try:
        check_generic(raw, 0, limits)
    except FieldError as err:
        raise FieldError(join_path(field, err.field), err.message) from None
    return raw


def parse_frames(raw: Any, field: str, config: ErrorsConfig, limits: Limits) -> tuple[list[Frame], int]:
    """The frames (every one validated) and how many were omitted from the middle of a longer stack
    than `max_frames`: its first half and last half are kept, so the entry point and the frames that
    raised (those the fingerprint reads) survive. The omitted ones were after the first max_frames // 2."""
    if type(raw) is not list:
        raise type_error("an array of frames", raw, field)
    frames = [parse_frame(item, f"{field}[{i}]", limits) for i, item in enumerate(raw)]
    omitted = len(frames) - config.max_frames
    if omitted <= 0:
        return frames, 0
    head = config.max_frames // 2
    return frames[:head] + frames[head + omitted:], omitted


def _stack(fields: dict[str, Any], config: ErrorsConfig, limits: Limits) -> tuple[list[Frame], int]:
    if "stacktrace" in fields:
        if "frames" in fields:
            raise FieldError("frames", "given twice (as stacktrace.frames too)")
        stacktrace = fields["stacktrace"]
        if type(stacktrace) is not dict:
            raise type_error("an object", stacktrace, "stacktrace")
        inner = _fields(stacktrace, {"frames": "frames"}, "stacktrace")
        return parse_frames(inner.get("frames", []), "stacktrace.frames", config, limits)
    if "frames" in fields:
        return parse_frames(fields["frames"], "frames", config, limits)
    return [], 0


def parse_tags(raw: Any) -> dict[str, str]:
    if type(raw) is not dict:
        raise type_error("an object", raw, "tags")
    if len(raw) > MAX_TAGS:
        raise FieldError("tags", f"must have at most {MAX_TAGS} tags (got {len(raw)})")
    tags: dict[str, str] = {}
    for key, value in raw.items():
        if not _TAG_NAME.fullmatch(key):
            raise FieldError("tags", "tag names must be 1 to 64 letters, digits, _ . : $ -")
        field = f"tags.{key}"
        if value is None:
            continue
        kind = type(value)
        if kind is bool:
            value = "true" if value else "false"
        elif kind is int or (kind is float and math.isfinite(value)):
            value = str(value)
        elif kind is float:
            raise FieldError(field, "must be a finite number")
        elif kind is not str:
            raise type_error("a string", value, field)
        if len(value) > TAG_VALUE_MAX:
            raise FieldError(field, f"must be at most {TAG_VALUE_MAX} characters (got {len(value)})")
        tags[key] = value
    return tags


def parse_extra(raw: Any, limits: Limits) -> dict[str, Any]:
    return _object_within_limits(raw, "extra", limits)


def _user(fields: dict[str, Any]) -> str | None:
    """The user id, from user_id or user.id (else user.email); the rest of `user` is never read."""
    user_id = None if "user_id" not in fields else parse_identifier(fields["user_id"], "user_id")
    user = fields.get("user")
    if user is None:
        return user_id
    if type(user) is not dict:
        raise type_error("an object", user, "user")
    key = "id" if user.get("id") is not None else "email" if user.get("email") is not None else None
    if key is None:
        return user_id
    if user_id is not None:
        raise FieldError(f"user.{key}", "given twice (as user_id too)")
    return parse_identifier(user[key], f"user.{key}")


def parse_fingerprint(raw: Any) -> tuple[str, ...]:
    parts = [raw] if type(raw) is str else raw
    if type(parts) is not list:
        raise type_error("a string or an array of strings", raw, "fingerprint")
    if not 1 <= len(parts) <= MAX_FINGERPRINT_PARTS:
        raise FieldError("fingerprint", f"must have 1 to {MAX_FINGERPRINT_PARTS} parts")
    field = "fingerprint" if type(raw) is str else "fingerprint[{}]"
    return tuple(_text(part, field.format(i), FINGERPRINT_PART_MAX) for i, part in enumerate(parts))


def _level(value: Any) -> str:
    if value not in LEVELS or type(value) is not str:
        raise FieldError("level", f"must be one of: {', '.join(LEVELS)}")
    return value


def build_error(obj: Any, now: float, config: ErrorsConfig, limits: Limits, dnt_header: bool = False) -> ErrorEvent:
    """One envelope (see the module docstring) -> ErrorEvent; raises FieldError."""
    if type(obj) is not dict:
        raise type_error("an object", obj)
    fields = _fields(obj, _ENVELOPE)
    if "type" not in fields:
        raise FieldError("type", "is required")
    message = fields.get("message", "")
    if type(message) is not str:
        raise type_error("a string", message, "message")
    frames, omitted = _stack(fields, config, limits)
    timestamp = now if "timestamp" not in fields else parse_event_time(fields["timestamp"], now, limits)
    error = ErrorEvent(type=_text(fields["type"], "type", TYPE_MAX), message=message[:config.max_message_length],
                       timestamp=timestamp,
                       received_at=now, frames=frames, frames_omitted=omitted,
                       frames_omitted_at=config.max_frames // 2 if omitted else 0,
                       message_truncated=len(message) > config.max_message_length)
    if "tags" in fields:
        error.tags = parse_tags(fields["tags"])
    if "extra" in fields:
        error.extra = parse_extra(fields["extra"], limits)
    error.user_id = _user(fields)
    if "release" in fields:
        error.release = parse_release(fields["release"])
    if "environment" in fields:
        error.environment = _environment(fields["environment"], "environment", ENVIRONMENT_MAX)
    if "level" in fields:
        error.level = _level(fields["level"])
    if "fingerprint" in fields:
        error.fingerprint = parse_fingerprint(fields["fingerprint"])
    if "event_id" in fields:
        error.event_id = parse_identifier(fields["event_id"], "event_id", EVENT_ID_MAX)
    context = fields.get("context")
    error.context = Context(dnt=dnt_header) if context is None else parse_context(context, limits, dnt_header)
    return error


def parse_error(obj: Any, *, now: float, config: ErrorsConfig, limits: Limits, dnt_header: bool = False,
                index: int | None = None) -> ErrorEvent:
    """Validate one error event; raises EventError(index, field, message) (str(): "errors[3].type: ...")."""
    try:
        return build_error(obj, now, config, limits, dnt_header)
    except FieldError as err:
        raise EventError(index, err.field, err.message, array="errors") from None


def parse_error_batch(objs: Any, *, now: float, config: ErrorsConfig, limits: Limits,
                      dnt_header: bool = False) -> list[ErrorEvent]:
    """Validate a batch, all or nothing: BatchError lists EVERY invalid error (index, field, message);
    an empty batch, one larger than `config.max_batch`, or a value that is not an array is one error."""
    if type(objs) is not list:
        raise BatchError([EventError(None, "errors", type_error("an array", objs).message, array="errors")])
    if not objs:
        raise BatchError([EventError(None, "errors", "must not be empty", array="errors")])
    if len(objs) > config.max_batch:
        raise BatchError([EventError(None, "errors", f"must have at most {config.max_batch} errors (got {len(objs)})",
                                     array="errors")])
    errors: list[ErrorEvent] = []
    problems: list[EventError] = []
    for index, obj in enumerate(objs):
        try:
            errors.append(build_error(obj, now, config, limits, dnt_header))
        except FieldError as err:
            problems.append(EventError(index, err.field, err.message, array="errors"))
    if problems:
        raise BatchError(problems)
    return errors
