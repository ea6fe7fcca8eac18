"""Typed property values: the checks compiled from the catalog (one table per event), generic JSON
values for properties the catalog does not list, timestamps, and camelCase -> snake_case keys.

Every check raises `FieldError` with a path relative to the value; callers prefix their own path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.events.catalog import CATALOG, CUSTOM, EventSpec, Prop
from agent.events.limits import DEFAULT_LIMITS, Limits

PROPERTY_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_.:$-]*")
_BIG = 2**64                                       # |integers| below this (orjson's own range)
# a catalog integer fits a signed 64-bit column (SQLite INTEGER, PostgreSQL bigint), floats turned to ints too
_INT64 = 2**63
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"     # date, time
                      r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")               # fraction, offset
_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SNAKE_CACHE_MAX = 50_000
TIMESTAMP_HINT = "must be an RFC 3339 timestamp (e.g. 2025-11-14T10:00:00Z) or unix seconds"
_fromisoformat = datetime.fromisoformat
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
               list: "array", type(None): "null"}


class FieldError(Exception):
    """Invalid input at `field`, a dotted path ("properties.scroll_depth_percent", "timestamp")."""

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field, self.message = field, message


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "a non-JSON value")


def type_error(expected: str, value: Any, field: str = "") -> FieldError:
    return FieldError(field, f"must be {expected}, got {json_type(value)}")


def join_path(parent: str, child: str) -> str:
    if not child:
        return parent
    return parent + child if child.startswith("[") else f"{parent}.{child}"


def fmt_number(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def snake_case(key: str) -> str:
    """scrollDepthPercent -> scroll_depth_percent, HTTPStatus -> http_status; snake_case stays."""
    return _CAMEL.sub(r"\1_\2", _CAMEL_ACRONYM.sub(r"\1_\2", key)).lower()


_SNAKE: dict[str, str] = {}


def _property_name(key: Any, limits: Limits) -> str:
    """A property key -> its snake_case name (cached: keys repeat from event to event)."""
    if type(key) is str and len(key) > limits.max_name_length:
        raise FieldError("properties", f"property name longer than {limits.max_name_length} characters")
    if type(key) is not str or not PROPERTY_NAME.fullmatch(key):
        raise FieldError("properties", f"invalid property name {key!r}")
    name = snake_case(key)
    if len(_SNAKE) < _SNAKE_CACHE_MAX:             # random keys must not grow the cache forever
        _SNAKE[key] = name
    return name


# --- values --------------------------------------------------------------------------------------

def parse_timestamp(value: Any) -> float:
    """An RFC 3339 string or unix seconds -> unix seconds. Raises FieldError('')."""
    kind = type(value)
    if kind is str:
        if len(value) <= 40 and _RFC3339.fullmatch(value):
            if value[10] != "T" or value[-1] == "z":
                value = value.upper()               # fromisoformat wants "T" and "Z"
            try:
                return _fromisoformat(value).timestamp()
            except (ValueError, OverflowError):
                pass
        raise FieldError("", TIMESTAMP_HINT)
    if kind is int or kind is float:
        if not math.isfinite(value) or abs(value) > 1e11:
            hint = " (this looks like milliseconds)" if 1e11 < value < 1e14 else ""
            raise FieldError("", f"must be unix seconds{hint}")
        return float(value)
    raise type_error("an RFC 3339 timestamp or unix seconds", value)


def check_generic(value: Any, depth: int, limits: Limits) -> None:
    """Any JSON value within the limits; raises FieldError naming the path below `value`."""
    kind = type(value)
    if kind is str:
        if len(value) > limits.max_string_length:
            raise FieldError("", f"must be at most {limits.max_string_length} characters (got {len(value)})")
    elif kind is bool or value is None:
        return
    elif kind is int:
        if not -_BIG < value < _BIG:
            raise FieldError("", "integer out of range")
    elif kind is float:
        if not math.isfinite(value):
            raise FieldError("", "must be a finite number")
    elif kind is dict or kind is list:
        if depth >= limits.max_depth:
            raise FieldError("", f"must not be nested more than {limits.max_depth} levels deep")
        items = value.items() if kind is dict else enumerate(value)
        for key, item in items:
            if type(key) is not str and kind is dict:
                raise FieldError("", "object keys must be strings")
            try:
                check_generic(item, depth + 1, limits)
            except FieldError as err:
                raise FieldError(join_path(f"[{key}]" if kind is list else str(key), err.field), err.message) from None
    else:
        raise FieldError("", "must be a JSON value")


Check = Callable[[Any], Any]


def _string_check(prop: Prop, limits: Limits) -> Check:
    longest = min(prop.max_length or limits.max_string_length, limits.max_string_length)
    enum, pattern = prop.enum, re.compile(prop.pattern) if prop.pattern else None
    allowed = ", ".join(sorted(enum)) if enum else ""

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise type_error("a string", value)
        if enum is not None:
            if value not in enum:
                raise FieldError("", f"must be one of: {allowed}")
        elif len(value) > longest:
            raise FieldError("", f"must be at most {longest} characters (got {len(value)})")
        if pattern is not None and not pattern.fullmatch(value):
            raise FieldError("", f"must match ^{prop.pattern}$")
        return value
    return check


def _number_check(prop: Prop, integral: bool) -> Check:
    low = prop.minimum if prop.minimum is not None else -math.inf
    high = prop.maximum if prop.maximum is not None else math.inf
    expected = "an integer" if integral else "a number"

    def check(value: Any, big: int = _BIG) -> Any:
        kind = type(value)
        if kind is int:
            if not (-_INT64 <= value < _INT64 if integral else -big < value < big):
                raise FieldError("", "integer out of range")
            if not integral:
                value = float(value)
        elif kind is float:
            if not math.isfinite(value):
                raise FieldError("", "must be a finite number")
            if integral:
                if not value.is_integer():
                    raise FieldError("", "must be an integer, got a fraction")
                if not -_INT64 <= value < _INT64:
                    raise FieldError("", "integer out of range")
                value = int(value)
        else:
            raise type_error(expected, value)
        if value < low:
            raise FieldError("", f"must be at least {fmt_number(low)}")
        if value > high:
            raise FieldError("", f"must be at most {fmt_number(high)}")
        return value
    return check


def _container_check(kind: type, expected: str, limits: Limits) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise type_error(expected, value)
        check_generic(value, 0, limits)
        return value
    return check


def _boolean_check(value: Any) -> Any:
    if type(value) is not bool:
        raise type_error("a boolean", value)
    return value


def compile_prop(prop: Prop, limits: Limits) -> Check:
    if prop.type == "string":
        return _string_check(prop, limits)
    if prop.type in ("integer", "number"):
        return _number_check(prop, prop.type == "integer")
    if prop.type == "boolean":
        return _boolean_check
    if prop.type == "timestamp":
        return parse_timestamp
    return _container_check(dict, "an object", limits) if prop.type == "object" else \
        _container_check(list, "an array", limits)


def _generic_check(limits: Limits) -> Check:
    """Properties the catalog does not list: any JSON value within the limits, kept as it is."""
    longest = limits.max_string_length

    def check(value: Any, big: int = _BIG) -> Any:
        kind = type(value)
        if (kind is str and len(value) <= longest) or kind is bool or (kind is int and -big < value < big):
            return value
        check_generic(value, 0, limits)
        return value
    return check


def _camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True, slots=True)
class SpecValidator:
    """One event, compiled: incoming key (snake_case, camelCase, alias) -> (name, check); `generic`
    checks the properties the table does not list."""

    table: dict[str, tuple[str, Check]]
    required: tuple[str, ...]
    category: str
    known: bool
    generic: Check


@dataclass(frozen=True, slots=True)
class Validators:
    """Every catalog event compiled for one `Limits`, and the validator of custom events."""

    events: dict[str, SpecValidator]
    custom: SpecValidator


def compile_spec(spec: EventSpec, limits: Limits, generic: Check) -> SpecValidator:
    table: dict[str, tuple[str, Check]] = {}
    for name, prop in spec.props.items():
        table[name] = table[_camel_case(name)] = (name, compile_prop(prop, limits))
    for alias, name in spec.aliases.items():
        table[alias] = table[_camel_case(alias)] = table[name]
    required = tuple(name for name, prop in spec.props.items() if prop.required)
    return SpecValidator(table, required, spec.category, True, generic)


def _compile(limits: Limits) -> Validators:
    generic = _generic_check(limits)
    return Validators({name: compile_spec(spec, limits, generic) for name, spec in CATALOG.items()},
                      SpecValidator({}, (), CUSTOM, False, generic))


_COMPILED: dict[Limits, Validators] = {DEFAULT_LIMITS: _compile(DEFAULT_LIMITS)}
_last: tuple[Limits, Validators] = (DEFAULT_LIMITS, _COMPILED[DEFAULT_LIMITS])


def validators(limits: Limits) -> Validators:
    """The validators for `limits`: compiled at import for the defaults, on first use for others."""
    global _last
    if limits is _last[0]:
        return _last[1]
    compiled = _COMPILED.get(limits)
    if compiled is None:
        if len(_COMPILED) >= 16:
            _COMPILED.clear()
        compiled = _COMPILED[limits] = _compile(limits)
    _last = (limits, compiled)
    return compiled


# --- properties ------------------------------------------------------------------------------------

def parse_properties(raw: Any, spec: SpecValidator, limits: Limits) -> dict[str, Any]:
    """The `properties` object -> snake_case keys, typed values; `null` values are left out."""
    if type(raw) is not dict:
        raise type_error("an object", raw, "properties")
    if len(raw) > limits.max_properties:
        raise FieldError("properties", f"must have at most {limits.max_properties} properties (got {len(raw)})")
    table, generic, out = spec.table, spec.generic, {}
    for key, value in raw.items():
        entry = table.get(key)
        if entry is None:
            name = _SNAKE.get(key)
            if name is None or len(key) > limits.max_name_length:
                name = _property_name(key, limits)
            entry = table.get(name) or (name, generic)
        if value is None:
            continue
        name = entry[0]
        if name in out:
            raise FieldError(f"properties.{name}", "given twice (under two spellings)")
        try:
            out[name] = entry[1](value)
        except FieldError as err:
            raise FieldError(join_path(f"properties.{name}", err.field), err.message) from None
    for name in spec.required:
        if name not in out:
            raise FieldError(f"properties.{name}", "is required")
    return out
