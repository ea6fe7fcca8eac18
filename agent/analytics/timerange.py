"""The time range of an analytics request, from its query parameters.

    from, to   RFC 3339 (2025-11-14T10:00:00Z) or unix seconds; the range is half-open: an event at
               exactly `from` is in, one at exactly `to` is out
    range      a length ending at `to` (default: now): 24h, 7d, 30d, 1h30m; cannot be combined with `from`

Nothing given means the last 30 days. `from` alone runs to now; `to` alone starts 30 days before it.
The range must be non-empty and at most 400 days: a year over a year, with room, and a bound on how
much of the store one request may read. Every error names the parameter it is about, so the API can
answer `400 {"error": "from: ..."}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.config.node import parse_duration
from agent.events.properties import FieldError, parse_timestamp

DAY = 86400.0
DEFAULT_LENGTH = 30 * DAY
MAX_LENGTH = 400 * DAY
PARAMETERS = ("from", "to", "range")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: float         # unix seconds, inclusive
    end: float           # unix seconds, exclusive
    # the instant the request asked (its "now"): events received after it are not stored yet as far as the
    # range's snapping is concerned (agent/analytics/rollup_queries.snapped); None: when snapped runs
    asked: float | None = field(default=None, compare=False)

    @property
    def length(self) -> float:
        return self.end - self.start

    def ending(self, length: float) -> TimeRange:
        """The `length` seconds before this range's end, asked at the same instant."""
        return TimeRange(self.end - length, self.end, self.asked)

    def to_json(self) -> dict[str, str]:
        return {"from": iso_time(self.start), "to": iso_time(self.end)}


class RangeError(ValueError):
    """A bad time-range parameter; `field` is the query parameter's name."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def iso_time(unix: float) -> str:
    """RFC 3339 in UTC, with milliseconds only when there are some."""
    moment = datetime.fromtimestamp(unix, UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def unknown_parameters(query: Iterable[str], known: Iterable[str]) -> list[str]:
    """The query's parameter names that are not in `known`, in the order given, once each."""
    allowed = set(known)
    return list(dict.fromkeys(name for name in query if name not in allowed))


def values(query: Mapping[str, str], name: str) -> list[str]:
    """Every value of parameter `name` (aiohttp's MultiDict keeps repeats; a plain dict cannot)."""
    getall = getattr(query, "getall", None)
    if getall is not None:
        return list(getall(name, ()))
    return [query[name]] if name in query else []


def parse_time_range(query: Mapping[str, str], now: float) -> TimeRange:
    """The request's [start, end); raises RangeError naming the offending parameter."""
    for name in PARAMETERS:
        if len(values(query, name)) > 1:
            raise RangeError(name, "given more than once")
    if "range" in query and "from" in query:
        raise RangeError("range", "give from or range (each with an optional to), not both")
    end = parse_instant("to", query["to"]) if "to" in query else now
    if "from" in query:
        start = parse_instant("from", query["from"])
        if start >= end:
            raise RangeError("from", "must be before to")
    else:
        start = end - (parse_length(query["range"]) if "range" in query else DEFAULT_LENGTH)
    if end - start > MAX_LENGTH:
        raise RangeError("from" if "from" in query else "range",
                         f"the range is longer than {int(MAX_LENGTH // DAY)} days")
    return TimeRange(start, end, now)


def parse_instant(field: str, text: str) -> float:
    """RFC 3339 or unix seconds -> unix seconds, with the ingest API's own rules and messages."""
    text = text.strip()
    try:
        if _NUMBER.fullmatch(text):
            value: float = parse_timestamp(float(text))
        else:
            value = parse_timestamp(text)
    except FieldError as exc:
        raise RangeError(field, f"{exc.message}, got {text[:64]!r}") from None
    if value < 0:
        raise RangeError(field, f"must not be before 1970, got {text[:64]!r}")
    return value


def parse_length(text: str) -> float:
    """'24h', '7d', '30d', '1h30m' -> seconds, more than 0."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise RangeError("range", f"must be a duration such as 24h, 7d or 30d, got {text[:64]!r}") from None
    if seconds <= 0:
        raise RangeError("range", "must be longer than 0")
    return seconds
