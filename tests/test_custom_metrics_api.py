"""POST /v1/metrics on a real aiohttp server: accepted shapes, every refusal with its status and field,
all-or-nothing batches, and a /metrics scrape parsed by prometheus_client (text and OpenMetrics)
after every bad case: nothing a client sends may break the exposition."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.api.keys import CUSTOM_METRICS
from tests.support.agent_app import agent_app

KEY = "0123456789abcdef0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONVERSION = {"name": "conversions", "type": "counter", "value": 1, "tags": {"type": "trial_signup"}}


def make_app(releases: list[str] | None = None, **config: Any) -> web.Application:
    """The real agent with these `custom_metrics:` settings; `releases` hears the releases seen."""
    app = agent_app(config={"events": {"api_keys": [KEY], "max_batch": 5, "max_body_bytes": 4096},
                            "custom_metrics": config})
    if releases is not None:
        app[CUSTOM_METRICS].release_observers.append(releases.append)
    return app


def run(scenario: Callable[[TestClient], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with TestClient(TestServer(make_app(**kwargs), host="127.0.0.1", port=0)) as client:
            await scenario(client)
    asyncio.run(main())


async def post(client: TestClient, body: Any, status: int, headers: dict | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post("/v1/metrics", data=data, headers=AUTH if headers is None else headers) as response:
        text = await response.text()
        assert response.status == status, text
        assert response.content_type == "application/json"
        return json.loads(text)


async def scrape(client: TestClient) -> dict[str, list]:
    """Both exposition formats parse; the text format's samples by family name."""
    async with client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}) as response:
        assert response.status == 200
        list(parse_openmetrics(await response.text()))
    async with client.get("/metrics") as response:
        assert response.status == 200
        return {family.name: family.samples for family in parse_text(await response.text())}


def custom(families: dict[str, list]) -> dict[str, dict]:
    """{sample name: {frozenset of labels: value}} of the loom_app_* families."""
    out: dict[str, dict] = {}
    for name, samples in families.items():
        if name.startswith("loom_app_"):
            for s in samples:
                out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def test_the_documented_shapes_are_accepted() -> None:
    async def scenario(client: TestClient) -> None:
        assert await post(client, CONVERSION, 200) == {"accepted": 1}
        assert await post(client, {"metrics": [CONVERSION, {**CONVERSION, "value": 2}]}, 200) == {"accepted": 2}
        assert await post(client, [{"name": "conversions", "type": "counter", "tags": {"type": "trial_signup"}}],
                          200) == {"accepted": 1}                                       # value defaults to 1
        body = {"metrics": [
            {"name": "active_sessions", "type": "gauge", "value": 12},
            {"name": "checkout.duration", "type": "distribution", "value": 250, "unit": "millisecond",
             "tags": {"plan": "pro", "paid": True, "seats": 3}},
            {"name": "upload", "type": "distribution", "value": 2, "unit": "kilobyte"},
            {"name": "disk_usage", "type": "gauge", "value": 42, "unit": "percent", "release": "web@1.4.2"}]}
        assert await post(client, body, 200) == {"accepted": 4}
        found = custom(await scrape(client))
        assert found["loom_app_conversions_total"] == {frozenset({("type", "trial_signup")}): 5.0}
        assert found["loom_app_active_sessions"] == {frozenset(): 12.0}
        labels = frozenset({("plan", "pro"), ("paid", "true"), ("seats", "3")})
        assert found["loom_app_checkout_duration_seconds_sum"] == {labels: 0.25}
        assert found["loom_app_checkout_duration_seconds_bucket"][labels | {("le", "0.25")}] == 1.0
        assert found["loom_app_upload_bytes_sum"] == {frozenset(): 2000.0}
        assert found["loom_app_disk_usage_ratio"] == {frozenset(): 0.42}
    releases: list[str] = []
    run(scenario, releases=releases)
    assert releases == ["web@1.4.2"]


def test_negative_and_tiny_observations_keep_both_formats_valid() -> None:
    async def scenario(client: TestClient) -> None:
        body = [{"name": "balance_change", "type": "distribution", "value": v} for v in (-5, 1e-300, 3)]
        assert await post(client, body, 200) == {"accepted": 3}
        found = custom(await scrape(client))                       # both formats parse
        assert found["loom_app_balance_change_count"] == {frozenset(): 3.0}
        assert found["loom_app_balance_change_sum"] == {frozenset(): -2.0}
    run(scenario)


# (case, body, status, [(index, field)], a phrase of the first message)
BAD = [
    ("no name", {"type": "counter"}, 400, [(None, "name")], "is required"),
    ("name not a string", {"name": 7, "type": "counter"}, 400, [(None, "name")], "must be a string"),
    ("name starting with a digit", {"name": "1st", "type": "counter"}, 400, [(None, "name")], "must start with a letter"),
    ("no type", {"name": "x", "value": 1}, 400, [(None, "type")], "is required: one of counter, gauge, distribution"),
    ("unknown type", {"name": "x", "type": "set", "value": 1}, 400, [(None, "type")], "got 'set'"),
    ("value a string", {"name": "x", "type": "gauge", "value": "3"}, 400, [(None, "value")], "must be a number"),
    ("value a boolean", {"name": "x", "type": "gauge", "value": True}, 400, [(None, "value")], "must be a number"),
    ("gauge without a value", {"name": "x", "type": "gauge"}, 400, [(None, "value")], "is required"),
    ("negative counter increment", {"name": "x", "type": "counter", "value": -1}, 400, [(None, "value")],
     "a counter only goes up"),
    ("too large in base units", {"name": "x", "type": "gauge", "value": 1e308, "unit": "week"}, 400,
     [(None, "value")], "too large in base units"),
    ("unknown unit", {"name": "x", "type": "gauge", "value": 1, "unit": "furlong"}, 400, [(None, "unit")],
     "unknown unit 'furlong'"),
    ("unknown field", {"name": "x", "type": "gauge", "value": 1, "timestamp": 5}, 400, [(None, "timestamp")],
     "unknown field"),
    ("tags not an object", {"name": "x", "type": "counter", "tags": ["a"]}, 400, [(None, "tags")], "must be an object"),
    ("tag value an object", {"name": "x", "type": "counter", "tags": {"a": {"b": 1}}}, 400, [(None, "tags.a")],
     "must be a string, number or boolean"),
    ("user id as a tag", {"name": "x", "type": "counter", "tags": {"userId": "u_1"}}, 400, [(None, "tags.userId")],
     "identifies a person"),
    ("reserved label", {"name": "x", "type": "counter", "tags": {"le": "1"}}, 400, [(None, "tags.le")],
     "Prometheus reserves"),
    ("gauge named _total", {"name": "x_total", "type": "gauge", "value": 1}, 400, [(None, "name")],
     "only counters carry"),
    ("release not a string", {"name": "x", "type": "counter", "release": 1}, 400, [(None, "release")],
     "must be a string"),
    ("release shaped like an e-mail", {"name": "x", "type": "counter", "release": "me@example.com"}, 400,
     [(None, "release")], "must name a release, not an e-mail address"),
    ("item not an object", {"metrics": [CONVERSION, "x"]}, 400, [(1, "")], "must be an object"),
    ("empty batch", {"metrics": []}, 400, [(None, "metrics")], "must not be empty"),
    ("batch too large", {"metrics": [CONVERSION] * 6}, 400, [(None, "metrics")], "at most 5 metrics"),
    ("body a string", "conversions", 400, [(None, "metrics")], "must be an array of metrics or one metric object"),
    ("every invalid item, by index", {"metrics": [CONVERSION, {"name": "x"}, {**CONVERSION, "value": -2}]}, 400,
     [(1, "type"), (2, "value")], "2 metrics refused; none was recorded"),
]


@pytest.mark.parametrize("case, body, status, fields, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_metrics_are_refused_naming_the_field_and_never_break_the_scrape(
        case: str, body: Any, status: int, fields: list, phrase: str) -> None:
    async def scenario(client: TestClient) -> None:
        answer = await post(client, body, status)
        assert [(e["index"], e["field"]) for e in answer["errors"]] == fields
        assert phrase in answer["error"] or phrase in answer["errors"][0]["message"], answer
        assert custom(await scrape(client)) == {}                  # nothing of the request was recorded
    run(scenario)


def test_conflicts_are_409_naming_the_index_and_the_registered_shape() -> None:
    async def scenario(client: TestClient) -> None:
        await post(client, CONVERSION, 200)
        answer = await post(client, {"metrics": [CONVERSION, {**CONVERSION, "type": "gauge", "value": 3}]}, 409)
        assert answer["error"] == ("metrics[1].type: metric loom_app_conversions is a counter with labels [type]; "
                                   "got a gauge with labels [type]. A metric keeps the type and tag names of its "
                                   "first use")
        assert answer["errors"] == [{"index": 1, "field": "type", "message": answer["error"].split(": ", 1)[1]}]
        answer = await post(client, {**CONVERSION, "tags": {"type": "x", "plan": "pro"}}, 409)
        assert answer["errors"][0]["field"] == "tags" and "got a counter with labels [plan, type]" in answer["error"]
        answer = await post(client, {"metrics": [{"name": "checkout_sum", "type": "gauge", "value": 1},
                                                 {"name": "checkout", "type": "distribution", "value": 1}]}, 409)
        assert [e["index"] for e in answer["errors"]] == [1]
        assert answer["errors"][0]["message"] == ("metric loom_app_checkout would write series named like "
                                                  "loom_app_checkout_sum, declared earlier in this batch")
        found = custom(await scrape(client))
        assert found == {"loom_app_conversions_total": {frozenset({("type", "trial_signup")}): 1.0}}   # all or nothing
    run(scenario)


def test_an_invalid_item_beside_a_conflict_makes_the_answer_400_and_lists_both() -> None:
    async def scenario(client: TestClient) -> None:
        await post(client, CONVERSION, 200)
        answer = await post(client, {"metrics": [{**CONVERSION, "type": "gauge"}, {"name": "y", "type": "nope"}]}, 400)
        assert [(e["index"], e["field"]) for e in answer["errors"]] == [(0, "type"), (1, "type")]
        assert "is a counter with labels [type]" in answer["errors"][0]["message"]
    run(scenario)


def test_too_many_metric_names_is_409_naming_the_limit() -> None:
    async def scenario(client: TestClient) -> None:
        await post(client, {"metrics": [{"name": "a", "type": "counter"}, {"name": "b", "type": "counter"}]}, 200)
        answer = await post(client, {"metrics": [{"name": "a", "type": "counter"}, {"name": "c", "type": "counter"}]},
                            409)
        assert answer["errors"] == [{"index": 1, "field": "name", "message": "loom_app_c would be a new metric, but "
                                     "custom_metrics.max_metrics (2) are registered already"}]
        assert set(custom(await scrape(client))) == {"loom_app_a_total", "loom_app_b_total"}
        assert await post(client, {"name": "a", "type": "counter"}, 200) == {"accepted": 1}
    run(scenario, max_metrics=2)


def test_tag_values_past_the_series_limit_become_other_and_are_counted() -> None:
    async def scenario(client: TestClient) -> None:
        body = {"metrics": [{**CONVERSION, "tags": {"type": f"campaign_{i}"}} for i in range(5)]}
        await post(client, body, 200)
        families = await scrape(client)
        values = {s.labels["type"] for s in families["loom_app_conversions"]}
        assert values == {"campaign_0", "campaign_1", "other"}
        overflow = {(s.labels["metric"], s.labels["label"]): s.value for s in families["loom_agent_label_overflow"]}
        assert overflow == {("loom_app_conversions", "type"): 3.0}
    run(scenario, series_limit=2)


def test_ingest_keys_body_limits_and_malformed_json() -> None:
    async def scenario(client: TestClient) -> None:
        answer = await post(client, CONVERSION, 401, headers={})
        assert "an ingest API key is required" in answer["error"]
        await post(client, CONVERSION, 403, headers={"X-Loom-Api-Key": "x" * 20})
        await post(client, CONVERSION, 200, headers={"X-Loom-Api-Key": KEY})
        answer = await post(client, b"[" + b" " * 5000 + b"]", 413)
        assert answer["error"] == "request body is larger than 4096 bytes"
        answer = await post(client, b"{not json", 400)
        assert answer["error"].startswith("invalid JSON")
        answer = await post(client, b'{"name": "x", "type": "gauge", "value": 1e400}', 400)   # not finite
        assert answer["error"].startswith("invalid JSON: number is infinity")
        found = custom(await scrape(client))
        assert list(found) == ["loom_app_conversions_total"]
    run(scenario)


def test_refused_requests_are_counted_under_api_metrics() -> None:
    async def scenario(client: TestClient) -> None:
        await post(client, {"name": "x"}, 400)
        await post(client, CONVERSION, 401, headers={})
        families = await scrape(client)
        rejected = {(s.labels["api"], s.labels["reason"]): s.value for s in families["loom_agent_ingest_rejected"]}
        assert rejected == {("metrics", "invalid"): 1.0, ("metrics", "auth"): 1.0}
    run(scenario)
