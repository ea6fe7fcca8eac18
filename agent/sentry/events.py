"""A Sentry `event` payload (errors and messages) -> the agent's typed `ErrorEvent`.

Why through /v1/errors' own validation: a Sentry event must become exactly the error the agent's
error path already scrubs, groups, stores, counts and traces, with the same limits and the same
400-naming-the-field answers. So the payload is translated into a /v1/errors body and validated by
`agent.error_tracking.validate.build_error` (frames by its `parse_frames`); a rejection names the
field in Sentry's own terms (`exception.values[1].stacktrace.frames[3].lineno`, `contexts.trace.trace_id`).
Unlike /v1/errors, keys this mapping does not read are ignored, not errors: Sentry's schema has dozens
(`breadcrumbs`, `modules`, `server_name`, ...) and an SDK adds new ones without notice.

The mapping:
- `exception.values[]` (or a bare list): Sentry orders a chain from the first cause to the exception
  that was raised, which comes LAST (sentry-python reverses `walk_exception_chain`); the last value
  gives `type`, `message` (its `value`), `frames` and the mechanism (`mechanism.type`,
  `mechanism.handled`: False for a crash). The values before it are the error's `causes`, each
  validated the same way (the last MAX_EXCEPTIONS kept; `causes_omitted` counts the rest). A missing
  type is "Error".
- frames: `filename`, `abs_path`, `function`, `module`, `lineno`, `colno`, `in_app`, the source
  context (`pre_context` / `context_line` / `post_context`, CONTEXT_LINES a side) and `vars` (local
  variables, of the VARS_FRAMES frames nearest the raise of each exception; the sink scrubs them like
  event properties: a secret-named variable is removed),
  validated by /v1/errors' own frame parser. Other frame keys (`platform`, `package`,
  `instruction_addr`, ...) are ignored.
- no exception: a message event. `type` is "Message"; frames from `stacktrace` or the crashed/current
  thread's (`threads.values[]`) when the SDK attached one. One exception marked `mechanism.synthetic`
  (made by the SDK to carry the stack of a captureMessage, as @sentry/node does) is a message event
  too, with that exception's frames.
- the message: `logentry` (or the legacy `message`, a string or the same object): `formatted`, else
  `message` with its `params` filled in (`%s`, `%(name)s`). An exception event's message is the
  exception's value; its log message, if any, is `log_message`.
- `level` (Sentry's `warn`, `critical` and `log` read as warning, fatal and info), `tags` (an object
  or a list of [name, value] pairs), `extra`, `release`, `environment`, `fingerprint` (numbers as
  text; `{{ default }}` is kept and resolved by the fingerprint stage), `event_id` (a UUID in either
  spelling -> 32 lowercase hex digits), `timestamp` (unix seconds or RFC 3339; Sentry's offset-less
  form is UTC).
- `user`: `id`, else `email`, else `username` -> user_id; `ip_address` -> context.ip (not `{{auto}}`).
- `contexts.trace.trace_id` / `span_id` -> context (the error joins the trace); `sdk` name/version ->
  context.library; `request.url` without query and fragment -> context.page; the request's
  `User-Agent` header -> context.user_agent.
- `request` -> `request`: method, URL without query, headers but credentials, cookies and client
  addresses (request_record); `data`, `query_string`, `cookies`, `env` are never read.
- `breadcrumbs` -> the last MAX_BREADCRUMBS, malformed ones left out (breadcrumbs()).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.model import ChainedException, ErrorEvent
from agent.error_tracking.validate import TYPE_MAX, build_error, parse_frames
from agent.events.limits import Limits
from agent.events.properties import FieldError, check_generic, type_error
from agent.events.validate import EventError

DEFAULT_TYPE = "Error"
MESSAGE_TYPE = "Message"
MAX_EXCEPTIONS = 32                      # a longer chain keeps the last ones (nearest the raise)
MAX_BREADCRUMBS = 100                    # Sentry's SDKs keep 100 by default
MAX_HEADERS = 50
# request headers never kept: credentials, cookies, and the client's address (the IP is user.ip_address)
DROPPED_HEADERS = frozenset({"cookie", "set-cookie", "authorization", "proxy-authorization", "x-api-key",
                             "x-auth-token", "x-csrf-token", "x-xsrf-token", "x-sentry-auth", "x-forwarded-for",
                             "x-real-ip", "forwarded", "cf-connecting-ip", "true-client-ip"})
MAX_PARAMS = 100
LEVEL_ALIASES = {"warn": "warning", "critical": "fatal", "log": "info"}
_FRAME_KEYS = ("filename", "abs_path", "function", "module", "lineno", "colno", "in_app", "pre_context",
               "context_line", "post_context", "vars")
_FRAME_KEYS_NO_VARS = _FRAME_KEYS[:-1]
# local variables are kept for the frames nearest the raise only: that is where a bug's state is, and
# scrubbing every variable of a 30-frame stack was a third of the cost of an event (bench/RESULTS.md)
VARS_FRAMES = 10
_PLACEHOLDER = re.compile(r"%(?:\(([A-Za-z0-9_.-]{1,64})\))?[sdifr]|%%")
_NAIVE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


# --- small shapes -----------------------------------------------------------------------------------

def _object(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise type_error("an object", value, where)
    return value


def _optional_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        raise type_error("a string", value, where)
    return value


def _frame_fields(raw: Any, with_vars: bool) -> Any:
    """The keys the model has of a Sentry frame (a non-object is passed on for parse_frame to refuse)."""
    if type(raw) is not dict:
        return raw
    return {key: raw[key] for key in (_FRAME_KEYS if with_vars else _FRAME_KEYS_NO_VARS) if key in raw}


@dataclass(slots=True)
class _Stack:
    """A Sentry stacktrace's frames as /v1/errors takes them."""

    path: str                             # where its frames are: "exception.values[1].stacktrace.frames"
    frames: list[Any] = field(default_factory=list)


def _stack(raw: Any, where: str) -> _Stack:
    path = f"{where}.frames"
    if raw is None:
        return _Stack(path)
    frames = _object(raw, where).get("frames")
    if frames is None:
        return _Stack(path)
    if type(frames) is not list:
        raise type_error("an array of frames", frames, path)
    first_with_vars = len(frames) - VARS_FRAMES
    return _Stack(path, [_frame_fields(frame, i >= first_with_vars) for i, frame in enumerate(frames)])


# --- exceptions --------------------------------------------------------------------------------------

def _exception_values(raw: Any) -> list[tuple[Any, str]]:
    """`exception` -> (value, its field): {"values": [...]}, a bare list, or one legacy object."""
    if raw is None:
        return []
    if type(raw) is list:
        return [(value, f"exception[{i}]") for i, value in enumerate(raw)]
    obj = _object(raw, "exception")
    if "values" not in obj and ("type" in obj or "value" in obj):
        return [(obj, "exception")]
    values = obj.get("values")
    if values is None:
        return []
    if type(values) is not list:
        raise type_error("an array", values, "exception.values")
    return [(value, f"exception.values[{i}]") for i, value in enumerate(values)]


def _exception_type(raw: dict[str, Any], where: str) -> str:
    kind = _optional_text(raw.get("type"), f"{where}.type")
    if kind is None or not kind.strip():
        return DEFAULT_TYPE
    if len(kind) > TYPE_MAX:
        raise FieldError(f"{where}.type", f"must be at most {TYPE_MAX} characters (got {len(kind)})")
    return kind


def _mechanism(raw: dict[str, Any], where: str) -> tuple[str | None, bool | None, bool]:
    """(mechanism.type, mechanism.handled, mechanism.synthetic)."""
    mechanism = raw.get("mechanism")
    if mechanism is None:
        return None, None, False
    mechanism = _object(mechanism, f"{where}.mechanism")
    handled = mechanism.get("handled")
    if handled is not None and type(handled) is not bool:
        raise type_error("a boolean", handled, f"{where}.mechanism.handled")
    return (_optional_text(mechanism.get("type"), f"{where}.mechanism.type"), handled,
            mechanism.get("synthetic") is True)


@dataclass(slots=True)
class _Link:
    """One exception of the chain while it is mapped: the exception, its raw stack, its field."""

    exception: ChainedException
    stack: _Stack
    where: str
    synthetic: bool = False               # made by the SDK to carry a stack trace (captureMessage), not raised


def _exception(raw: Any, where: str) -> _Link:
    obj = _object(raw, where)
    stack = _stack(obj.get("stacktrace"), f"{where}.stacktrace")
    value = _optional_text(obj.get("value"), f"{where}.value") or ""
    mechanism, handled, synthetic = _mechanism(obj, where)
    exception = ChainedException(type=_exception_type(obj, where), value=value,
                                 module=_optional_text(obj.get("module"), f"{where}.module"),
                                 mechanism=mechanism, handled=handled)
    return _Link(exception, stack, where, synthetic)


def _chain(payload: dict[str, Any]) -> tuple[list[_Link], int]:
    """Every exception (the last MAX_EXCEPTIONS), in Sentry's order; and how many were left out."""
    values = _exception_values(payload.get("exception"))
    omitted = max(0, len(values) - MAX_EXCEPTIONS)
    return [_exception(value, where) for value, where in values[omitted:]], omitted


def _finish_cause(link: _Link, config: ErrorsConfig, limits: Limits) -> ChainedException:
    """A cause's frames and value, bounded as build_error bounds the raised exception's."""
    link.exception.value = link.exception.value[:config.max_message_length]
    frames, omitted = parse_frames(link.stack.frames, link.stack.path, config, limits)
    link.exception.frames, link.exception.frames_omitted = frames, omitted
    return link.exception


# --- message events ---------------------------------------------------------------------------------

def _thread_stack(payload: dict[str, Any]) -> _Stack:
    """A message event's stack: `stacktrace`, else the crashed or current thread's, else the first."""
    if payload.get("stacktrace") is not None:
        return _stack(payload["stacktrace"], "stacktrace")
    threads = payload.get("threads")
    values = threads.get("values") if type(threads) is dict else None
    if type(values) is not list:
        return _Stack("stacktrace.frames")
    candidates = [(i, t) for i, t in enumerate(values) if type(t) is dict and t.get("stacktrace") is not None]
    chosen = next((c for c in candidates if c[1].get("crashed") is True), None) or \
        next((c for c in candidates if c[1].get("current") is True), None) or \
        (candidates[0] if candidates else None)
    if chosen is None:
        return _Stack("stacktrace.frames")
    index, thread = chosen
    return _stack(thread["stacktrace"], f"threads.values[{index}].stacktrace")


def _param(match: re.Match[str], params: list[Any] | dict[str, Any], position: int) -> tuple[str, bool]:
    """(what one placeholder becomes, whether it took a positional parameter)."""
    name = match.group(1)
    if match.group(0) == "%%":
        return "%", False
    if isinstance(params, dict):
        return (str(params[name]) if name is not None and name in params else match.group(0)), False
    if name is None and position < min(len(params), MAX_PARAMS):
        return str(params[position]), True
    return match.group(0), False


def _fill(template: str, params: Any, limit: int) -> str:
    """`message` with its `params` (a list for %s, an object for %(name)s); unknown ones stay. The
    message is cut at `limit` anyway, so filling stops a character past it: one named parameter can
    be repeated by every placeholder of the template (`%(a)s` * 100,000 with a large `a` would be
    gigabytes)."""
    if type(params) is not list and type(params) is not dict:
        return template
    parts: list[str] = []
    last = position = length = 0
    for match in _PLACEHOLDER.finditer(template):
        text, took = _param(match, params, position)
        parts += (template[last:match.start()], text)
        length += match.start() - last + len(text)
        position += took
        last = match.end()
        if length > limit:
            return "".join(parts)[:limit + 1]
    parts.append(template[last:])
    return "".join(parts)[:limit + 1]


def _log_message(payload: dict[str, Any], limit: int) -> tuple[str | None, str]:
    """(the formatted log message, the field it came from) of `logentry` or `message`; a template
    filled to at most `limit` + 1 characters (the caller cuts at `limit` and says it did)."""
    for key in ("logentry", "message"):
        raw = payload.get(key)
        if raw is None:
            continue
        if type(raw) is str:
            return raw, key
        obj = _object(raw, key)
        formatted = _optional_text(obj.get("formatted"), f"{key}.formatted")
        if formatted:
            return formatted, f"{key}.formatted"
        template = _optional_text(obj.get("message"), f"{key}.message")
        if template is not None:
            return _fill(template, obj.get("params"), limit), f"{key}.message"
    return None, "message"


# --- the rest of the event --------------------------------------------------------------------------

def _tags(raw: Any) -> Any:
    """Tags as an object; Sentry's list of [name, value] pairs becomes one (the last of a name wins)."""
    if type(raw) is not list:
        return raw
    tags: dict[str, Any] = {}
    for i, pair in enumerate(raw):
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            raise FieldError(f"tags[{i}]", "must be a [name, value] pair")
        tags[pair[0]] = pair[1]
    return tags


def _level(raw: Any) -> Any:
    return LEVEL_ALIASES.get(raw, raw) if type(raw) is str else raw


def _fingerprint(raw: Any) -> Any:
    if type(raw) is not list:
        return raw
    return [str(part) if type(part) in (int, float) else part for part in raw]


def _event_id(raw: Any) -> Any:
    if type(raw) is str and _UUID.fullmatch(raw):
        return uuid.UUID(raw).hex
    return raw


def _timestamp(raw: Any) -> Any:
    return raw + "Z" if type(raw) is str and _NAIVE_TIME.fullmatch(raw) else raw


def _user(raw: Any) -> tuple[dict[str, Any] | None, str, Any]:
    """(the `user` /v1/errors reads, the Sentry field of its id, the IP address or None)."""
    if raw is None:
        return None, "user.id", None
    user = _object(raw, "user")
    ip = user.get("ip_address")
    ip = None if ip == "{{auto}}" else ip
    for key in ("id", "email", "username"):
        if user.get(key) is not None:
            return {"id" if key == "username" else key: user[key]}, f"user.{key}", ip
    return None, "user.id", ip


def _request(payload: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The page and user agent of `request`, cut to the string limit; nothing else of it is read."""
    raw = payload.get("request")
    if type(raw) is not dict:
        return {}
    context: dict[str, Any] = {}
    url = raw.get("url")
    if type(url) is str and url:
        context["page"] = re.split(r"[?#]", url, maxsplit=1)[0][:limits.max_string_length]
    headers = raw.get("headers")
    pairs = headers.items() if type(headers) is dict else headers if type(headers) is list else ()
    for pair in pairs:
        if type(pair) in (tuple, list) and len(pair) == 2 and type(pair[0]) is str \
                and pair[0].lower() == "user-agent" and type(pair[1]) is str:
            context["user_agent"] = pair[1][:limits.max_string_length]
    return context


def _context(payload: dict[str, Any], ip: Any, limits: Limits) -> dict[str, Any]:
    """The /v1/errors `context` of a Sentry event (validated by build_error's parse_context)."""
    context = _request(payload, limits)
    contexts = payload.get("contexts")
    trace = _object(contexts, "contexts").get("trace") if contexts is not None else None
    if trace is not None:
        trace = _object(trace, "contexts.trace")
        context.update((key, trace[key]) for key in ("trace_id", "span_id") if trace.get(key) is not None)
    sdk = payload.get("sdk")
    if type(sdk) is dict and type(sdk.get("name")) is str and sdk["name"]:
        context["library"] = {"name": sdk["name"], "version": sdk.get("version")}
    if ip is not None:
        context["ip"] = ip
    return context


def _header_pairs(raw: Any) -> list[tuple[str, Any]]:
    """Sentry's headers: an object, or a list of [name, value] pairs; anything else reads as none."""
    pairs = raw.items() if type(raw) is dict else raw if type(raw) is list else ()
    return [(pair[0], pair[1]) for pair in pairs
            if type(pair) in (tuple, list) and len(pair) == 2 and type(pair[0]) is str]


def request_record(raw: Any, limits: Limits) -> dict[str, Any] | None:
    """What is kept of `request`: the method, the URL without query and fragment, and the headers
    but those that carry credentials, cookies or the client's address (DROPPED_HEADERS), at most
    MAX_HEADERS, values cut to the string limit. `data`, `query_string`, `cookies` and `env` are never
    read: form bodies and query strings are where personal data travels. The sink scrubs what is left."""
    if type(raw) is not dict:
        return None
    longest = limits.max_string_length
    record: dict[str, Any] = {}
    method = raw.get("method")
    if type(method) is str and 0 < len(method) <= 16:
        record["method"] = method.upper()
    url = raw.get("url")
    if type(url) is str and url:
        record["url"] = re.split(r"[?#]", url, maxsplit=1)[0][:longest]
    headers = {name[:64]: value[:longest] for name, value in _header_pairs(raw.get("headers"))
               if type(value) is str and name.lower() not in DROPPED_HEADERS}
    if headers:
        record["headers"] = dict(list(headers.items())[:MAX_HEADERS])
    return record or None


def _crumb(raw: Any, limits: Limits) -> dict[str, Any] | None:
    if type(raw) is not dict:
        return None
    longest = limits.max_string_length
    crumb: dict[str, Any] = {}
    when = raw.get("timestamp")
    if isinstance(when, (int, float)) and type(when) is not bool and math.isfinite(when):
        crumb["timestamp"] = float(when)
    elif type(when) is str and len(when) <= 64:
        crumb["timestamp"] = when
    for key, longest_here in (("type", 64), ("category", 128), ("level", 16), ("message", longest)):
        value = raw.get(key)
        if type(value) is str and value:
            crumb[key] = value[:longest_here]
    data = raw.get("data")
    if type(data) is dict and data:
        try:
            check_generic(data, 1, limits)
        except FieldError:
            crumb["dataDropped"] = True     # too deep, too long or not finite: the crumb stays without it
        else:
            crumb["data"] = data
    return crumb or None


def breadcrumbs(raw: Any, limits: Limits) -> list[dict[str, Any]]:
    """`breadcrumbs` ({"values": [...]} or a bare list) -> the last MAX_BREADCRUMBS, oldest first.
    A breadcrumb is context, not the error: a malformed one is left out, never a reason to refuse
    the event. Kept per crumb: timestamp, type, category, level, message (cut), data (within the
    event limits; the sink scrubs it like event properties)."""
    values = raw.get("values") if type(raw) is dict else raw
    if type(values) is not list:
        return []
    crumbs = (_crumb(item, limits) for item in values[-MAX_BREADCRUMBS:])
    return [crumb for crumb in crumbs if crumb is not None]


# --- errors in Sentry's terms -----------------------------------------------------------------------

def _renamer(stack_path: str, message_field: str, type_field: str, user_field: str) -> list[tuple[str, str]]:
    """(a /v1/errors field prefix, the Sentry field it came from), longest first."""
    return [("stacktrace.frames", stack_path), ("context.trace_id", "contexts.trace.trace_id"),
            ("context.span_id", "contexts.trace.span_id"), ("context.ip", "user.ip_address"),
            ("context.library", "sdk"), ("context.page", "request.url"),
            ("context.user_agent", "request.headers.User-Agent"), ("message", message_field),
            ("type", type_field), ("user.id", user_field), ("user.email", user_field)]


def _rename(error: FieldError, renames: list[tuple[str, str]]) -> FieldError:
    for internal, sentry in renames:
        if error.field == internal or error.field.startswith((internal + ".", internal + "[")):
            return FieldError(sentry + error.field[len(internal):], error.message)
    return error


# --- the mapping -------------------------------------------------------------------------------------

def _present(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if value is not None}


def build_sentry_error(payload: Any, now: float, config: ErrorsConfig, limits: Limits,
                       dnt_header: bool = False, event_id: str | None = None) -> ErrorEvent:
    """A Sentry event payload -> ErrorEvent (see the module docstring); raises FieldError with the
    Sentry field. `event_id` is the envelope header's, used when the payload has none."""
    payload = _object(payload, "")
    chain, exceptions_omitted = _chain(payload)
    log_message, log_field = _log_message(payload, config.max_message_length)
    if chain and chain[-1].synthetic and len(chain) == 1:
        # a message with the stack trace the SDK attached to it (@sentry/node's captureMessage): a message
        main, chain = chain[-1], []
        stack = main.stack
        kind, type_field = MESSAGE_TYPE, "type"
        message, message_field = (log_message, log_field) if log_message else \
            (main.exception.value, f"{main.where}.value")
    elif chain:
        main = chain[-1]
        stack = main.stack
        kind, message, type_field, message_field = (main.exception.type, main.exception.value,
                                                    f"{main.where}.type", f"{main.where}.value")
    else:
        stack = _thread_stack(payload)
        kind, message, type_field, message_field = MESSAGE_TYPE, log_message or "", "type", log_field
    user, user_field, ip = _user(payload.get("user"))
    raw_id = payload.get("event_id")
    body = _present({
        "type": kind, "message": message, "stacktrace": {"frames": stack.frames}, "tags": _tags(payload.get("tags")),
        "extra": payload.get("extra"), "user": user, "release": payload.get("release"),
        "environment": payload.get("environment"), "level": _level(payload.get("level")),
        "fingerprint": _fingerprint(payload.get("fingerprint")),
        "event_id": _event_id(event_id if raw_id is None else raw_id),
        "timestamp": _timestamp(payload.get("timestamp")),
        "context": _context(payload, ip, limits) or None,
    })
    try:
        error = build_error(body, now, config, limits, dnt_header)
    except FieldError as err:
        raise _rename(err, _renamer(stack.path, message_field, type_field, user_field)) from None
    error.causes = [_finish_cause(link, config, limits) for link in chain[:-1]]
    error.causes_omitted = exceptions_omitted
    if chain:
        error.mechanism, error.handled = main.exception.mechanism, main.exception.handled
        error.log_message = None if log_message is None else log_message[:config.max_message_length]
    error.breadcrumbs = breadcrumbs(payload.get("breadcrumbs"), limits)
    error.request = request_record(payload.get("request"), limits)
    return error


def parse_sentry_event(payload: Any, *, now: float, config: ErrorsConfig, limits: Limits,
                       dnt_header: bool = False, event_id: str | None = None,
                       index: int | None = None) -> ErrorEvent:
    """Validate one Sentry event; raises EventError(index, field, message), str() as
    "items[2].exception.values[0].stacktrace.frames[3].lineno: must be an integer, got string"."""
    try:
        return build_sentry_error(payload, now, config, limits, dnt_header, event_id)
    except FieldError as err:
        raise EventError(index, err.field, err.message, array="items") from None
