"""Evaluating a flag for one distinct id, exactly as PostHog does, and the definitions PostHog's SDKs
evaluate locally.

Why PostHog's own property matcher (`posthog.feature_flags.match_property`, from the posthog package on
PyPI): the comparison rules are where SDKs and server drift apart (JSON text of non-strings, "true"
and "false" as booleans, numeric strings, case folding, relative dates, the regex dialect). Taking the
function posthog-python itself runs makes the agent's `/flags` answer what an SDK's local evaluation
of the same definitions answers, by construction; the rest is small and written here as PostHog
documents it:

- the bucketing hash: `int(sha1(f"{key}.{id}{salt}").hexdigest()[:15], 16) / 0xFFFFFFFFFFFFFFF`, a
  number in [0, 1) per flag and id;
- conditions in order, the first that matches decides: every property filter matches, then the
  rollout test `hash(key, id) <= rollout / 100`;
- the variant: a condition's forced variant, else the variant whose cumulative range (in list order)
  holds `hash(key, id, salt="variant")`;
- a group flag hashes the group's key and matches the group's properties; without the group in the
  request it is off (`no_group_type`).

A server knows whether a property is missing: a filter on a property the request and the stored traits
do not have does not match, but `is_not_set` does (an SDK evaluating locally cannot tell and asks the
server, i.e. the agent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from posthog.feature_flags import InconclusiveMatchError, match_property

from agent.flags.config import FlagDefinition, FlagsConfig, PropertyFilter

LONG_SCALE = float(0xFFFFFFFFFFFFFFF)
REGEX_OPERATORS = frozenset({"regex", "not_regex"})
REGEX_VALUE_MAX = 2000                 # a longer property value matches no regex (and every not_regex)
# PostHog's reason codes (/flags?v=2 `reason.code`)
CONDITION_MATCH, NO_CONDITION_MATCH, OUT_OF_ROLLOUT, NO_GROUP_TYPE, DISABLED = (
    "condition_match", "no_condition_match", "out_of_rollout_bound", "no_group_type", "disabled")


def bucket(key: str, bucketing_value: str, salt: str = "") -> float:
    """PostHog's hash of a flag key and a distinct id (or group key): uniform in [0, 1)."""
    digest = hashlib.sha1(f"{key}.{bucketing_value}{salt}".encode()).hexdigest()
    return int(digest[:15], 16) / LONG_SCALE


@dataclass(frozen=True, slots=True)
class Evaluation:
    key: str
    enabled: bool
    variant: str | None
    reason: str
    condition_index: int | None = None

    @property
    def value(self) -> bool | str:
        """What the v1 answers and the SDKs' getFeatureFlag return: the variant, else enabled."""
        return self.variant if self.enabled and self.variant is not None else self.enabled

    def reason_json(self) -> dict[str, Any]:
        index = self.condition_index
        description = {CONDITION_MATCH: f"Matched condition set {(index or 0) + 1}",
                       NO_CONDITION_MATCH: "No matching condition set",
                       OUT_OF_ROLLOUT: f"Matched condition set {(index or 0) + 1} but out of rollout bounds",
                       NO_GROUP_TYPE: "No group of the flag's type in the request",
                       DISABLED: "Feature flag is disabled"}[self.reason]
        return {"code": self.reason, "condition_index": index, "description": description}


def _filter_matches(prop: PropertyFilter, properties: Mapping[str, Any], definition: dict[str, Any]) -> bool:
    if prop.key not in properties:
        return prop.operator == "is_not_set"
    if prop.operator in REGEX_OPERATORS:
        value = properties[prop.key]
        if isinstance(value, str) and len(value) > REGEX_VALUE_MAX:
            return prop.operator == "not_regex"          # bounded time: a longer value is not searched
    try:
        return bool(match_property(definition, properties))
    except InconclusiveMatchError:       # a value it cannot compare (a date that is not one): no match
        return False
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False


def variant_of(flag: FlagDefinition, bucketing_value: str) -> str | None:
    """The variant whose cumulative range (in list order) holds the variant hash."""
    value = bucket(flag.key, bucketing_value, "variant")
    low = 0.0
    for variant in flag.variants:
        high = low + variant.rollout_percentage / 100
        if low <= value < high:
            return variant.key
        low = high
    return None


class FlagSet:
    """The running flags: their definitions, evaluation, and the local-evaluation document (with its
    ETag). Built per config; a reload swaps the whole set."""

    def __init__(self, config: FlagsConfig):
        self.config = config
        self.by_key = {flag.key: flag for flag in config.definitions}
        self.group_index = {name: i for i, name in enumerate(config.group_types)}
        # each filter's PostHog definition, built once: match_property reads it on every evaluation
        self._filters = {flag.key: [[(prop, prop.definition(self._group_index_of(flag))) for prop in c.properties]
                                    for c in flag.conditions] for flag in config.definitions}
        self.person_keys = frozenset(prop.key for flag in config.definitions if flag.group_type is None
                                     for c in flag.conditions for prop in c.properties)
        self.document = orjson.dumps(self._document())
        self.etag = '"' + hashlib.sha256(self.document).hexdigest()[:32] + '"'

    def _group_index_of(self, flag: FlagDefinition) -> int | None:
        return None if flag.group_type is None else self.group_index[flag.group_type]

    def evaluate(self, flag: FlagDefinition, distinct_id: str, person: Mapping[str, Any],
                 groups: Mapping[str, Any], group_properties: Mapping[str, Mapping[str, Any]]) -> Evaluation:
        if not flag.active:
            return Evaluation(flag.key, False, None, DISABLED)
        properties: Mapping[str, Any] = person
        bucketing = distinct_id
        if flag.group_type is not None:
            group_key = groups.get(flag.group_type)
            if group_key is None:
                return Evaluation(flag.key, False, None, NO_GROUP_TYPE)
            bucketing = str(group_key)
            properties = group_properties.get(flag.group_type) or {}
        reason, last_index = NO_CONDITION_MATCH, None
        for index, (condition, filters) in enumerate(zip(flag.conditions, self._filters[flag.key], strict=True)):
            if not all(_filter_matches(prop, properties, definition) for prop, definition in filters):
                continue
            if condition.rollout_percentage is not None and \
                    bucket(flag.key, bucketing) > condition.rollout_percentage / 100:
                reason, last_index = OUT_OF_ROLLOUT, index
                continue
            variant = condition.variant or (variant_of(flag, bucketing) if flag.variants else None)
            return Evaluation(flag.key, True, variant, CONDITION_MATCH, index)
        return Evaluation(flag.key, False, None, reason, last_index)

    def payload(self, flag: FlagDefinition, evaluation: Evaluation) -> str | None:
        """The payload of what the flag evaluated to, as the JSON text PostHog sends; None without one."""
        if not evaluation.enabled:
            return None
        name = evaluation.variant if evaluation.variant is not None else "true"
        if name not in flag.payloads:
            return None
        return orjson.dumps(flag.payloads[name]).decode()

    def version(self, flag: FlagDefinition) -> int:
        """A flag's version: changes when its definition does (PostHog counts edits; a hash serves)."""
        return int(hashlib.sha256(orjson.dumps(self._flag_document(flag))).hexdigest()[:7], 16)

    def _flag_document(self, flag: FlagDefinition) -> dict[str, Any]:
        group_index = self._group_index_of(flag)
        groups = [{"properties": [definition for _, definition in filters],
                   "rollout_percentage": condition.rollout_percentage, "variant": condition.variant}
                  for condition, filters in zip(flag.conditions, self._filters[flag.key], strict=True)]
        filters: dict[str, Any] = {"groups": groups, "aggregation_group_type_index": group_index,
                                   "payloads": {name: orjson.dumps(value).decode()
                                                for name, value in flag.payloads.items()}}
        if flag.variants:
            filters["multivariate"] = {"variants": [{"key": v.key, "name": v.name or v.key,
                                                     "rollout_percentage": v.rollout_percentage}
                                                    for v in flag.variants]}
        return {"id": flag.id, "name": flag.description, "key": flag.key, "active": flag.active, "deleted": False,
                "ensure_experience_continuity": False, "filters": filters}

    def _document(self) -> dict[str, Any]:
        """What `/flags/definitions` and `/api/feature_flag/local_evaluation` answer (PostHog's shape)."""
        return {"flags": [self._flag_document(flag) for flag in self.config.definitions],
                "group_type_mapping": {str(i): name for i, name in enumerate(self.config.group_types)},
                "cohorts": {}}


class Flags:
    """The running flags (reloadable: the new FlagSet is built in prepare, a reload swaps it whole)."""

    def __init__(self, config: FlagsConfig):
        self.flags = FlagSet(config)

    def prepare(self, config: FlagsConfig) -> Callable[[], None]:
        flags = FlagSet(config)
        return lambda: setattr(self, "flags", flags)
