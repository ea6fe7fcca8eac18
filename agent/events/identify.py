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
                   the sign-up time: RFC 3339 or unix seconds, after 1970, not in the future (beyond
                   `max_future_skew`); "new users" are counted by it when it is known
    plan           1 to 128 characters
    email          an e-mail address: stored as its keyed pseudonym, never in clear
Every other trait is kept generically, like an unknown event property. Privacy then does to traits
what it does to properties: e-mail addresses anywhere become pseudonyms, secret-named traits
(`password`, `apiToken`, ...) are removed, card numbers become "[card]", private names are masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from agent.events.limits import Limits
from agent.events.model import Context, Event
from agent.events.privacy import EMAIL, Privacy
from agent.events.properties import (
    FieldError,
    SpecValidator,
    json_type,
    parse_properties,
    parse_timestamp,
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


def _signup_check(value: Any) -> float:
    when = parse_timestamp(value)
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


def posthog_identify(obj: Any, now: float, limits: Limits) -> Identify | None:
    """The traits a PostHog event sets on its person (`$set` / `$set_once`, in `properties` or at the
    top level, on `$identify` or any other event), or None when it sets none or its distinct_id is
    anonymous (`properties.$is_identified` false). Raises FieldError naming the PostHog field."""
    if type(obj) is not dict:
        return None
    props = obj.get("properties")
    props = props if type(props) is dict else {}
    found: dict[str, Any] = {}
    origin = {"user_id": "distinct_id", "timestamp": "timestamp"}
    for source, target in (("$set", "traits"), ("$set_once", "traits_once")):
        if props.get(source) is not None:
            found[target], origin[target] = props[source], f"properties.{source}"
        elif obj.get(source) is not None:
            found[target], origin[target] = obj[source], source
    if not found or props.get("$is_identified") is False:
        return None
    distinct_id = obj.get("distinct_id")
    if distinct_id is None and props.get("distinct_id") is not None:
        distinct_id, origin["user_id"] = props["distinct_id"], "properties.distinct_id"
    payload = {"user_id": distinct_id, "timestamp": obj.get("timestamp"),
               **{target: _person_properties(value) for target, value in found.items()}}
    try:
        return build_identify(payload, now, limits)
    except FieldError as err:
        head, _, rest = err.field.partition(".")
        where = origin.get(head, head)
        raise FieldError(f"{where}.{rest}" if rest else where, err.message) from None


def posthog_identifies(items: list[Any], now: float, limits: Limits) -> list[Identify]:
    """`posthog_identify` over a PostHog batch; BatchError lists every invalid one as `batch[i].field`."""
    out: list[Identify] = []
    errors: list[EventError] = []
    for index, item in enumerate(items):
        try:
            found = posthog_identify(item, now, limits)
        except FieldError as err:
            errors.append(EventError(index, err.field, err.message, "batch"))
            continue
        if found is not None:
            out.append(found)
    if errors:
        raise BatchError(errors)
    return out


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
