"""The business metrics' percentiles are picked by the database, so one request costs the agent the same
memory and event-loop time whatever the number of events in its range (bench/soak.py found RSS growing
by ~50 bytes per stored event and the event loop stalling for over a second at 6M events, while every
api_request, page_load and web_vitals value of the range was fetched into Python and sorted there).

1. The SQL nearest-rank pick equals stats.nearest_rank on the same values (duplicates, one value, ranks
   at the edges), on SQLite and PostgreSQL, with and without a release filter.
2. A business-metrics request over thousands of events fetches no row per event: every fetch returns at
   most a few dozen rows (one per label, outcome, rank or sketch bin), and the percentiles are within the
   value sketch's relative error (agent/store/rollups.py) of the exact ones.
"""

from __future__ import annotations

import random
import time
from typing import Any

from agent.analytics import queries as q
from agent.analytics.business import business_metrics
from agent.analytics.stats import nearest_rank
from agent.analytics.timerange import TimeRange
from agent.store.base import Store
from agent.store.rollups import RELATIVE_ERROR
from tests.support.analytics_fixture import within_sketch
from tests.support.event_examples import properties
from tests.support.store_fixtures import Run, example_rows

pytest_plugins = ["tests.support.store_fixtures"]

PS = (1, 50, 75, 95, 99, 100)


def _api_requests(values: list[float], ts: float, release: str | None = None, tag: str = "a") -> list:
    extra = {"release": release} if release else {}
    return [example_rows("api_request", event_id=f"{tag}{i}", ts=ts + i * 0.001,
                         props={**properties("api_request"), "duration_ms": value}, **extra) for i, value in enumerate(values)]


def test_sql_percentiles_equal_nearest_rank(store: Store, run: Run) -> None:
    rng = random.Random(8)
    now = time.time()
    for size in (1, 2, 7, 100, 257):
        values = [float(rng.choice((rng.randrange(1, 50), rng.uniform(0, 5000)))) for _ in range(size)]
        start = now - 3600 * (size + 1)
        run(store.write_events(_api_requests(values, start, tag=f"s{size}-")))
        r = TimeRange(start, start + 600)
        got = run(q.value_percentiles(store, "api_request", r, PS))
        ordered = sorted(values)
        assert got == {f"p{p}": nearest_rank(ordered, p) for p in PS}, size
    assert run(q.value_percentiles(store, "api_request", TimeRange(now + 10, now + 20), PS)) == \
        {f"p{p}": None for p in PS}


def test_sql_percentiles_keep_to_the_release(store: Store, run: Run) -> None:
    now = time.time() - 60
    run(store.write_events(_api_requests([5.0, 6.0, 7.0], now, "loom-web@1.0.0", "old")
                           + _api_requests([100.0, 200.0], now, "loom-web@2.0.0", "new")))
    r = TimeRange(now - 1, now + 1)
    assert run(q.value_percentiles(store, "api_request", r, (50, 100), "loom-web@2.0.0")) == \
        {"p50": 100.0, "p100": 200.0}
    assert run(q.value_percentiles(store, "api_request", r, (50, 100))) == {"p50": 7.0, "p100": 200.0}


class CountingStore:
    """A Store that remembers how many rows each fetch returned."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.dialect = inner.dialect
        self.rows: list[tuple[int, str]] = []

    async def fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        found = await self.inner.fetch(sql, params)
        self.rows.append((len(found), sql))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_business_metrics_fetch_no_row_per_event(store: Store, run: Run) -> None:
    rng = random.Random(3)
    now = time.time() - 120
    durations = [float(rng.randrange(1, 2000)) for _ in range(1500)]
    loads = [float(rng.randrange(100, 9000)) for _ in range(500)]
    vitals = [(rng.choice(("LCP", "INP", "CLS")), rng.choice(("good", "needs-improvement", "poor")),
               float(rng.randrange(0, 4000))) for _ in range(1000)]
    rows = _api_requests(durations, now)
    rows += [example_rows("page_load", event_id=f"p{i}", ts=now + i * 0.001, props={**properties("page_load"), "load_time_ms": v})
             for i, v in enumerate(loads)]
    rows += [example_rows("web_vitals", event_id=f"v{i}", ts=now + i * 0.001,
                          props={**properties("web_vitals"), "name": name, "rating": rating, "value": value})
             for i, (name, rating, value) in enumerate(vitals)]
    run(store.write_events(rows))
    counting = CountingStore(store)
    answer = run(business_metrics(counting, TimeRange(now - 60, now + 60)))   # type: ignore[arg-type]

    most, sql = max(counting.rows)
    # one row per sketch bin at most: values of 1..2000 fall in ceil(ln 2000 / ln 1.02) = 384 bins whatever
    # their number (3,000 values here)
    assert most <= 384, f"{most} rows from one fetch: {sql}"
    perf = answer["performance"]
    # the percentiles come from the value sketch: within its relative error of the exact nearest rank
    exact = {"apiResponseMs": {f"p{p}": nearest_rank(sorted(durations), p) for p in (50, 95, 99)},
             "pageLoadMs": {f"p{p}": nearest_rank(sorted(loads), p) for p in (50, 75, 95)}}
    assert within_sketch({k: perf[k] for k in exact}, exact) == exact
    lcp = sorted(v for name, _, v in vitals if name == "LCP")
    assert abs(perf["webVitals"]["LCP"]["p75"] - nearest_rank(lcp, 75)) <= RELATIVE_ERROR * nearest_rank(lcp, 75)
    assert perf["webVitals"]["LCP"]["count"] == len(lcp)
    assert perf["webVitals"]["LCP"]["needsImprovement"] == sum(
        1 for name, rating, _ in vitals if name == "LCP" and rating == "needs-improvement")
    assert perf["webVitals"]["FID"] == {"p75": None, "good": 0, "needsImprovement": 0, "poor": 0, "count": 0}
