"""Just enough of the Prometheus text format for the benchmark: sums, histograms, quantiles."""

from __future__ import annotations

import math
from collections.abc import Iterator


def samples(text: str, name: str) -> Iterator[tuple[str, float]]:
    """(label text, value) of every sample named exactly `name` (no type suffix guessing)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            labels, _, value = rest[1:].rpartition("} ")
        elif rest.startswith(" "):
            labels, value = "", rest[1:]
        else:
            continue                      # a longer name with this prefix
        yield labels, float(value.split()[0])


def total(text: str, name: str, having: str = "") -> float:
    """Sum of `name` over all label sets whose label text contains `having`."""
    return sum(value for labels, value in samples(text, name) if having in labels)


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram `name` (summed over label sets), upper bound -> count."""
    out: dict[float, float] = {}
    for labels, value in samples(text, f"{name}_bucket"):
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = math.inf if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + value
    return dict(sorted(out.items()))


def delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile(q: float, buckets: dict[float, float]) -> float:
    """histogram_quantile(): linear interpolation inside the bucket holding the q-th observation
    (the first bucket starts at 0; a quantile in the +Inf bucket is reported as the last finite bound)."""
    bounds = sorted(buckets)
    count = buckets[bounds[-1]] if bounds else 0.0
    if count <= 0:
        return math.nan
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        cumulative = buckets[bound]
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound
            if cumulative == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
        lower_bound, lower_count = bound, cumulative
    return bounds[-1]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of raw values, interpolated between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
