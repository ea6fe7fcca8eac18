"""The arithmetic of the analytics documents, in one place so every section rounds the same way.

Rates are percentages with one decimal (87.5), 0 when there is nothing to divide by (no sessions
booked: a completion rate of 0, as the documentation's dashboard shows it). Averages are None
(JSON null) when there is nothing to average: "no ratings" is not "rated 0".

Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at 1-based rank
ceil(p/100 * n). It is always a value that was observed (no interpolation), it is exact, and the
same on SQLite and PostgreSQL. The business metrics pick that rank in SQL (queries.value_percentiles),
so a request never holds every value of its range in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percent(part: float, whole: float, digits: int = 1) -> float:
    """100 * part / whole, rounded; 0.0 when whole is 0."""
    if not whole:
        return 0.0
    return round(100.0 * part / whole, digits)


def average(total: float | None, count: float, digits: int = 2) -> float | None:
    """total / count, rounded; None when count is 0."""
    if not count or total is None:
        return None
    return round(float(total) / count, digits)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def nearest_rank(ordered: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0 < p <= 100) of `ordered` (ascending); None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]
