"""A trend series answered from the rollups maintained at ingest (agent/store/rollups.py) instead of the
events, when they hold what it asks: no property filter; math `total`, or `sum` / `avg` of the property
the store lifts into the event's `value` column; no breakdown, or a breakdown by the lifted label of an
event whose counts keep it (rollups.LABELLED: the coach of session events, the goal category, the web
vital) or by the lifted outcome of one that keeps that (rollups.OUTCOMES: login result, HTTP status,
vital rating). Anything else reads the events (agent/analytics/trends.py); the answers are the same.

The range is cut as the dashboard's (agent/analytics/rollup_queries.py `pieces`): whole UTC days from
rollup_counts_day, the whole hours at its edges from rollup_counts_hour, and the partial hours at its ends
from the events, so a bucket cut by the range stays exact; an hourly trend reads hours and the edges.
What it costs no longer grows with the events: about 30 day rows per dimension value for 30 days, plus
at most 2 hours of events. One difference with the events: the rollups store an unset label or outcome as
'' (a primary key holds no NULL), so an empty-string value and an unset one are one breakdown value
(null) here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.analytics.insight_query import Series, TrendsQuery
from agent.analytics.insight_sql import lifted
from agent.analytics.rollup_queries import pieces, trend_range
from agent.store import rollups as ru
from agent.store.base import Store

Sums = dict[tuple[int, str], list[float]]          # (trend bucket, dimension) -> [events, values, sum]


def dimension(q: TrendsQuery, series: Series) -> str | None:
    """The rollup column a series can be answered by ("" without breakdown, "label" or "outcome"), or None
    when it must read the events."""
    event = series.spec.event
    if event is None or series.spec.filters or series.math not in ("total", "sum", "avg"):
        return None
    if series.math != "total" and (series.math_property is None or lifted(event, series.math_property) != "value"):
        return None
    if q.breakdown is None:
        return ""
    column = lifted(event, q.breakdown.key)
    if (column == "label" and event in ru.LABELLED) or (column == "outcome" and event in ru.OUTCOMES):
        return column
    return None


async def rollup_sums(store: Store, q: TrendsQuery, series: Series, column: str,
                      index: Callable[[float], int]) -> Sums:
    """(trend bucket, dimension value or "") -> [events, values, sum of values] over the range; `index`
    maps a unix time to its trend bucket."""
    dim = column or "''"
    out: Sums = {}

    def add(ts: float, value: Any, n: Any, nv: Any, total: Any) -> None:
        entry = out.setdefault((index(ts), value or ""), [0, 0, 0.0])
        entry[0] += int(n)
        entry[1] += int(nv)
        entry[2] += float(total or 0.0)

    r = await trend_range(store, q.range, q.interval)     # a range ending now: its hour from the rollups
    p = pieces(r)
    if q.interval == "hour":
        first, past = math.ceil(r.start / ru.HOUR), math.floor(r.end / ru.HOUR)
        hours = [(first, past)] if first < past else []
        days: tuple[int, int] | None = None
        raw = [(a, b) for a, b in ((r.start, first * float(ru.HOUR)), (past * float(ru.HOUR), r.end)) if a < b] \
            if hours else [(r.start, r.end)]
    else:
        hours, days, raw = p.hours, p.days, p.raw
    grouped = f"bucket, {column}" if column else "bucket"
    select = (f"SELECT bucket, {dim}, sum(events), sum(nvalues), sum(vsum) FROM {{table}} WHERE name = ? "
              f"AND bucket >= ? AND bucket < ? GROUP BY {grouped}")
    for table, size, ranges in (("rollup_counts_day", ru.DAY, [days] if days else []),
                                ("rollup_counts_hour", ru.HOUR, hours)):
        for low, high in ranges:
            for bucket, value, n, nv, total in await store.fetch(select.format(table=table),
                                                                 (series.spec.event, low, high)):
                add(int(bucket) * size, value, n, nv, total)
    for start, end in raw:
        sql = (f"SELECT e.ts, e.{column or 'name'}, 1, CASE WHEN e.value IS NULL THEN 0 ELSE 1 END, e.value "
               "FROM events e WHERE e.name = ? AND e.ts >= ? AND e.ts < ?")
        for ts, value, n, nv, total in await store.fetch(sql, (series.spec.event, start, end)):
            add(float(ts), value if column else "", n, nv, total)
    return out



def found_from_sums(q: TrendsQuery, series: Series, sums: Sums) -> tuple[dict[tuple[int, int], float],
                                                                       list[tuple[str | None, bool]]]:
    """The trend's (bucket, group) -> number and its groups (value, is_other), as trends.py builds them from
    the events: the top values by events (ties by code point, unset last), the rest as other."""
    groups: list[tuple[str | None, bool]] = [(None, False)]
    group_of: dict[str, int] = {}
    if q.breakdown is not None:
        events: dict[str, int] = {}
        for (_, value), (n, _, _) in sums.items():
            events[value] = events.get(value, 0) + int(n)
        ranked = sorted(events, key=lambda v: (-events[v], v == "", v))
        top = ranked[:q.breakdown.limit]
        groups = [(v or None, False) for v in top]
        group_of = {v: i for i, v in enumerate(top)}
        if len(ranked) > len(top):
            groups.append((None, True))
    merged: dict[tuple[int, int], list[float]] = {}
    for (bucket, value), (n, nv, total) in sums.items():
        g = group_of.get(value, len(groups) - 1) if q.breakdown is not None else 0
        entry = merged.setdefault((bucket, g), [0, 0, 0.0])
        entry[0] += n
        entry[1] += nv
        entry[2] += total
    found: dict[tuple[int, int], float] = {}
    for key, (n, nv, total) in merged.items():
        if series.math == "total":
            found[key] = n
        elif nv:
            found[key] = total if series.math == "sum" else total / nv
    return found, groups
