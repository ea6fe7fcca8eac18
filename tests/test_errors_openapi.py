"""The error endpoints in the OpenAPI document (agent/api/openapi.json) are kept true: documented, their
request schema accepting what the agent accepts and refusing what it refuses, and real answers of an app
serving them (every status code they give) matching the documented bodies."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.api.keys import EVENT_STORE
from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.validate import parse_error, parse_error_batch
from agent.events.validate import BatchError, EventError, Limits
from agent.store.config import StoreConfig
from agent.store.errors import StoreUnavailable
from agent.store.open import open_store
from tests.test_openapi import DOC, check_answer, component, errors_of

NOW = 1_795_514_405.0
from tests.support.agent_app import agent_app

KEY, ADMIN = "0123456789abcdef0123", "admin-token-0123456789abcdef"
ROUTES = {("POST", "/v1/errors"), ("POST", "/v1/errors/batch"), ("GET", "/api/errors")}


def example() -> dict[str, Any]:
    return copy.deepcopy(DOC["components"]["schemas"]["ErrorEvent"]["example"])


def test_the_error_routes_are_documented_under_their_tag():
    documented = {(method.upper(), path) for path, item in DOC["paths"].items() for method in item}
    assert ROUTES <= documented
    assert "errors" in {tag["name"] for tag in DOC["tags"]}
    for method, path in ROUTES:
        assert DOC["paths"][path][method.lower()]["tags"] == ["errors"]


def test_the_documented_example_passes_the_schema_and_the_agent():
    body = example()
    assert errors_of(component("ErrorEvent"), body) == []
    parse_error(body, now=NOW, config=ErrorsConfig(), limits=Limits())
    for batch in ([body, body], {"errors": [body]}):
        assert errors_of(component("ErrorBatch"), batch) == []
        parse_error_batch(batch["errors"] if isinstance(batch, dict) else batch, now=NOW, config=ErrorsConfig(),
                          limits=Limits())


def changed(**fields: Any) -> dict[str, Any]:
    body = example()
    for key, value in fields.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


INVALID = [("no type", {"type": ...}, "type"), ("unknown key", {"exception": {}}, "exception"),
           ("lineno a string", {"stacktrace": {"frames": [{"filename": "a", "lineno": "1"}]}},
            "stacktrace.frames[0].lineno"),
           ("frame with no place", {"stacktrace": {"frames": [{"lineno": 1}]}}, "stacktrace.frames[0]"),
           ("unknown level", {"level": "critical"}, "level"),
           ("release with a space", {"release": "2.3 beta"}, "release"),
           ("tag value an object", {"tags": {"feature": {}}}, "tags.feature"),
           ("fingerprint a number", {"fingerprint": 3}, "fingerprint")]


@pytest.mark.parametrize("case, changes, field", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_errors_are_refused_by_the_schema_and_the_agent(case: str, changes: dict[str, Any], field: str):
    body = changed(**changes)
    assert errors_of(component("ErrorEvent"), body), f"the schema accepts: {case}"
    with pytest.raises(EventError) as caught:
        parse_error(body, now=NOW, config=ErrorsConfig(), limits=Limits())
    assert caught.value.field == field
    assert errors_of(component("ErrorBatch"), []) and errors_of(component("ErrorBatch"), {"errors": [], "x": 1})
    with pytest.raises(BatchError):
        parse_error_batch([], now=NOW, config=ErrorsConfig(), limits=Limits())


class FailingStore:
    dialect = "sqlite"

    async def execute(self, statements):
        raise StoreUnavailable("database is locked")

    async def fetch(self, sql, params=()):
        raise StoreUnavailable("database is locked")


def make_app(store: Any) -> web.Application:
    """The real agent with the ingest key, the admin token and `store` (open, or a fake that fails)."""
    fake = isinstance(store, FailingStore)
    app = agent_app(None if fake else store, {"events": {"api_keys": [KEY]}, "errors": {"max_body_bytes": 2048}},
                    admin_token=ADMIN)
    if fake:                                   # no start-up reads: every query fails from the first
        app[EVENT_STORE].store = store
    return app


def test_a_running_app_answers_as_documented(tmp_path):
    ingest, admin = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {ADMIN}"}
    one = example()
    one.pop("timestamp")

    async def answers(app: web.Application, calls) -> None:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            for method, path, status, kwargs in calls:
                await check_answer(client, method, path, status, **kwargs)

    async def scenario() -> None:
        store = await open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db")))
        try:
            await answers(make_app(store), [
                ("POST", "/v1/errors", 200, {"json": one, "headers": ingest}),
                ("POST", "/v1/errors/batch", 200, {"json": {"errors": [one, one]}, "headers": ingest}),
                ("POST", "/v1/errors", 401, {"json": one}),
                ("POST", "/v1/errors/batch", 403, {"json": [one], "headers": {"X-Loom-Api-Key": "x" * 20}}),
                ("POST", "/v1/errors", 413, {"data": b"[" + b" " * 4096 + b"]", "headers": ingest}),
                ("POST", "/v1/errors", 400, {"data": b"{not json", "headers": ingest}),
                ("POST", "/v1/errors/batch", 400, {"json": [one, {"type": 3}], "headers": ingest}),
                ("GET", "/api/errors", 200, {"headers": admin}),
                ("GET", "/api/errors", 200, {"headers": admin, "params": {"release": "loom-web@2.3.1",
                                                                        "feature": "payment", "limit": "5"}}),
                ("GET", "/api/errors", 400, {"headers": admin, "params": {"limit": "0"}}),
                ("GET", "/api/errors", 401, {}),
                ("GET", "/api/errors", 403, {"headers": ingest})])
        finally:
            await store.close()
        await answers(make_app(FailingStore()), [
            ("POST", "/v1/errors", 503, {"json": one, "headers": ingest}),
            ("GET", "/api/errors", 503, {"headers": admin})])
        await answers(make_app(None), [("GET", "/api/errors", 503, {"headers": admin})])
    asyncio.run(scenario())
