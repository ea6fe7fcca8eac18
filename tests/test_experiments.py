"""GET /api/experiments/{experimentId}: a hand-computed A/B test on SQLite and a real PostgreSQL (exposure
and conversion rules, the control, the Wald interval), and the endpoint's auth, parameters and 503s over
real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.analytics.experiments import (
    Visitor,
    choose_control,
    conversion_rows,
    experiment,
    exposure_rows,
    report,
    versus_control,
)
from agent.analytics.timerange import TimeRange
from agent.events.limits import Limits
from agent.events.validate import parse_event
from agent.store.base import Store
from agent.store.rows import event_rows
from agent.store.sqlite import SqliteStore
from tests.support.agent_app import Call, agent_app, get_all
from tests.support.agent_app import run_on_sqlite as support_run_on_sqlite
from tests.test_openapi import documented, errors_of

pytest_plugins = ["tests.support.store_fixtures"]

T0 = 1740787200.0          # 2025-03-01T00:00:00Z
H, D = 3600.0, 86400.0
T1 = T0 + 7 * D
RANGE = TimeRange(T0, T1)
QUERY = {"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"}
EXP = "pricing_v2"
TOKEN = "admin-token-for-the-experiment-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def view(who: str, hours: float, variant: str, experiment_id: str = EXP) -> tuple[str, str, float, dict[str, Any]]:
    return ("experiment_view", who, hours, {"experimentId": experiment_id, "variantId": variant})


def converted(who: str, hours: float, experiment_id: str | None = EXP) -> tuple[str, str, float, dict[str, Any]]:
    props: dict[str, Any] = {"conversionType": "subscription"}
    if experiment_id is not None:
        props["experimentId"] = experiment_id
    return ("campaign_conversion", who, hours, props)


# (event, identity: "u1" a user id, "anon:a4" an anonymous id, "u4+anon:a4" both, hours after T0, properties)
EVENTS = [
    # control: u1 u2 u3 u4 u5 exposed; u1 and u4 convert
    view("u1", 1, "control"), converted("u1", 2),
    view("u2", 1, "control"),
    view("u3", 3, "control"), converted("u3", 2),                   # converted BEFORE the exposure: no
    view("anon:a4", 4, "control"), view("u4+anon:a4", 5, "control"),  # one visitor, anonymous then logged in
    converted("u4", 6),                                             # matched through the user id
    view("u5", 5, "control"), converted("u5", 6, "other_test"),     # another experiment's conversion: no
    # variant_b: u6 u7 u8 u9 a10 exposed; all but u9 convert
    view("u6", 1, "variant_b"), converted("u6", 1),                 # at the exposure's instant: yes
    view("u7", 2, "variant_b"), converted("u7", 3),
    view("u8", 2, "variant_b"), view("u8", 3, "control"), converted("u8", 4),   # stays in variant_b
    view("u9", 2, "variant_b"), ("trial_converted", "u9", 5, {"plan": "pro"}),
    view("anon:a10", 2, "variant_b"), converted("anon:a10", 3),
    view("u11", 168, "variant_b"), converted("u11", 168.5),         # at `to`: not exposed
    view("u12", -1, "variant_b"), converted("u12", 1),              # before `from`: not exposed
    # variant_c: u13 exposed, no conversion; another experiment's views are not this one's
    view("u13", 1, "variant_c"),
    view("u1", 1, "a", "other_test"), view("u14", 1, "b", "other_test"),
]


def bodies() -> list[dict[str, Any]]:
    out = []
    for name, who, hours, props in EVENTS:
        body: dict[str, Any] = {"event": name, "timestamp": T0 + hours * H, "properties": dict(props)}
        for part in who.split("+"):
            if part.startswith("anon:"):
                body["anonymousId"] = part[5:]
            else:
                body["userId"] = part
        out.append(body)
    return out


async def load(store: Store) -> None:
    limits = Limits(max_past_age=400 * D)
    await store.write_events([event_rows(parse_event(body, now=T1 + D, limits=limits)) for body in bodies()])


def wald(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float, float]:
    """The interval written out once more, independently of the code under test (percentage points)."""
    p1, p0 = x1 / n1, x0 / n0
    half = 1.96 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    return round(100 * (p1 - p0), 2), round(100 * (p1 - p0 - half), 2), round(100 * (p1 - p0 + half), 2)


EXPECTED = {
    "experimentId": EXP,
    "conversion": {"event": "campaign_conversion", "sameExperiment": True},
    "control": "control",
    "confidenceLevel": 95,
    "method": "wald",
    "visitors": 11,
    "variants": [
        {"variant": "control", "exposures": 5, "conversions": 2, "conversionRate": 40.0, "vsControl": None},
        # p1 .8, p0 .4: d .4 +- 1.96 * sqrt(.8 * .2 / 5 + .4 * .6 / 5) = .4 +- 1.96 * .28284 = .4 +- .55436
        {"variant": "variant_b", "exposures": 5, "conversions": 4, "conversionRate": 80.0,
         "vsControl": {"difference": 40.0, "ciLow": -15.44, "ciHigh": 95.44, "significant": False}},
        # p1 0 of 1, p0 .4: d -.4 +- 1.96 * sqrt(0 + .048) = -.4 +- .42941
        {"variant": "variant_c", "exposures": 1, "conversions": 0, "conversionRate": 0.0,
         "vsControl": {"difference": -40.0, "ciLow": -82.94, "ciHigh": 2.94, "significant": False}},
    ],
    "variantsOmitted": 0,
    "range": {"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"},
}


def test_the_experiment_matches_the_hand_computed_fixture(store, run):
    run(load(store))
    assert run(experiment(store, EXP, RANGE)) == EXPECTED
    # the hand arithmetic agrees with the textbook formula
    assert wald(4, 5, 2, 5) == (40.0, -15.44, 95.44) and wald(0, 1, 2, 5) == (-40.0, -82.94, 2.94)


def test_a_named_conversion_counts_any_such_event_after_the_exposure(store, run):
    run(load(store))
    doc = run(experiment(store, EXP, RANGE, conversion="trial_converted"))
    assert doc["conversion"] == {"event": "trial_converted", "sameExperiment": False}
    rows = {v["variant"]: (v["exposures"], v["conversions"], v["conversionRate"], v["vsControl"]) for v in doc["variants"]}
    # only u9 (variant_b) has a trial_converted; p1 .2, p0 0: .2 +- 1.96 * sqrt(.2 * .8 / 5) = .2 +- .35061
    assert rows == {"control": (5, 0, 0.0, None),
                    "variant_b": (5, 1, 20.0, {"difference": 20.0, "ciLow": -15.06, "ciHigh": 55.06,
                                               "significant": False}),
                    "variant_c": (1, 0, 0.0, {"difference": 0.0, "ciLow": 0.0, "ciHigh": 0.0, "significant": False})}
    # campaign_conversion by name ignores the experiment id: u5's other_test conversion counts now
    doc = run(experiment(store, EXP, RANGE, conversion="campaign_conversion"))
    assert [(v["variant"], v["conversions"]) for v in doc["variants"]] == [("control", 3), ("variant_b", 4),
                                                                          ("variant_c", 0)]


def test_the_control_can_be_chosen_and_an_unseen_control_gives_no_comparison(store, run):
    run(load(store))
    doc = run(experiment(store, EXP, RANGE, control="variant_b"))
    assert doc["control"] == "variant_b"
    assert [v["variant"] for v in doc["variants"]] == ["variant_b", "control", "variant_c"]
    assert doc["variants"][1]["vsControl"] == {"difference": -40.0, "ciLow": -95.44, "ciHigh": 15.44,
                                               "significant": False}
    doc = run(experiment(store, EXP, RANGE, control="nobody"))
    assert doc["variants"][0] == {"variant": "nobody", "exposures": 0, "conversions": 0, "conversionRate": None,
                                  "vsControl": None}
    assert [v["vsControl"] for v in doc["variants"]] == [None] * 4


def test_an_unknown_experiment_or_an_empty_range_has_no_variants(store, run):
    run(load(store))
    empty = run(experiment(store, "nope", RANGE))
    assert (empty["control"], empty["visitors"], empty["variants"], empty["variantsOmitted"]) == (None, 0, [], 0)
    later = run(experiment(store, EXP, TimeRange(T1, T1 + D)))        # u11 at `to` is exposed in the next week
    assert [(v["variant"], v["exposures"], v["conversions"]) for v in later["variants"]] == [("variant_b", 1, 1)]


# --- the statistics, on their own -------------------------------------------------------------------

def test_the_wald_interval_and_significance():
    # 60 of 100 vs 40 of 100: .2 +- 1.96 * sqrt(.0048) = .2 +- .13579: excludes 0
    assert versus_control(60, 100, 40, 100) == {"difference": 20.0, "ciLow": 6.42, "ciHigh": 33.58,
                                                "significant": True}
    assert versus_control(40, 100, 60, 100)["significant"] is True               # below 0 is significant too
    assert versus_control(55, 100, 50, 100)["significant"] is False
    assert versus_control(1, 10, 0, 0) is None and versus_control(0, 0, 1, 10) is None


def test_the_control_is_named_control_else_the_first_by_name():
    assert choose_control(["b", "control", "a"], None) == "control"
    assert choose_control(["b", "a"], None) == "a"
    assert choose_control(["b", "a"], "b") == "b"
    assert choose_control([], None) is None


def test_at_most_max_variants_are_reported_the_rest_counted(monkeypatch):
    monkeypatch.setattr("agent.analytics.experiments.MAX_VARIANTS", 2)
    found = {("u", f"u{i}"): Visitor(variant, 0.0) for i, variant in enumerate(["a", "b", "b", "c", "c", "c"])}
    doc = report("x", found, None, None, RANGE)
    # the two largest (c, b) and the control (a, the first by name), which is always kept
    assert [(v["variant"], v["exposures"]) for v in doc["variants"]] == [("a", 1), ("b", 2), ("c", 3)]
    found[("u", "u9")] = Visitor("d", 0.0)
    assert report("x", found, None, None, RANGE)["variantsOmitted"] == 1


# --- the endpoint -----------------------------------------------------------------------------------

def make_app(store: Store | None) -> web.Application:
    return agent_app(store, admin_token=TOKEN)


PATH = f"/api/experiments/{EXP}"


def test_the_endpoint_answers_the_hand_computed_document(store, run):
    run(load(store))
    answers = run(get_all(make_app(store), [(PATH, QUERY, AUTH),
                                          (PATH, {**QUERY, "conversion": "trial_converted", "control": "variant_b"},
                                           AUTH)]))
    assert answers[0][:2] == (200, EXPECTED)
    assert answers[1][0] == 200 and answers[1][1]["control"] == "variant_b"
    assert answers[1][1]["conversion"]["event"] == "trial_converted"


def run_on_sqlite(tmp_path: Path, calls: Sequence[Call], *, close_first: bool = False) -> list[tuple[int, Any, Any]]:
    return support_run_on_sqlite(str(tmp_path / "store.db"), make_app, calls, close_first=close_first)


def test_an_admin_token_is_required(tmp_path: Path):
    answers = run_on_sqlite(tmp_path, [(PATH, None, {}), (PATH, None, {"Authorization": "Bearer wrong"}),
                                       (PATH, {"conversion": "bad name!"}, {})])
    assert [status for status, _, _ in answers] == [401, 403, 401]


BAD = [
    ({"conversion": "bad name!"}, "conversion", "event name"),
    ({"conversion": ""}, "conversion", "1 to 128"),
    ({"conversion": "x" * 129}, "conversion", "1 to 128"),
    ({"control": ""}, "control", "1 to 256"),
    ({"from": "yesterday"}, "from", "RFC 3339"),
    ({"range": "0s"}, "range", "longer than 0"),
    ({"variant": "b"}, "variant", "unknown parameter"),
]


def test_bad_parameters_are_400_naming_the_parameter(tmp_path: Path):
    calls = [(PATH, query, AUTH) for query, _, _ in BAD]
    calls += [(PATH + "?control=a&control=b", None, AUTH), ("/api/experiments/" + "x" * 257, None, AUTH)]
    expected = [(field, words) for _, field, words in BAD] + [("control", "more than once"),
                                                            ("experimentId", "1 to 256")]
    for (status, body, _), (field, words), call in zip(run_on_sqlite(tmp_path, calls), expected, calls):
        assert status == 400, call
        assert body["error"].startswith(f"{field}: ") and words in body["error"], (call, body)
        assert body["errors"] == [{"field": field, "message": body["error"].split(": ", 1)[1]}]


def test_no_store_or_a_failing_store_is_503_never_500(tmp_path: Path):
    status, body, _ = asyncio.run(get_all(make_app(None), [(PATH, None, AUTH)]))[0]
    assert (status, body) == (503, {"error": "the event store is disabled"})
    status, body, headers = run_on_sqlite(tmp_path, [(PATH, None, AUTH)], close_first=True)[0]
    assert status == 503 and headers["Retry-After"] == "5" and "store.db" not in body["error"]


def test_the_experiment_queries_read_an_index_never_scan_events(tmp_path: Path):
    async def scenario() -> list[tuple[str, tuple[Any, ...]]]:
        inner = SqliteStore(str(tmp_path / "store.db"))
        await inner.open()
        try:
            await load(inner)
            recorded: list[tuple[str, tuple[Any, ...]]] = []

            class Recording:
                dialect = inner.dialect

                async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
                    recorded.append((sql, tuple(params)))
                    return await inner.fetch(sql, params)
            await exposure_rows(Recording(), EXP, RANGE)
            await conversion_rows(Recording(), EXP, None, RANGE)
            await conversion_rows(Recording(), EXP, "trial_converted", RANGE)
            return recorded
        finally:
            await inner.close()
    statements = asyncio.run(scenario())
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        for sql, params in statements:
            plan = "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "SCAN events" not in plan and "USING" in plan, f"{sql}\n{plan}"
    finally:
        conn.close()


def test_the_answers_are_the_documented_ones(store, run):
    """agent/api/openapi.json documents every status this endpoint answers, with bodies that match."""
    run(load(store))
    calls = [(PATH, QUERY, AUTH), (PATH, {**QUERY, "control": "nobody"}, AUTH), ("/api/experiments/nope", None, AUTH),
             (PATH, {"control": ""}, AUTH), (PATH, None, {}), (PATH, None, {"Authorization": "Bearer wrong"})]
    answers = run(get_all(make_app(store), calls))
    assert [status for status, _, _ in answers] == [200, 200, 200, 400, 401, 403]
    answers += asyncio.run(get_all(make_app(None), [(PATH, None, AUTH)]))
    for status, body, headers in answers:
        check = documented("/api/experiments/{experimentId}", "GET", status, headers["Content-Type"])
        assert errors_of(check, body) == [], (status, body)
