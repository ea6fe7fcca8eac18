"""PostHog's person and group events: `$create_alias`, `$identify` with `$anon_distinct_id`,
`$groupidentify`, `$opt_in` / `$opt_out`, read into typed values the pipeline stores
(agent/store/people.py) instead of events.

Why not events: a `$groupidentify` carries a random distinct_id (posthog-python makes a UUID per call),
stored as an event it became a user of its own (`$company_acme` and UUIDs in totalUsers); a
`$create_alias` is a statement that two ids are one person, not something that person did.

- Alias(alias_id, person_id): the two ids are one person. `$create_alias`: the event's distinct_id is
  the person, `properties.alias` the other id (PostHog's definition; posthog-python's
  `alias(previous_id, distinct_id)` sends previous_id as the distinct_id). `$identify`: the distinct_id
  is the person, `properties.$anon_distinct_id` the anonymous id it had before. Which of the two ids
  the store keeps is decided there (the id already merged into another keeps pointing at that person).
- Group(type, key, properties): `$groupidentify`'s `$group_type`, `$group_key` and `$group_set`
  (PostHog's own `$`-keys left out, as for traits); the properties are typed like event properties and
  one that is not valid is dropped alone and counted.
- OptChange(user_id, opted_out): posthog-js `opt_in_capturing()` sends `$opt_in`; `$opt_out` (an
  application's own event: posthog-js sends nothing when it stops capturing) opts the person out, as
  POST /api/analytics/opt-out does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.events.identify import lenient_traits
from agent.events.limits import Limits
from agent.events.properties import FieldError, json_type, validators
from agent.events.validate import parse_event_time, parse_identifier

GROUP_TYPE_MAX = 64
ALIAS = "$create_alias"
GROUP_IDENTIFY = "$groupidentify"
OPT_EVENTS = {"$opt_in": False, "$opt_out": True}


@dataclass(slots=True)
class Alias:
    alias_id: str
    person_id: str
    timestamp: float


@dataclass(slots=True)
class Group:
    type: str
    key: str
    timestamp: float
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class OptChange:
    user_id: str
    opted_out: bool


def _props(obj: dict[str, Any]) -> dict[str, Any]:
    props = obj.get("properties")
    if props is None:
        return {}
    if type(props) is not dict:
        raise FieldError("properties", f"must be an object, got {json_type(props)}")
    return props


def _distinct_id(obj: dict[str, Any], props: dict[str, Any]) -> str:
    if obj.get("distinct_id") is not None:
        return parse_identifier(obj["distinct_id"], "distinct_id")
    if props.get("distinct_id") is not None:
        return parse_identifier(props["distinct_id"], "properties.distinct_id")
    raise FieldError("distinct_id", "is required")


def _when(obj: dict[str, Any], now: float, limits: Limits) -> float:
    value = obj.get("timestamp")
    return now if value is None else parse_event_time(value, now, limits)


def read_alias(obj: dict[str, Any], now: float, limits: Limits) -> Alias | None:
    """The alias a `$create_alias` or an `$identify` (with `$anon_distinct_id`) states, or None (an
    `$identify` of an id that had no anonymous one, or the same id twice). Raises FieldError."""
    props = _props(obj)
    person = _distinct_id(obj, props)
    if obj.get("event") == ALIAS:
        other = props.get("alias")
        if other is None:
            raise FieldError("properties.alias", "is required")
        alias_id = parse_identifier(other, "properties.alias")
    else:
        other = props.get("$anon_distinct_id")
        if other is None:
            return None
        alias_id = parse_identifier(other, "properties.$anon_distinct_id")
    if alias_id == person:
        return None
    return Alias(alias_id, person, _when(obj, now, limits))


def read_group(obj: dict[str, Any], now: float, limits: Limits) -> tuple[Group, int]:
    """A `$groupidentify` -> (the group, properties dropped). Raises FieldError for the type and key."""
    props = _props(obj)
    kind = parse_identifier(props.get("$group_type"), "properties.$group_type", GROUP_TYPE_MAX) \
        if props.get("$group_type") is not None else None
    if kind is None:
        raise FieldError("properties.$group_type", "is required")
    if props.get("$group_key") is None:
        raise FieldError("properties.$group_key", "is required")
    key = parse_identifier(props["$group_key"], "properties.$group_key")
    values, dropped = lenient_traits(props.get("$group_set") or {}, "properties.$group_set",
                                     validators(limits).custom, now, limits)
    return Group(kind, key, _when(obj, now, limits), values), dropped


def read_opt(obj: dict[str, Any]) -> OptChange:
    """`$opt_in` / `$opt_out` -> the person's choice. Raises FieldError."""
    props = _props(obj)
    return OptChange(_distinct_id(obj, props), OPT_EVENTS[obj["event"]])
