"""The dashboard's and business metrics' reads from the rollups that depend on more than one table or on
the events around the range (agent/analytics/rollup_queries.py), against the events, on SQLite and
PostgreSQL:

1. `coach_clients` for some coaches only (the dashboard's top 50) gives those coaches' counts of the
   full read, and each equals the distinct users of the coach's session events in the range.
2. `snapped`: a range's end moves to the end of its hour or day only when no event lies between, and
   every figure over ranges ending around the last events (after them, between two of one hour, on one)
   equals the events'; events received after the request asked (live ingest) do not hold it.
3. The persons of more than half an hour (person_sets._by_rest: the hour's bitmap less the persons of the
   rest of the hour without an event in the piece) are those of the events, through merges and erasure,
   and in an hour retention cut into (read from its events then).
"""

from __future__ import annotations

from agent.analytics import person_sets as ps, rollup_queries as rq
from agent.analytics.timerange import TimeRange, parse_time_range
from agent.events.model import Event
from agent.store import rollups as ru
from agent.store.base import Store
from agent.store.config import RetentionConfig
from agent.store.gdpr import erase_user
from agent.store.people import merge_statements
from agent.store.retention import run_cleanup_once
from agent.store.rows import event_rows
from tests.support.store_fixtures import Run
from tests.test_rollups import COACHES, SPAN, T0, D, H, assert_same_figures, events, load, ranges

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


def test_the_end_moves_to_its_hour_or_day_only_over_no_events(store: Store, run: Run) -> None:
    day = (T0 // D + 3) * D
    run(store.write_events([event_rows(Event("feature_used", "engagement", ts, ts, {"feature": "x"}, user_id="u",
                                             event_id=f"f{ts}"))
                            for ts in (day + 10 * H + 100, day + 10 * H + 1000, day + 15 * H)]))

    def end_of(end: float) -> float:
        return run(rq.snapped(store, TimeRange(day, end))).end

    assert end_of(day + 10 * H + 500) == day + 10 * H + 500       # an event later in the hour
    assert end_of(day + 10 * H + 1500) == day + 11 * H            # none in the hour, one later in the day
    assert end_of(day + 15 * H) == day + 15 * H                   # the event at the end is not in the range
    assert end_of(day + 15 * H + 10) == day + D                   # none after it
    assert end_of(day + 12 * H) == day + 12 * H                   # on an hour, events later in the day
    assert end_of(day + D) == day + D


def test_events_received_after_the_request_asked_do_not_hold_the_end(store: Store, run: Run) -> None:
    """Live ingest: the events stamped after a range ending now arrive while its request runs; they do not
    keep the end's hour read from the events (the soak's 25 s dashboards), an event received before does."""
    day = (T0 // D + 3) * D
    asked = day + 10 * H + 500

    def event(ts: float, received: float, k: str) -> Event:
        return Event("feature_used", "engagement", ts, received, {"feature": "x"}, user_id="u", event_id=k)

    run(store.write_events([event_rows(e) for e in (event(day + 10 * H + 100, day + 10 * H + 100, "before"),
                                                    event(asked + 1, asked + 1, "arrived"),
                                                    event(day + 15 * H, asked + 2, "arrived-later-hour"))]))

    def end_of(end: float, when: float | None) -> float:
        return run(rq.snapped(store, TimeRange(day, end, when))).end

    assert end_of(asked, asked) == day + D                 # what came after the request asked: not yet stored
    assert end_of(asked, None) == asked                    # asked now: every event is stored
    assert end_of(asked, asked + 1.5) == asked             # the first arrival was stored when it asked
    assert end_of(day + 11 * H, asked + 1.5) == day + D       # the 15:00 event was not stored yet ...
    assert end_of(day + 11 * H, asked + 3) == day + 11 * H     # ... now it was: the day's end stays
    run(store.write_events([event_rows(event(asked + 30, asked - 5, "clock-ahead"))]))
    assert end_of(asked, asked) == asked                   # received before, stamped after the end: it stays
    assert end_of(day + 10 * H + 50, asked) == day + 10 * H + 50
    assert end_of(day + 10 * H + 150, day + 10 * H + 120) == day + D      # asked at 10:02: none stored after
    # a trend moves its end within the bucket holding it: the day for daily (weekly, monthly) buckets,
    # the hour for hourly ones (the next hour is the next bucket)
    r = TimeRange(day, day + 10 * H + 150, day + 10 * H + 120)
    assert run(rq.trend_range(store, r, "day")).end == day + D
    assert run(rq.trend_range(store, r, "hour")).end == day + 11 * H
    on_hour = TimeRange(day, day + 10 * H, day + 10 * H)
    assert run(rq.trend_range(store, on_hour, "hour")).end == day + 10 * H



def test_every_figure_over_ranges_ending_around_the_last_events_equals_the_events(store: Store, run: Run) -> None:
    batch = events(1500, seed=43)
    run(load(store, batch))
    last = sorted(e.timestamp for e in batch)
    for end in (last[-1] + 1, last[-1] + 0.25 * H, last[-1], last[-2] + 1, (last[-1] // H) * H, last[-40] + 7):
        for length in (3 * D + 5 * H + 17, 0.5 * H, 2 * H, SPAN):
            assert_same_figures(store, run, TimeRange(end - length, end))


def test_a_parsed_range_knows_when_it_was_asked_and_its_windows_keep_it() -> None:
    """The API's ranges carry the instant of the request (what snapped compares received_at with), and so do
    the windows business metrics derives from them (DAU, WAU, MAU): without it a derived range would
    take the time of its own read, and arrivals during the request would hold its end again."""
    now = T0 + 5 * D + 123.5
    for query in ({}, {"range": "7d"}, {"from": str(T0), "to": str(T0 + D)}):
        r = parse_time_range(query, now)
        assert r.asked == now, query
        assert r.ending(D).asked == now and r.ending(D).end == r.end and r.ending(D).start == r.end - D
    assert TimeRange(1.0, 2.0, 5.0) == TimeRange(1.0, 2.0)        # equal ranges whenever they were asked


def test_the_persons_of_most_of_an_hour_are_those_of_its_events(store: Store, run: Run) -> None:
    hour = (T0 // H + 30) * H
    start, end = hour + 600, hour + 3000           # 40 of the hour's 60 minutes
    who = [("rest_only", hour + 100), ("both", hour + 200), ("both", hour + 1000), ("piece_only", hour + 2000),
           ("alias", hour + 3500), ("person_p", hour + 700), ("alias_2", hour + 1500), ("erased", hour + 1200),
           ("erased", hour + 3300), ("after", hour + 3100), ("after", hour + 3599), ("alias_3", hour + 900),
           ("person_q", hour + 5 * H)]
    run(store.write_events([event_rows(Event("api_request" if k % 2 else "feature_used", "engagement", ts, ts,
                                             {"duration_ms": 5.0, "status": 200} if k % 2 else {"feature": "x"},
                                             user_id=user, event_id=f"w{k}"))
                            for k, (user, ts) in enumerate(who)]))
    run(store.execute(merge_statements(store.dialect, "alias", "person_p", hour + 3600)))
    run(store.execute(merge_statements(store.dialect, "alias_2", "piece_only", hour + 3600)))
    run(store.execute(merge_statements(store.dialect, "alias_3", "person_q", hour + 6 * H)))   # none of its own here
    run(erase_user(store, ["erased"]))
    for name in (None, "feature_used", "api_request"):
        for a, b in ((start, end), (hour, end), (start, hour + H), (hour + 1, hour + 3599)):
            got = run(ps.persons_of(store, run(ps.persons_active(store, a, b, name))))
            where = "" if name is None else " AND name = ?"
            sql = f"SELECT DISTINCT user_id FROM events WHERE ts >= ? AND ts < ?{where}"
            want = {u for (u,) in run(store.fetch(sql, (a, b, *(() if name is None else (name,)))))}
            assert set(got.values()) == want, (name, a - hour, b - hour)


def test_most_of_an_hour_retention_cut_into_is_read_from_its_events(store: Store, run: Run) -> None:
    """The hour's bitmap is kept while retention deleted its events before the cut: their persons are in it,
    and the rest of the hour (read from the events) cannot subtract them."""
    hour = T0 - (T0 % H) + 5 * H

    def event(n: int, user: str, ts: float) -> Event:
        return Event("goal_created", "engagement", ts, ts, {"category": "x"}, user_id=user, event_id=f"cut_{n}")

    run(store.write_events([event_rows(event(1, "gone", hour + 5 * 60)), event_rows(event(2, "stay", hour + 40 * 60)),
                            event_rows(event(3, "later", hour + 30 * H))]))
    run(store.fetch("SELECT count(*) FROM rollup_counts_day"))      # SQLite: the rollups folded first
    run(run_cleanup_once(store, RetentionConfig(), now=hour + 10 * 60 + 90 * D))   # analytics: the cut at +10 min
    start, end = hour + 20 * 60, hour + 2 * D                       # its first piece: 40 min of the hour
    want = sorted(user for (user,) in run(store.fetch(
        "SELECT DISTINCT user_id FROM events WHERE ts >= ? AND ts < ?", (start, end))))
    assert want == ["later", "stay"]
    found = run(ps.persons_active(store, start, end))
    assert sorted(run(ps.persons_of(store, found)).values()) == want
    with rq.request_cache():
        assert run(rq.active_users(store, TimeRange(start, end))) == 2
