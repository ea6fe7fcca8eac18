"""How an analytics range of arbitrary instants is cut (agent/analytics/rollup_queries.py says why): its whole
UTC days (day rollups), the whole hours left at its two edges (hour rollups) and the partial hours at its
two ends (read from the events). Its own module so that rollup_queries and person_sets share it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.analytics.timerange import TimeRange
from agent.store import rollups as ru

HOURS_PER_DAY = 24


@dataclass(frozen=True, slots=True)
class Pieces:
    days: tuple[int, int] | None                                  # [first, past) day buckets
    hours: list[tuple[int, int]] = field(default_factory=list)    # [first, past) hour buckets
    raw: list[tuple[float, float]] = field(default_factory=list)  # [start, end) read from events

    @property
    def partial_days(self) -> list[tuple[float, float]]:
        """The parts of the range outside its whole days (hours and raw), as time ranges."""
        out = [(a * float(ru.HOUR), b * float(ru.HOUR)) for a, b in self.hours] + list(self.raw)
        out.sort()
        merged: list[tuple[float, float]] = []
        for a, b in out:
            if merged and merged[-1][1] >= a:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged


def pieces(r: TimeRange) -> Pieces:
    first_hour, past_hour = math.ceil(r.start / ru.HOUR), math.floor(r.end / ru.HOUR)
    if first_hour >= past_hour:
        return Pieces(None, [], [(r.start, r.end)])
    raw = [(a, b) for a, b in ((r.start, first_hour * float(ru.HOUR)), (past_hour * float(ru.HOUR), r.end)) if a < b]
    first_day, past_day = -(-first_hour // HOURS_PER_DAY), past_hour // HOURS_PER_DAY
    if first_day >= past_day:
        return Pieces(None, [(first_hour, past_hour)], raw)
    hours = [(a, b) for a, b in ((first_hour, first_day * HOURS_PER_DAY), (past_day * HOURS_PER_DAY, past_hour))
             if a < b]
    return Pieces((first_day, past_day), hours, raw)
