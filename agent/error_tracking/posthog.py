"""PostHog's `$exception` event -> the agent's `ErrorEvent`, so posthog-js exception autocapture and
`captureException` of posthog-node and posthog-python reach the errors pipeline (grouped issues in
/api/errors, loom_errors_total) like a Sentry SDK's errors.

Why through the Sentry mapping: PostHog's `$exception_list` is Sentry's `exception.values` (type, value,
mechanism, stacktrace.frames in Sentry's frame order), in the opposite order: PostHog puts the exception
that was raised FIRST and its causes after it (posthog-python 7's "canonical ordering"), Sentry last. So
the list is reversed and handed to agent/sentry/events.py, which validates it with /v1/errors' own rules;
a rejection names the PostHog field (`properties.$exception_list[0].stacktrace.frames[2].lineno`).

The rest of the mapping: `uuid` -> event_id, `timestamp`, `distinct_id` -> the user (not for an
anonymous visitor, `$is_identified` false: a device is not a person to count), `$exception_level`,
`$exception_fingerprint` (the client's own grouping), `$lib` / `$lib_version` -> the SDK,
`$current_url` -> the page (without its query string), `$app_version` -> nothing (a release is
checked by name and PostHog's is free text). An `$exception` without a list (older posthog-js:
`$exception_type`, `$exception_message`) is one exception of that type and message.
"""

from __future__ import annotations

import re
from typing import Any

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.model import ErrorEvent
from agent.events.limits import Limits
from agent.events.properties import FieldError, json_type
from agent.events.validate import EventError
from agent.sentry.events import build_sentry_error

_VALUES = re.compile(r"^exception\.values\[([0-9]+)\]")
_RENAMES = (("event_id", "uuid"), ("level", "properties.$exception_level"),
            ("fingerprint", "properties.$exception_fingerprint"), ("sdk", "properties.$lib"),
            ("request.url", "properties.$current_url"), ("user.id", "distinct_id"),
            ("exception", "properties.$exception_list"))


def _rename(err: FieldError, count: int) -> FieldError:
    field = err.field
    match = _VALUES.match(field)
    if match:
        index = count - 1 - int(match.group(1))
        return FieldError(f"properties.$exception_list[{index}]{field[match.end():]}", err.message)
    for sentry, posthog in _RENAMES:
        if field == sentry or field.startswith((sentry + ".", sentry + "[")):
            return FieldError(posthog + field[len(sentry):], err.message)
    return err


def _exceptions(props: dict[str, Any]) -> list[Any]:
    found = props.get("$exception_list")
    if found is not None:
        if type(found) is not list:
            raise FieldError("properties.$exception_list", f"must be an array, got {json_type(found)}")
        return found
    kind, message = props.get("$exception_type"), props.get("$exception_message")
    if kind is None and message is None:
        return []
    return [{"type": kind if kind is not None else "Error", "value": message}]


def posthog_error(obj: Any, now: float, config: ErrorsConfig, limits: Limits) -> ErrorEvent:
    """One `$exception` event -> ErrorEvent; raises FieldError naming the PostHog field."""
    if type(obj) is not dict:
        raise FieldError("", f"must be an object, got {json_type(obj)}")
    props = obj.get("properties")
    props = {} if props is None else props
    if type(props) is not dict:
        raise FieldError("properties", f"must be an object, got {json_type(props)}")
    exceptions = _exceptions(props)
    distinct_id = obj.get("distinct_id", props.get("distinct_id"))
    payload: dict[str, Any] = {"exception": {"values": exceptions[::-1]}, "event_id": obj.get("uuid"),
                               "timestamp": obj.get("timestamp"), "level": props.get("$exception_level")}
    if distinct_id is not None and props.get("$is_identified") is not False:
        payload["user"] = {"id": distinct_id}
    fingerprint = props.get("$exception_fingerprint")
    if fingerprint is not None:
        payload["fingerprint"] = fingerprint if type(fingerprint) is list else [fingerprint]
    if type(props.get("$lib")) is str:
        payload["sdk"] = {"name": props["$lib"], "version": props.get("$lib_version")}
    if type(props.get("$current_url")) is str:
        payload["request"] = {"url": props["$current_url"]}
    try:
        return build_sentry_error(payload, now, config, limits)
    except FieldError as err:
        raise _rename(err, len(exceptions)) from None


def posthog_errors(exceptions: list[tuple[int | None, Any]], now: float, config: ErrorsConfig,
                   limits: Limits) -> tuple[list[ErrorEvent], list[EventError]]:
    """The `$exception` events of a PostHog request (index in its batch, or None) -> (errors, the
    invalid ones as `batch[i].field`)."""
    errors: list[ErrorEvent] = []
    invalid: list[EventError] = []
    for index, item in exceptions:
        try:
            errors.append(posthog_error(item, now, config, limits))
        except FieldError as err:
            invalid.append(EventError(index, err.field, err.message, "batch"))
    return errors, invalid
