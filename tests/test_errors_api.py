"""POST /v1/errors, POST /v1/errors/batch and GET /api/errors over real HTTP (127.0.0.1, port 0), on both
databases: ingest to issues end to end, the ingest key and the admin token, 413, every bad body a 400
naming the field (scrubbed, never echoing a value), 503 with Retry-After when the store fails, the
query parameters, and loom_errors_total in /metrics."""

from __future__ import annotations

import time
from typing import Any

import orjson

from agent.api.keys import ERROR_SINK, EVENT_STORE, METRICS, PRIVACY
from agent.metrics import exposition
from agent.store.errors import StoreUnavailable
from tests.support.agent_app import agent_app, served

pytest_plugins = ["tests.support.store_fixtures"]

INGEST = "ingest-key-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
KEY = b"k" * 32
INGEST_AUTH = {"Authorization": f"Bearer {INGEST}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


class Agent:
    """The real agent (tests/support/agent_app.py) with the ingest key and admin token, serving `store`
    (an open store, or a fake one that fails) and these `errors:` settings."""

    def __init__(self, store: Any | None, errors: dict[str, Any] | None = None):
        self.app = agent_app(None if isinstance(store, FailingStore) else store,
                             {"events": {"api_keys": [INGEST]}, "errors": errors or {}}, admin_token=ADMIN)
        if isinstance(store, FailingStore):           # no start-up reads: every query fails from the first
            self.app[EVENT_STORE].store = store
        self.metrics, self.privacy, self.sink = self.app[METRICS], self.app[PRIVACY], self.app[ERROR_SINK]

    def call(self, run, *requests: tuple[str, str, dict[str, Any]]) -> list[tuple[int, Any, Any]]:
        """(status, JSON body, headers) of each (method, path, aiohttp request kwargs), in order."""
        async def scenario() -> list[tuple[int, Any, Any]]:
            out = []
            async with served(self.app) as agent:
                for method, path, kwargs in requests:
                    out.append(tuple(await agent.fetch(method, path, **kwargs)))
            return out
        return run(scenario())

    def post(self, run, path: str, body: Any, headers: dict[str, str] = INGEST_AUTH) -> tuple[int, Any, Any]:
        return self.call(run, ("POST", path, {"json": body, "headers": headers}))[0]

    def issues(self, run, headers: dict[str, str] = ADMIN_AUTH, **params: str) -> tuple[int, Any, Any]:
        return self.call(run, ("GET", "/api/errors", {"params": params, "headers": headers}))[0]

    def rejected(self) -> float:
        family = self.metrics.get("loom_agent_ingest_rejected")
        return sum(family.series.values())


def bug(line: int, user: str, function: str = "chargeCard", **fields: Any) -> dict[str, Any]:
    return {"type": "TypeError", "message": "Cannot read properties of undefined (reading 'amount')",
            "stacktrace": {"frames": [{"filename": "src/lib/payment.ts", "function": function, "lineno": line,
                                       "inApp": True}]},
            "tags": {"feature": "payment"}, "extra": {"amount": 49}, "userId": user, "release": "1.4.2",
            "environment": "production", **fields}


def test_errors_in_issues_out(store, run):
    agent = Agent(store)
    now = time.time()
    status, one, _ = agent.post(run, "/v1/errors", bug(88, "alice", eventId="e-1", timestamp=now - 30))
    assert status == 200 and (one["accepted"], one["stored"], one["duplicates"]) == (1, 1, 0)
    status, batch, _ = agent.post(run, "/v1/errors/batch", {"errors": [
        bug(95, "bob", eventId="e-2", timestamp=now - 20),
        bug(12, "bob", function="refundCard", release="1.5.0", eventId="e-3", timestamp=now - 10)]})
    assert status == 200 and (batch["accepted"], batch["stored"]) == (2, 2)
    assert batch["fingerprints"][0] == one["fingerprints"][0] != batch["fingerprints"][1]
    status, retry, _ = agent.post(run, "/v1/errors/batch", [bug(88, "alice", eventId="e-1")])
    assert status == 200 and (retry["stored"], retry["duplicates"]) == (0, 1)

    status, document, headers = agent.issues(run, range="1h")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert [(i["fingerprint"], i["count"], i["usersAffected"]) for i in document["issues"]] == [
        (batch["fingerprints"][1], 1, 1), (one["fingerprints"][0], 2, 2)]
    assert document["totalIssues"] == 2
    assert document["issues"][1]["latest"]["eventId"] == "e-2"
    assert agent.issues(run, release="1.5.0")[1]["totalIssues"] == 1
    assert agent.issues(run, feature="payment", limit="1")[1]["issues"][0]["count"] == 1
    assert agent.issues(run, feature="checkout")[1]["issues"] == []

    text = exposition.render(agent.metrics, None, openmetrics=False).decode()
    assert '# TYPE loom_errors_total counter' in text
    assert 'loom_errors_total{feature="payment",type="TypeError",release="1.4.2"} 2.0' in text
    assert 'loom_errors_total{feature="payment",type="TypeError",release="1.5.0"} 1.0' in text


def test_the_dnt_header_keeps_the_error_without_its_user(store, run):
    agent = Agent(store)
    answers = agent.call(run, ("POST", "/v1/errors", {"json": bug(1, "alice"), "headers": {**INGEST_AUTH, "DNT": "1"}}))
    assert answers[0][0] == 200 and answers[0][1]["stored"] == 1
    assert run(store.fetch("SELECT user_id FROM errors")) == [(None,)]


def test_filters_are_compared_with_the_scrubbed_values(store, run):
    agent = Agent(store)
    assert agent.post(run, "/v1/errors", bug(1, "u1", environment="qa:alice@example.com",
                                             tags={"feature": "bob@example.com"}))[0] == 200
    stored = run(store.fetch("SELECT environment, feature FROM errors"))[0]
    assert "alice" not in stored[0] and "bob" not in stored[1]
    assert agent.issues(run, environment="qa:alice@example.com")[1]["totalIssues"] == 1
    assert agent.issues(run, feature="bob@example.com")[1]["totalIssues"] == 1
    assert agent.issues(run, environment="qa:carol@example.com")[1]["totalIssues"] == 0


def test_the_ingest_key_and_the_admin_token_are_required(run):
    agent = Agent(None)
    assert agent.post(run, "/v1/errors", bug(1, "u1"), headers={})[0] == 401
    assert agent.post(run, "/v1/errors/batch", [bug(1, "u1")], headers={"X-Loom-Api-Key": "x" * 20})[0] == 403
    assert agent.post(run, "/v1/errors", bug(1, "u1"), headers={"X-Loom-Api-Key": INGEST})[0] == 200
    assert agent.rejected() == 2.0
    assert agent.issues(run, headers={})[0] == 401
    assert agent.issues(run, headers={"Authorization": f"Bearer {INGEST}"})[0] == 403


def test_without_a_store_errors_are_counted_and_the_list_is_503(run):
    agent = Agent(None)
    status, body, _ = agent.post(run, "/v1/errors", bug(1, "u1"))
    assert status == 200 and body["stored"] == 1
    assert sum(agent.metrics.get("loom_errors").series.values()) == 1.0
    status, body, _ = agent.issues(run)
    assert status == 503 and body == {"error": "the event store is disabled"}


def test_a_body_over_max_body_bytes_is_413(run):
    agent = Agent(None, {"max_body_bytes": 2048})
    status, body, _ = agent.post(run, "/v1/errors", bug(1, "u1", extra={"blob": "x" * 3000}))
    assert status == 413 and body == {"error": "request body is larger than 2048 bytes"}
    chunked = agent.call(run, ("POST", "/v1/errors/batch", {"data": _chunks(b"[" + b" " * 4096 + b"]"),
                                                           "headers": INGEST_AUTH}))
    assert chunked[0][0] == 413


async def _chunks(data: bytes):
    for i in range(0, len(data), 512):
        yield data[i:i + 512]


def test_bad_bodies_are_400_naming_the_field_without_echoing_values(run):
    agent = Agent(None)
    email, card = "alice@example.com", "4111111111111111"
    cases = [
        ("/v1/errors", b"{not json", None, "invalid JSON"),
        ("/v1/errors", b'{"type": "E", "extra": {"n": 1e400}}', None, "invalid JSON"),      # no non-finite in JSON
        ("/v1/errors", orjson.dumps(bug(1, "u1", type=None)), (None, "type"), "type: is required"),
        ("/v1/errors", orjson.dumps(bug(1, "u1", level=email)), (None, "level"), "level: must be one of"),
        ("/v1/errors", orjson.dumps(bug(1, "u1", extra={"note": email + "x" * 5000})), (None, "extra.note"),
         "extra.note: must be at most 4096 characters (got 5017)"),
        ("/v1/errors/batch", orjson.dumps([bug(1, "u1"), bug("one", email)]), (1, "stacktrace.frames[0].lineno"),
         "errors[1].stacktrace.frames[0].lineno: must be an integer"),
        ("/v1/errors/batch", orjson.dumps({"errors": []}), (None, "errors"), "errors: must not be empty"),
    ]
    before = agent.rejected()
    for path, data, where, summary in cases:
        status, body, _ = agent.call(run, ("POST", path, {"data": data, "headers": {
            **INGEST_AUTH, "Content-Type": "application/json"}}))[0]
        assert status == 400 and body["error"].startswith(summary), (path, data, body)
        if where is not None:
            (error,) = body["errors"]
            index, field = where
            assert error["index"] == index
            if field is not None:
                assert error["field"] == field
        dump = orjson.dumps(body).decode()
        assert email not in dump and card not in dump, dump
    scrubbed = agent.call(run, ("POST", "/v1/errors", {"json": bug(1, "u1", extra={email: {card: "x" * 5000}}),
                                                       "headers": INGEST_AUTH}))[0][1]
    # the path holds the client's keys: scrubbed as they would be stored (here the whole path reads as an address)
    assert scrubbed["errors"][0]["field"] == agent.privacy.text(f"extra.{email}.{card}") != f"extra.{email}.{card}"
    assert email not in orjson.dumps(scrubbed).decode() and card not in orjson.dumps(scrubbed).decode()
    assert agent.rejected() == before + len(cases) + 1


class FailingStore:
    dialect = "sqlite"

    async def execute(self, statements):
        raise StoreUnavailable("database is locked")

    async def fetch(self, sql, params=()):
        raise StoreUnavailable("database is locked")


def test_a_failing_store_is_503_with_retry_after_and_nothing_is_counted(run):
    agent = Agent(FailingStore())
    status, body, headers = agent.post(run, "/v1/errors", bug(1, "u1"))
    assert status == 503 and headers["Retry-After"] == "5" and "retry after 5 s" in body["error"]
    assert "locked" not in body["error"]
    assert agent.metrics.get("loom_errors").series == {}
    status, body, headers = agent.issues(run)
    assert status == 503 and headers["Retry-After"] == "5"


def test_bad_query_parameters_are_400_naming_them(run):
    agent = Agent(FailingStore())            # parameters are checked before the store is read
    cases = [({"release": ""}, "release"), ({"release": "me@example.com"}, "release"), ({"feature": ""}, "feature"),
             ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
             ({"limit": "ten"}, "limit"), ({"from": "2026-11-24T10:00:00Z", "to": "2026-11-24T09:00:00Z"}, "from"),
             ({"range": "7d", "from": "2026-11-24T09:00:00Z"}, "range"), ({"range": "soon"}, "range"),
             ({"fingerprint": "abc"}, "fingerprint")]
    for params, field in cases:
        status, body, _ = agent.issues(run, **params)
        assert status == 400 and body["errors"][0]["field"] == field, (params, body)
        assert body["error"].startswith(f"{field}: ")
    status, body, _ = agent.call(run, ("GET", "/api/errors?release=a&release=b", {"headers": ADMIN_AUTH}))[0]
    assert status == 400 and body["errors"] == [{"field": "release", "message": "given more than once"}]
