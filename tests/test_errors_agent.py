"""Errors end to end through a real agent process (SQLite store, OTLP export to a test receiver): the
Sentry-style capture in, one issue per bug out of GET /api/errors, loom_errors_total in /metrics, the
exception span in the application's trace at the collector, no e-mail address anywhere, and the
`errors:` block applied by a reload."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import AgentProcess, http_post

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

INGEST_KEY, ADMIN_TOKEN = "ingest-key-errors-0123456789", "admin-token-errors-0123456789"
HMAC_KEY = "hmac-key-errors-test-0123456789abcdef01"
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
EMAIL = "carol.payer@example.com"


def call(agent: AgentProcess, method: str, path: str, body: Any = None, token: str = INGEST_KEY) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(agent.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def capture(line: int, user: str, function: str = "chargeCard", **fields: Any) -> dict[str, Any]:
    """What a Sentry.captureException(error, {tags: {feature: 'payment'}, extra: {...}}) relay sends."""
    return {"type": "TypeError", "message": f"Cannot read 'amount' for {EMAIL}",
            "stacktrace": {"frames": [
                {"filename": "https://cdn.loom.app/_next/static/chunks/pages/checkout-3f2a9c1b.js",
                 "function": "onSubmit", "lineno": 10 + line, "inApp": True},
                {"filename": "https://cdn.loom.app/_next/static/chunks/lib-3f2a9c1b.js", "function": function,
                 "lineno": line, "colno": 7, "inApp": True}]},
            "tags": {"feature": "payment"}, "extra": {"amount": 49, "contact": EMAIL}, "userId": user,
            "release": "loom-web@2.3.1", "environment": "production", **fields}


def test_errors_through_a_real_agent(tmp_path: Path):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    config = {"store": {"driver": "sqlite", "path": str(store_dir / "loom.db")},
              "events": {"api_keys": [INGEST_KEY]}, "api": {"admin_tokens": [ADMIN_TOKEN]},
              "retention": {"interval": 0}}
    with OtlpReceiver("http/protobuf") as receiver:
        config["telemetry"] = {"otlp": {"endpoint": receiver.endpoint, "protocol": "http/protobuf",
                                        "metrics_interval": "1s", "timeout": "2s"}}
        agent = AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": HMAC_KEY})
        try:
            now = time.time()
            status, one = call(agent, "POST", "/v1/errors", capture(88, EMAIL, eventId="e-1", timestamp=now - 3,
                                                                   context={"traceId": TRACE_ID, "spanId": SPAN_ID}))
            assert status == 200 and one["stored"] == 1, one
            status, batch = call(agent, "POST", "/v1/errors/batch", [
                capture(95, "user_bob", timestamp=now - 2), capture(12, "user_bob", "refundCard", timestamp=now - 1)])
            assert status == 200 and batch["fingerprints"][0] == one["fingerprints"][0] != batch["fingerprints"][1]
            assert call(agent, "POST", "/v1/errors", capture(88, EMAIL, eventId="e-1"))[1]["duplicates"] == 1

            status, issues = call(agent, "GET", "/api/errors?range=1h", token=ADMIN_TOKEN)
            assert status == 200
            assert [(i["fingerprint"], i["count"], i["usersAffected"]) for i in issues["issues"]] == [
                (batch["fingerprints"][1], 1, 1), (one["fingerprints"][0], 2, 2)]
            assert call(agent, "GET", "/api/errors?feature=payment&release=loom-web@2.3.1",
                        token=ADMIN_TOKEN)[1]["totalIssues"] == 2

            metrics = agent.metrics()
            assert 'loom_errors_total{feature="payment",type="TypeError",release="loom-web@2.3.1"} 3.0' in metrics

            spans = receiver.wait_for(lambda: [s for s in receiver.spans() if s.name == "exception TypeError"], 15,
                                      "the exception span")
            (span,) = spans
            assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == SPAN_ID
            (event,) = span.events
            attributes = {a.key: a.value.string_value for a in event.attributes}
            assert event.name == "exception" and attributes["exception.type"] == "TypeError"
            assert "at onSubmit (https://cdn.loom.app/_next/static/chunks/pages/checkout-3f2a9c1b.js:98)" in \
                attributes["exception.stacktrace"]
            for where, text in (("the issues", orjson.dumps(issues)), ("the span", span.SerializeToString()),
                                ("the metrics", metrics.encode())):
                assert EMAIL.encode() not in text, where

            agent.write_config({**config, "errors": {"max_batch": 1}})
            assert http_post(agent.url + "/-/reload")[0] == 200
            status, refused = call(agent, "POST", "/v1/errors/batch", [capture(1, "u1"), capture(2, "u2")])
            assert status == 400 and refused["errors"][0]["message"] == "must have at most 1 errors (got 2)"
        finally:
            assert agent.stop() == 0
    for path in store_dir.iterdir():
        assert EMAIL.encode() not in path.read_bytes(), path
