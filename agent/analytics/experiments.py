"""GET /api/experiments/{experimentId}: an A/B test's variants, their conversion rates, and how each
differs from the control, from the catalog's experiment_view and conversion events.

The rules, over the half-open range [from, to):
- A visitor is a user id, else an anonymous id; an anonymous id seen on an exposure together with a
  user id is that user (so a visitor exposed before and after logging in counts once).
- Exposures: the visitors with an experiment_view event of the experiment (events.label is its
  experiment_id, events.outcome its variant_id). A visitor belongs to the variant of their FIRST
  exposure in the range (ties: the variant first by name); later views of other variants do not move
  them, so each visitor counts in exactly one variant.
- Conversions: the exposed visitors with a conversion event at or after their first exposure (and before
  `to`), matched to the visitor by user id or anonymous id. The conversion event is, by default, a
  campaign_conversion whose properties.experiment_id is this experiment (the catalog's attribution);
  with `conversion=NAME`, any event named NAME (e.g. trial_converted), whatever its properties.
- conversionRate: conversions / exposures in percent with two decimals (null without exposures).
- The control: the `control=` variant when given (listed even when nobody saw it), else the variant
  named `control`, else the first variant by name.
- vsControl, per other variant: the difference of the conversion rates (variant - control, in
  percentage points) and its 95% confidence interval by the normal approximation of the difference of
  two independent proportions (Wald): d +- 1.96 * sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0), and
  `significant` when the interval excludes 0. null when either group has no exposures. Wald's interval
  is the textbook one and is poor for small groups or rates near 0 or 100% (it collapses to a point
  when both rates are 0): read it with the exposures beside it.
At most MAX_VARIANTS variants are reported (those with the most exposures, and the control); the rest
are counted in `variantsOmitted`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from agent.analytics.bayes import probability_best, sample_ratio_mismatch
from agent.analytics.stats import rounded
from agent.analytics.timerange import TimeRange
from agent.flags.experiments import ExperimentDefinition
from agent.store.base import Store

DEFAULT_CONVERSION = "campaign_conversion"
CONTROL = "control"
MAX_VARIANTS = 100
Z_95 = 1.959963984540054          # the 97.5th percentile of the standard normal distribution
Id = tuple[str, str]              # ("u", user id) or ("a", anonymous id)


@dataclass(slots=True)
class Visitor:
    variant: str
    first: float                                    # first exposure, unix seconds
    ids: set[Id] = field(default_factory=set)
    converted: bool = False


# --- queries -------------------------------------------------------------------------------------

async def exposure_rows(store: Store, experiment_id: str, r: TimeRange) -> list[tuple[Any, ...]]:
    """(user_id, anonymous_id, variant, first view) per identity and variant of the experiment."""
    sql = ("SELECT user_id, anonymous_id, outcome, min(ts) FROM events WHERE name = 'experiment_view' "
           "AND ts >= ? AND ts < ? AND label = ? GROUP BY user_id, anonymous_id, outcome")
    return await store.fetch(sql, (r.start, r.end, experiment_id))


def _property_text(dialect: str, name: str) -> str:
    """A top-level property as text: the one JSON read of the analytics, dialect by dialect."""
    if dialect == "postgres":
        return f"properties->>'{name}'"
    return f"json_extract(properties, '$.{name}')"


async def conversion_rows(store: Store, experiment_id: str, conversion: str | None,
                          r: TimeRange) -> list[tuple[Any, ...]]:
    """(user_id, anonymous_id, last conversion) per identity with a conversion event in the range."""
    if conversion is None:
        sql = ("SELECT user_id, anonymous_id, max(ts) FROM events WHERE name = ? AND ts >= ? AND ts < ? "
               f"AND {_property_text(store.dialect, 'experiment_id')} = ? GROUP BY user_id, anonymous_id")
        return await store.fetch(sql, (DEFAULT_CONVERSION, r.start, r.end, experiment_id))
    sql = ("SELECT user_id, anonymous_id, max(ts) FROM events WHERE name = ? AND ts >= ? AND ts < ? "
           "GROUP BY user_id, anonymous_id")
    return await store.fetch(sql, (conversion, r.start, r.end))


# --- visitors ------------------------------------------------------------------------------------

def _ids(user: str | None, anonymous: str | None) -> set[Id]:
    return {i for i in (("u", user) if user is not None else None,
                        ("a", anonymous) if anonymous is not None else None) if i is not None}


def visitors(exposures: list[tuple[Any, ...]]) -> dict[Id, Visitor]:
    """Exposure rows -> visitors, each in the variant of their first exposure."""
    alias: dict[str, str] = {}                      # anonymous id -> the (first by name) user id seen with it
    for user, anonymous, _, _ in sorted(exposures, key=lambda row: (row[0] or "", row[1] or "")):
        if user is not None and anonymous is not None:
            alias.setdefault(anonymous, user)
    found: dict[Id, Visitor] = {}
    for user, anonymous, variant, first in sorted(exposures, key=lambda row: (float(row[3]), row[2] or "")):
        if user is not None:
            key: Id = ("u", user)
        elif anonymous in alias:
            key = ("u", alias[anonymous])
        else:
            key = ("a", anonymous)
        visitor = found.get(key)
        if visitor is None:
            visitor = found[key] = Visitor(variant or "", float(first), {key})
        visitor.ids |= _ids(user, anonymous)
    return found


def mark_conversions(found: dict[Id, Visitor], conversions: list[tuple[Any, ...]]) -> None:
    """A visitor converted when a conversion of one of their ids is at or after their first exposure."""
    owners: dict[Id, list[Visitor]] = defaultdict(list)
    for visitor in found.values():
        for i in visitor.ids:
            owners[i].append(visitor)
    for user, anonymous, last in conversions:
        for i in _ids(user, anonymous):
            for visitor in owners.get(i, ()):
                if float(last) >= visitor.first:
                    visitor.converted = True


# --- statistics ----------------------------------------------------------------------------------

def conversion_rate(conversions: int, exposures: int) -> float | None:
    return round(100.0 * conversions / exposures, 2) if exposures else None


def versus_control(x1: int, n1: int, x0: int, n0: int) -> dict[str, Any] | None:
    """Variant (x1 of n1) minus control (x0 of n0): difference and Wald 95% interval, percentage points."""
    if not n1 or not n0:
        return None
    p1, p0 = x1 / n1, x0 / n0
    half = Z_95 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    difference = p1 - p0
    low, high = difference - half, difference + half
    return {"difference": rounded(100 * difference), "ciLow": rounded(100 * low), "ciHigh": rounded(100 * high),
            "significant": low > 0 or high < 0}


def choose_control(variants: list[str], requested: str | None) -> str | None:
    if requested is not None:
        return requested
    if CONTROL in variants:
        return CONTROL
    return min(variants) if variants else None


def report(experiment_id: str, found: dict[Id, Visitor], conversion: str | None, control: str | None,
           r: TimeRange) -> dict[str, Any]:
    """The experiment document from its visitors."""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])     # variant -> [exposures, conversions]
    for visitor in found.values():
        group = groups[visitor.variant]
        group[0] += 1
        group[1] += visitor.converted
    chosen = choose_control(list(groups), control)
    by_size = sorted(groups, key=lambda v: (-groups[v][0], v))
    kept = sorted(set(by_size[:MAX_VARIANTS]) | ({chosen} if chosen is not None else set()),
                  key=lambda v: (v != chosen, v))
    n0, x0 = groups[chosen] if chosen in groups else (0, 0)
    variants = []
    for variant in kept:
        n, x = groups[variant] if variant in groups else (0, 0)
        variants.append({"variant": variant, "exposures": n, "conversions": x, "conversionRate": conversion_rate(x, n),
                         "vsControl": None if variant == chosen else versus_control(x, n, x0, n0)})
    return {
        "experimentId": experiment_id,
        "conversion": {"event": conversion or DEFAULT_CONVERSION, "sameExperiment": conversion is None},
        "control": chosen,
        "confidenceLevel": 95,
        "method": "wald",
        "visitors": len(found),
        "variants": variants,
        "variantsOmitted": len([v for v in groups if v not in kept]),
        "range": r.to_json(),
    }


async def experiment(store: Store, experiment_id: str, r: TimeRange, *, conversion: str | None = None,
                     control: str | None = None) -> dict[str, Any]:
    found = visitors(await exposure_rows(store, experiment_id, r))
    if found:
        mark_conversions(found, await conversion_rows(store, experiment_id, conversion, r))
    return report(experiment_id, found, conversion, control, r)


# --- experiments run with feature flags (flags.experiments) --------------------------------------------

FLAG_CALLED = "$feature_flag_called"


def _json_text(dialect: str, key: str) -> str:
    """A top-level property whose name may start with `$`, as text (SQLite: its JSON value)."""
    if dialect == "postgres":
        return f"properties->>'{key}'"
    return f"json_extract(properties, '$.\"{key}\"')"


def arm_of(raw: Any) -> str:
    """A `$feature_flag_response` as the flag's arm: a variant, or "true" / "false" (SQLite hands JSON
    booleans over as 1 and 0, PostgreSQL as text)."""
    if raw is True or raw == 1 or raw == "true":
        return "true"
    if raw is False or raw == 0 or raw == "false" or raw is None:
        return "false"
    return str(raw)


def _goal_matches(raw: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool):
        return arm_of(raw) == ("true" if wanted else "false")
    if isinstance(wanted, (int, float)):
        try:
            return raw is not None and float(raw) == float(wanted)
        except (TypeError, ValueError):
            return False
    return raw is not None and str(raw) == wanted


async def flag_exposure_rows(store: Store, flag: str, r: TimeRange) -> list[tuple[Any, ...]]:
    """(user_id, anonymous_id, arm, first exposure) per identity and answer of the flag's exposures."""
    response = _json_text(store.dialect, "$feature_flag_response")
    sql = (f"SELECT user_id, anonymous_id, {response}, min(ts) FROM events WHERE name = ? AND ts >= ? AND ts < ? "
           f"AND {_json_text(store.dialect, '$feature_flag')} = ? GROUP BY user_id, anonymous_id, {response}")
    rows = await store.fetch(sql, (FLAG_CALLED, r.start, r.end, flag))
    return [(user, anonymous, arm_of(answer), first) for user, anonymous, answer, first in rows]


async def goal_rows(store: Store, definition: ExperimentDefinition, r: TimeRange) -> list[tuple[Any, ...]]:
    """(user_id, anonymous_id, ts) of the goal events that may convert an exposure of the range."""
    prop = definition.goal_property
    column = _json_text(store.dialect, prop[0]) if prop is not None else "NULL"
    sql = f"SELECT user_id, anonymous_id, ts, {column} FROM events WHERE name = ? AND ts >= ? AND ts < ?"
    rows = await store.fetch(sql, (definition.goal_event, r.start, r.end + definition.window))
    return [(user, anonymous, ts) for user, anonymous, ts, value in rows
            if prop is None or _goal_matches(value, prop[1])]


def mark_windowed(found: dict[Id, Visitor], goals: list[tuple[Any, ...]], window: float) -> None:
    """A visitor converted when a goal event of one of their ids is within `window` after the first exposure."""
    owners: dict[Id, list[Visitor]] = defaultdict(list)
    for visitor in found.values():
        for i in visitor.ids:
            owners[i].append(visitor)
    for user, anonymous, ts in goals:
        for i in _ids(user, anonymous):
            for visitor in owners.get(i, ()):
                if visitor.first <= float(ts) <= visitor.first + window:
                    visitor.converted = True


def flag_report(definition: ExperimentDefinition, found: dict[Id, Visitor], r: TimeRange) -> dict[str, Any]:
    """The experiment document of a flag experiment: report()'s, over the flag's arms only (an exposure
    answered by another value, e.g. `false` outside the rollout, is not in the experiment), with the
    probability that each arm is best and the sample-ratio-mismatch check against the flag's split."""
    arms = set(definition.arms)
    in_experiment = {key: visitor for key, visitor in found.items() if visitor.variant in arms}
    document = report(definition.id, in_experiment, definition.goal_event, definition.control, r)
    by_variant = {v["variant"]: v for v in document["variants"]}
    for arm in definition.arms:                        # every arm is listed, seen or not
        if arm not in by_variant:
            by_variant[arm] = {"variant": arm, "exposures": 0, "conversions": 0, "conversionRate": None,
                               "vsControl": None}
    ordered = [by_variant[definition.control]] + [by_variant[a] for a in definition.arms if a != definition.control]
    best = probability_best([(v["conversions"], v["exposures"]) for v in ordered])
    for variant, probability in zip(ordered, best, strict=True):
        variant["probabilityToBeBest"] = round(probability, 4)
    observed = {v["variant"]: v["exposures"] for v in ordered}
    srm = sample_ratio_mismatch([observed[a] for a in definition.arms], list(definition.shares))
    document.update({
        "variants": ordered, "variantsOmitted": 0, "source": "feature_flag", "flag": definition.flag,
        "conversion": {"event": definition.goal_event, "sameExperiment": False,
                       "property": None if definition.goal_property is None else
                       {"key": definition.goal_property[0], "value": definition.goal_property[1]},
                       "windowSeconds": definition.window},
        "sampleRatioMismatch": {**srm, "expected": dict(zip(definition.arms, definition.shares, strict=True))},
        "visitors": len(in_experiment),
    })
    return document


async def flag_experiment(store: Store, definition: ExperimentDefinition, r: TimeRange) -> dict[str, Any]:
    found = visitors(await flag_exposure_rows(store, definition.flag, r))
    if found:
        mark_windowed(found, await goal_rows(store, definition, r), definition.window)
    return flag_report(definition, found, r)
