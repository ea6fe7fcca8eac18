"""The JSON body of POST /v1/metrics, checked item by item into Samples.

    {"metrics": [{"name": "conversions", "type": "counter", "value": 1, "unit": "none",
                  "tags": {"type": "trial_signup"}, "release": "web@1.4.2"}]}

or one such object, or a bare array. Every item is checked and every problem reported (index and
field), so a client fixes a batch in one round trip; a batch with any problem records nothing.
"""

from __future__ import annotations

from typing import Any

from agent.custom_metrics.naming import KINDS
from agent.custom_metrics.registry import BatchRejected, MetricError, Sample, check_value
from agent.events.properties import FieldError
from agent.events.validate import parse_release

FIELDS = ("name", "type", "value", "unit", "tags", "release")
OP = {"counter": "inc", "gauge": "set", "distribution": "observe"}
MAX_TAG_VALUE_LENGTH = 1000      # longer values are refused; label values are cut at 128 characters


def items_of(body: Any, max_batch: int) -> tuple[list[Any], bool]:
    """(the items, whether the body was a batch); raises BatchRejected for a body of the wrong shape."""
    if isinstance(body, dict) and "metrics" in body and "name" not in body:
        extra = sorted(set(body) - {"metrics"})
        if extra:
            _refuse(None, extra[0], "unknown field (a batch is {\"metrics\": [...]})")
        body = body["metrics"]
    if isinstance(body, dict):
        return [body], False
    if not isinstance(body, list):
        _refuse(None, "metrics", f"must be an array of metrics or one metric object, got {_type(body)}")
    if not body:
        _refuse(None, "metrics", "must not be empty")
    if len(body) > max_batch:
        _refuse(None, "metrics", f"must have at most {max_batch} metrics (events.max_batch), got {len(body)}")
    return body, True


def parse_samples(body: Any, max_batch: int) -> tuple[list[tuple[int | None, Sample]], set[str],
                                                     list[tuple[int | None, MetricError]]]:
    """Every valid item as (index, Sample) (index None for a single object), the releases they name,
    and every invalid item's error. Raises BatchRejected for a body of the wrong shape."""
    items, batch = items_of(body, max_batch)
    samples, releases, errors = [], set(), []
    for i, item in enumerate(items):
        index = i if batch else None
        try:
            sample, release = parse_item(item)
        except MetricError as err:
            errors.append((index, err))
            continue
        samples.append((index, sample))
        if release is not None:
            releases.add(release)
    return samples, releases, errors


def parse_item(item: Any) -> tuple[Sample, str | None]:
    if not isinstance(item, dict):
        raise MetricError("", f"must be an object, got {_type(item)}")
    for key in item:
        if key not in FIELDS:
            raise MetricError(str(key), f"unknown field; a metric has {', '.join(FIELDS)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise MetricError("name", "is required: a non-empty string" if name is None or name == ""
                          else f"must be a string, got {_type(name)}")
    kind = item.get("type")
    if kind not in KINDS:
        raise MetricError("type", f"must be one of {', '.join(KINDS)}, got {kind!r}" if kind is not None
                          else f"is required: one of {', '.join(KINDS)}")
    op = OP[kind]
    value = _value(item, kind, op)
    unit = item.get("unit", "none")
    if not isinstance(unit, str):
        raise MetricError("unit", f"must be a string, got {_type(unit)}")
    keys, values = _tags(item.get("tags"))
    release = item.get("release")
    if release is not None:
        try:
            release = parse_release(release)      # the same rule as events and errors
        except FieldError as exc:
            raise MetricError(exc.field, exc.message) from None
    return Sample(name, kind, unit, value, keys, values, op), release


def _value(item: dict[str, Any], kind: str, op: str) -> float:
    if "value" not in item and kind == "counter":
        return 1.0                                  # Sentry's increment() defaults to 1
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricError("value",
                          "is required: a number" if value is None else f"must be a number, got {_type(value)}")
    value = float(value)
    problem = check_value(value, op)
    if problem is not None:
        raise MetricError("value", problem)
    return value


def _tags(tags: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if tags is None:
        return (), ()
    if not isinstance(tags, dict):
        raise MetricError("tags", f"must be an object of tag names to values, got {_type(tags)}")
    values = []
    for key, value in tags.items():
        values.append(_tag_value(key, value))
    return tuple(tags), tuple(values)


def _tag_value(key: str, value: Any) -> str:
    if isinstance(value, str):
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise MetricError(f"tags.{key}", f"is longer than {MAX_TAG_VALUE_LENGTH} characters")
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise MetricError(f"tags.{key}", f"must be a string, number or boolean, got {_type(value)}")


def _refuse(index: int | None, field: str, message: str) -> None:
    raise BatchRejected([(index, MetricError(field, message))])


def _type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
