"""rollup_queries.week_pieces: a range that ends with whole days a few days into a week whose later days hold
no stored event (a range ending now, or when the events end) reads that week's rows instead of its days'.
The figures must stay the events' own, and a stored event in those later days (a client clock ahead, an
arrival after the range) must keep the range's days as they are. SQLite and PostgreSQL.
"""

from __future__ import annotations

import math

from agent.analytics import rollup_queries as rq
from agent.analytics.timerange import TimeRange
from agent.events.model import Event
from agent.store import rollups as ru
from agent.store.base import Store
from agent.store.rows import event_rows
from tests.support.store_fixtures import Run
from tests.test_person_names_week import assert_per_user_is_the_events
from tests.test_rollups import T0, D, H, assert_same_figures, events, load

pytest_plugins = ["tests.support.store_fixtures"]


def test_a_range_ending_before_an_empty_rest_of_week_reads_the_week(store: Store, run: Run) -> None:
    batch = events(1500, seed=41, span=20 * D)
    run(load(store, batch))
    last_ts = max(e.timestamp for e in batch)
    last_day = int(last_ts // D)
    end_day = next(d for d in range(last_day + 1, last_day + 8) if d % ru.WEEK_DAYS in (2, 3, 4, 5))
    week_end = (end_day // ru.WEEK_DAYS + 1) * ru.WEEK_DAYS
    ranges = [TimeRange(T0 + 0.6 * D, end_day * D), TimeRange(T0 - 3 * H, end_day * D),
              TimeRange(end_day * D - 9.5 * D, end_day * D)]
    for r in ranges:
        p = run(rq.week_pieces(store, r))
        assert p.days is not None and p.days[1] == week_end, (r, p)
        assert_same_figures(store, run, r)
        assert_per_user_is_the_events(store, run, r)
    # a range ending inside a day (a stored event after its end in the day) is left as it is
    inside = TimeRange(T0 + 0.6 * D, last_ts - 1)
    assert run(rq.week_pieces(store, inside)).days == rq.pieces(run(rq.snapped(store, inside))).days

    # a stored event after the end, in the same week: the days stay, the figures leave it out
    later = (end_day + 1) * D + 2 * H
    run(store.write_events([event_rows(Event("session_completed", "coaching", later, later, {"coach_id": "coach_1"},
                                             user_id="user_1", event_id="later_1")),
                            event_rows(Event("task_created", "engagement", later, later, {"priority": "high"},
                                             user_id="user_2", event_id="later_2"))]))
    for r in ranges:
        p = run(rq.week_pieces(store, r))
        assert p.days is not None and p.days[1] == math.ceil(r.end / D), (r, p)
        assert_same_figures(store, run, r)
        assert_per_user_is_the_events(store, run, r)
