"""The converted series as Prometheus text 0.0.4 / OpenMetrics 1.0.0, with each series' line prefixes cached.

Why not prometheus_client's encoders over `OtlpMetricSeries.collect()`: they build a Sample, a label dict and
its text for every line of every scrape: 167 ms a scrape for 1,000 series of which 300 histograms (6,000
lines; bench/otlp.py, scraped every second while receiving). Here a series' label text is built once (its
labels never change) and a histogram's `_bucket{...,le=...}` prefixes once per bound set, so a scrape is
value formatting and one join (agent/metrics/exposition.py does the same for the event metrics). The
sample lines are the same in both formats; only the HELP/TYPE/UNIT headers differ (exposition.header_text),
and target_info is a gauge in the text format and an `info` family `target` in OpenMetrics.
`tests/test_otlp_prom_series.py` parses both and compares them with prometheus_client's rendering.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agent.metrics.exposition import escape, format_value, header_text
from agent.receiver.expo_buckets import explicit

if TYPE_CHECKING:
    from agent.receiver.prom_series import Family, Series


def render(families: Iterable[Family], openmetrics: bool) -> str:
    out: list[str] = []
    for family in families:
        if not family.series:
            continue
        name, kind = family.name, family.kind
        if kind == "info":
            out.append(header_text(name.removesuffix("_info"), "info", family.help, "", True) if openmetrics
                       else header_text(name, "gauge", family.help, "", False))
        else:
            out.append(header_text(name, kind, family.help, family.unit, openmetrics))
        if kind == "counter":
            sample = name + "_total"
            for s in family.series.values():
                out += (s.text_line(sample), format_value(s.value))
        elif kind == "gauge":
            for s in family.series.values():
                out += (s.text_line(name), format_value(s.value))
        elif kind == "info":
            for s in family.series.values():
                out += (s.text_line(name), "1.0")
        elif kind == "summary":
            for s in family.series.values():
                _summary(out, name, s)
        else:
            for s in family.series.values():
                _histogram(out, name, s)
        out.append("\n")
    return "".join(out)


def label_text(key: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f'{name}="{escape(value)}"' for name, value in key)


def _histogram(out: list[str], name: str, s: Series) -> None:
    state = s.value
    if hasattr(state, "positive"):                     # an ExpoState: power-of-two buckets
        bounds, counts = explicit(state.negative, state.zero, state.positive)
        bounds_key: Any = tuple(bounds)
    else:
        bounds, counts, bounds_key = state.bounds, state.counts, state.bounds
    cached = s.lines
    if cached is None or cached[0] != bounds_key:
        labels = s.label_text()
        sep = "," if labels else ""
        prefixes = [f'\n{name}_bucket{{{labels}{sep}le="{float(b)!r}"}} ' for b in bounds]
        prefixes.append(f'\n{name}_bucket{{{labels}{sep}le="+Inf"}} ')
        tail = f"{{{labels}}} " if labels else " "
        prefixes += (f"\n{name}_count{tail}", f"\n{name}_sum{tail}")
        cached = s.lines = (bounds_key, prefixes)
    prefixes = cached[1]
    running = 0
    for prefix, count in zip(prefixes, counts[:len(bounds)]):
        running += count
        out += (prefix, str(running))
    total = str(state.count)
    out += (prefixes[-3], total)
    # OpenMetrics: no _count without _sum (a point may have no sum), no _sum with negative buckets
    if state.sum is not None and not (bounds and bounds[0] < 0):
        out += (prefixes[-2], total, prefixes[-1], format_value(state.sum))


def _summary(out: list[str], name: str, s: Series) -> None:
    state = s.value
    quantiles = tuple(q for q, _ in state.quantiles)
    cached = s.lines
    if cached is None or cached[0] != quantiles:
        labels = s.label_text()
        sep = "," if labels else ""
        prefixes = [f'\n{name}{{{labels}{sep}quantile="{float(q)!r}"}} ' for q in quantiles]
        tail = f"{{{labels}}} " if labels else " "
        prefixes += (f"\n{name}_count{tail}", f"\n{name}_sum{tail}")
        cached = s.lines = (quantiles, prefixes)
    prefixes = cached[1]
    for prefix, (_, value) in zip(prefixes, state.quantiles):
        out += (prefix, format_value(value))
    out += (prefixes[-2], str(state.count), prefixes[-1], format_value(state.sum))
