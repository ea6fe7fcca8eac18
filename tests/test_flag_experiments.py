"""Experiments run with feature flags (flags.experiments, issue 15): exposures read from posthog's
`$feature_flag_called` events as the PostHog path stores them, the goal within its window after the first
exposure, a hand-computed fixture checked on SQLite and PostgreSQL (exposures, conversions, the Wald
interval, the probability to be best against Evan Miller's closed form, the sample-ratio check), the
config's errors by path, and the API answering it (conversion / control refused for a flag experiment)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from agent.analytics.experiments import flag_experiment
from agent.analytics.timerange import TimeRange
from agent.config.load import parse_config
from agent.config.node import ConfigError
from agent.events.limits import Limits
from agent.events.posthog import parse_posthog_event
from agent.store.base import Store
from agent.store.rows import event_rows
from tests.test_experiment_stats import closed_form_b_beats_a

pytest_plugins = ["tests.support.store_fixtures"]

T0 = 1740787200.0          # 2025-03-01T00:00:00Z
H, D = 3600.0, 86400.0
RANGE = TimeRange(T0, T0 + 7 * D)
TOKEN = "admin-token-for-flag-experiments"
FLAGS = {"definitions": [{"key": "pricing-test", "variants": [{"key": "control", "rollout_percentage": 50},
                                                              {"key": "test", "rollout_percentage": 50}]},
                         {"key": "other-flag"}],
         "experiments": [{"id": "pricing-2026", "flag": "pricing-test",
                          "goal": {"event": "purchase_completed", "property": {"key": "plan", "value": "pro"}},
                          "window": "2d"}]}
DEFINITION = parse_config(orjson.dumps({"flags": FLAGS}).decode()).flags.experiments[0]


def exposure(who: str, hours: float, answer: Any, flag: str = "pricing-test") -> dict[str, Any]:
    return {"event": "$feature_flag_called", "distinct_id": who, "timestamp": T0 + hours * H,
            "properties": {"$feature_flag": flag, "$feature_flag_response": answer}}


def purchase(who: str, hours: float, plan: str = "pro") -> dict[str, Any]:
    return {"event": "purchase_completed", "distinct_id": who, "timestamp": T0 + hours * H, "properties": {"plan": plan}}


ITEMS = [
    # control: c1..c6 exposed; c1 and c5 convert
    exposure("c1", 1, "control"), purchase("c1", 2),
    exposure("c2", 1, "control"), purchase("c2", 2, plan="free"),              # not the goal's property
    exposure("c3", 1, "control"), purchase("c3", 1 + 72),                       # past the 2-day window
    exposure("c4", 5, "control"), purchase("c4", 4),                            # before the exposure
    exposure("anon-5", 1, "control"), exposure("c5", 3, "control"), purchase("c5", 4),  # one person (merged)
    exposure("c6", 2, "control"),
    # test: t1..t4 exposed; t1, t2, t3 convert; t4 saw control later and stays in test
    exposure("t1", 1, "test"), purchase("t1", 1),                               # at the exposure's instant
    exposure("t2", 2, "test"), purchase("t2", 50),                              # 48 h after: inside
    exposure("t3", 2, "test"), purchase("t3", 3), purchase("t3", 4),            # converts once
    exposure("t4", 2, "test"), exposure("t4", 6, "control"),
    # not in the experiment
    exposure("f1", 1, False), purchase("f1", 2),                                # outside the rollout
    exposure("o1", 1, "test", flag="other-flag"), purchase("o1", 2),            # another flag
    exposure("early", -2, "test"), purchase("early", 1),                        # before `from`
    exposure("late", 7 * 24 + 1, "test"),                                       # at or after `to`
]


async def load(store: Store) -> None:
    limits = Limits(max_past_age=400 * D)
    rows = []
    for item in ITEMS:
        (event,), _ = parse_posthog_event(item, T0 + 9 * D, limits)
        if event.user_id == "anon-5":            # what an alias merge leaves (agent/store/people.py): the
            event.user_id, event.anonymous_id = "c5", "anon-5"      # person's id, the alias kept as anonymous
        rows.append(event_rows(event))
    await store.write_events(rows)


def wald(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float, float]:
    p1, p0 = x1 / n1, x0 / n0
    half = 1.959963984540054 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    return round(100 * (p1 - p0), 2), round(100 * (p1 - p0 - half), 2), round(100 * (p1 - p0 + half), 2)


def test_the_flag_experiment_matches_the_hand_computed_fixture(store: Store, run: Any) -> None:
    run(load(store))
    document = run(flag_experiment(store, DEFINITION, RANGE))
    control, test = document["variants"]
    assert (control["variant"], control["exposures"], control["conversions"], control["conversionRate"]) == \
        ("control", 6, 2, 33.33)
    assert (test["variant"], test["exposures"], test["conversions"], test["conversionRate"]) == ("test", 4, 3, 75.0)
    difference, low, high = wald(3, 4, 2, 6)            # 41.67 +- 1.96 * sqrt(.75*.25/4 + 1/3*2/3/6)
    assert test["vsControl"] == {"difference": difference, "ciLow": low, "ciHigh": high, "significant": False}
    assert (difference, low, high) == (41.67, -15.11, 98.44)
    p_test = closed_form_b_beats_a(2, 6, 3, 4)
    assert test["probabilityToBeBest"] == pytest.approx(p_test, abs=1e-3)
    assert control["probabilityToBeBest"] == pytest.approx(1 - p_test, abs=1e-3)
    srm = document["sampleRatioMismatch"]              # 6 and 4 against 5 and 5: chi2 = 2 * 1/5 = 0.4
    assert srm["chiSquare"] == pytest.approx(0.4) and srm["pValue"] == pytest.approx(0.527089, abs=1e-5)
    assert srm["mismatch"] is False and srm["expected"] == {"control": 0.5, "test": 0.5}
    assert (document["visitors"], document["source"], document["flag"], document["control"]) == \
        (10, "feature_flag", "pricing-test", "control")
    assert document["conversion"] == {"event": "purchase_completed", "sameExperiment": False,
                                      "property": {"key": "plan", "value": "pro"}, "windowSeconds": 2 * D}


def test_a_broken_assignment_is_flagged(store: Store, run: Any) -> None:
    items = [exposure(f"c{i}", 1, "control") for i in range(300)] + [exposure(f"t{i}", 1, "test") for i in range(200)]
    limits = Limits(max_past_age=400 * D)
    run(store.write_events([event_rows(parse_posthog_event(item, T0 + 9 * D, limits)[0][0]) for item in items]))
    srm = run(flag_experiment(store, DEFINITION, RANGE))["sampleRatioMismatch"]
    assert srm["mismatch"] is True and srm["chiSquare"] == pytest.approx(20.0)      # 2 * 50^2 / 250


@pytest.mark.parametrize("experiment, field, message", [
    ({"id": "x", "flag": "missing", "goal": {"event": "buy"}}, "flags.experiments[0].flag", "must name a flag"),
    ({"id": "x", "flag": "pricing-test", "control": "nope", "goal": {"event": "buy"}},
     "flags.experiments[0].control", "must be one of the flag's variants"),
    ({"id": "x", "flag": "pricing-test", "goal": {"event": ""}}, "flags.experiments[0].goal", "event name"),
    ({"id": "x", "flag": "pricing-test", "goal": {"event": "buy"}, "window": "soon"},
     "flags.experiments[0].window", "duration"),
    ({"id": "x", "flag": "pricing-test", "goal": {"event": "buy", "property": {"key": "plan"}}},
     "flags.experiments[0].goal.property", "{key, value}"),
])
def test_bad_experiments_are_named_by_path(experiment: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(orjson.dumps({"flags": {**FLAGS, "experiments": [experiment]}}).decode())
    assert f"{field}:" in str(caught.value) and message in str(caught.value), str(caught.value)


def test_the_api_answers_a_flag_experiment_and_refuses_its_catalog_parameters(agent_server: Any,
                                                                              sqlite_store: Any, run: Any) -> None:
    run(load(sqlite_store))
    agent = agent_server({"flags": FLAGS}, store=sqlite_store, admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    query = {"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"}
    status, document, _ = agent.get("/api/experiments/pricing-2026", params=query, headers=auth)
    assert status == 200 and [v["exposures"] for v in document["variants"]] == [6, 4]
    status, answer, _ = agent.get("/api/experiments/pricing-2026", params={**query, "control": "test"}, headers=auth)
    assert status == 400 and "control" in answer["error"]
