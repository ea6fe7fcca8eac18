"""The dashboard's and business metrics' reads from the rollups that depend on more than one table or on
the events around the range (agent/analytics/rollup_queries.py), against the events, on SQLite and
PostgreSQL:

1. `coach_clients` for some coaches only (the dashboard's top 50) gives those coaches' counts of the
   full read, and each equals the distinct users of the coach's session events in the range.
"""

from __future__ import annotations

from agent.analytics import rollup_queries as rq
from agent.analytics.timerange import TimeRange
from agent.store import rollups as ru
from agent.store.base import Store
from tests.support.store_fixtures import Run
from tests.test_rollups import COACHES, events, load, ranges

pytest_plugins = ["tests.support.store_fixtures"]


async def clients_of(store: Store, r: TimeRange) -> dict[str, int]:
    marks = ", ".join("?" * len(ru.SESSION_NAMES))
    rows = await store.fetch(f"SELECT label, count(DISTINCT user_id) FROM events WHERE name IN ({marks}) "
                             "AND ts >= ? AND ts < ? AND label IS NOT NULL AND user_id IS NOT NULL GROUP BY label",
                             (*ru.SESSION_NAMES, r.start, r.end))
    return {coach: int(n) for coach, n in rows}


def test_the_clients_of_some_coaches_are_those_of_the_full_read(store: Store, run: Run) -> None:
    run(load(store, events(1200, seed=41)))
    for r in ranges(seed=42, n=8):
        everyone = run(rq.coach_clients(store, r))
        assert everyone == run(clients_of(store, r)), r
        for some in ([COACHES[0]], list(COACHES), ["nobody"], []):
            assert run(rq.coach_clients(store, r, some)) == {c: n for c, n in everyone.items() if c in some}, (r, some)
