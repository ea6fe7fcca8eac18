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

The hot path (bench/flags.py: 50 flags a request) does per request only what depends on the request: the
sha1 buckets of the distinct id (the key prefix encoded once per flag) and the filters. Everything else is
derived once per FlagSet: the filters' PostHog definitions (identical filters of different flags share
one), rollout thresholds, cumulative variant ranges, payload texts, versions, and the outcomes themselves
(every answer a flag can give is one Evaluation built at load, with its v2 JSON fragment). A
filter's answer depends only on its definition and the property's value, so posthog's matcher runs once
per (filter, value) and is remembered (bounded) for strings, integers, booleans and null, except a
relative date, whose answer moves with the clock; floats (-0.0 == 0.0 but their texts differ) are not
remembered. For icontains / not_icontains, regex / not_regex, the numeric comparisons and relative dates the
agent computes posthog's answer itself for strings and numbers (own_matcher: ~1 µs instead of 5-20 µs, its
answers held to posthog's on random values of every operator by tests/test_flags.py); other types go to
posthog's matcher. In-process (bench/flags.py, best of 7 runs of 2,000 bodies) the 50 evaluations went from
~97 to ~68 µs a request.
"""

from __future__ import annotations

import hashlib
import math
import operator
import random
import re
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from posthog import feature_flags as posthog_flags
from posthog.feature_flags import (
    InconclusiveMatchError,
    match_property,
    parse_datetime,
    relative_date_parse_for_feature_flag_matching,
)

from agent.flags.config import DATES, FlagDefinition, FlagsConfig, PropertyFilter, is_relative_date

if TYPE_CHECKING:
    from agent.flags.metrics import FlagMetrics

LONG_SCALE = float(0xFFFFFFFFFFFFFFF)
REGEX_OPERATORS = frozenset({"regex", "not_regex"})
REGEX_VALUE_MAX = 2000                 # a longer property value matches no regex (and every not_regex)
MATCH_CACHE_MAX = 32_768               # remembered (filter, value) answers; cleared whole when full
MATCH_CACHE_VALUE_MAX = 256            # a longer string is matched every time
_CACHED_TYPES = frozenset({str, int, bool, type(None)})
# PostHog's reason codes (/flags?v=2 `reason.code`)
CONDITION_MATCH, NO_CONDITION_MATCH, OUT_OF_ROLLOUT, NO_GROUP_TYPE, DISABLED = (
    "condition_match", "no_condition_match", "out_of_rollout_bound", "no_group_type", "disabled")


def bucket(key: str, bucketing_value: str, salt: str = "") -> float:
    """PostHog's hash of a flag key and a distinct id (or group key): uniform in [0, 1)."""
    digest = hashlib.sha1(f"{key}.{bucketing_value}{salt}".encode()).hexdigest()
    return int(digest[:15], 16) / LONG_SCALE


# FlagSet._evaluate computes bucket() from the encoded `key.` prefix and id: the first 15 hex digits of the
# digest are its first 60 bits, (int.from_bytes(digest[:8]) >> 4)
sha1, from_bytes = hashlib.sha1, int.from_bytes


@dataclass(frozen=True, slots=True)
class Evaluation:
    key: str
    enabled: bool
    variant: str | None
    reason: str
    condition_index: int | None = None
    # (flag, variant) of loom_feature_flag_evaluations_total (agent/flags/metrics.py), built once per outcome
    label: tuple[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        value = self.value
        object.__setattr__(self, "label", (self.key, value if isinstance(value, str) else "true" if value else "false"))

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


# --- the agent's own matcher ---------------------------------------------------------------------------------
#
# Why: posthog's matcher costs 5-20 µs a call (its checks, its parsing of the person's date every time), and a
# value it has not seen (each person's own e-mail address, every relative date) is a call per request: ~35 %
# of evaluating bench/flags.py's 50 flags. For the common operators on the common value types the answer is
# computed here, as posthog computes it (tests/test_flags.py holds the two to the same answer on random values
# of every operator): a filter's matcher returns True / False, or None for "ask posthog" (any other type,
# a regex over a value outside printable ASCII, where posthog defers or translates, a bare year).

Matcher = Callable[[Any], bool | None]
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)     # posthog's case folding
_COMPARE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
            "is_date_after": operator.gt, "is_date_before": operator.lt}
_YEAR = re.compile(r"\d{4}")          # posthog's parse_datetime reads a bare year as today's date that year
RELATIVE_DATE_REFRESH = 1.0           # seconds a relative date's instant (now - 30d) is reused
DATES_REMEMBERED = 4096               # parsed person dates per filter; cleared whole when full
_cached_compile_regex = getattr(posthog_flags, "_compile_regex", None)    # posthog's dialect translation, cached


def _text_matcher(negate: bool, needle: str) -> Matcher:
    def match(value: Any) -> bool | None:
        if type(value) is not str:
            return None
        return (needle in value.translate(_ASCII_LOWER)) is not negate
    return match


def _regex_matcher(negate: bool, search: Callable[[str], Any]) -> Matcher:
    def match(value: Any) -> bool | None:
        if type(value) is not str or not value.isascii() or not value.isprintable() or len(value) > REGEX_VALUE_MAX:
            return None
        return (search(value) is not None) is not negate
    return match


def _number_matcher(compare: Callable[[float, float], bool], bound: float) -> Matcher:
    def match(value: Any) -> bool | None:
        kind = type(value)
        if kind is int:
            try:
                value = float(value)
            except OverflowError:
                return False
        elif kind is not float:
            return None
        return compare(value, bound) if math.isfinite(value) else False
    return match


def _person_date(value: str) -> datetime | None:
    """posthog's reading of a person's date (parse_datetime, UTC when naive); None when it is not one."""
    try:
        parsed = parse_datetime(value)
    except Exception:              # posthog: "The date provided is not a valid format", no match
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _relative_date_matcher(compare: Callable[[datetime, datetime], bool], relative: str) -> Matcher:
    parsed: dict[str, datetime | None] = {}
    instant: list[Any] = [0.0, None]         # (monotonic time to compute it again, now - relative)

    def match(value: Any) -> bool | None:
        if type(value) is not str or _YEAR.fullmatch(value.strip()):
            return None
        if value in parsed:
            when = parsed[value]
        else:
            if len(parsed) >= DATES_REMEMBERED:
                parsed.clear()
            when = parsed[value] = _person_date(value)
        if when is None:
            return False
        now = time.monotonic()
        if now >= instant[0]:
            instant[:] = [now + RELATIVE_DATE_REFRESH, relative_date_parse_for_feature_flag_matching(relative)]
        if instant[1] is None:
            return None
        try:
            return bool(compare(when, instant[1]))
        except TypeError:
            return False
    return match


def own_matcher(prop: PropertyFilter) -> Matcher | None:
    """The agent's matcher of a filter (see above), or None when every answer is posthog's."""
    op, value = prop.operator, prop.value
    if op in ("icontains", "not_icontains") and isinstance(value, str):
        return _text_matcher(op == "not_icontains", value.translate(_ASCII_LOWER))
    if op in REGEX_OPERATORS and isinstance(value, str) and value and _cached_compile_regex is not None:
        try:
            compiled = _cached_compile_regex(value)
        except InconclusiveMatchError:
            return None
        return None if compiled is None else _regex_matcher(op == "not_regex", compiled.regex.search)
    if op in ("gt", "gte", "lt", "lte") and type(value) in (int, float) and abs(value) < 1e300:
        return _number_matcher(_COMPARE[op], float(value))
    if op in DATES and is_relative_date(value):
        return _relative_date_matcher(_COMPARE[op], str(value))
    return None


def filter_answer(prop: PropertyFilter, properties: Mapping[str, Any], definition: dict[str, Any],
                  matcher: Matcher | None) -> bool:
    """One filter's answer: the agent's matcher's when it has one, else posthog's (_filter_matches)."""
    if prop.key in properties and matcher is not None:
        answer = matcher(properties[prop.key])
        if answer is not None:
            return answer
    return _filter_matches(prop, properties, definition)


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


class _Compiled:
    """A flag's request-independent parts, derived once per FlagSet, its answers among them: every outcome a
    condition can give is one Evaluation built here (interned: its v2 fragment is built once too)."""

    __slots__ = ("conditions", "fixed", "flag", "group_type", "no_group", "no_match", "prefix", "ranges")

    def __init__(self, flag: FlagDefinition, filters: list[tuple]):
        key = flag.key
        self.flag = flag
        self.group_type = flag.group_type
        self.prefix = f"{key}.".encode()
        ranges, low = [], 0.0
        for variant in flag.variants:               # cumulative ranges in list order, as PostHog adds them
            high = low + variant.rollout_percentage / 100
            ranges.append((low, high, variant.key))
            low = high
        self.ranges = tuple(ranges)
        # per condition: (filters ((filter id, property key, answer when missing, PropertyFilter, definition),
        # ...), rollout / 100 or None,
        # its answer when the variant is not hashed (forced, or a boolean flag), its answers per hashed
        # variant (None: outside every range), its out-of-rollout answer)
        conditions = []
        for index, (condition, condition_filters) in enumerate(zip(flag.conditions, filters, strict=True)):
            fixed = None
            by_variant: dict[str | None, Evaluation] = {}
            if condition.variant is not None or not ranges:
                fixed = Evaluation(key, True, condition.variant, CONDITION_MATCH, index)
            else:
                by_variant = {variant: Evaluation(key, True, variant, CONDITION_MATCH, index)
                              for variant in [*(k for _, _, k in ranges), None]}
            # a bucket is at most 1.0 (the 60 bits over their maximum): 100 % needs no sha1
            threshold = None if condition.rollout_percentage is None or condition.rollout_percentage >= 100 \
                else condition.rollout_percentage / 100
            conditions.append((condition_filters, threshold, fixed, by_variant,
                               Evaluation(key, False, None, OUT_OF_ROLLOUT, index)))
        self.conditions = tuple(conditions)
        self.fixed = None if flag.active else Evaluation(key, False, None, DISABLED)
        self.no_match = Evaluation(key, False, None, NO_CONDITION_MATCH)
        self.no_group = Evaluation(key, False, None, NO_GROUP_TYPE)

    def outcomes(self) -> list[Evaluation]:
        out = [self.no_match, self.no_group] + ([self.fixed] if self.fixed is not None else [])
        for _, _, fixed, by_variant, off in self.conditions:
            out += [off, *([fixed] if fixed is not None else []), *by_variant.values()]
        return out


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
        self._filter_ids: dict[bytes, int] = {}
        self._match_cache: dict[tuple, bool] = {}
        self._payload_texts = {flag.key: {name: orjson.dumps(value).decode() for name, value in flag.payloads.items()}
                               for flag in config.definitions}
        self._versions = {flag.key: int(hashlib.sha256(orjson.dumps(self._flag_document(flag))).hexdigest()[:7], 16)
                          for flag in config.definitions}
        self._fragments: dict[int, tuple[Evaluation, bytes]] = {}      # id of an interned outcome -> its fragment
        self._compiled = {flag.key: self._compile(flag) for flag in config.definitions}
        self._all = [self._compiled[flag.key] for flag in config.definitions]     # evaluate_many of every flag
        self.document = orjson.dumps(self._document())
        self.etag = '"' + hashlib.sha256(self.document).hexdigest()[:32] + '"'

    def _group_index_of(self, flag: FlagDefinition) -> int | None:
        return None if flag.group_type is None else self.group_index[flag.group_type]

    def _filter_id(self, prop: PropertyFilter, definition: dict[str, Any]) -> int | None:
        """One id per distinct filter definition (flags that filter alike share remembered answers); None
        for a filter whose answers are not remembered (a relative date)."""
        if prop.operator in DATES and is_relative_date(prop.value):
            return None
        text = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
        return self._filter_ids.setdefault(text, len(self._filter_ids))

    def _compile(self, flag: FlagDefinition) -> _Compiled:
        # a filter: (its id, its property's key, its answer when the property is missing, the PropertyFilter,
        # its PostHog definition, the agent's own matcher or None)
        compiled = _Compiled(flag, [tuple((self._filter_id(prop, definition), prop.key, prop.operator == "is_not_set",
                                           prop, definition, own_matcher(prop)) for prop, definition in filters)
                                    for filters in self._filters[flag.key]])
        for outcome in compiled.outcomes():
            self._fragments[id(outcome)] = (outcome, self._fragment(outcome))
        return compiled

    def _remember(self, cache_key: tuple, prop: PropertyFilter, properties: Mapping[str, Any],
                  definition: dict[str, Any]) -> bool:
        known = _filter_matches(prop, properties, definition)
        if len(self._match_cache) >= MATCH_CACHE_MAX:
            self._match_cache.clear()
        self._match_cache[cache_key] = known
        return known

    def _evaluate_all(self, flags: Iterable[_Compiled], distinct_id: bytes, person: Mapping[str, Any],
                      groups: Mapping[str, Any], group_properties: Mapping[str, Mapping[str, Any]]) -> list[Evaluation]:
        """Each flag's Evaluation: one loop over the flags, no call per flag (50 a request: ~10 µs less)."""
        out: list[Evaluation] = []
        append = out.append
        remembered = self._match_cache.get
        for compiled in flags:
            if compiled.fixed is not None:
                append(compiled.fixed)
                continue
            group_type = compiled.group_type
            properties: Mapping[str, Any] = person
            bucketing = distinct_id
            if group_type is not None:
                group_key = groups.get(group_type)
                if group_key is None:
                    append(compiled.no_group)
                    continue
                bucketing = str(group_key).encode()
                properties = group_properties.get(group_type) or {}
            result = compiled.no_match
            for filters, threshold, fixed, by_variant, off in compiled.conditions:
                matched = True
                for fid, key, if_missing, prop, definition, matcher in filters:   # filter_answer, answers remembered
                    if key not in properties:
                        matched = if_missing
                    else:
                        value = properties[key]
                        kind = type(value)
                        if matcher is not None and (answer := matcher(value)) is not None:
                            matched = answer
                        elif fid is None or kind not in _CACHED_TYPES or \
                                (kind is str and len(value) > MATCH_CACHE_VALUE_MAX):
                            matched = _filter_matches(prop, properties, definition)
                        else:
                            matched = remembered((fid, kind, value))      # type: ignore[assignment]
                            if matched is None:
                                matched = self._remember((fid, kind, value), prop, properties, definition)
                    if not matched:
                        break
                if not matched:
                    continue
                if threshold is not None and \
                        (from_bytes(sha1(compiled.prefix + bucketing).digest()[:8], "big") >> 4) / LONG_SCALE \
                        > threshold:
                    result = off
                    continue
                if fixed is not None:
                    result = fixed
                else:
                    hashed = (from_bytes(sha1(compiled.prefix + bucketing + b"variant").digest()[:8], "big") >> 4) \
                        / LONG_SCALE
                    result = by_variant[next((key for low, high, key in compiled.ranges if low <= hashed < high), None)]
                break
            append(result)
        return out

    def evaluate(self, flag: FlagDefinition, distinct_id: str, person: Mapping[str, Any],
                 groups: Mapping[str, Any], group_properties: Mapping[str, Mapping[str, Any]]) -> Evaluation:
        return self._evaluate_all((self._compiled[flag.key],), distinct_id.encode(), person, groups,
                                  group_properties)[0]

    def evaluate_many(self, flags: Iterable[FlagDefinition], distinct_id: str, person: Mapping[str, Any],
                      groups: Mapping[str, Any], group_properties: Mapping[str, Mapping[str, Any]]) -> list[Evaluation]:
        """evaluate() of each flag, the id encoded once."""
        chosen = self._all if flags is self.config.definitions else [self._compiled[flag.key] for flag in flags]
        return self._evaluate_all(chosen, distinct_id.encode(), person, groups, group_properties)

    def payload(self, flag: FlagDefinition, evaluation: Evaluation) -> str | None:
        """The payload of what the flag evaluated to, as the JSON text PostHog sends; None without one."""
        if not evaluation.enabled:
            return None
        return self._payload_texts[flag.key].get(evaluation.variant if evaluation.variant is not None else "true")

    def version(self, flag: FlagDefinition) -> int:
        """A flag's version: changes when its definition does (PostHog counts edits; a hash serves)."""
        return self._versions[flag.key]

    def v2_entry(self, evaluation: Evaluation) -> dict[str, Any]:
        """A flag's entry in the `/flags?v=2` answer."""
        flag = self.by_key[evaluation.key]
        return {"key": evaluation.key, "enabled": evaluation.enabled, "variant": evaluation.variant,
                "reason": evaluation.reason_json(),
                "metadata": {"id": flag.id, "version": self.version(flag), "description": flag.description or None,
                             "payload": self.payload(flag, evaluation)}}

    def _fragment(self, evaluation: Evaluation) -> bytes:
        """`"key":{entry}` as orjson writes it inside the answer's `flags` object."""
        return orjson.dumps(evaluation.key) + b":" + orjson.dumps(self.v2_entry(evaluation))

    def v2_body(self, results: list[Evaluation]) -> bytes:
        """The `/flags?v=2` answer's JSON: what orjson.dumps of {flags: {key: v2_entry}, errorsWhileComputingFlags,
        requestId} writes (results hold each flag once), from the fragments built at load for every outcome
        evaluate() returns. The requestId is a random (version 4) UUID from `random`, not os.urandom: a
        label of the answer, no secret, and a system call per request saved."""
        known = self._fragments.get
        parts = []
        for result in results:
            fragment = known(id(result))
            parts.append(fragment[1] if fragment is not None and fragment[0] is result else self._fragment(result))
        return (b'{"flags":{' + b",".join(parts) + b'},"errorsWhileComputingFlags":false,"requestId":"'
                + str(uuid.UUID(int=random.getrandbits(128), version=4)).encode() + b'"}')

    def _flag_document(self, flag: FlagDefinition) -> dict[str, Any]:
        group_index = self._group_index_of(flag)
        groups = [{"properties": [definition for _, definition in filters],
                   "rollout_percentage": condition.rollout_percentage, "variant": condition.variant}
                  for condition, filters in zip(flag.conditions, self._filters[flag.key], strict=True)]
        filters: dict[str, Any] = {"groups": groups, "aggregation_group_type_index": group_index,
                                   "payloads": dict(self._payload_texts[flag.key])}
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
        self.metrics: FlagMetrics | None = None  # loom_feature_flag_* (agent/flags/metrics.py), set by the root

    def prepare(self, config: FlagsConfig) -> Callable[[], None]:
        flags = FlagSet(config)
        return lambda: setattr(self, "flags", flags)
