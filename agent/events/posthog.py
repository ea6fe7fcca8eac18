"""PostHog's capture shape -> `Event`, so PostHog SDKs can point at the agent.

    POST /capture   {"api_key", "event", "distinct_id", "properties", "timestamp", "uuid"}
    POST /batch     {"api_key", "batch": [{"event", "distinct_id", "properties", "timestamp", ...}]}

Mapping: `distinct_id` (or `properties.distinct_id`) -> user_id, or anonymous_id when
`properties.$is_identified` is false (posthog-js's anonymous visitors); `uuid` (or `$insert_id`)
-> event_id; `$session_id` -> session_id; `$current_url` (else `$pathname`) -> context.page, without
its query string; `$user_agent` / `$raw_user_agent` -> context.user_agent; `$lib` (+ `$lib_version`) ->
context.library; `$ip` -> context.ip. The other `$`-properties are kept beside the properties by
agent/events/posthog_props.py (bounded; one outside the limits is dropped alone and counted, never
failing the event); `token` and `distinct_id` are dropped; the rest are typed like any event's
properties. Event names keep their PostHog spelling (`$pageview` is the catalog's `$pageview`, category
`posthog`) and may contain spaces. A `$web_vitals` event becomes one catalog `web_vitals` event per
vital it carries (`$web_vitals_LCP_value`, ...: the Core Web Vitals histograms and ratings).
`timestamp` as for `/v1/events`; without one, `offset` (milliseconds before now) is honoured. Other
top-level keys (`type`, `library`, `sent_at`, `$set`, ...) are ignored here, as PostHog does. The
api_key is returned (batch) or read with `capture_api_key` (capture) for the API layer to authenticate.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agent.events.identify import Identify, posthog_person
from agent.events.limits import DEFAULT_LIMITS, Limits
from agent.events.model import Event
from agent.events.posthog_people import (
    ALIAS,
    GROUP_IDENTIFY,
    OPT_EVENTS,
    Alias,
    Group,
    OptChange,
    read_alias,
    read_group,
    read_opt,
)
from agent.events.posthog_props import MAPPED, Plan, lift_dollar, path_template, plan, strip_query
from agent.events.properties import FieldError, json_type
from agent.events.validate import BatchError, EventError, build_event

POSTHOG_NAME = re.compile(r"\$?[A-Za-z][A-Za-z0-9_.:$ -]*")

_SOURCES = {source: f"properties.{source}" for source, _ in MAPPED}
_CONTEXT_KEYS = ("page", "user_agent", "library", "ip")


def _api_key(obj: dict[str, Any]) -> Any:
    key = obj.get("api_key")
    return obj.get("token") if key is None else key


def capture_api_key(obj: Any) -> str | None:
    """The project key of a /capture body: `api_key`, `token`, or posthog-js's `properties.token`."""
    if type(obj) is not dict:
        return None
    key = _api_key(obj)
    props = obj.get("properties")
    if key is None and type(props) is dict:
        key = props.get("token")
    return key if type(key) is str else None


# posthog-js `$web_vitals`: `$web_vitals_<NAME>_value` (milliseconds; CLS unitless), with the web-vitals
# library's metric in `$web_vitals_<NAME>_event`; Google's good / poor thresholds rate a value the SDK sent
# without its rating
VITALS = {"LCP": (2500, 4000), "INP": (200, 500), "FID": (100, 300), "CLS": (0.1, 0.25), "TTFB": (800, 1800),
          "FCP": (1800, 3000)}
_NAVIGATION = frozenset({"navigate", "reload", "back-forward", "back-forward-cache", "prerender", "restore"})
_RATINGS = frozenset({"good", "needs-improvement", "poor"})


def _split(props: dict[str, Any], planned: Plan) -> tuple[dict[str, Any], dict[str, tuple[str, Any]]]:
    """PostHog properties -> (plain properties, target -> (source property, value))."""
    plain = {key: props[key] for key in planned.plain}
    mapped: dict[str, tuple[str, Any]] = {}
    for source, target in planned.mapped:
        value = props[source]
        if value is not None and target not in mapped:
            if target == "library":
                version = props.get("$lib_version")
                if type(value) is str and type(version) is str:
                    value = f"{value}/{version}"
            mapped[target] = (_SOURCES[source], value)
    return plain, mapped


def _envelope(obj: Any, now: float, limits: Limits) -> tuple[dict[str, Any], dict[str, str], Plan]:
    """A PostHog event -> (our envelope, our field -> the PostHog field it came from, its properties' plan)."""
    if type(obj) is not dict:
        raise FieldError("", f"must be an object, got {json_type(obj)}")
    props = obj.get("properties")
    if props is None:
        props = {}
    elif type(props) is not dict:
        raise FieldError("properties", f"must be an object, got {json_type(props)}")
    planned = plan(props, limits)
    plain, mapped = _split(props, planned)
    distinct_id = obj.get("distinct_id")
    origin = {"user_id": "distinct_id", "anonymous_id": "distinct_id", "event_id": "uuid"}
    if distinct_id is None:
        distinct_id = props.get("distinct_id")
        origin["user_id"] = origin["anonymous_id"] = "properties.distinct_id"
    if distinct_id is None:
        raise FieldError("distinct_id", "is required")
    identity = "anonymous_id" if props.get("$is_identified") is False else "user_id"
    envelope: dict[str, Any] = {"event": obj.get("event"), "properties": plain, identity: distinct_id,
                                "timestamp": obj.get("timestamp"), "event_id": obj.get("uuid")}
    offset = obj.get("offset")
    if envelope["timestamp"] is None and offset is not None:
        if type(offset) not in (int, float) or not 0 <= offset < 1e12:
            raise FieldError("offset", "must be a number of milliseconds >= 0")
        envelope["timestamp"] = now - offset / 1000.0
    context: dict[str, Any] = {}
    for target, (source, value) in mapped.items():
        if target == "page" and type(value) is str:
            value = strip_query(value)
        if target in _CONTEXT_KEYS:
            context[target] = value
            origin[f"context.{target}"] = source
        elif target == "session_id" or envelope.get(target) is None:
            envelope[target] = value
            origin[target] = source
    if context:
        envelope["context"] = context
    return envelope, origin, planned


def _build(envelope: dict[str, Any], origin: dict[str, str], now: float, limits: Limits) -> Event:
    try:
        return build_event(envelope, now, limits, False, POSTHOG_NAME)
    except FieldError as err:
        raise FieldError(origin.get(err.field, err.field), err.message) from None


def _parse(obj: Any, now: float, limits: Limits) -> Event:
    return parse_posthog_event(obj, now, limits)[0][0]


def _vital(name: str, value: Any, detail: Any, page: str) -> dict[str, Any] | None:
    """One `web_vitals` catalog event's properties, or None when the value is not a number >= 0."""
    if type(value) not in (int, float) or value < 0 or value != value or value == float("inf"):
        return None
    detail = detail if type(detail) is dict else {}
    good, poor = VITALS[name]
    rating = detail.get("rating")
    if rating not in _RATINGS:
        rating = "good" if value <= good else "needs-improvement" if value <= poor else "poor"
    props: dict[str, Any] = {"name": name, "value": value, "rating": rating, "page": page}
    navigation = detail.get("navigationType")
    if navigation in _NAVIGATION:
        props["navigation_type"] = navigation
    delta = detail.get("delta")
    if type(delta) in (int, float) and delta == delta and abs(delta) != float("inf"):
        props["delta"] = delta
    return props


def _web_vitals(envelope: dict[str, Any], origin: dict[str, str], props: dict[str, Any], now: float,
                limits: Limits) -> list[Event]:
    """posthog-js `$web_vitals` -> one `web_vitals` event per vital (event ids `<uuid>:<NAME>`, so a retry
    is still recognised); none when it carries no vital."""
    page = path_template(props.get("$pathname") or props.get("$current_url"))
    out: list[Event] = []
    for name in VITALS:
        vital = _vital(name, props.get(f"$web_vitals_{name}_value"), props.get(f"$web_vitals_{name}_event"), page)
        if vital is None:
            continue
        one = {**envelope, "event": "web_vitals", "properties": vital}
        if envelope.get("event_id") is not None and type(envelope["event_id"]) is str:
            one["event_id"] = f"{envelope['event_id']}:{name}"
        out.append(_build(one, origin, now, limits))
    return out


def parse_posthog_event(obj: Any, now: float, limits: Limits) -> tuple[list[Event], int]:
    """One PostHog event -> (the events it becomes, `$`-properties dropped); raises FieldError naming the
    PostHog field. Usually one event; a `$web_vitals` one per vital it carries."""
    envelope, origin, planned = _envelope(obj, now, limits)
    props = obj.get("properties") or {}
    if envelope.get("event") == "$web_vitals":
        vitals = _web_vitals(envelope, origin, props, now, limits)
        if vitals:
            return vitals, 0
    event = _build(envelope, origin, now, limits)
    kept, dropped = lift_dollar(props, limits, planned)
    if kept:               # never a key of the event's own: those do not start with "$"
        event.properties.update(kept)
    return [event], dropped


def parse_capture(obj: Any, *, now: float, limits: Limits = DEFAULT_LIMITS) -> Event:
    """One PostHog event (POST /capture); raises EventError(None, field, message)."""
    try:
        return _parse(obj, now, limits)
    except FieldError as err:
        raise EventError(None, err.field, err.message) from None


@dataclass(slots=True)
class PosthogBatch:
    """What a PostHog request becomes (see read_posthog)."""

    events: list[Event] = field(default_factory=list)
    people: list[Identify] = field(default_factory=list)          # `$set`, `$set_once`, `$unset`
    aliases: list[Alias] = field(default_factory=list)            # `$create_alias`, `$identify`'s anon id
    groups: list[Group] = field(default_factory=list)             # `$groupidentify`
    opt_changes: list[OptChange] = field(default_factory=list)    # `$opt_in`, `$opt_out`
    exceptions: list[tuple[int | None, Any]] = field(default_factory=list)   # (index, `$exception` event)
    dropped: Counter[str] = field(default_factory=Counter)        # "property", "trait": dropped alone


def read_posthog(items: list[Any], *, now: float, limits: Limits = DEFAULT_LIMITS, batch: bool = True) -> PosthogBatch:
    """PostHog events -> what each becomes (docs/posthog.md, "What each event becomes"): events for the
    pipeline (`$web_vitals` expanded), traits, aliases, groups, opt-in/out changes, and the `$exception`
    events left for the errors pipeline (agent/error_tracking/posthog.py, which needs the errors config).
    `$create_alias` and `$groupidentify` are not events. All or nothing: BatchError lists every invalid
    event (`batch[i].field`, or `field` alone when not `batch`); a bad `$`-property, trait or group
    property is dropped alone and counted in `dropped` instead."""
    out = PosthogBatch()
    errors: list[EventError] = []
    for index, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise FieldError("", f"must be an object, got {json_type(item)}")
            name = item.get("event")
            if name == "$exception":
                out.exceptions.append((index if batch else None, item))
                continue
            if name == ALIAS:
                alias = read_alias(item, now, limits)
                if alias is not None:
                    out.aliases.append(alias)
                continue
            if name == GROUP_IDENTIFY:
                group, dropped = read_group(item, now, limits)
                out.groups.append(group)
                out.dropped["trait"] += dropped
                continue
            events, dropped = parse_posthog_event(item, now, limits)
            person, bad = posthog_person(item, now, limits)
            if name == "$identify" and (alias := read_alias(item, now, limits)) is not None:
                out.aliases.append(alias)
            if name in OPT_EVENTS:
                out.opt_changes.append(read_opt(item))
        except FieldError as err:
            errors.append(EventError(index if batch else None, err.field, err.message, "batch"))
            continue
        out.events += events
        out.dropped["property"] += dropped
        out.dropped["trait"] += bad
        if person is not None:
            out.people.append(person)
    if errors:
        raise BatchError(errors)
    return out


def posthog_items(obj: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[str | None, list[Any]]:
    """POST /batch's `{api_key, batch: [...]}` -> (api_key or None, the events); raises BatchError about
    the batch itself."""
    def fail(field: str, message: str) -> BatchError:
        return BatchError([EventError(None, field, message, "batch")])

    if type(obj) is not dict:
        raise fail("", f"must be an object, got {json_type(obj)}")
    api_key = _api_key(obj)
    if api_key is not None and type(api_key) is not str:
        raise fail("api_key", f"must be a string, got {json_type(api_key)}")
    items = obj.get("batch")
    if items is None:
        raise fail("batch", "is required")
    if type(items) is not list:
        raise fail("batch", f"must be an array, got {json_type(items)}")
    if not items:
        raise fail("batch", "must not be empty")
    if len(items) > limits.max_batch:
        raise fail("batch", f"must have at most {limits.max_batch} events (got {len(items)})")
    return api_key, items


def parse_posthog_batch(obj: Any, *, now: float, limits: Limits = DEFAULT_LIMITS) -> tuple[str | None, list[Event]]:
    """POST /batch -> (api_key or None, events). All or nothing, like `parse_batch`: BatchError lists
    every invalid event as `batch[i].field`."""
    api_key, items = posthog_items(obj, limits)
    events: list[Event] = []
    errors: list[EventError] = []
    for index, item in enumerate(items):
        try:
            events += parse_posthog_event(item, now, limits)[0]
        except FieldError as err:
            errors.append(EventError(index, err.field, err.message, "batch"))
    if errors:
        raise BatchError(errors)
    return api_key, events
