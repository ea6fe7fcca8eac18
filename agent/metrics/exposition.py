"""Prometheus text 0.0.4 and OpenMetrics 1.0.0 of the metric store, after a prometheus_client registry.

Why not prometheus_client for the store: `generate_latest()` builds a sample tuple, a label dict,
a sort and several format calls per sample: 8-15 µs a series (measured, bench/exposition.py). Here a series' line
prefix (`\\nname{a="x",b="y"} `) is built once and cached on its family (`Family.render_cache`),
and a render is a few passes that run in C: list the series keys, check they are the cached keys
(an identity comparison when nothing changed), format the values with `map(float.__repr__, ...)`,
interleave prefixes and values, join once. Labels, `_total`, `_bucket`/`_count`/`_sum` are the
same in both formats, so one cache serves both; only the HELP/TYPE/UNIT headers differ.

The small registry (self-metrics, probe metrics) is rendered by prometheus_client's own encoders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress
from math import isfinite

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_of_registry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_of_registry
from prometheus_client.utils import floatToGoString

from agent.metrics.store import Family, Histogram, MetricStore

OVERFLOW_FAMILY = "loom_agent_label_overflow"
OVERFLOW_HELP = "Label values folded to `other` by an allow-list or a series limit, by metric and label."
OVERFLOW_LABELS = ("metric", "label")
EOF = b"# EOF\n"


@dataclass(frozen=True, slots=True)
class PrefixCache:
    """The line prefixes of a family's series: `len(prefixes) == len(keys) * lines per series`."""

    keys: list[tuple[str, ...]]
    prefixes: list[str]


def render(store: MetricStore | None, registry: CollectorRegistry | None, *, openmetrics: bool,
           renderers: Sequence[Callable[[bool], str]] = ()) -> bytes:
    """The registry's metrics, then each renderer's text (e.g. the probe metrics), then every family of
    the store, then the label overflow counter."""
    out: list[str] = []                  # every piece of the body, joined and encoded once
    if registry is not None:
        head = openmetrics_of_registry(registry).removesuffix(EOF) if openmetrics else text_of_registry(registry)
        out.append(head.decode())
    for renderer in renderers:
        out.append(renderer(openmetrics))
    if store is not None:
        for family in store.families():
            append_family(out, family, openmetrics)
        append_overflow(out, store.overflow, openmetrics)
    if openmetrics:
        out.append(EOF.decode())
    text = "".join(out)
    try:
        return text.encode()
    except UnicodeEncodeError:            # a lone surrogate in a label value: keep the scrape alive
        return text.encode("utf-8", "backslashreplace")


def append_family(out: list[str], family: Family, openmetrics: bool) -> None:
    """HELP/TYPE(/UNIT) of one family and its sample lines, ending with a newline."""
    prefixes, values = snapshot(family)
    header = header_text(family.name, family.kind, family.help, family.unit, openmetrics)
    if isinstance(family, Histogram):
        strings = histogram_values(values)
        if openmetrics:
            prefixes, strings = without_negative_sums(family, prefixes, strings, values)
    else:
        strings = format_values(values)
    out.append(header)
    append_interleaved(out, prefixes, strings)
    out.append("\n")


def append_overflow(out: list[str], overflow: Mapping[tuple[str, str], int], openmetrics: bool) -> None:
    """`loom_agent_label_overflow_total{metric,label}` from `MetricStore.overflow` (small; not cached)."""
    items = list(overflow.items())
    sample = OVERFLOW_FAMILY + "_total"
    out.append(header_text(OVERFLOW_FAMILY, "counter", OVERFLOW_HELP, "", openmetrics))
    append_interleaved(out, [line_prefix(sample, OVERFLOW_LABELS, key) for key, _ in items],
                       format_values([float(count) for _, count in items]))
    out.append("\n")


def header_text(name: str, kind: str, help: str, unit: str, openmetrics: bool) -> str:
    """The comment lines of a family, without a trailing newline (each sample line starts with one).

    Text format: a counter's HELP/TYPE name carries `_total`, as prometheus_client writes it.
    OpenMetrics: the family name without `_total`, and a UNIT line when the name ends in `_<unit>`
    (the format requires that suffix; a family whose name lacks it gets no UNIT line).
    """
    if not openmetrics:
        name = name + "_total" if kind == "counter" else name
        text_help = help.replace("\\", r"\\").replace("\n", r"\n")       # the text format leaves quotes alone
        return f"# HELP {name} {text_help}\n# TYPE {name} {kind}"
    text = f"# HELP {name} {escape(help)}\n# TYPE {name} {kind}"
    if unit and name.endswith("_" + unit):
        text += f"\n# UNIT {name} {unit}"
    return text


def escape(value: str) -> str:
    """A label value (or OpenMetrics HELP text) with backslash, newline and double quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def label_text(names: Iterable[str], values: Iterable[str]) -> str:
    return ",".join(f'{name}="{escape(str(value))}"' for name, value in zip(names, values))


def line_prefix(sample: str, names: Sequence[str], key: tuple[str, ...]) -> str:
    """`\\nsample{a="x",b="y"} `: a sample line up to its value."""
    return f"\n{sample}{{{label_text(names, key)}}} " if names else f"\n{sample} "


def snapshot(family: Family) -> tuple[list[str], list]:
    """The family's cached line prefixes, brought up to date, and its values in the same order.

    Keys never change, so a cached prefix stays right for the life of its series. Series are only
    ever appended, so new keys extend the cache; any other difference (a series removed) rebuilds
    it from the current keys, which drops the removed series' prefixes.
    """
    series = family.series
    keys = list(series)
    values = list(series.values())
    if len(values) != len(keys):          # a series was added in between (a render in a thread)
        values = list(map(series.__getitem__, keys))
    cache = family.render_cache
    if not isinstance(cache, PrefixCache) or cache.keys != keys:
        cache = family.render_cache = updated_cache(family, cache, keys)
    return cache.prefixes, values


def updated_cache(family: Family, cache: object, keys: list[tuple[str, ...]]) -> PrefixCache:
    build = prefix_builder(family)
    known = len(cache.keys) if isinstance(cache, PrefixCache) else 0
    if isinstance(cache, PrefixCache) and known and len(keys) > known and keys[:known] == cache.keys:
        prefixes, new = list(cache.prefixes), keys[known:]       # a copy: a concurrent render may hold the old
    else:
        prefixes, new = [], keys
    for key in new:
        prefixes.extend(build(key))
    return PrefixCache(keys, prefixes)


def prefix_builder(family: Family) -> Callable[[tuple[str, ...]], list[str]]:
    """key -> the line prefixes of that series: one, or a histogram's buckets, _count and _sum."""
    names = family.labels
    if not isinstance(family, Histogram):
        sample = family.name + "_total" if family.kind == "counter" else family.name
        return lambda key: [line_prefix(sample, names, key)]
    bucket, count, total = family.name + "_bucket", family.name + "_count", family.name + "_sum"
    bounds = [floatToGoString(b) for b in family.buckets] + ["+Inf"]

    def histogram_prefixes(key: tuple[str, ...]) -> list[str]:
        labels = label_text(names, key)
        sep = "," if labels else ""
        lines = [f'\n{bucket}{{{labels}{sep}le="{le}"}} ' for le in bounds]
        if labels:
            return [*lines, f"\n{count}{{{labels}}} ", f"\n{total}{{{labels}}} "]
        return [*lines, f"\n{count} ", f"\n{total} "]

    return histogram_prefixes


def format_values(values: list) -> list[str]:
    """Sample values as Prometheus parses them: floats via repr, +Inf/-Inf/NaN, ints exact."""
    try:
        if all(map(isfinite, values)):
            return list(map(float.__repr__, values))      # all floats and finite: one C pass
    except TypeError:
        pass                                               # an int or bool (a gauge set to 3)
    return list(map(format_value, values))


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(int(value))
    value = float(value)
    if isfinite(value):
        return repr(value)
    return floatToGoString(value)                          # +Inf, -Inf, NaN


def histogram_values(datas: list[list]) -> list[str]:
    """Per series (non-cumulative bucket counts..., +Inf count, sum): cumulative buckets, _count, _sum."""
    out: list[str] = []
    for data in datas:
        cumulative = list(accumulate(data[:-1]))
        cumulative.append(cumulative[-1])
        out += map(str, cumulative)
        out.append(format_value(data[-1]))
    return out


def without_negative_sums(family: Histogram, prefixes: list[str], strings: list[str],
                          values: list[list]) -> tuple[list[str], list[str]]:
    """OpenMetrics treats a histogram's sum as a counter: a family with negative buckets shows no
    _count/_sum, nor does a series whose observations summed below zero (or to NaN)."""
    negative_buckets = family.buckets[0] < 0
    drop = [i for i, data in enumerate(values) if negative_buckets or not data[-1] >= 0]
    if not drop:
        return prefixes, strings
    stride = len(family.buckets) + 3
    keep = [True] * len(prefixes)
    for i in drop:
        keep[(i + 1) * stride - 2] = keep[(i + 1) * stride - 1] = False
    return list(compress(prefixes, keep)), list(compress(strings, keep))


def append_interleaved(out: list, prefixes: list[str], values: list[str]) -> None:
    """out += prefix0, value0, prefix1, value1, ... (the prefixes carry the newlines); C-speed slices."""
    start = len(out)
    out += [None] * (2 * len(prefixes))
    out[start::2] = prefixes
    out[start + 1::2] = values
