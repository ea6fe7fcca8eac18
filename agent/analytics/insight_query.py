"""The body of an insights request (POST /api/insights/{trends,funnels,retention}), read into typed
queries. Every refusal is a RangeError naming the field by its path in the body ("series[1].math",
"steps[0].properties[2].value"), which the API answers with a 400.

Why a JSON body and not query parameters: a funnel is a list of steps, each with its own list of
property filters; PostHog's own query API (POST /api/projects/:id/query) takes the same shapes as JSON.
The field names follow PostHog's (`series`, `math`, `math_property`, `properties` with `key` /
`operator` / `value`, `breakdown`, `breakdown_limit`, `funnel_order_type`'s values).

Bounds, so that one request reads a bounded part of the store and answers a bounded document:
at most 10 series, 2 to 10 funnel steps, 20 property filters per list, 100 values per filter, a
breakdown of at most 25 values plus "other", 744 hourly buckets (31 days), 31 retention periods, a
conversion window of at most 90 days, the time range of the other analytics endpoints (at most 400 days).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from agent.analytics.timerange import DAY, RangeError, TimeRange, parse_time_range
from agent.config.node import parse_duration

MAX_SERIES = 10
MIN_STEPS, MAX_STEPS = 2, 10
MAX_FILTERS = 20
MAX_VALUES = 100
MAX_TEXT = 1000
MAX_KEY = 200
MAX_BREAKDOWN = 25
DEFAULT_BREAKDOWN = 10
MAX_HOURS = 31 * 24
MAX_PERIODS = 31
DEFAULT_PERIODS = 8
MAX_WINDOW = 90 * DAY
DEFAULT_WINDOW = 14 * DAY

INTERVALS = ("hour", "day", "week", "month")
PERIODS = ("day", "week")
ORDERS = ("ordered", "strict", "unordered")
RETENTION_TYPES = ("first_time", "recurring")
COUNT_MATHS = ("total", "unique_persons")
VALUE_MATHS = ("sum", "avg", "min", "max", "median", "p90", "p95", "p99")
MATHS = (*COUNT_MATHS, *VALUE_MATHS)
PERCENTILES = {"median": 50, "p90": 90, "p95": 95, "p99": 99}
TEXT_OPERATORS = ("exact", "is_not", "icontains", "not_icontains")
NUMBER_OPERATORS = ("gt", "gte", "lt", "lte")
SET_OPERATORS = ("is_set", "is_not_set")
OPERATORS = (*TEXT_OPERATORS, *NUMBER_OPERATORS, *SET_OPERATORS)
RANGE_FIELDS = ("from", "to", "range")
MAX_NUMBER = 1e15         # a filter's or a window's number; a bigger one is refused, never an overflow
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f]")
_KEY_BAD = re.compile(r"[\x00-\x1f\x7f\"\\]")

Value = str | float | bool


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    key: str
    operator: str
    values: tuple[Value, ...] = ()       # exact / is_not: any of; icontains: one text; gt...: one number


@dataclass(frozen=True, slots=True)
class EventSpec:
    event: str | None                    # None: any event
    filters: tuple[PropertyFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class Series:
    spec: EventSpec
    math: str = "total"
    math_property: str | None = None


@dataclass(frozen=True, slots=True)
class Breakdown:
    key: str
    limit: int = DEFAULT_BREAKDOWN


@dataclass(frozen=True, slots=True)
class TrendsQuery:
    range: TimeRange
    series: tuple[Series, ...]
    interval: str = "day"
    breakdown: Breakdown | None = None


@dataclass(frozen=True, slots=True)
class FunnelQuery:
    range: TimeRange
    steps: tuple[EventSpec, ...]
    window: float = DEFAULT_WINDOW
    order: str = "ordered"
    breakdown: Breakdown | None = None


@dataclass(frozen=True, slots=True)
class RetentionQuery:
    cohort: EventSpec                    # event None: first seen (first_time) or any event (recurring)
    returning: EventSpec                 # event None: any event
    period: str
    periods: int
    first: int                           # the index of the first cohort's period (period_index)
    type: str = "first_time"

    @property
    def range(self) -> TimeRange:
        return TimeRange(period_start(self.period, self.first), period_start(self.period, self.first + self.periods))


def period_seconds(period: str) -> float:
    return {"hour": 3600.0, "day": DAY, "week": 7 * DAY}[period]


def period_index(period: str, ts: float) -> int:
    """The UTC period holding `ts`: hours and days since 1970, weeks starting on Monday (1970-01-01 was a
    Thursday: day 4 is the first Monday, so week w starts on day 7w - 3)."""
    if period == "week":
        return (math.floor(ts / DAY) + 3) // 7
    return math.floor(ts / period_seconds(period))


def period_start(period: str, index: int) -> float:
    if period == "week":
        return (7 * index - 3) * DAY
    return index * period_seconds(period)


# --- reading -------------------------------------------------------------------------------------

def _object(body: Any, field: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RangeError(field, "must be a JSON object")
    return body


def _known(obj: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for name in obj:
        if name not in known:
            raise RangeError(f"{prefix}{str(name)[:64]}", f"unknown field; known: {', '.join(known)}")


def _list(value: Any, field: str, most: int, least: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise RangeError(field, "must be a list")
    if not least <= len(value) <= most:
        raise RangeError(field, f"must hold {least} to {most} items, got {len(value)}"
                         if least else f"must hold at most {most} items, got {len(value)}")
    return value


def _text(value: Any, field: str, most: int = MAX_KEY, bad: re.Pattern[str] = _NAME_BAD) -> str:
    if type(value) is not str or not value:
        raise RangeError(field, "must be a non-empty string")
    if len(value) > most:
        raise RangeError(field, f"must be at most {most} characters")
    if bad.search(value):
        raise RangeError(field, "must not hold control characters" if bad is _NAME_BAD
                         else "must not hold control characters, '\"' or '\\'")
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices or type(value) is not str:
        raise RangeError(field, f"must be one of {', '.join(choices)}")
    return str(value)


def _int(value: Any, field: str, least: int, most: int) -> int:
    if type(value) is not int or not least <= value <= most:
        raise RangeError(field, f"must be an integer from {least} to {most}")
    return value


def time_range(body: dict[str, Any], now: float) -> TimeRange:
    """from / to / range as the other analytics endpoints take them (strings or unix seconds)."""
    query: dict[str, str] = {}
    for name in RANGE_FIELDS:
        if name in body:
            value = body[name]
            if type(value) is str:
                query[name] = value
            elif _number(value) is not None and name != "range":
                query[name] = repr(float(value))
            else:
                raise RangeError(name, "must be a string" if name == "range" else "must be a string or unix seconds")
    return parse_time_range(query, now)


def _number(value: Any) -> float | None:
    """A JSON number within +-MAX_NUMBER as a float; None for anything else (a boolean too)."""
    if type(value) not in (int, float) or not -MAX_NUMBER <= value <= MAX_NUMBER:      # False for NaN
        return None
    return float(value)


def _value(value: Any, field: str) -> Value:
    if type(value) is bool:
        return value
    if type(value) in (int, float):
        number = _number(value)
        if number is None:
            raise RangeError(field, f"must be a number from {-MAX_NUMBER:g} to {MAX_NUMBER:g}")
        return number
    if type(value) is str:
        if len(value) > MAX_TEXT:
            raise RangeError(field, f"must be at most {MAX_TEXT} characters")
        if "\x00" in value:
            raise RangeError(field, "must not hold NUL characters")
        return value
    raise RangeError(field, "must be a string, a number or a boolean")


def property_filter(obj: Any, field: str) -> PropertyFilter:
    obj = _object(obj, field)
    _known(obj, ("key", "operator", "value", "type"), f"{field}.")
    if "type" in obj and obj["type"] != "event":
        raise RangeError(f"{field}.type", "must be event (filters read the event's properties)")
    key = _text(obj.get("key"), f"{field}.key", MAX_KEY, _KEY_BAD)
    operator = _choice(obj.get("operator", "exact"), f"{field}.operator", OPERATORS)
    raw = obj.get("value")
    if operator in SET_OPERATORS:
        if raw is not None:
            raise RangeError(f"{field}.value", f"{operator} takes no value")
        return PropertyFilter(key, operator)
    if raw is None:
        raise RangeError(f"{field}.value", f"{operator} needs a value")
    if operator in ("exact", "is_not"):
        items = _list(raw, f"{field}.value", MAX_VALUES, 1) if isinstance(raw, list) else [raw]
        return PropertyFilter(key, operator, tuple(_value(v, f"{field}.value") for v in items))
    if operator in NUMBER_OPERATORS:
        number = _number(raw)
        if number is None:
            raise RangeError(f"{field}.value", f"{operator} compares numbers: must be a number from "
                             f"{-MAX_NUMBER:g} to {MAX_NUMBER:g}")
        return PropertyFilter(key, operator, (number,))
    if type(raw) is not str or not raw or len(raw) > MAX_TEXT or "\x00" in raw:
        raise RangeError(f"{field}.value", f"{operator} needs a non-empty string of at most {MAX_TEXT} characters "
                         "(no NUL)")
    return PropertyFilter(key, operator, (raw,))


def filters(value: Any, field: str) -> tuple[PropertyFilter, ...]:
    if value is None:
        return ()
    return tuple(property_filter(item, f"{field}[{i}]") for i, item in enumerate(_list(value, field, MAX_FILTERS)))


def event_name(value: Any, field: str, allow_any: bool = False) -> str | None:
    if value is None and allow_any:
        return None
    return _text(value, field)


def _breakdown(body: dict[str, Any]) -> Breakdown | None:
    if body.get("breakdown") is None:
        if "breakdown_limit" in body:
            raise RangeError("breakdown_limit", "given without breakdown")
        return None
    key = _text(body["breakdown"], "breakdown", MAX_KEY, _KEY_BAD)
    limit = _int(body.get("breakdown_limit", DEFAULT_BREAKDOWN), "breakdown_limit", 1, MAX_BREAKDOWN)
    return Breakdown(key, limit)


def _merged(own: tuple[PropertyFilter, ...], common: tuple[PropertyFilter, ...]) -> tuple[PropertyFilter, ...]:
    return own + common


TRENDS_FIELDS = ("series", "interval", "properties", "breakdown", "breakdown_limit", *RANGE_FIELDS)
FUNNEL_FIELDS = ("steps", "window", "order", "properties", "breakdown", "breakdown_limit", *RANGE_FIELDS)
RETENTION_FIELDS = ("cohort", "returning", "type", "period", "periods", "to")


def trends_query(body: Any, now: float) -> TrendsQuery:
    body = _object(body, "body")
    _known(body, TRENDS_FIELDS, "")
    r = time_range(body, now)
    interval = _choice(body.get("interval", "day"), "interval", INTERVALS)
    if interval == "hour" and r.length > MAX_HOURS * 3600:
        raise RangeError("interval", f"hour buckets cover at most {MAX_HOURS // 24} days; use day for this range")
    common = filters(body.get("properties"), "properties")
    series = []
    for i, item in enumerate(_list(body.get("series"), "series", MAX_SERIES, 1)):
        field = f"series[{i}]"
        item = _object(item, field)
        _known(item, ("event", "math", "math_property", "properties", "kind"), f"{field}.")
        name = event_name(item.get("event"), f"{field}.event")
        chosen = _choice(item.get("math", "total"), f"{field}.math", MATHS)
        prop = item.get("math_property")
        if chosen in VALUE_MATHS:
            prop = _text(prop, f"{field}.math_property", MAX_KEY, _KEY_BAD)
        elif prop is not None:
            raise RangeError(f"{field}.math_property", f"math {chosen} takes no math_property")
        series.append(Series(EventSpec(name, _merged(filters(item.get("properties"), f"{field}.properties"), common)),
                             chosen, prop))
    return TrendsQuery(r, tuple(series), interval, _breakdown(body))


def _window(value: Any) -> float:
    if value is None:
        return DEFAULT_WINDOW
    number = _number(value)
    if number is not None:
        seconds = number
    elif type(value) is str:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise RangeError("window", f"must be a duration such as 1h, 14d or seconds, got {value[:64]!r}") from None
    else:
        raise RangeError("window", "must be a duration such as 14d, or seconds")
    if not 0 < seconds <= MAX_WINDOW:
        raise RangeError("window", f"must be longer than 0 and at most {int(MAX_WINDOW // DAY)} days")
    return seconds


def funnel_query(body: Any, now: float) -> FunnelQuery:
    body = _object(body, "body")
    _known(body, FUNNEL_FIELDS, "")
    r = time_range(body, now)
    common = filters(body.get("properties"), "properties")
    steps = []
    for i, item in enumerate(_list(body.get("steps"), "steps", MAX_STEPS, MIN_STEPS)):
        field = f"steps[{i}]"
        item = _object(item, field)
        _known(item, ("event", "properties"), f"{field}.")
        name = event_name(item.get("event"), f"{field}.event")
        steps.append(EventSpec(name, _merged(filters(item.get("properties"), f"{field}.properties"), common)))
    order = _choice(body.get("order", "ordered"), "order", ORDERS)
    return FunnelQuery(r, tuple(steps), _window(body.get("window")), order, _breakdown(body))


def _retention_event(body: dict[str, Any], name: str) -> EventSpec:
    if name not in body:
        raise RangeError(name, "is required: {\"event\": <name, or null for any event>}")
    obj = _object(body[name], name)
    _known(obj, ("event", "properties"), f"{name}.")
    if "event" not in obj:
        raise RangeError(f"{name}.event", "is required (null: any event)")
    spec = EventSpec(event_name(obj["event"], f"{name}.event", allow_any=True),
                     filters(obj.get("properties"), f"{name}.properties"))
    if spec.event is None and spec.filters:
        raise RangeError(f"{name}.properties", "filters need an event")
    return spec


def retention_query(body: Any, now: float) -> RetentionQuery:
    body = _object(body, "body")
    _known(body, RETENTION_FIELDS, "")
    cohort = _retention_event(body, "cohort")
    returning = _retention_event(body, "returning")
    kind = _choice(body.get("type", "first_time"), "type", RETENTION_TYPES)
    period = _choice(body.get("period", "week"), "period", PERIODS)
    periods = _int(body.get("periods", DEFAULT_PERIODS), "periods", 1, MAX_PERIODS)
    end = time_range({"to": body["to"]} if "to" in body else {}, now).end
    last = period_index(period, end - 1e-3)          # the period holding `to`'s last instant
    first = last - periods + 1
    if period_start(period, first) < 0:
        raise RangeError("to", "the periods must start after 1970")
    return RetentionQuery(cohort, returning, period, periods, first, kind)
