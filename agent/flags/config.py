"""The `flags:` block: feature flags defined in config under version control, evaluated as PostHog
evaluates them (agent/flags/evaluate.py) and served to PostHog's SDKs (agent/api/flags.py).

    flags:
      enabled: true
      personal_api_keys: []          # Bearer keys of local evaluation (/flags/definitions): ${ENV} or
                                     # {value_file: PATH}, >= 16 chars; env LOOM_AGENT_FLAGS_PERSONAL_API_KEYS
                                     # overrides; none: local evaluation is refused (403)
      group_types: [company]         # PostHog's group types, in index order (group_type_mapping)
      definitions:
        - key: new-checkout          # 1 to 200 letters, digits, - _ . : (what the SDKs ask for)
          description: New checkout flow
          active: true
          group_type: null           # a group flag: bucketed by the group's key, matched on its properties
          conditions:                # release conditions, in order; the first that matches decides
            - properties:            # all must match (PostHog's person-property filters)
                - {key: plan, operator: exact, value: [pro, team]}
                - {key: signed_up, operator: is_date_after, value: "2026-01-01"}
              rollout_percentage: 50 # of those who match; absent: all of them
              variant: null          # force a variant for this condition
          variants:                  # multivariate: percentages summing to 100, looked up in this order
            - {key: control, rollout_percentage: 50}
            - {key: test, rollout_percentage: 50}
          payloads: {test: {color: blue}}   # per variant (or `true` for a boolean flag): any JSON

Operators (those PostHog's SDKs evaluate locally): exact, is_not (a value or a list), icontains,
not_icontains, regex, not_regex (at most 500 characters, compiled at load; a repeated group that repeats
inside, such as (a+)+, is refused: it backtracks exponentially), gt, gte, lt, lte (a number),
is_set, is_not_set (no value), is_date_before, is_date_after (RFC 3339, a date, or relative: -7d, -2w,
-1m, -1y, -24h). What PostHog has besides (cohorts, flag dependencies, holdouts, early exit, per-condition
group aggregation, semver operators) is refused at load, so nothing is half evaluated.

Every error names its YAML path (`flags.definitions[2].conditions[0].properties[1].operator: ...`);
unknown keys are errors. The block is reloadable: a bad reload keeps the running flags.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config.node import Node
from agent.flags.experiments import ExperimentDefinition, parse_experiments

OPERATORS = ("exact", "is_not", "icontains", "not_icontains", "regex", "not_regex", "gt", "gte", "lt", "lte",
             "is_set", "is_not_set", "is_date_before", "is_date_after")
NUMERIC = frozenset({"gt", "gte", "lt", "lte"})
DATES = frozenset({"is_date_before", "is_date_after"})
NO_VALUE = frozenset({"is_set", "is_not_set"})
REGEX_MAX = 500
# a quantified group holding a quantifier ((a+)+, (\w*x)*, (a|aa){2,}): the patterns that backtrack
# exponentially in Python's engine (PostHog's server runs a linear-time one), refused at load
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*}]|\|)(?:[^()\\]|\\.)*\)(?:[+*]|\{[0-9]*,)")
MAX_FLAGS = 1000
MAX_CONDITIONS = 50
MAX_FILTERS = 50
_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_RELATIVE_DATE = re.compile(r"-?[0-9]{1,6}[hdwmy]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
                   r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?")
ENV_PERSONAL_API_KEYS = "LOOM_AGENT_FLAGS_PERSONAL_API_KEYS"     # comma-separated; overrides the list


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    key: str
    operator: str
    value: Any = None

    def definition(self, group_type_index: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator,
                               "type": "person" if group_type_index is None else "group"}
        if self.operator not in NO_VALUE:
            out["value"] = self.value
        if group_type_index is not None:
            out["group_type_index"] = group_type_index
        return out


@dataclass(frozen=True, slots=True)
class Condition:
    properties: tuple[PropertyFilter, ...] = ()
    rollout_percentage: float | None = None
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    rollout_percentage: float
    name: str | None = None


@dataclass(frozen=True, slots=True)
class FlagDefinition:
    key: str
    id: int                                   # its position + 1: PostHog's flag id in metadata
    description: str = ""
    active: bool = True
    group_type: str | None = None
    conditions: tuple[Condition, ...] = ()
    variants: tuple[Variant, ...] = ()
    payloads: Mapping[str, Any] = field(default_factory=dict)   # variant key (or "true") -> JSON value


@dataclass(frozen=True, slots=True)
class FlagsConfig:
    enabled: bool = True
    personal_api_keys: tuple[str, ...] = ()
    group_types: tuple[str, ...] = ()
    definitions: tuple[FlagDefinition, ...] = ()
    experiments: tuple[ExperimentDefinition, ...] = ()       # flags.experiments (agent/flags/experiments.py)


def is_relative_date(value: Any) -> bool:
    """A date filter's value relative to now (-7d): its answer moves with the clock."""
    return isinstance(value, str) and _RELATIVE_DATE.fullmatch(value) is not None


def _number(node: Node, raw: Any, where: str, low: float, high: float) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or not low <= raw <= high:
        node.error(f"must be a number from {low:g} to {high:g}", where)
        return None
    return float(raw)


def _filter(node: Node, raw: Any, where: str) -> PropertyFilter | None:
    if not isinstance(raw, dict):
        node.error("must be a mapping {key, operator, value}", where)
        return None
    unknown = sorted(str(k) for k in raw if k not in ("key", "operator", "value"))
    if unknown:
        node.error(f"unknown key {unknown[0]} (known: key, operator, value)", f"{where}.{unknown[0]}")
        return None
    key, operator, value = raw.get("key"), raw.get("operator", "exact"), raw.get("value")
    if not isinstance(key, str) or not key or len(key) > 400:
        node.error("must be a property name of 1 to 400 characters", f"{where}.key")
        return None
    if operator not in OPERATORS:
        node.error(f"must be one of: {', '.join(OPERATORS)}", f"{where}.operator")
        return None
    if operator in NO_VALUE:
        if value is not None:
            node.error(f"{operator} takes no value", f"{where}.value")
            return None
    elif operator in NUMERIC:
        if _number(node, value, f"{where}.value", -1e300, 1e300) is None:
            return None
    elif operator in DATES:
        if not isinstance(value, str) or not (_DATE.fullmatch(value) or _RELATIVE_DATE.fullmatch(value)):
            node.error("must be an RFC 3339 time, a date (2026-01-31) or a relative date (-7d, -2w, -1m, -1y, -24h)",
                       f"{where}.value")
            return None
    elif operator in ("regex", "not_regex"):
        if not isinstance(value, str) or not value or len(value) > REGEX_MAX:
            node.error(f"must be a regular expression of 1 to {REGEX_MAX} characters", f"{where}.value")
            return None
        try:
            re.compile(value)
        except re.error as exc:
            node.error(f"is not a valid regular expression: {exc}", f"{where}.value")
            return None
        if _NESTED_QUANTIFIER.search(value):
            node.error("must not repeat a group that itself repeats, as (a+)+ does: Python's regex engine "
                       "backtracks exponentially on such patterns", f"{where}.value")
            return None
    elif operator in ("icontains", "not_icontains"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            node.error("must be a string or a number", f"{where}.value")
            return None
    else:                                       # exact, is_not: a scalar or a list of scalars
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
            node.error("must be a string, number or boolean, or a non-empty list of them", f"{where}.value")
            return None
    return PropertyFilter(key, operator, value)


def _condition(node: Node, raw: Any, where: str, variant_keys: set[str]) -> Condition | None:
    if not isinstance(raw, dict):
        node.error("must be a mapping {properties, rollout_percentage, variant}", where)
        return None
    unknown = sorted(str(k) for k in raw if k not in ("properties", "rollout_percentage", "variant"))
    if unknown:
        node.error(f"unknown key {unknown[0]} (known: properties, rollout_percentage, variant)",
                   f"{where}.{unknown[0]}")
        return None
    filters_raw = raw.get("properties") or []
    if not isinstance(filters_raw, list) or len(filters_raw) > MAX_FILTERS:
        node.error(f"must be a list of at most {MAX_FILTERS} property filters", f"{where}.properties")
        return None
    filters = [_filter(node, item, f"{where}.properties[{i}]") for i, item in enumerate(filters_raw)]
    rollout = raw.get("rollout_percentage")
    if rollout is not None:
        rollout = _number(node, rollout, f"{where}.rollout_percentage", 0, 100)
    variant = raw.get("variant")
    if variant is not None and variant not in variant_keys:
        node.error("must be one of the flag's variants", f"{where}.variant")
        return None
    if any(f is None for f in filters):
        return None
    return Condition(tuple(f for f in filters if f is not None), rollout, variant)


def _variants(node: Node, raw: Any, where: str) -> tuple[Variant, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        node.error("must be a non-empty list of {key, rollout_percentage}", where)
        return None
    variants: list[Variant] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not _KEY.fullmatch(item["key"]):
            node.error("must be {key, rollout_percentage} with a key of letters, digits, - _ . :", here)
            return None
        unknown = sorted(str(k) for k in item if k not in ("key", "rollout_percentage", "name"))
        if unknown:
            node.error(f"unknown key {unknown[0]} (known: key, name, rollout_percentage)", f"{here}.{unknown[0]}")
            return None
        if item["key"] in {v.key for v in variants}:
            node.error(f"variant {item['key']} is listed twice", f"{here}.key")
            return None
        share = _number(node, item.get("rollout_percentage"), f"{here}.rollout_percentage", 0, 100)
        if share is None:
            return None
        name = item.get("name")
        variants.append(Variant(item["key"], share, name if isinstance(name, str) else None))
    total = sum(v.rollout_percentage for v in variants)
    if abs(total - 100) > 1e-9:
        node.error(f"rollout percentages must sum to 100 (got {total:g})", where)
        return None
    return tuple(variants)


def _definition(node: Node, raw: Any, index: int, group_types: tuple[str, ...]) -> FlagDefinition | None:
    where = f"definitions[{index}]"
    if not isinstance(raw, dict):
        node.error("must be a mapping with a key", where)
        return None
    known = ("key", "description", "active", "group_type", "conditions", "variants", "payloads")
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        node.error(f"unknown key {unknown[0]} (known: {', '.join(known)})", f"{where}.{unknown[0]}")
        return None
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        node.error("is required: 1 to 200 letters, digits, - _ . :", f"{where}.key")
        return None
    description, active, group_type = raw.get("description", ""), raw.get("active", True), raw.get("group_type")
    if not isinstance(description, str) or len(description) > 1000:
        node.error("must be a string of at most 1000 characters", f"{where}.description")
    if not isinstance(active, bool):
        node.error("must be true or false", f"{where}.active")
    if group_type is not None and group_type not in group_types:
        node.error(f"must be one of flags.group_types ({', '.join(group_types) or 'none declared'})",
                   f"{where}.group_type")
    variants = _variants(node, raw.get("variants"), f"{where}.variants")
    keys = {v.key for v in variants or ()}
    conditions_raw = raw.get("conditions")
    if conditions_raw is None:
        conditions_raw = [{"rollout_percentage": 100}]
    if not isinstance(conditions_raw, list) or not conditions_raw or len(conditions_raw) > MAX_CONDITIONS:
        node.error(f"must be a list of 1 to {MAX_CONDITIONS} conditions", f"{where}.conditions")
        return None
    conditions = [_condition(node, item, f"{where}.conditions[{i}]", keys) for i, item in enumerate(conditions_raw)]
    payloads = raw.get("payloads") or {}
    if not isinstance(payloads, dict):
        node.error("must be a mapping of variant key (or true) to any JSON value", f"{where}.payloads")
        payloads = {}
    allowed = keys or {"true"}
    payloads = {("true" if name is True else str(name)): value for name, value in payloads.items()}
    for name in payloads:
        if name not in allowed:
            node.error(f"names no variant of the flag (known: {', '.join(sorted(allowed))})",
                       f"{where}.payloads.{name}")
    if variants is None or any(c is None for c in conditions):
        return None
    return FlagDefinition(key=key, id=index + 1, description=description if isinstance(description, str) else "",
                          active=active is True, group_type=group_type,
                          conditions=tuple(c for c in conditions if c is not None), variants=variants,
                          payloads=payloads)


def parse_flags(node: Node, environ: Mapping[str, str] | None = None) -> FlagsConfig:
    base = FlagsConfig()
    enabled = node.bool("enabled", base.enabled)
    keys = node.secret_list("personal_api_keys", ENV_PERSONAL_API_KEYS, environ if environ is not None else os.environ)
    group_types = node.str_list("group_types")
    if len(set(group_types)) != len(group_types):
        node.error("lists a group type twice", "group_types")
    raw_definitions = node.raw("definitions", [])
    definitions: list[FlagDefinition] = []
    if not isinstance(raw_definitions, list) or len(raw_definitions) > MAX_FLAGS:
        node.error(f"must be a list of at most {MAX_FLAGS} flags", "definitions")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_definitions):
            flag = _definition(node, raw, i, group_types)
            if flag is None:
                continue
            if flag.key in seen:
                node.error(f"flag {flag.key} is already defined (definitions[{seen[flag.key]}])",
                           f"definitions[{i}].key")
                continue
            seen[flag.key] = i
            definitions.append(flag)
    config = FlagsConfig(enabled=enabled, personal_api_keys=keys, group_types=group_types,
                         definitions=tuple(definitions), experiments=parse_experiments(node, definitions))
    node.finish()
    return config

