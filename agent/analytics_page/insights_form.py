"""The insights tab's GET form, read into the bodies the insights API takes (POST /api/insights/*,
agent/analytics/insight_query.py reads them): the page asks the same questions the API answers, with the
same checks, and never writes a query of its own.

Parameters (all optional; the defaults ask about the demo application's coaching flow):

    range        7d, 30d (default) or 90d: the trend's and the funnel's range
    event        the trend's event (default session_booked); math: total (default) or unique_persons;
                 interval: hour, day (default), week or month; breakdown: a property key (top 5 + other)
    step         the funnel's steps, in order, the parameter repeated 2 to 10 times (default
                 login_attempt, session_booked, session_completed, session_rated); empty ones are skipped;
                 window: 1h, 1d, 7d, 14d (default) or 30d; order: ordered (default), strict or unordered
    cohort       the retention's cohort event (default login_attempt; empty: first seen), returning: the
                 returning event (default login_attempt; empty: any event), period: day or week (default),
                 periods: 2 to 12 (default 6)

A refusal names the form's parameter (`event`, `step`, `periods`...), never the API body's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.analytics.timerange import RangeError

RANGES = ("7d", "30d", "90d")
MATHS = ("total", "unique_persons")
INTERVALS = ("hour", "day", "week", "month")
WINDOWS = ("1h", "1d", "7d", "14d", "30d")
ORDERS = ("ordered", "strict", "unordered")
PERIODS = ("day", "week")
MAX_PERIODS = 12
MAX_STEPS = 10
BREAKDOWN_LIMIT = 5
MAX_TEXT = 200
DEFAULT_STEPS = ("login_attempt", "session_booked", "session_completed", "session_rated")
PARAMETERS = ("range", "event", "math", "interval", "breakdown", "step", "window", "order", "cohort", "returning",
              "period", "periods")
SINGLE = tuple(p for p in PARAMETERS if p != "step")


@dataclass(frozen=True, slots=True)
class InsightsForm:
    range: str = "30d"
    event: str = "session_booked"
    math: str = "total"
    interval: str = "day"
    breakdown: str = ""
    steps: tuple[str, ...] = DEFAULT_STEPS
    window: str = "14d"
    order: str = "ordered"
    cohort: str = "login_attempt"
    returning: str = "login_attempt"
    period: str = "week"
    periods: int = 6
    errors: dict[str, str] = field(default_factory=dict)    # parameter -> message

    def trends_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"range": self.range, "interval": self.interval,
                                "series": [{"event": self.event, "math": self.math}]}
        if self.breakdown:
            body["breakdown"], body["breakdown_limit"] = self.breakdown, BREAKDOWN_LIMIT
        return body

    def funnel_body(self) -> dict[str, Any]:
        return {"range": self.range, "window": self.window, "order": self.order,
                "steps": [{"event": step} for step in self.steps]}

    def retention_body(self) -> dict[str, Any]:
        return {"cohort": {"event": self.cohort or None}, "returning": {"event": self.returning or None},
                "period": self.period, "periods": self.periods}


def _one(query: Mapping[str, str], name: str, default: str) -> str:
    getall = getattr(query, "getall", None)
    given = getall(name, []) if getall is not None else ([query[name]] if name in query else [])
    if len(given) > 1:
        raise RangeError(name, "given more than once")
    if not given:
        return default
    value = given[0].strip()
    if len(value) > MAX_TEXT:
        raise RangeError(name, f"must be at most {MAX_TEXT} characters")
    return value


def _choice(query: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _one(query, name, default) or default
    if value not in choices:
        raise RangeError(name, f"must be one of {', '.join(choices)}")
    return value


def read_form(query: Mapping[str, str]) -> InsightsForm:
    """The form's values; raises RangeError naming the first bad parameter."""
    unknown = sorted({name for name in query if name not in PARAMETERS})
    if unknown:
        raise RangeError(unknown[0][:64], f"unknown parameter; known: {', '.join(PARAMETERS)}")
    base = InsightsForm()
    getall = getattr(query, "getall", None)
    raw_steps = getall("step", []) if getall is not None else ([query["step"]] if "step" in query else [])
    steps = tuple(s.strip() for s in raw_steps if s.strip()) if raw_steps else base.steps
    if len(raw_steps) > MAX_STEPS + 5 or len(steps) > MAX_STEPS:
        raise RangeError("step", f"at most {MAX_STEPS} steps")
    if len(steps) < 2:
        raise RangeError("step", "a funnel needs at least 2 steps")
    if any(len(s) > MAX_TEXT for s in steps):
        raise RangeError("step", f"must be at most {MAX_TEXT} characters")
    periods_text = _one(query, "periods", str(base.periods)) or str(base.periods)
    if not periods_text.isdigit() or not 2 <= int(periods_text) <= MAX_PERIODS:
        raise RangeError("periods", f"must be a whole number from 2 to {MAX_PERIODS}")
    event = _one(query, "event", base.event) or base.event
    return InsightsForm(
        range=_choice(query, "range", base.range, RANGES), event=event,
        math=_choice(query, "math", base.math, MATHS), interval=_choice(query, "interval", base.interval, INTERVALS),
        breakdown=_one(query, "breakdown", ""), steps=steps,
        window=_choice(query, "window", base.window, WINDOWS), order=_choice(query, "order", base.order, ORDERS),
        cohort=_one(query, "cohort", base.cohort), returning=_one(query, "returning", base.returning),
        period=_choice(query, "period", base.period, PERIODS), periods=int(periods_text))


# the insights API's body fields, as the form names them
_TREND_FIELDS = {"series": "event", "interval": "interval", "breakdown": "breakdown", "range": "range",
                 "from": "range", "to": "range"}
_FUNNEL_FIELDS = {"steps": "step", "window": "window", "order": "order", "range": "range", "from": "range",
                  "to": "range"}
_RETENTION_FIELDS = {"cohort": "cohort", "returning": "returning", "period": "period", "periods": "periods",
                     "to": "periods"}


def form_field(insight: str, body_field: str) -> str:
    """The form parameter behind a field the insights API named: series[0].event -> event,
    steps[2].event -> step, cohort.event -> cohort."""
    head = body_field.split("[", 1)[0].split(".", 1)[0]
    if insight == "trends":
        if body_field.endswith(".math") or body_field.endswith(".math_property"):
            return "math"
        return _TREND_FIELDS.get(head, head)
    if insight == "funnel":
        return _FUNNEL_FIELDS.get(head, head)
    return _RETENTION_FIELDS.get(head, head)
