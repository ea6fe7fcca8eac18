"""Custom metric names, label names and units, turned into Prometheus' rules.

Applications name their metrics the way Sentry or StatsD let them ("checkout.Duration",
"api-latency"); Prometheus wants `[a-zA-Z_:][a-zA-Z0-9_:]*`, base units as name suffixes
(`_seconds`, `_bytes`, `_ratio`) and `_total` on counters only. Everything here is pure and
raises `NameProblem` with the message the client reads, so the HTTP and StatsD paths refuse
the same names with the same words.

The final name is `<namespace>_<sanitized name>[_<base unit>]`: a unit whose suffix the name
already ends with is not appended twice, and a counter's own `_total` is dropped because the
exposition appends it to every counter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.events.properties import snake_case

# the three metric kinds a client may send, and the MetricStore family each becomes
KINDS = ("counter", "gauge", "distribution")
MAX_NAME_LENGTH = 150          # of the sanitized name, before the namespace and the unit suffix
MAX_LABEL_LENGTH = 100
# label names Prometheus or its scrape sets itself, or that a histogram's series already use
RESERVED_LABELS = frozenset({"le", "quantile", "job", "instance"})
# metrics of the agent itself: a custom name may never start like them (only reachable with an
# empty namespace; any namespace is checked against them in the config)
RESERVED_PREFIXES = ("loom_", "probe_", "process_", "python_", "scrape_")
RESERVED_NAMES = frozenset({"up"})           # Prometheus' own series of every target
# sample-name suffixes a family type owns: a gauge or a distribution named like this would read
# as a counter's or another histogram's series
COUNTER_SUFFIX = "_total"
_INVALID = re.compile(r"[^a-z0-9_]+")
_UNDERSCORES = re.compile(r"__+")


class NameProblem(ValueError):
    """A name, label or unit the agent refuses; str() is the message for the client."""


@dataclass(frozen=True, slots=True)
class Unit:
    """How values in a client's unit become Prometheus base units."""

    suffix: str            # base unit appended to the name ("" for none)
    factor: float          # value in the client's unit * factor = value in the base unit


_SECOND, _BYTE = "seconds", "bytes"
# Sentry's metric units (duration, information, fraction, none) by their singular name; plurals
# are accepted too. docs/custom-metrics.md has the table.
UNITS: dict[str, Unit] = {
    "none": Unit("", 1.0),
    "nanosecond": Unit(_SECOND, 1e-9),
    "microsecond": Unit(_SECOND, 1e-6),
    "millisecond": Unit(_SECOND, 1e-3),
    "second": Unit(_SECOND, 1.0),
    "minute": Unit(_SECOND, 60.0),
    "hour": Unit(_SECOND, 3600.0),
    "day": Unit(_SECOND, 86400.0),
    "week": Unit(_SECOND, 604800.0),
    "bit": Unit(_BYTE, 0.125),
    "byte": Unit(_BYTE, 1.0),
    "kilobyte": Unit(_BYTE, 1e3),
    "kibibyte": Unit(_BYTE, 2.0 ** 10),
    "megabyte": Unit(_BYTE, 1e6),
    "mebibyte": Unit(_BYTE, 2.0 ** 20),
    "gigabyte": Unit(_BYTE, 1e9),
    "gibibyte": Unit(_BYTE, 2.0 ** 30),
    "terabyte": Unit(_BYTE, 1e12),
    "tebibyte": Unit(_BYTE, 2.0 ** 40),
    "petabyte": Unit(_BYTE, 1e15),
    "pebibyte": Unit(_BYTE, 2.0 ** 50),
    "ratio": Unit("ratio", 1.0),
    "percent": Unit("ratio", 0.01),
}
_PLURALS = {name + "s": unit for name, unit in UNITS.items() if name not in ("none", "ratio", "percent")}
_ALIASES = {"": UNITS["none"], **_PLURALS}


def unit_of(text: str) -> Unit:
    """The Unit of a client's unit name (case-insensitive; singular or plural)."""
    key = text.strip().lower()
    unit = UNITS.get(key) or _ALIASES.get(key)
    if unit is None:
        raise NameProblem(f"unknown unit {text!r}; use one of {', '.join(UNITS)} (docs/custom-metrics.md)")
    return unit


def sanitize(text: str, what: str = "name", limit: int = MAX_NAME_LENGTH) -> str:
    """camelCase to snake_case, lowercase; every run of characters outside [a-z0-9_] becomes one "_";
    no leading, trailing or repeated "_". The result must start with a letter ("1st_signup" is refused,
    not renamed)."""
    if not isinstance(text, str):
        raise NameProblem(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > 4 * limit:
        raise NameProblem(f"{what} is longer than {limit} characters")
    name = _INVALID.sub("_", snake_case(text))
    if "__" in name:
        name = _UNDERSCORES.sub("_", name)
    name = name.strip("_")
    if not name:
        raise NameProblem(f"{what} {text!r} has no letters or digits")
    if not "a" <= name[0] <= "z":
        raise NameProblem(f"{what} {text!r} must start with a letter")
    if len(name) > limit:
        raise NameProblem(f"{what} is longer than {limit} characters")
    return name


def label_name(text: str) -> str:
    """A tag key as a label name: sanitized like a metric name; Prometheus' own labels are refused."""
    name = sanitize(text, "tag", MAX_LABEL_LENGTH)
    if name in RESERVED_LABELS:
        raise NameProblem(f"tag {text!r} would be the label {name!r}, which Prometheus reserves "
                          f"({', '.join(sorted(RESERVED_LABELS))})")
    return name


def metric_name(namespace: str, name: str, kind: str, unit: Unit) -> str:
    """The family name in the MetricStore (a counter's without `_total`, which the exposition adds).

    `name` is already sanitized."""
    if kind == "counter" and name.endswith(COUNTER_SUFFIX):
        name = name[:-len(COUNTER_SUFFIX)]
    elif kind != "counter" and (name == "total" or name.endswith(COUNTER_SUFFIX)):
        raise NameProblem(f"name {name!r} ends in _total, which only counters carry")
    if unit.suffix and name != unit.suffix and not name.endswith("_" + unit.suffix):
        name = f"{name}_{unit.suffix}"
    if not namespace and (name.startswith(RESERVED_PREFIXES) or name in RESERVED_NAMES):
        raise NameProblem(f"name {name!r} starts like the agent's own metrics "
                          f"({', '.join(RESERVED_PREFIXES)}); choose another name or set custom_metrics.namespace")
    return f"{namespace}_{name}" if namespace else name


def sample_names(name: str, kind: str) -> frozenset[str]:
    """Every name the exposition writes for a family (OpenMetrics and text format): two families
    whose sets meet would make one scrape ambiguous, so the second is refused."""
    if kind == "counter":
        return frozenset({name, name + "_total"})
    if kind == "histogram":
        return frozenset({name, name + "_bucket", name + "_count", name + "_sum"})
    return frozenset({name})
