"""Clock-skew correction of PostHog event times, as PostHog's capture does it.

A device's clock may be wrong; the SDK stamps each event with that clock (`timestamp`) and the request
with the time it was sent by the same clock (`sent_at` in the body; posthog-js's `_=<ms>` query
parameter). The event happened `sent_at - timestamp` before the request left, so its time on the agent's
clock is `receive time - sent_at + timestamp`. Then:

- an event carrying `properties.$ignore_sent_at: true` (or posthog-python's v1 option
  `disable_skew_correction`) keeps its timestamp;
- a corrected time more than `events.max_future_skew` ahead of the agent (a timestamp after sent_at:
  the client contradicts itself) is clamped to the receive time, as PostHog does;
- a corrected time older than `events.max_past_age` is refused like any event's (400 naming
  `batch[i].timestamp`), as it would be without correction;
- an event without `timestamp` (or one that does not parse: the validator names it) is left alone.
"""

from __future__ import annotations

from typing import Any

from agent.events.properties import FieldError, parse_timestamp


class SkewError(ValueError):
    """`sent_at` does not parse; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def sent_at_of(body_sent_at: Any, query_ms: str | None) -> float | None:
    """The request's send time by the client's clock: the body's `sent_at` (RFC 3339 or unix seconds;
    a bad one is a SkewError), else the `_` query parameter in milliseconds (ignored when not a number)."""
    if body_sent_at is not None:
        try:
            return parse_timestamp(body_sent_at)
        except FieldError as err:
            raise SkewError("sent_at", err.message) from None
    if query_ms:
        try:
            value = float(query_ms) / 1000.0
        except ValueError:
            return None
        if 0 < value < 1e11:
            return value
    return None


def correct(items: list[Any], sent_at: float, now: float, max_future_skew: float) -> int:
    """Rewrite each event's `timestamp` (unix seconds) in place; returns how many were clamped."""
    clamped = 0
    shift = now - sent_at
    for item in items:
        if type(item) is not dict:
            continue
        props = item.get("properties")
        if type(props) is dict and props.get("$ignore_sent_at") is True:
            continue
        ts = item.get("timestamp")
        if ts is None:
            continue
        try:
            corrected = parse_timestamp(ts) + shift
        except FieldError:
            continue
        if corrected > now + max_future_skew:
            corrected = now
            clamped += 1
        item["timestamp"] = corrected
    return clamped
