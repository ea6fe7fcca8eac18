"""Experiments run with feature flags (`flags.experiments`): which flag assigns the variants, which is
the control, and what counts as a conversion; read by GET /api/experiments/{id}
(agent/analytics/experiments.py flag_experiment).

    flags:
      experiments:
        - id: pricing-2026              # the {experimentId} of the API
          flag: pricing-test            # a flag of flags.definitions: its variants are the arms (a flag
                                        # without variants: `true` and `false`)
          control: control              # default: the variant named control, else the first
          goal:
            event: purchase_completed   # the conversion event
            property: {key: plan, value: pro}   # optional: only such events convert
          window: 14d                   # conversions within this long after the first exposure (default 14d)

Every error names its path (`flags.experiments[0].flag: ...`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.config.node import Node

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_EVENT = re.compile(r"\$?[A-Za-z][A-Za-z0-9_.:$ -]{0,127}")
_WINDOW = re.compile(r"([0-9]{1,4})([hdw])")
_UNITS = {"h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
DEFAULT_WINDOW = 14 * 86400.0
MAX_EXPERIMENTS = 200


@dataclass(frozen=True, slots=True)
class ExperimentDefinition:
    id: str
    flag: str
    arms: tuple[str, ...]                 # the variants (or "true", "false"), in the flag's order
    shares: tuple[float, ...]             # the split the flag configures, each arm's share (sums to 1)
    control: str
    goal_event: str
    goal_property: tuple[str, Any] | None = None
    window: float = DEFAULT_WINDOW        # seconds


def _arms(flag: Any) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if flag.variants:
        return tuple(v.key for v in flag.variants), tuple(v.rollout_percentage / 100 for v in flag.variants)
    return ("true", "false"), (0.5, 0.5)


def _one(node: Node, raw: Any, where: str, flags: dict[str, Any]) -> ExperimentDefinition | None:
    known = ("id", "flag", "control", "goal", "window")
    if not isinstance(raw, dict):
        node.error("must be a mapping {id, flag, control, goal, window}", where)
        return None
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        node.error(f"unknown key {unknown[0]} (known: {', '.join(known)})", f"{where}.{unknown[0]}")
        return None
    experiment_id, flag_key = raw.get("id"), raw.get("flag")
    if not isinstance(experiment_id, str) or not _ID.fullmatch(experiment_id):
        node.error("is required: 1 to 256 letters, digits, - _ . :", f"{where}.id")
        return None
    flag = flags.get(flag_key) if isinstance(flag_key, str) else None
    if flag is None:
        node.error("must name a flag of flags.definitions", f"{where}.flag")
        return None
    arms, shares = _arms(flag)
    control = raw.get("control", "control" if "control" in arms else arms[0])
    if control not in arms:
        node.error(f"must be one of the flag's variants ({', '.join(arms)})", f"{where}.control")
        return None
    goal = raw.get("goal")
    if not isinstance(goal, dict) or not isinstance(goal.get("event"), str) or not _EVENT.fullmatch(goal["event"]):
        node.error("must be {event, property}: event an event name", f"{where}.goal")
        return None
    extra = sorted(str(k) for k in goal if k not in ("event", "property"))
    if extra:
        node.error(f"unknown key {extra[0]} (known: event, property)", f"{where}.goal.{extra[0]}")
        return None
    prop = goal.get("property")
    goal_property = None
    if prop is not None:
        if not isinstance(prop, dict) or set(prop) != {"key", "value"} or not isinstance(prop["key"], str) \
                or not re.fullmatch(r"\$?[A-Za-z][A-Za-z0-9_]{0,63}", prop["key"]) \
                or not isinstance(prop["value"], (str, int, float, bool)):
            node.error("must be {key, value}: a property name and a string, number or boolean",
                       f"{where}.goal.property")
            return None
        goal_property = (prop["key"], prop["value"])
    window = DEFAULT_WINDOW
    if "window" in raw:
        match = _WINDOW.fullmatch(str(raw["window"]))
        if match is None or int(match[1]) == 0:
            node.error("must be a duration such as 12h, 14d or 2w", f"{where}.window")
            return None
        window = int(match[1]) * _UNITS[match[2]]
    return ExperimentDefinition(experiment_id, flag.key, arms, shares, control, goal["event"], goal_property, window)


def parse_experiments(node: Node, definitions: Sequence[Any]) -> tuple[ExperimentDefinition, ...]:
    raw = node.raw("experiments", [])
    if not isinstance(raw, list) or len(raw) > MAX_EXPERIMENTS:
        node.error(f"must be a list of at most {MAX_EXPERIMENTS} experiments", "experiments")
        return ()
    flags = {flag.key: flag for flag in definitions}
    out: list[ExperimentDefinition] = []
    for i, item in enumerate(raw):
        experiment = _one(node, item, f"experiments[{i}]", flags)
        if experiment is None:
            continue
        if experiment.id in {e.id for e in out}:
            node.error(f"experiment {experiment.id} is already defined", f"experiments[{i}].id")
            continue
        out.append(experiment)
    return tuple(out)
