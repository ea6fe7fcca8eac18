"""The shapes of the event catalog (`EventSpec`, `Prop`) and the small constructors the catalog
modules are written with. Nothing here knows any particular event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

PropType = Literal["string", "integer", "number", "boolean", "object", "array", "timestamp"]
PROP_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "object", "array", "timestamp")

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Prop:
    """One typed property of a catalog event.

    `enum` is a closed set of values: the validator rejects anything else, and the metrics layer
    uses it as the label allow-list. `minimum`/`maximum` bound integers and numbers (inclusive);
    `max_length` bounds strings (the global `Limits.max_string_length` always applies too);
    `pattern` is a regular expression a string must match (`re.fullmatch`).
    """

    type: PropType
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    enum: frozenset[str] | None = None
    description: str = ""
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One catalog event. `aliases` maps other (snake_case) property names clients send to the
    catalog's name, e.g. the documentation's `duration: 60` -> `duration_minutes`."""

    name: str
    category: str
    props: Mapping[str, Prop]
    description: str
    aliases: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


# --- constructors: the catalog modules read like a table -------------------------------------

def string(description: str, *, required: bool = False, max_length: int | None = None,
           enum: Iterable[str] | None = None, pattern: str | None = None) -> Prop:
    return Prop("string", required, max_length=max_length, description=description, pattern=pattern,
                enum=frozenset(enum) if enum is not None else None)


def integer(description: str, *, required: bool = False, minimum: float | None = None,
            maximum: float | None = None) -> Prop:
    return Prop("integer", required, minimum=minimum, maximum=maximum, description=description)


def number(description: str, *, required: bool = False, minimum: float | None = None,
           maximum: float | None = None) -> Prop:
    return Prop("number", required, minimum=minimum, maximum=maximum, description=description)


def boolean(description: str, *, required: bool = False) -> Prop:
    return Prop("boolean", required, description=description)


def obj(description: str, *, required: bool = False) -> Prop:
    return Prop("object", required, description=description)


def array(description: str, *, required: bool = False) -> Prop:
    return Prop("array", required, description=description)


def timestamp(description: str, *, required: bool = False) -> Prop:
    return Prop("timestamp", required, description=description)


def req(prop: Prop) -> Prop:
    """The same property, required."""
    return replace(prop, required=True)


def described(prop: Prop, description: str) -> Prop:
    """The same property with an event-specific description."""
    return replace(prop, description=description)


def event(name: str, category: str, description: str, aliases: Mapping[str, str] | None = None, /,
          **props: Prop) -> EventSpec:
    """An EventSpec; the keyword arguments are its properties, in documentation order."""
    return EventSpec(name, category, MappingProxyType(dict(props)), description,
                     MappingProxyType(dict(aliases)) if aliases else _EMPTY)
