"""The OpenAPI document (agent/api/openapi.json) is kept true: it is valid OpenAPI 3, it names exactly
the routes the app registers, /openapi.json serves it, its request schemas accept what the agent
accepts (the documented examples, one example of every catalog event) and reject what the agent
rejects, and real answers of a running app match the documented status codes and body schemas."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate as validate_openapi

from agent.api import openapi
from agent.app.root import build_app
from agent.config.load import load_config, parse_config
from agent.custom_metrics.samples import parse_samples
from agent.events.catalog import CATEGORIES, CUSTOM
from agent.events.posthog import parse_capture, parse_posthog_batch
from agent.events.validate import BatchError, EventError, parse_batch, parse_event
from tests.support import event_examples

DOC: dict[str, Any] = json.loads(openapi.OPENAPI_BODY)
NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z, just after the examples' timestamps
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
KEY = "0123456789abcdef0123"


# --- JSON Schema over the document's components ----------------------------------------------------

def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes a "null" type (and enum member)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


COMPONENTS = _json_schema(DOC["components"])


def validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator of `schema` whose `#/components/...` references resolve in the document."""
    return jsonschema.Draft4Validator({**_json_schema(schema), "components": COMPONENTS})


def component(name: str) -> jsonschema.Draft4Validator:
    return validator({"$ref": f"#/components/schemas/{name}"})


def request_schema(body: str) -> jsonschema.Draft4Validator:
    return validator(DOC["components"]["requestBodies"][body]["content"]["application/json"]["schema"])


def examples(body: str) -> dict[str, Any]:
    found = DOC["components"]["requestBodies"][body]["content"]["application/json"]["examples"]
    return {name: copy.deepcopy(example["value"]) for name, example in found.items()}


def errors_of(check: jsonschema.Draft4Validator, instance: Any) -> list[str]:
    return [error.message for error in check.iter_errors(instance)]


# --- the document itself --------------------------------------------------------------------------

def test_document_is_valid_openapi_3() -> None:
    assert DOC["openapi"].startswith("3.0.")
    validate_openapi(DOC)        # raises with the offending path


def document_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOC["paths"].items() for method in item if method in METHODS}


def app_routes() -> set[tuple[str, str]]:
    app = build_app(parse_config("store: {driver: none}"))
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":                   # aiohttp adds HEAD for every GET
            continue
        routes.add((route.method, route.resource.canonical))
    return routes


def test_document_names_exactly_the_routes_of_the_app() -> None:
    documented, registered = document_routes(), app_routes()
    assert registered - documented == set(), "routes missing from agent/api/openapi.json"
    assert documented - registered == set(), "agent/api/openapi.json documents routes the app does not have"


def test_every_operation_is_unique_and_answers_something() -> None:
    ids = [op["operationId"] for item in DOC["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids)) == len(document_routes())
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                assert op["responses"], (method, path)
                assert op.get("summary"), (method, path)


def test_event_name_description_lists_the_catalog_categories_and_links_the_catalog() -> None:
    description = DOC["components"]["schemas"]["EventName"]["description"]
    assert "docs/events.md" in description
    missing = [name for name in CATEGORIES if name != CUSTOM and name not in description]
    assert missing == [], f"EventName.description does not name the categories {missing}"
    assert "enum" not in DOC["components"]["schemas"]["EventName"]          # custom events are allowed


def test_batch_operations_say_all_or_nothing() -> None:
    for path in ("/v1/events/batch", "/batch", "/batch/"):
        assert "none is accepted" in DOC["paths"][path]["post"]["description"], path


def test_ingest_operations_document_both_key_schemes_and_the_error_answers() -> None:
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["in"] == "header" and schemes["apiKeyHeader"]["name"] == "X-Loom-Api-Key"
    for path in ("/v1/events", "/v1/events/batch", "/capture", "/capture/", "/e", "/e/", "/batch", "/batch/"):
        op = DOC["paths"][path]["post"]
        assert {"400", "401", "403", "413"} <= set(op["responses"]), path
        assert {"bearerAuth": []} in op["security"] and {"apiKeyHeader": []} in op["security"], path


def test_metrics_documents_both_exposition_formats() -> None:
    content = DOC["components"]["responses"]["Exposition"]["content"]
    assert {"text/plain", "application/openmetrics-text"} <= set(content)
    probe = {p.get("name") for p in DOC["paths"]["/probe"]["get"]["parameters"]}
    assert {"target", "module", "debug", "X-Prometheus-Scrape-Timeout-Seconds"} <= probe


def test_every_schema_example_matches_its_schema() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        if "example" in schema:
            assert errors_of(component(name), schema["example"]) == [], name


# --- request schemas agree with the agent's validators --------------------------------------------

def test_documented_event_examples_pass_the_schema_and_the_agent() -> None:
    check = request_schema("Event")
    for name, body in examples("Event").items():
        assert errors_of(check, body) == [], name
        parse_event(body, now=NOW)


def test_documented_batch_examples_pass_the_schema_and_the_agent() -> None:
    check = request_schema("EventBatch")
    for name, body in examples("EventBatch").items():
        assert errors_of(check, body) == [], name
        parse_batch(body["events"] if isinstance(body, dict) else body, now=NOW)


def test_documented_posthog_examples_pass_the_schema_and_the_agent() -> None:
    for name, body in examples("Capture").items():
        assert errors_of(request_schema("Capture"), body) == [], name
        parse_capture(body, now=NOW)
    for name, body in examples("PostHogBatch").items():
        assert errors_of(request_schema("PostHogBatch"), body) == [], name
        assert errors_of(request_schema("Capture"), body) == [], "posthog-js posts batches to /capture too"
        parse_posthog_batch(body, now=NOW)


def test_an_example_of_every_catalog_event_passes_the_schema() -> None:
    check = request_schema("Event")
    for name, props in event_examples.all_examples():
        body = event_examples.envelope(name, props)
        parse_event(body, now=NOW)
        assert errors_of(check, body) == [], name
    batch = [event_examples.envelope(name, props) for name, props in event_examples.all_examples()]
    assert errors_of(request_schema("EventBatch"), {"events": batch}) == []


GOOD = {"event": "cta_click", "userId": "user_42", "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"ctaId": "hero_start_trial"}}


def bad(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


# (case, body, the field the agent names)
INVALID_EVENTS = [
    ("no event name", bad(event=None), "event"),
    ("event name with a space", bad(event="cta click"), "event"),
    ("the documentation's trackEvent shape (`action`)", {**bad(event=None), "action": "feature_used"}, "action"),
    ("no user or anonymous id", bad(userId=None), "user_id"),
    ("empty user id", bad(userId=""), "user_id"),
    ("user id of the wrong type", bad(userId=["user_42"]), "user_id"),
    ("timestamp of the wrong type", bad(timestamp=True), "timestamp"),
    ("timestamp in milliseconds", bad(timestamp=1_795_514_400_000), "timestamp"),
    ("properties not an object", bad(properties=["hero_start_trial"]), "properties"),
    ("unknown context key", bad(context={"locale": "de"}), "context.locale"),
    ("short trace id", bad(context={"trace_id": "4bf92f3577b34da6a3ce929d0e0e473"}), "context.trace_id"),
    ("all-zero span id", bad(context={"spanId": "0" * 16}), "context.span_id"),
    ("dnt not a boolean", bad(context={"dnt": "1"}), "context.dnt"),
]


@pytest.mark.parametrize("case, body, field", INVALID_EVENTS, ids=[c[0] for c in INVALID_EVENTS])
def test_invalid_events_are_rejected_by_the_schema_and_the_agent(case: str, body: dict, field: str) -> None:
    assert errors_of(request_schema("Event"), body), f"the schema accepts: {case}"
    with pytest.raises(EventError) as caught:
        parse_event(body, now=NOW)
    assert caught.value.field == field


def test_invalid_batches_are_rejected_by_the_schema_and_the_agent() -> None:
    check = request_schema("EventBatch")
    cases = [([], None), ({"events": []}, None), ({"events": [GOOD], "sent_at": "now"}, None),
             ([GOOD, bad(userId=None), GOOD], 1)]
    for body, index in cases:
        assert errors_of(check, body), body
        events = body["events"] if isinstance(body, dict) and set(body) == {"events"} else body
        with pytest.raises(BatchError) as caught:
            parse_batch(events, now=NOW)
        assert [e.index for e in caught.value.errors] == [index]


def test_invalid_posthog_bodies_are_rejected_by_the_schema_and_the_agent() -> None:
    no_id = {"event": "cta_click", "properties": {"cta_id": "x"}}
    assert errors_of(request_schema("Capture"), no_id)
    with pytest.raises(EventError) as caught:
        parse_capture(no_id, now=NOW)
    assert caught.value.field == "distinct_id"
    for body in ({"batch": []}, {"api_key": "phc_x", "batch": [no_id]}):
        assert errors_of(request_schema("PostHogBatch"), body), body
        with pytest.raises(BatchError):
            parse_posthog_batch(body, now=NOW)


def test_documented_metric_examples_pass_the_schema_and_the_agent() -> None:
    content = DOC["paths"]["/v1/metrics"]["post"]["requestBody"]["content"]["application/json"]
    check = validator(content["schema"])
    for name, example in content["examples"].items():
        assert errors_of(check, example["value"]) == [], name
        samples, _, errors = parse_samples(example["value"], 1000)
        assert samples and errors == [], name
    for bad in ({"name": "x"}, {"name": "x", "type": "set"}, {"metrics": []}, {"name": "x", "type": "gauge", "v": 1}):
        assert errors_of(check, bad), bad


# --- a running app answers as documented -----------------------------------------------------------

def documented(path: str, method: str, status: int, content_type: str) -> jsonschema.Draft4Validator:
    """The validator of the documented body of this answer; fails when the answer is not documented."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} is not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    media = content_type.split(";")[0].strip()
    assert media in response["content"], f"{method} {path} {status}: {media} is not documented"
    return validator(response["content"][media]["schema"])


async def check_answer(client: TestClient, method: str, path: str, status: int, **kwargs: Any) -> Any:
    async with client.request(method, path, **kwargs) as response:
        assert response.status == status, (method, path, await response.text())
        check = documented(path, method, status, response.headers["Content-Type"])
        body: Any = await response.read()
        if response.content_type == "application/json":
            body = json.loads(body)
        else:
            body = body.decode()
        assert errors_of(check, body) == [], (method, path, status, body)
        return body


def test_served_document_is_the_checked_in_file() -> None:
    async def scenario() -> None:
        server = TestServer(build_app(parse_config("store: {driver: none}")), host="127.0.0.1", port=0)
        async with TestClient(server) as client:
            async with client.get("/openapi.json") as response:
                assert response.status == 200
                assert response.content_type == "application/json"
                assert await response.json() == DOC
    asyncio.run(scenario())


def test_a_running_app_answers_as_documented(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"events:\n  api_keys: [{KEY}]\n  max_body_bytes: 2048\n")
    auth = {"Authorization": f"Bearer {KEY}"}

    async def scenario() -> None:
        server = TestServer(build_app(load_config(str(config_file))), host="127.0.0.1", port=0)
        async with TestClient(server) as client:
            one = examples("Event")["webVitals"]
            one.pop("timestamp")
            assert await check_answer(client, "POST", "/v1/events", 200, json=one,
                                      headers=auth) == {"accepted": 1, "stored": 1, "duplicates": 0, "dropped": 0}
            await check_answer(client, "POST", "/v1/events", 401, json=one)
            await check_answer(client, "POST", "/v1/events", 403, json=one, headers={"X-Loom-Api-Key": "x" * 20})
            await check_answer(client, "POST", "/v1/events", 413, data=b"[" + b" " * 4096 + b"]", headers=auth)
            await check_answer(client, "POST", "/v1/events", 400, data=b"{not json", headers=auth)
            body = await check_answer(client, "POST", "/v1/events/batch", 400, headers=auth,
                                      json={"events": [one, {"event": "x y"}]})
            assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "event")]
            assert await check_answer(client, "POST", "/v1/events/batch", 200, json=[one, one],
                                      headers=auth) == {"accepted": 2, "stored": 2, "duplicates": 0, "dropped": 0}
            capture = {"api_key": KEY, "event": "$pageview", "distinct_id": "anon_1"}
            for path in ("/capture", "/capture/", "/e", "/e/"):
                await check_answer(client, "POST", path, 200, json=capture)
            for path in ("/batch", "/batch/"):
                await check_answer(client, "POST", path, 200, json={"api_key": KEY, "batch": [capture]})
            await check_answer(client, "POST", "/batch", 400, json={"api_key": KEY, "batch": [{"event": "x"}]})
            await check_answer(client, "POST", "/capture", 403, json={**capture, "api_key": "phc_other"})
            metric = {"name": "conversions", "type": "counter", "value": 1, "tags": {"type": "trial_signup"}}
            assert await check_answer(client, "POST", "/v1/metrics", 200, json=metric, headers=auth) == {"accepted": 1}
            body = await check_answer(client, "POST", "/v1/metrics", 400, json={"metrics": [metric, {"name": "x"}]},
                                      headers=auth)
            assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "type")]
            await check_answer(client, "POST", "/v1/metrics", 409, json={**metric, "type": "gauge"}, headers=auth)
            await check_answer(client, "POST", "/v1/metrics", 401, json=metric)
            await check_answer(client, "POST", "/v1/metrics", 403, json=metric, headers={"X-Loom-Api-Key": "x" * 20})
            await check_answer(client, "POST", "/v1/metrics", 413, data=b"[" + b" " * 4096 + b"]", headers=auth)
            await check_answer(client, "GET", "/-/healthy", 200)
            await check_answer(client, "GET", "/-/ready", 200)
            await check_answer(client, "GET", "/metrics", 200)
            await check_answer(client, "GET", "/metrics", 200, headers={"Accept": "application/openmetrics-text"})
            await check_answer(client, "GET", "/probe", 400)
            await check_answer(client, "GET", "/probe", 400, params={"target": "x", "module": "nope"})
            await check_answer(client, "GET", "/", 200)
            await check_answer(client, "GET", "/api/status", 200)
            await check_answer(client, "GET", "/openapi.json", 200)
            await check_answer(client, "POST", "/-/reload", 200)
            config_file.write_text("events:\n  max_batch: 0\n")
            await check_answer(client, "POST", "/-/reload", 400)
    asyncio.run(scenario())
