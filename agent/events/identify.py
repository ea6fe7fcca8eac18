"""Identify: who a user is (role, sign-up date, plan, e-mail, any other trait), as the application tells
it with `POST /v1/identify` or PostHog's `$identify` / `$set`. Validated here into a typed `Identify`,
scrubbed by the same privacy rules as events, then stored on the user's row (agent/store/traits.py)
where the analytics read it (new users by sign-up date, users by role).

The payload of one identify (unknown keys are errors; `null` counts as absent):

    userId | user_id | distinct_id | distinctId    required: a string, or an integer kept as its decimal
                   text, 1 to 256 characters (the same id the user's events carry)
    traits         object: set these traits (a later identify replaces a trait's value, trait by trait)
    traitsOnce | traits_once                       object: set these traits only where the user has none
                   yet (PostHog's `$set_once`)
    timestamp      when (RFC 3339 or unix seconds, the events' limits); absent: now. A user the store has
                   never seen is first seen then.

Traits, keys in camelCase or snake_case (stored snake_case), typed like event properties, at most
`max_properties` of them; four are known and checked:

    role           1 to 64 characters; `coach` and `client` are the documentation's roles, any other
                   value counts as `other` in the analytics
    signupDate | signup_date | createdAt | created_at | signedUpAt | signed_up_at
                   the sign-up time in the forms people send: RFC 3339, the same without an offset
                   (read as UTC: Python's isoformat()), a date alone ("2026-01-15", midnight UTC) or unix
                   seconds (milliseconds are refused, naming them); after 1970, not in the future
                   (beyond `max_future_skew`); "new users" are counted by it when known
    plan           1 to 128 characters
    email          an e-mail address: stored as its keyed pseudonym, never in clear
Every other trait is kept generically, like an unknown event property. PostHog's `$set` / `$set_once`
(posthog_person) are lenient: a trait that is not valid is dropped alone (counted in
loom_agent_posthog_dropped_total{kind="trait"}), never the batch; `$unset` names traits to remove.
Privacy then does to traits what it does to properties: e-mail addresses anywhere become pseudonyms, secret-named traits
(`password`, `apiToken`, ...) are removed, card numbers become "[card]", private names are masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from agent.events.limits import Limits
from agent.events.model import Context, Event
from agent.events.privacy import EMAIL, Privacy
from agent.events.properties import (
    PROPERTY_NAME,
    FieldError,
    SpecValidator,
    json_type,
    parse_properties,
    parse_timestamp,
    snake_case,
    type_error,
    validators,
)
from agent.events.validate import BatchError, EventError, parse_event_time, parse_identifier

ROLE_MAX = 64
PLAN_MAX = 128
SIGNUP = "signup_date"
SIGNUP_SPELLINGS = ("signupDate", "signup_date", "createdAt", "created_at", "signedUpAt", "signed_up_at")
_KEYS = {"userId": "user_id", "user_id": "user_id", "distinct_id": "user_id", "distinctId": "user_id",
         "traits": "traits", "traitsOnce": "traits_once", "traits_once": "traits_once", "timestamp": "timestamp"}


@dataclass(slots=True)
class Identify:
    """One user's traits. `traits` / `traits_once` hold snake_case names; `signup_date` is unix seconds."""

    user_id: str
    timestamp: float                                         # unix seconds: client time, else the agent's
    traits: dict[str, Any] = field(default_factory=dict)
    traits_once: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()                              # trait names to remove (PostHog's `$unset`)


def _text_check(longest: int) -> Any:
    def check(value: Any) -> str:
        if type(value) is not str:
            raise type_error("a string", value)
        if not value or len(value) > longest:
            raise FieldError("", f"must be 1 to {longest} characters")
        return value
    return check


def _email_check(value: Any) -> str:
    if type(value) is not str:
        raise type_error("a string", value)
    if len(value) > 320 or not EMAIL.fullmatch(value):
        raise FieldError("", "must be an e-mail address")
    return value


_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NAIVE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?")


def parse_trait_time(value: Any) -> float:
    """A date as people put it in a trait (see the module docstring) -> unix seconds; raises FieldError."""
    if type(value) is str and len(value) <= 40:
        if _DATE_ONLY.fullmatch(value):
            value += "T00:00:00Z"
        elif _NAIVE.fullmatch(value):
            value = (value + ":00" if value.count(":") == 1 else value) + "Z"
    return parse_timestamp(value)


def _signup_check(value: Any) -> float:
    when = parse_trait_time(value)
    if when < 0:
        raise FieldError("", "must not be before 1970")
    return when


@lru_cache(maxsize=16)
def _trait_spec(limits: Limits) -> SpecValidator:
    """The known traits (every spelling -> name and check); the rest are checked generically."""
    table: dict[str, tuple[str, Any]] = {"role": ("role", _text_check(ROLE_MAX)),
                                         "plan": ("plan", _text_check(PLAN_MAX)),
                                         "email": ("email", _email_check)}
    for spelling in SIGNUP_SPELLINGS:
        table[spelling] = (SIGNUP, _signup_check)
    return SpecValidator(table, (), "identify", True, validators(limits).custom.generic)


def _traits(value: Any, name: str, spec: SpecValidator, now: float, limits: Limits) -> dict[str, Any]:
    if type(value) is not dict:
        raise type_error("an object", value, name)
    try:
        traits = parse_properties(value, spec, limits)
    except FieldError as err:
        raise FieldError(name + err.field.removeprefix("properties"), err.message) from None
    signup = traits.get(SIGNUP)
    if signup is not None and signup > now + limits.max_future_skew:
        raise FieldError(f"{name}.{SIGNUP}", "must not be in the future")
    return traits


def build_identify(obj: Any, now: float, limits: Limits) -> Identify:
    """One payload (see the module docstring) -> Identify; raises FieldError naming the field."""
    if type(obj) is not dict:
        raise type_error("an object", obj)
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        name = _KEYS.get(key)
        if name is None:
            raise FieldError(str(key), "unknown key")
        if name in fields:
            raise FieldError(key, "given twice (under two spellings)")
        fields[name] = value
    user = fields.get("user_id")
    if user is None:
        raise FieldError("user_id", "is required (userId, user_id or distinct_id)")
    user_id = parse_identifier(user, "user_id")
    value = fields.get("timestamp")
    timestamp = now if value is None else parse_event_time(value, now, limits)
    spec = _trait_spec(limits)
    value = fields.get("traits")
    traits = {} if value is None else _traits(value, "traits", spec, now, limits)
    value = fields.get("traits_once")
    once = {} if value is None else _traits(value, "traits_once", spec, now, limits)
    return Identify(user_id, timestamp, traits, once)


def parse_identify(obj: Any, *, now: float, limits: Limits) -> Identify:
    """One identify; raises EventError(None, field, message)."""
    try:
        return build_identify(obj, now, limits)
    except FieldError as err:
        raise EventError(None, err.field, err.message) from None


def parse_identifies(obj: Any, *, now: float, limits: Limits) -> list[Identify]:
    """The body of POST /v1/identify: one identify (an object) or an array of at most `max_batch`; all or
    nothing: BatchError lists every invalid one as `identifies[i].field`."""
    if type(obj) is dict:
        try:
            return [build_identify(obj, now, limits)]
        except FieldError as err:
            raise BatchError([EventError(None, err.field, err.message)]) from None
    if type(obj) is not list:
        raise BatchError([EventError(None, "", f"must be an object or an array, got {json_type(obj)}")])
    if not obj or len(obj) > limits.max_batch:
        raise BatchError([EventError(None, "identifies", f"must have 1 to {limits.max_batch} items (got {len(obj)})")])
    out: list[Identify] = []
    errors: list[EventError] = []
    for index, item in enumerate(obj):
        try:
            out.append(build_identify(item, now, limits))
        except FieldError as err:
            errors.append(EventError(index, err.field, err.message, "identifies"))
    if errors:
        raise BatchError(errors)
    return out


# --- PostHog ---------------------------------------------------------------------------------------

def _person_properties(value: Any) -> Any:
    """PostHog's own `$`-traits ($initial_referrer, $browser, ...) are left out, as on events."""
    if type(value) is not dict:
        return value
    return {key: item for key, item in value.items() if not (type(key) is str and key.startswith("$"))}


def lenient_traits(value: Any, name: str, spec: SpecValidator, now: float,
                   limits: Limits) -> tuple[dict[str, Any], int]:
    """(the valid traits of a PostHog `$set` / `$set_once`, how many were dropped). Why lenient: an SDK
    sends a person's traits beside events, and PostHog keeps the rest when one trait is bad; one trait
    of a type the agent checks (a date it cannot read, a role that is not text) must not lose the batch.
    Past `max_properties` traits, the rest are dropped too."""
    if type(value) is not dict:
        return {}, 1
    kept: dict[str, Any] = {}
    dropped = 0
    for key, item in _person_properties(value).items():
        if len(kept) >= limits.max_properties:
            dropped += 1
            continue
        try:
            kept.update(_traits({key: item}, name, spec, now, limits))
        except FieldError:
            dropped += 1
    return kept, dropped


def _unset_names(value: Any) -> tuple[tuple[str, ...], int]:
    """PostHog's `$unset`: trait names -> (snake_case names, how many were not names)."""
    if type(value) is not list:
        return (), 1
    names = [snake_case(item) for item in value if type(item) is str and 0 < len(item) <= 128
             and PROPERTY_NAME.fullmatch(item) and not item.startswith("$")]
    return tuple(dict.fromkeys(names)), len(value) - len(names)


def posthog_person(obj: Any, now: float, limits: Limits) -> tuple[Identify | None, int]:
    """(the traits a PostHog event sets on its person, how many traits were dropped). `$set` / `$set_once`
    (in `properties` or at the top level, on `$identify`, `$set` or any other event) and `$unset` (names);
    None when it sets nothing or its distinct_id is anonymous (`properties.$is_identified` false). A bad
    trait is dropped alone and counted; a bad distinct_id or timestamp raises FieldError naming the
    PostHog field (the event itself is refused for them too)."""
    if type(obj) is not dict:
        return None, 0
    props = obj.get("properties")
    props = props if type(props) is dict else {}
    found: dict[str, Any] = {}
    for source in ("$set", "$set_once", "$unset"):
        if props.get(source) is not None:
            found[source] = props[source]
        elif obj.get(source) is not None:
            found[source] = obj[source]
    if not found or props.get("$is_identified") is False:
        return None, 0
    distinct_id, where = obj.get("distinct_id"), "distinct_id"
    if distinct_id is None and props.get("distinct_id") is not None:
        distinct_id, where = props["distinct_id"], "properties.distinct_id"
    if distinct_id is None:
        raise FieldError("distinct_id", "is required")
    user_id = parse_identifier(distinct_id, where)
    value = obj.get("timestamp")
    timestamp = now if value is None else parse_event_time(value, now, limits)
    spec = _trait_spec(limits)
    traits, dropped = lenient_traits(found.get("$set", {}), "traits", spec, now, limits)
    once, more = lenient_traits(found.get("$set_once", {}), "traits_once", spec, now, limits)
    unset, bad = _unset_names(found.get("$unset", []))
    return Identify(user_id, timestamp, traits, once, tuple(n for n in unset if n not in traits)), \
        dropped + more + bad


def posthog_identify(obj: Any, now: float, limits: Limits) -> Identify | None:
    """`posthog_person` without the count of dropped traits."""
    return posthog_person(obj, now, limits)[0]


def posthog_people(items: list[Any], now: float, limits: Limits) -> tuple[list[Identify], int]:
    """`posthog_person` over a PostHog batch: (the identifies, traits dropped); BatchError lists every
    event whose distinct_id or timestamp is invalid as `batch[i].field`."""
    out: list[Identify] = []
    errors: list[EventError] = []
    dropped = 0
    for index, item in enumerate(items):
        try:
            found, bad = posthog_person(item, now, limits)
        except FieldError as err:
            errors.append(EventError(index, err.field, err.message, "batch"))
            continue
        dropped += bad
        if found is not None:
            out.append(found)
    if errors:
        raise BatchError(errors)
    return out, dropped


def posthog_identifies(items: list[Any], now: float, limits: Limits) -> list[Identify]:
    """`posthog_people` without the count of dropped traits."""
    return posthog_people(items, now, limits)[0]


# --- privacy ---------------------------------------------------------------------------------------

def scrub_identify(privacy: Privacy, identify: Identify, dnt: bool = False) -> tuple[Identify | None, str | None]:
    """(the identify as privacy lets it be stored, None) or (None, why it is dropped: "dnt" or
    "opted_out"). Traits are scrubbed as event properties are; an identify of a Do-Not-Track request
    or an opted-out user is dropped whatever privacy.dnt / opted_out say: without the person's
    identity, traits mean nothing."""
    probe = Event("$identify", "custom", identify.timestamp, identify.timestamp, identify.traits,
                  user_id=identify.user_id, context=Context(dnt=dnt))
    reason = privacy.decide(probe)
    if reason is not None:
        return None, reason
    privacy.scrub(probe)
    once = privacy.scrub(Event("$identify", "custom", identify.timestamp, identify.timestamp,
                               identify.traits_once, user_id=identify.user_id)).properties
    return replace(identify, user_id=probe.user_id or identify.user_id, traits=probe.properties,
                   traits_once=once), None
