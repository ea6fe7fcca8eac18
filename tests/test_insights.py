"""POST /api/insights/{trends,funnels,retention} over real HTTP (127.0.0.1, port 0) against the hand-computed
fixture of tests/support/insights_fixture.py, on SQLite and on a real PostgreSQL (the same answers); the
body's 400s naming the field, admin auth, the store's 503s and the time limit; the funnel walks on
their own; and the rule that the trends and funnel reads go through events_name_dims."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from agent.analytics import trends
from agent.analytics.funnels import _query, ordered, strict, unordered
from agent.analytics.insight_query import funnel_query, trends_query
from agent.analytics.trends import _where
from agent.analytics.trends_rollups import dimension
from agent.api import insights
from tests.support.insights_fixture import D, T0, load_insights_fixture

pytest_plugins = ["tests.support.store_fixtures"]

TOKEN = "admin-token-for-the-insights-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRENDS, FUNNELS, RETENTION = "/api/insights/trends", "/api/insights/funnels", "/api/insights/retention"
WEEK = {"from": "2025-03-03T00:00:00Z", "to": "2025-03-10T00:00:00Z"}
DAYS = ["2025-03-0%dT00:00:00Z" % d for d in range(3, 10)]
FUNNEL_STEPS = [{"event": "signup_started"}, {"event": "signup_completed"}, {"event": "purchase"}]


@pytest.fixture
def agent(store, run, agent_server):
    run(load_insights_fixture(store))
    return agent_server(store=store, admin_token=TOKEN)


def post(agent, path: str, body: dict[str, Any]) -> Any:
    answer = agent.post(path, json=body, headers=AUTH)
    assert answer.status == 200, answer.body
    return answer.body


def data(doc: dict[str, Any]) -> list[list[Any]]:
    return [result["data"] for result in doc["results"]]


# --- trends --------------------------------------------------------------------------------------

def test_trends_count_events_and_unique_persons_per_day(agent):
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}, {"event": "$pageview", "math": "unique_persons"}],
                               **WEEK})
    assert doc["buckets"] == DAYS
    assert (doc["interval"], doc["timezone"], doc["week_start"]) == ("day", "UTC", "monday")
    assert doc["range"] == {"from": "2025-03-03T00:00:00Z", "to": "2025-03-10T00:00:00Z"}
    # day 0: ann 1h 2h, a_ben 3h; day 1: ben 26h, cat 27h; day 2: dan_old 50h, dan 51h, eve 52h; day 6: ann
    # 167h. Out: eve at -1h and -120h, ann at exactly `to` (168h)
    assert doc["results"][0] == {"event": "$pageview", "math": "total", "data": [3, 2, 3, 0, 0, 0, 1], "total": 9}
    # persons: day 0 ann and ben (a_ben is linked to u_ben by his events carrying both); day 1 ben, cat;
    # day 2 dan (u_dan_old is his alias) and eve; day 6 ann
    assert doc["results"][1]["data"] == [2, 2, 2, 0, 0, 0, 1]


def test_trends_of_a_numeric_property(agent):
    maths = ("sum", "avg", "min", "max", "median", "p90", "p95", "p99")
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview", "math": m, "math_property": "duration"}
                                          for m in maths], **WEEK})
    # durations: day 0 [10 20 30], day 1 [40 50], day 2 [60] (dan's has none, eve's "70" is a string), day 6 [5]
    none3 = [None, None, None]
    assert data(doc) == [
        [60.0, 90.0, 60.0, *none3, 5.0],
        [20.0, 45.0, 60.0, *none3, 5.0],
        [10.0, 40.0, 60.0, *none3, 5.0],
        [30.0, 50.0, 60.0, *none3, 5.0],
        [20.0, 40.0, 60.0, *none3, 5.0],            # nearest rank: ceil(.5 * 3) = 2, ceil(.5 * 2) = 1
        [30.0, 50.0, 60.0, *none3, 5.0],            # ceil(.9 * 3) = 3, ceil(.9 * 2) = 2
        [30.0, 50.0, 60.0, *none3, 5.0],
        [30.0, 50.0, 60.0, *none3, 5.0],
    ]
    assert doc["results"][0]["total"] == 215.0 and doc["results"][1]["total"] is None
    assert doc["results"][0]["math_property"] == "duration"


def test_trends_breakdown_top_values_and_other(agent):
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "breakdown": "$browser", "breakdown_limit": 2,
                               **WEEK})
    # in the range: Chrome 5 (1h 2h 50h 52h 167h), Firefox 2, Safari 1, Edge 1
    assert [(r["breakdown_value"], r["is_other"], r["data"], r["total"]) for r in doc["results"]] == [
        ("Chrome", False, [2, 0, 2, 0, 0, 0, 1], 5),
        ("Firefox", False, [1, 1, 0, 0, 0, 0, 0], 2),
        (None, True, [0, 1, 1, 0, 0, 0, 0], 2),          # Safari 27h, Edge 51h
    ]
    # Safari and Edge tie at 1: the third place goes to the first in code point order
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "breakdown": "$browser", "breakdown_limit": 3,
                               **WEEK})
    assert [r["breakdown_value"] for r in doc["results"]] == ["Chrome", "Firefox", "Edge", None]
    # a property nobody has: one value, unset (null), not "other"
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "breakdown": "$os", **WEEK})
    assert [(r["breakdown_value"], r["is_other"], r["total"]) for r in doc["results"]] == [(None, False, 9)]


def test_a_counted_breakdown_of_many_values_takes_two_reads_with_the_same_answer(agent, monkeypatch):
    body = {"series": [{"event": "$pageview"}], "breakdown": "$browser", "breakdown_limit": 2, **WEEK}
    one_pass = post(agent, TRENDS, body)
    monkeypatch.setattr(trends, "ONE_PASS_ROWS", 2)        # more (bucket, value) pairs than that: two reads
    assert post(agent, TRENDS, body) == one_pass
    assert [r["breakdown_value"] for r in one_pass["results"]] == ["Chrome", "Firefox", None]


def test_trends_breakdown_and_math_on_a_catalog_events_lifted_columns(agent):
    doc = post(agent, TRENDS, {"series": [{"event": "page_load", "math": "sum", "math_property": "load_time_ms"},
                                          {"event": "page_load", "math": "unique_persons"}],
                               "breakdown": "page", "breakdown_limit": 1, **WEEK})
    # page /a: ann 100 (5h) and 200 (30h); page /b: ben 300 (6h), the only other value
    assert [(r["math"], r["breakdown_value"], r["is_other"], r["data"][:2]) for r in doc["results"]] == [
        ("sum", "/a", False, [100.0, 200.0]), ("sum", None, True, [300.0, None]),
        ("unique_persons", "/a", False, [1, 1]), ("unique_persons", None, True, [1, 0])]


@pytest.mark.parametrize(("filters", "expected"), [
    ([{"key": "$current_url", "operator": "icontains", "value": "home"}], [2, 1, 1, 0, 0, 0, 1]),   # /HOME/x too
    ([{"key": "$current_url", "operator": "not_icontains", "value": "home"}], [1, 1, 2, 0, 0, 0, 0]),
    ([{"key": "$browser", "operator": "is_not", "value": "Chrome"}], [1, 2, 1, 0, 0, 0, 0]),
    ([{"key": "$browser", "value": ["Safari", "Edge"]}], [0, 1, 1, 0, 0, 0, 0]),                 # exact: any of
    ([{"key": "duration", "operator": "gt", "value": 25}], [1, 2, 1, 0, 0, 0, 0]),    # 30 40 50 60; not "70"
    ([{"key": "duration", "operator": "lte", "value": 20}], [2, 0, 0, 0, 0, 0, 1]),
    ([{"key": "duration", "operator": "exact", "value": 40}], [0, 1, 0, 0, 0, 0, 0]),  # a number compares as one
    ([{"key": "duration", "operator": "exact", "value": "70"}], [0, 0, 1, 0, 0, 0, 0]),
    ([{"key": "duration", "operator": "is_set"}], [3, 2, 2, 0, 0, 0, 1]),             # all but dan's at 51h
    ([{"key": "duration", "operator": "is_not_set"}], [0, 0, 1, 0, 0, 0, 0]),
    ([{"key": "$browser", "value": "Chrome"}, {"key": "duration", "operator": "gte", "value": 20}],
     [1, 0, 1, 0, 0, 0, 0]),
])
def test_trends_property_filters(agent, filters, expected):
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "properties": filters, **WEEK})
    assert data(doc) == [expected]
    # the same filters given on the series
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview", "properties": filters}], **WEEK})
    assert data(doc) == [expected]


def test_trends_filter_on_a_lifted_column(agent):
    doc = post(agent, TRENDS, {"series": [{"event": "page_load"}], "properties": [{"key": "page", "value": "/b"}],
                               **WEEK})
    assert doc["results"][0]["total"] == 1
    doc = post(agent, TRENDS, {"series": [{"event": "page_load"}],
                               "properties": [{"key": "load_time_ms", "operator": "gt", "value": 150}], **WEEK})
    assert doc["results"][0]["total"] == 2


def test_trends_hour_week_and_month_buckets(agent):
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "interval": "hour",
                               "from": "2025-03-03T00:00:00Z", "to": "2025-03-03T04:00:00Z"})
    assert doc["buckets"][0] == "2025-03-03T00:00:00Z" and data(doc) == [[0, 1, 1, 1]]
    # weeks start on Monday: eve's -120h (Wed 26 Feb) and -1h (Sun 2 Mar) are in the week of 24 Feb
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "interval": "week",
                               "from": "2025-02-26T00:00:00Z", "to": "2025-03-10T00:00:00Z"})
    assert doc["buckets"] == ["2025-02-24T00:00:00Z", "2025-03-03T00:00:00Z"] and data(doc) == [[2, 9]]
    doc = post(agent, TRENDS, {"series": [{"event": "$pageview"}], "interval": "month",
                               "from": "2025-02-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"})
    # February: -120h; March: the other 11 ($pageview at 168h included: the range runs to April)
    assert doc["buckets"] == ["2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"] and data(doc) == [[1, 11]]


ALWAYS = {"key": "no_such_property", "operator": "is_not_set"}       # true of every event: reads the events


@pytest.mark.parametrize(("series", "breakdown"), [
    ({"event": "$pageview"}, None),
    ({"event": "page_load", "math": "sum", "math_property": "load_time_ms"}, None),
    ({"event": "login_attempt"}, "result"),                   # a lifted outcome the rollups keep
    ({"event": "session_booked"}, "coach_id"),                # a lifted label the rollups keep
    ({"event": "session_booked", "math": "avg", "math_property": "duration_minutes"}, "coach_id"),
    ({"event": "session_booked", "math": "sum", "math_property": "duration_minutes"}, None),
])
def test_trends_from_the_rollups_equal_trends_from_the_events(agent, series, breakdown):
    """Series without filters are answered from the rollups (whole days, edge hours, raw partial hours);
    the same series with a filter true of every event reads the events: the same answers, on ranges of
    arbitrary instants and every interval."""
    ranges = [("hour", "2025-02-28T21:17:03.5Z", "2025-03-03T05:40:00Z"),
              ("day", "2025-02-28T21:17:03.5Z", "2025-03-09T11:00:00Z"),
              ("week", "2025-02-20T00:00:00Z", "2025-03-10T00:00:00Z"),
              ("month", "2025-02-01T10:30:00Z", "2025-03-20T00:00:00Z")]
    for interval, start, end in ranges:
        body: dict[str, Any] = {"series": [series], "interval": interval, "from": start, "to": end}
        if breakdown is not None:
            body |= {"breakdown": breakdown, "breakdown_limit": 1}
        assert dimension(trends_query(body, T0), trends_query(body, T0).series[0]) is not None
        from_rollups = post(agent, TRENDS, body)
        from_events = post(agent, TRENDS, {**body, "series": [{**series, "properties": [ALWAYS]}]})
        assert from_rollups == from_events, (interval, start, end)
        assert from_rollups["results"], (interval, start, end)


def test_an_hourly_trend_from_the_rollups_starting_just_after_an_event(agent):
    """ann's $pageview is at 01:00:00 exactly: a range from half a second later leaves it out, although the
    rollups' hour 01 holds it (that hour is read from the events)."""
    body = {"series": [{"event": "$pageview"}], "interval": "hour", "from": "2025-03-03T01:00:00.5Z",
            "to": "2025-03-03T04:00:00Z"}
    assert data(post(agent, TRENDS, body)) == [[0, 1, 1]]           # 02:00 ann, 03:00 a_ben
    assert post(agent, TRENDS, body) == post(agent, TRENDS, {**body, "series": [{"event": "$pageview",
                                                                              "properties": [ALWAYS]}]})


def test_a_breakdown_by_the_login_result_from_the_rollups(agent):
    doc = post(agent, TRENDS, {"series": [{"event": "login_attempt"}], "breakdown": "result", "interval": "week",
                               "from": "2025-02-28T00:00:00Z", "to": "2025-03-03T00:00:00Z"})
    # kim success -50.5h, failure -49.2h; lou success -26.7h and -3.3h: all in the week of 24 February
    assert [(r["breakdown_value"], r["data"]) for r in doc["results"]] == [("success", [3]), ("failure", [1])]


@pytest.mark.parametrize(("filters", "total"), [
    ([{"key": "a.b'c", "value": "x"}], 1),                   # a dot and a quote in the key
    ([{"key": "flag", "value": True}], 1),                   # booleans compare as true / false
    ([{"key": "flag", "value": "false"}], 1),
    ([{"key": "n", "value": [1.5, 2]}], 2),                  # 2 stored as an integer, asked as a number
    ([{"key": "n", "operator": "gte", "value": 2}], 1),
    ([{"key": "a.b'c", "operator": "icontains", "value": "Y"}], 1),
])
def test_filters_on_awkward_keys_and_typed_values(agent, filters, total):
    doc = post(agent, TRENDS, {"series": [{"event": "odd"}], "properties": filters,
                               "from": "2025-02-20T00:00:00Z", "to": "2025-02-28T00:00:00Z"})
    assert doc["results"][0]["total"] == total
    doc = post(agent, TRENDS, {"series": [{"event": "odd"}], "breakdown": "a.b'c",
                               "from": "2025-02-20T00:00:00Z", "to": "2025-02-28T00:00:00Z"})
    assert [r["breakdown_value"] for r in doc["results"]] == ["x", "y"]


# --- funnels -------------------------------------------------------------------------------------

def steps(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["persons"], s["conversion_from_first"], s["conversion_from_previous"],
             s["median_seconds_from_previous"], s["p90_seconds_from_previous"]) for s in doc["steps"]]


def test_ordered_funnel(agent):
    doc = post(agent, FUNNELS, {"steps": FUNNEL_STEPS, "window": "1d", **WEEK})
    assert [s["event"] for s in doc["steps"]] == ["signup_started", "signup_completed", "purchase"]
    assert (doc["order"], doc["window_seconds"]) == ("ordered", 86400.0)
    # started: ann ben cat dan eve fay (gus only completed). Completed after: ann 720 s, ben 2880 (a_ben at 3.2h,
    # u_ben at 4h), cat 7200 (purchase before completing), dan 1800 (started as u_dan_old), eve 72000 (her
    # 20h start is 50h before completing, her 50h start is in the window). Purchase after: ann 720, dan 1800,
    # eve 3600 (ben's at 30h is 26.8h after his start)
    assert steps(doc) == [(6, 100.0, 100.0, None, None),
                          (5, 83.3, 83.3, 2880.0, 72000.0),      # ranks 3 and 5 of [720 1800 2880 7200 72000]
                          (3, 50.0, 60.0, 1800.0, 3600.0)]       # ranks 2 and 3 of [720 1800 3600]


def test_strict_funnel(agent):
    doc = post(agent, FUNNELS, {"steps": FUNNEL_STEPS, "window": "1d", "order": "strict", **WEEK})
    # consecutive events only: cat's purchase, dan's `noise` and eve's $pageview at 52h break their runs
    assert steps(doc) == [(6, 100.0, 100.0, None, None),
                          (3, 50.0, 50.0, 1800.0, 2880.0),       # ann 720, dan 1800, ben 2880
                          (1, 16.7, 33.3, 720.0, 720.0)]         # ann


def test_unordered_funnel(agent):
    doc = post(agent, FUNNELS, {"steps": FUNNEL_STEPS, "window": "1d", "order": "unordered", **WEEK})
    # any order: gus (completed only) counts at step 1; cat did all three (5h, 6h, 7h: 3600, 3600)
    assert steps(doc) == [(7, 100.0, 100.0, None, None),
                          (5, 71.4, 71.4, 2880.0, 72000.0),      # [720 1800 2880 3600 72000]
                          (4, 57.1, 80.0, 1800.0, 3600.0)]       # [720 1800 3600 3600]


def test_funnel_window_is_inclusive_and_step_filters_apply(agent):
    doc = post(agent, FUNNELS, {"steps": FUNNEL_STEPS, "window": "1h", **WEEK})
    # within an hour of starting: ann (0.4h), ben (0.8h), dan (exactly 1h to his purchase)
    assert [s["persons"] for s in doc["steps"]] == [6, 3, 2]
    filtered = [*FUNNEL_STEPS[:2], {"event": "purchase", "properties": [{"key": "amount", "operator": "gt",
                                                                         "value": 50}]}]
    doc = post(agent, FUNNELS, {"steps": filtered, "window": 86400, **WEEK})
    assert steps(doc)[2] == (2, 33.3, 40.0, 720.0, 3600.0)       # ann (100) and eve (80); dan's 20 is out


def test_funnel_breakdown_by_the_first_steps_property(agent):
    doc = post(agent, FUNNELS, {"steps": FUNNEL_STEPS, "window": "1d", "breakdown": "plan", "breakdown_limit": 1,
                                **WEEK})
    # the kept attempt's start: pro for ann, dan and eve (her 50h start), free for ben and cat, none for fay
    pro, other = doc["breakdown"]
    assert (pro["breakdown_value"], pro["is_other"], other["breakdown_value"], other["is_other"]) == \
        ("pro", False, None, True)
    assert steps(pro) == [(3, 100.0, 100.0, None, None), (3, 100.0, 100.0, 1800.0, 72000.0),
                          (3, 100.0, 100.0, 1800.0, 3600.0)]
    assert steps(other) == [(3, 100.0, 100.0, None, None), (2, 66.7, 66.7, 2880.0, 7200.0),
                            (0, 0.0, 0.0, None, None)]
    assert steps(doc)[0][0] == 6


def test_funnel_walks():
    bits = {"a": 1, "b": 2, "c": 4, "x": 0}

    def events(*pairs: tuple[float, str]) -> list[tuple[float, int, str | None]]:
        return [(t, sum(bits[c] for c in names), None) for t, names in pairs]

    # a later start within the window completes where the first cannot
    assert ordered(events((0, "a"), (5, "a"), (12, "b"), (13, "c")), 3, 10) == ((5, 12, 13), None)
    # one event matching two steps does one of them
    assert ordered(events((0, "ab")), 2, 10) == ((0,), None)
    assert ordered(events((0, "a"), (1, "ab"), (2, "b")), 2, 10) == ((1, 2), None)
    assert ordered(events((0, "b"), (1, "c")), 3, 10) is None
    assert strict(events((0, "a"), (1, "x"), (2, "b"), (3, "a"), (4, "b")), 2, 10) == ((3, 4), None)
    assert strict(events((0, "a"), (1, "b"), (2, "x"), (3, "c")), 3, 10) == ((0, 1), None)
    assert unordered(events((0, "c"), (1, "a"), (30, "b")), 3, 10) == ((0, 1), None)
    assert unordered(events((0, "c"), (20, "a"), (25, "b"), (26, "c")), 3, 10) == ((20, 25, 26), None)


# --- retention -----------------------------------------------------------------------------------

def table(doc: dict[str, Any]) -> list[tuple[str, list[tuple[int, float]]]]:
    return [(c["date"][:10], [(v["persons"], v["percentage"]) for v in c["values"]]) for c in doc["cohorts"]]


def test_weekly_retention_first_time(agent):
    doc = post(agent, RETENTION, {"cohort": {"event": "signup_completed"}, "returning": {"event": "app_open"},
                                  "period": "week", "periods": 4, "to": "2025-03-31T00:00:00Z"})
    assert doc["range"] == {"from": "2025-03-03T00:00:00Z", "to": "2025-03-31T00:00:00Z"}
    # week 0: ann ben cat dan eve gus (jon's first was 10 days before: in no cohort); week 1: hal; week 2: ivy.
    # app_open: week 1 ann, ben (as a_ben), dan (as u_dan_old), hal (his own week), jon; week 2 ann, jon;
    # week 3 cat, hal, ivy
    assert table(doc) == [
        ("2025-03-03", [(6, 100.0), (3, 50.0), (1, 16.7), (1, 16.7)]),
        ("2025-03-10", [(1, 100.0), (0, 0.0), (1, 100.0)]),
        ("2025-03-17", [(1, 100.0), (1, 100.0)]),
        ("2025-03-24", [(0, 0.0)]),
    ]


def test_weekly_retention_recurring(agent):
    doc = post(agent, RETENTION, {"cohort": {"event": "signup_completed"}, "returning": {"event": "app_open"},
                                  "type": "recurring", "period": "week", "periods": 4, "to": "2025-03-31T00:00:00Z"})
    # week 1 now holds hal and jon (who did it again); jon returns in week 2, hal in week 3
    assert table(doc)[1] == ("2025-03-10", [(2, 100.0), (1, 50.0), (1, 50.0)])
    assert table(doc)[0] == ("2025-03-03", [(6, 100.0), (3, 50.0), (1, 16.7), (1, 16.7)])


def test_retention_from_first_seen(agent):
    doc = post(agent, RETENTION, {"cohort": {"event": None}, "returning": {"event": "app_open"},
                                  "period": "week", "periods": 4, "to": "2025-03-31T00:00:00Z"})
    # the users table: first seen in week 0: ann ben dan fay gus (cat is anonymous: no users row; eve and jon
    # were first seen before); hal week 1, ivy week 2
    assert table(doc) == [
        ("2025-03-03", [(5, 100.0), (3, 60.0), (1, 20.0), (0, 0.0)]),
        ("2025-03-10", [(1, 100.0), (0, 0.0), (1, 100.0)]),
        ("2025-03-17", [(1, 100.0), (1, 100.0)]),
        ("2025-03-24", [(0, 0.0)]),
    ]


def test_daily_retention(agent):
    doc = post(agent, RETENTION, {"cohort": {"event": "signup_completed"}, "returning": {"event": "$pageview"},
                                  "period": "day", "periods": 3, "to": "2025-03-06T00:00:00Z"})
    # day 0: ann ben cat dan; day 2: eve (70h). $pageview day 1: ben cat; day 2: dan eve
    assert table(doc) == [("2025-03-03", [(4, 100.0), (2, 50.0), (1, 25.0)]),
                          ("2025-03-04", [(0, 0.0), (0, 0.0)]),
                          ("2025-03-05", [(1, 100.0)])]


# --- refusals ------------------------------------------------------------------------------------

BAD = [
    (TRENDS, {}, "series"),
    (TRENDS, {"series": []}, "series"),
    (TRENDS, {"series": [{"event": "x"}] * 11}, "series"),
    (TRENDS, {"series": [{"event": ""}]}, "series[0].event"),
    (TRENDS, {"series": [{"event": 5}]}, "series[0].event"),
    (TRENDS, {"series": [{"event": "x", "math": "mode"}]}, "series[0].math"),
    (TRENDS, {"series": [{"event": "x", "math": "sum"}]}, "series[0].math_property"),
    (TRENDS, {"series": [{"event": "x", "math_property": "v"}]}, "series[0].math_property"),
    (TRENDS, {"series": [{"event": "x"}], "interval": "minute"}, "interval"),
    (TRENDS, {"series": [{"event": "x"}], "interval": "hour", "range": "32d"}, "interval"),
    (TRENDS, {"series": [{"event": "x"}], "range": "401d"}, "range"),
    (TRENDS, {"series": [{"event": "x"}], "from": "yesterday"}, "from"),
    (TRENDS, {"series": [{"event": "x"}], "to": True}, "to"),
    (TRENDS, {"series": [{"event": "x"}], "breakdown": "b", "breakdown_limit": 26}, "breakdown_limit"),
    (TRENDS, {"series": [{"event": "x"}], "breakdown_limit": 3}, "breakdown_limit"),
    (TRENDS, {"series": [{"event": "x"}], "breakdown": 'a"b'}, "breakdown"),
    (TRENDS, {"series": [{"event": "x"}], "colour": "red"}, "colour"),
    (TRENDS, {"series": [{"event": "x"}], "properties": [{"key": "k", "operator": "regex", "value": "."}]},
     "properties[0].operator"),
    (TRENDS, {"series": [{"event": "x"}], "properties": [{"key": "k", "operator": "gt", "value": "5"}]},
     "properties[0].value"),
    (TRENDS, {"series": [{"event": "x"}], "properties": [{"key": "k", "operator": "is_set", "value": 1}]},
     "properties[0].value"),
    (TRENDS, {"series": [{"event": "x"}], "properties": [{"key": "k"}]}, "properties[0].value"),
    (TRENDS, {"series": [{"event": "x", "properties": [{"key": "k\\", "value": 1}]}]}, "series[0].properties[0].key"),
    (TRENDS, {"series": [{"event": "x"}], "properties": [{"key": "k", "value": {"a": 1}}]}, "properties[0].value"),
    (TRENDS, {"series": [{"event": "x"}], "properties": [{"key": "k", "value": []}]}, "properties[0].value"),
    (TRENDS, [1, 2], "body"),
    (FUNNELS, {"steps": [{"event": "a"}]}, "steps"),
    (FUNNELS, {"steps": [{"event": "a"}] * 11}, "steps"),
    (FUNNELS, {"steps": [{"event": "a"}, {"event": None}]}, "steps[1].event"),
    (FUNNELS, {"steps": [{"event": "a"}, {"event": "b"}], "window": "91d"}, "window"),
    (FUNNELS, {"steps": [{"event": "a"}, {"event": "b"}], "window": 0}, "window"),
    (FUNNELS, {"steps": [{"event": "a"}, {"event": "b"}], "window": "soon"}, "window"),
    (FUNNELS, {"steps": [{"event": "a"}, {"event": "b"}], "order": "any"}, "order"),
    (RETENTION, {"returning": {"event": "a"}}, "cohort"),
    (RETENTION, {"cohort": {"event": "a"}, "returning": {}}, "returning.event"),
    (RETENTION, {"cohort": {"event": "a"}, "returning": {"event": "b"}, "periods": 32}, "periods"),
    (RETENTION, {"cohort": {"event": "a"}, "returning": {"event": "b"}, "period": "month"}, "period"),
    (RETENTION, {"cohort": {"event": None, "properties": [{"key": "k", "value": 1}]}, "returning": {"event": "b"}},
     "cohort.properties"),
    (RETENTION, {"cohort": {"event": "a"}, "returning": {"event": "b"}, "range": "7d"}, "range"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD)
def test_bad_bodies_are_a_400_naming_the_field(run, agent_server, path, body, field):
    agent = agent_server(admin_token=TOKEN)             # no store: the body is checked first
    answer = agent.post(path, json=body, headers=AUTH)
    assert answer.status == 400, answer.body
    assert [e["field"] for e in answer.body["errors"]] == [field]
    assert answer.body["error"].startswith(f"{field}: ")


def test_a_body_that_is_not_json_or_too_large(run, agent_server):
    agent = agent_server(admin_token=TOKEN)
    answer = agent.post(TRENDS, data=b"{not json", headers=AUTH)
    assert answer.status == 400 and answer.body["errors"][0]["field"] == "body"
    answer = agent.post(TRENDS, data=b"[" + b"1," * 40_000 + b"1]", headers=AUTH)
    assert answer.status == 413


def test_admin_token_is_required(run, agent_server):
    agent = agent_server(admin_token=TOKEN)
    body = {"series": [{"event": "x"}]}
    for path in (TRENDS, FUNNELS, RETENTION):
        assert agent.post(path, json=body).status == 401
        assert agent.post(path, json=body, headers={"Authorization": "Bearer wrong-token-0123456789"}).status == 403


def test_without_a_store_the_answer_is_503(run, agent_server):
    agent = agent_server(admin_token=TOKEN)
    answer = agent.post(TRENDS, json={"series": [{"event": "x"}]}, headers=AUTH)
    assert answer.status == 503 and "disabled" in answer.body["error"]


def test_a_query_past_the_time_limit_is_a_503_with_retry_after(agent, monkeypatch):
    monkeypatch.setattr(insights, "QUERY_SECONDS", 0.0)
    answer = agent.post(FUNNELS, json={"steps": FUNNEL_STEPS, **WEEK}, headers=AUTH)
    assert answer.status == 503, answer.body
    assert answer.headers["Retry-After"] == "5" and "did not finish within 0 s" in answer.body["error"]
    monkeypatch.setattr(insights, "QUERY_SECONDS", 10.0)          # the abandoned read left the store usable
    assert steps(post(agent, FUNNELS, {"steps": FUNNEL_STEPS, "window": "1d", **WEEK}))[1][0] == 5


# --- plans ---------------------------------------------------------------------------------------

def test_trends_and_funnel_reads_go_through_the_name_index(sqlite_store, run):
    """No full scan of events: the series' and steps' events come from events_name_dims."""
    run(load_insights_fixture(sqlite_store))
    conn = sqlite3.connect(sqlite_store.path)
    trend = trends_query({"series": [{"event": "$pageview"}], "from": T0, "to": T0 + 7 * D}, T0)
    where, params = _where(sqlite_store, trend, trend.series[0])
    funnel_sql, funnel_params = _query(sqlite_store, funnel_query({"steps": FUNNEL_STEPS, "from": T0,
                                                                   "to": T0 + 7 * D}, T0))
    for sql, values in ((f"SELECT count(*) FROM events e WHERE {where}", params), (funnel_sql, funnel_params)):
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", values))
        assert "events_name_dims" in plan, plan
        assert "SCAN e " not in plan + " " and "SCAN events" not in plan, plan
    conn.close()
