"""The ingest API on a real agent process: single, batch and PostHog ingest land in /metrics; every
kind of bad input is a 4xx JSON error (naming the event index and field where there is one), is
counted by reason, never a 5xx or a traceback, and the agent keeps answering; API keys."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.api.events import json_nesting_within
from tests.support.event_examples import USER, envelope, properties
from tests.support.procs import ROOT, AgentProcess

MAX_BATCH = 20
MAX_BODY = 1024 * 1024
KEY = "ingest-key-0123456789abcdef"
OTHER_KEY = "second-key-abcdefghijklmnop"

Response = tuple[int, dict[str, str], Any]


# --- helpers --------------------------------------------------------------------------------------

def accepted(result) -> tuple[int, int]:
    """(status, events accepted) of a post() result."""
    return result[0], result[2]["accepted"]


def post(agent: AgentProcess, path: str, body: Any, headers: dict[str, str] | None = None) -> Response:
    """POST `body` (bytes as they are, an iterable of bytes chunked, anything else as JSON); the
    response's status, headers and JSON body (None when the body is not JSON)."""
    if not isinstance(body, (bytes, Iterator)):
        body = orjson.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})},
                     encode_chunked=isinstance(body, Iterator))
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return resp.status, dict(resp.headers), parsed


def raw_request(agent: AgentProcess, request: bytes) -> bytes:
    """Send bytes as they are (for what http.client will not send); the raw response."""
    with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def metrics(agent: AgentProcess) -> dict[tuple[str, frozenset], float]:
    """/metrics, parsed (which proves it is valid text format): (sample name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(agent.metrics()) for s in family.samples}


def value(agent_metrics: dict, name: str, **labels: str) -> float:
    return agent_metrics.get((name, frozenset(labels.items())), 0.0)


def total(agent_metrics: dict, name: str) -> float:
    return sum(v for (sample, _), v in agent_metrics.items() if sample == name)


def events_total(agent_metrics: dict, event: str, category: str) -> float:
    return value(agent_metrics, "loom_events_total", category=category, event=event)


def assert_json_error(resp: Response, status: int) -> dict[str, Any]:
    code, headers, body = resp
    assert code == status, resp
    assert headers["Content-Type"].startswith("application/json"), headers
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body


def assert_healthy(agent: AgentProcess) -> None:
    assert post(agent, "/v1/events", envelope("feature_used"))[0] == 200
    assert "Traceback" not in agent.log(), agent.log()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    proc = AgentProcess(tmp_path_factory.mktemp("events-agent"),
                        {"events": {"max_batch": MAX_BATCH, "max_body_bytes": MAX_BODY, "max_future_skew": "5m"}})
    try:
        yield proc
    finally:
        log = proc.log()
        proc.stop()
        assert "Traceback" not in log, log


# --- ingest ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_single_and_batch_ingest_show_in_metrics(agent: AgentProcess) -> None:
    before = metrics(agent)
    assert post(agent, "/v1/events", envelope("api_request", {"route": "/api/sessions/:id", "method": "GET",
                                                              "status": 503, "duration_ms": 250}))[2]["accepted"] == 1
    batch = [envelope("cta_click", {"ctaId": "api_test_cta", "location": "hero"}) for _ in range(3)]
    batch.append(envelope("web_vitals"))                                            # LCP 2500 ms
    assert accepted(post(agent, "/v1/events/batch", batch)) == (200, 4)
    assert accepted(post(agent, "/v1/events/batch", {"events": batch[:1]})) == (200, 1)
    after = metrics(agent)
    assert events_total(after, "cta_click", "marketing") - events_total(before, "cta_click", "marketing") == 4
    assert value(after, "loom_cta_clicks_total", cta="api_test_cta", location="hero") == 4
    labels = {"route": "/api/sessions/:id", "method": "GET", "status_class": "5xx"}
    bucket = "loom_api_request_duration_seconds_bucket"
    assert value(after, bucket, **labels, le="0.1") == 0
    assert value(after, bucket, **labels, le="0.25") == 1
    assert value(after, "loom_api_request_duration_seconds_count", **labels) == 1
    assert value(after, "loom_web_vitals_lcp_seconds_sum", rating="good") >= 2.5


@pytest.mark.slow
def test_camel_case_and_snake_case_properties_are_the_same(agent: AgentProcess) -> None:
    before = metrics(agent)
    camel = {"resourceId": "r1", "resourceType": "worksheet", "scrollDepthPercent": 50, "viewDurationSeconds": 10}
    snake = {"resource_id": "r1", "resource_type": "worksheet", "scroll_depth_percent": 100,
             "view_duration_seconds": 20}
    assert post(agent, "/v1/events", envelope("resource_viewed", camel))[0] == 200
    assert post(agent, "/v1/events", {"event": "resource_viewed", "user_id": USER, "properties": snake})[0] == 200
    after = metrics(agent)
    name = "loom_resource_scroll_depth_ratio"
    assert value(after, f"{name}_count", type="worksheet") - value(before, f"{name}_count", type="worksheet") == 2
    assert value(after, f"{name}_sum", type="worksheet") - value(before, f"{name}_sum", type="worksheet") == 1.5
    assert value(after, f"{name}_bucket", type="worksheet", le="0.5") - \
        value(before, f"{name}_bucket", type="worksheet", le="0.5") == 1


@pytest.mark.slow
def test_dnt_events_are_acknowledged_and_dropped_by_default(agent: AgentProcess) -> None:
    """privacy.dnt defaults to drop: a Do-Not-Track event (header or context.dnt) is acknowledged, then
    neither stored nor counted, only counted as dropped."""
    before = metrics(agent)
    body = envelope("newsletter_signup", context={"page": "/blog", "userAgent": "Mozilla/5.0", "dnt": True,
                                                  "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                                  "spanId": "00f067aa0ba902b7"})
    status, _, answer = post(agent, "/v1/events", body)
    assert (status, answer["accepted"], answer["stored"], answer["dropped"]) == (200, 1, 0, 1)
    assert post(agent, "/v1/events", envelope("newsletter_signup"), {"DNT": "1"})[2]["dropped"] == 1
    after = metrics(agent)
    assert events_total(after, "newsletter_signup", "marketing") == events_total(before, "newsletter_signup",
                                                                                 "marketing")
    assert (value(after, "loom_agent_events_dropped_total", reason="dnt")
            - value(before, "loom_agent_events_dropped_total", reason="dnt")) == 2


@pytest.mark.slow
def test_realtime_connections_open_goes_back_to_zero(agent: AgentProcess) -> None:
    def open_now() -> float:
        return value(metrics(agent), "loom_realtime_connections_open", transport="sse")

    assert open_now() == 0
    for name in ("connection_attempt", "connection_established"):
        assert post(agent, "/v1/events", envelope(name, {"connectionId": "api_conn", "transport": "sse"}))[0] == 200
    assert open_now() == 1
    assert post(agent, "/v1/events", envelope("connection_disconnected", {
        "connectionId": "api_conn", "transport": "sse", "wasClean": True}))[0] == 200
    assert open_now() == 0
    assert value(metrics(agent), "loom_realtime_disconnects_total", transport="sse", clean="true") == 1


@pytest.mark.slow
def test_posthog_capture_and_batch_shapes(agent: AgentProcess) -> None:
    before = metrics(agent)
    capture = {"api_key": "phc_project", "event": "$pageview", "distinct_id": "ph-user-1", "timestamp": None,
               "properties": {"$current_url": "https://app.example.com/dashboard", "$session_id": "s1",
                              "$lib": "posthog-js", "$lib_version": "1.160.0", "$is_identified": False}}
    assert post(agent, "/capture", capture)[:3:2] == (200, {"status": 1})
    assert post(agent, "/e/", capture)[0] == 200
    batch = {"api_key": "phc_project", "batch": [
        {"event": "cta_click", "distinct_id": "ph-user-2", "properties": {"ctaId": "posthog_cta", "$lib": "web"},
         "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        {"event": "Signed Up", "distinct_id": "ph-user-2", "properties": {"plan": "premium"}, "offset": 1500}]}
    assert post(agent, "/batch", batch)[:3:2] == (200, {"status": 1})
    assert post(agent, "/capture", {"batch": batch["batch"][:1]})[0] == 200          # posthog-js batches /capture
    after = metrics(agent)
    assert events_total(after, "$pageview", "posthog") - events_total(before, "$pageview", "posthog") == 2
    assert value(after, "loom_pageviews_total", path="/dashboard") - value(before, "loom_pageviews_total",
                                                                          path="/dashboard") == 2
    assert events_total(after, "Signed Up", "custom") - events_total(before, "Signed Up", "custom") == 1
    assert value(after, "loom_cta_clicks_total", cta="posthog_cta", location="unknown") == 2
    assert value(after, "loom_agent_ingest_batch_size_count", api="posthog") - \
        value(before, "loom_agent_ingest_batch_size_count", api="posthog") == 4


# --- bad input ------------------------------------------------------------------------------------

def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"d": value}
    return value


def _future() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))


def _event_bytes(extra: bytes) -> bytes:
    return b'{"event": "feature_used", "userId": "u1", "properties": {"feature": "x", "v": ' + extra + b"}}"


def _batch_with(bad: dict[int, dict[str, Any]], size: int = 5) -> list[dict[str, Any]]:
    return [bad.get(i, envelope("goal_created", {"goalId": f"batch_goal_{i}"})) for i in range(size)]


BIG_STRING = orjson.dumps(envelope("feature_used", {"feature": "x", "note": "a" * (5 * 1024 * 1024)}))

# (id, path, body, status, reason, [(index, field)] the errors must list, or None: a body-level error)
BAD_INPUTS: list[tuple[str, str, Any, int, str, list[tuple[int | None, str]] | None]] = [
    ("malformed_json", "/v1/events", b'{"event": "feature_used", ', 400, "malformed", None),
    ("trailing_garbage", "/v1/events", orjson.dumps(envelope("feature_used")) + b"}", 400, "malformed", None),
    ("empty_body", "/v1/events", b"", 400, "malformed", None),
    ("invalid_utf8", "/v1/events", b'{"event": "feature_used", "userId": "\xff\xfe", "properties": {}}', 400,
     "malformed", None),
    ("lone_surrogate_escape", "/v1/events", b'{"event": "feature_used", "userId": "\\ud800"}', 400, "malformed", None),
    ("nan_literal", "/v1/events", _event_bytes(b"NaN"), 400, "malformed", None),
    ("infinity_literal", "/v1/events", _event_bytes(b"Infinity"), 400, "malformed", None),
    ("minus_infinity_literal", "/v1/events", _event_bytes(b"-Infinity"), 400, "malformed", None),
    ("number_overflowing_to_infinity", "/v1/events", _event_bytes(b"1e999"), 400, "malformed", None),
    ("2000_nested_arrays", "/v1/events/batch", b"[" * 2000 + b"]" * 2000, 400, "malformed", None),
    ("2000_nested_arrays_in_properties", "/v1/events", _event_bytes(b"[" * 2000 + b"]" * 2000), 400, "malformed",
     None),
    # orjson < 3.9.15 has no recursion limit: this 400 kB body used to kill the agent (SIGSEGV)
    ("200000_nested_arrays", "/v1/events/batch", b"[" * 200_000 + b"]" * 200_000, 400, "malformed", None),
    ("200000_nested_objects", "/v1/events", b'{"a":' * 150_000 + b"1" + b"}" * 150_000, 400, "malformed", None),
    ("nested_deeper_than_max_depth", "/v1/events", envelope("feature_used", {"feature": "x", "n": _nested(8)}), 400,
     "invalid", [(None, "properties.n.d.d.d.d.d")]),
    ("not_an_object", "/v1/events", [1, 2], 400, "invalid", [(None, "")]),
    ("event_not_a_string", "/v1/events", {**envelope("feature_used"), "event": 42}, 400, "invalid",
     [(None, "event")]),
    ("properties_not_an_object", "/v1/events", {**envelope("feature_used"), "properties": "feature=x"}, 400,
     "invalid", [(None, "properties")]),
    ("number_as_string", "/v1/events", envelope("resource_viewed", {**properties("resource_viewed"),
                                                                    "scrollDepthPercent": "75"}), 400, "invalid",
     [(None, "properties.scroll_depth_percent")]),
    ("boolean_as_number", "/v1/events", envelope("api_request", {**properties("api_request"), "status": True}), 400,
     "invalid", [(None, "properties.status")]),
    ("out_of_range", "/v1/events", envelope("resource_viewed", {"resourceId": "r", "scrollDepthPercent": 150}), 400,
     "invalid", [(None, "properties.scroll_depth_percent")]),
    ("not_in_enum", "/v1/events", envelope("notification_clicked", {"notificationId": "n", "channel": "pigeon"}),
     400, "invalid", [(None, "properties.channel")]),
    ("missing_event", "/v1/events", {"userId": USER, "properties": {}}, 400, "invalid", [(None, "event")]),
    ("missing_user", "/v1/events", {"event": "feature_used", "properties": {"feature": "x"}}, 400, "invalid",
     [(None, "user_id")]),
    ("missing_required_property", "/v1/events", envelope("resource_viewed", {"resourceType": "pdf"}), 400,
     "invalid", [(None, "properties.resource_id")]),
    ("future_timestamp", "/v1/events", envelope("feature_used", timestamp=_future()), 400, "invalid",
     [(None, "timestamp")]),
    ("timestamp_in_milliseconds", "/v1/events", envelope("feature_used", timestamp=time.time() * 1000), 400,
     "invalid", [(None, "timestamp")]),
    ("unknown_envelope_key", "/v1/events", {**envelope("feature_used"), "evnt": "typo"}, 400, "invalid",
     [(None, "evnt")]),
    ("string_too_long", "/v1/events", envelope("feature_used", {"feature": "x", "note": "a" * 5000}), 400,
     "invalid", [(None, "properties.note")]),
    ("batch_not_an_array", "/v1/events/batch", envelope("feature_used"), 400, "invalid", [(None, "events")]),
    ("empty_batch", "/v1/events/batch", [], 400, "invalid", [(None, "events")]),
    ("batch_too_large", "/v1/events/batch", [envelope("feature_used")] * (MAX_BATCH + 1), 400, "invalid",
     [(None, "events")]),
    ("batch_invalid_at_1_and_3", "/v1/events/batch",
     _batch_with({1: envelope("goal_created", {"goalId": 7}), 3: {"event": "goal_created"}}), 400, "invalid",
     [(1, "properties.goal_id"), (3, "user_id")]),
    ("5mb_string_over_body_limit", "/v1/events", BIG_STRING, 413, "too_large", None),
    ("oversized_chunked_body", "/v1/events/batch", "chunked", 413, "too_large", None),
    ("posthog_capture_without_distinct_id", "/capture", {"event": "$pageview", "properties": {}}, 400, "invalid",
     [(None, "distinct_id")]),
    ("posthog_batch_invalid_at_1", "/batch",
     {"batch": [{"event": "a", "distinct_id": "d"}, {"event": "b", "distinct_id": ["d"]}]}, 400, "invalid",
     [(1, "distinct_id")]),
    ("posthog_malformed", "/batch", b"{'batch': []}", 400, "malformed", None),
]


def _chunks() -> Iterator[bytes]:
    """A valid-looking batch, chunked without Content-Length, growing past MAX_BODY."""
    yield b"["
    piece = orjson.dumps(envelope("feature_used", {"feature": "x", "note": "a" * 4000})) + b","
    for _ in range(MAX_BODY // len(piece) + 50):
        yield piece
    yield orjson.dumps(envelope("feature_used")) + b"]"


@pytest.mark.slow
@pytest.mark.parametrize("path,body,status,reason,errors", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_4xx_json_error_counted_by_reason(agent: AgentProcess, path: str, body: Any, status: int,
                                                          reason: str, errors: list | None) -> None:
    api = "events" if path.startswith("/v1/") else "posthog"
    before = metrics(agent)
    resp = post(agent, path, _chunks() if body == "chunked" else body)
    error = assert_json_error(resp, status)
    if errors is not None:
        assert [(e["index"], e["field"]) for e in error["errors"]] == errors, error
        assert all(isinstance(e["message"], str) and e["message"] for e in error["errors"])
        if errors[0][0] is not None:                           # a batch names the index in the message too
            assert f"[{errors[0][0]}]." in error["error"] or len(errors) > 1, error
    after = metrics(agent)
    rejected = "loom_agent_ingest_rejected_total"
    assert value(after, rejected, api=api, reason=reason) - value(before, rejected, api=api, reason=reason) == 1
    assert total(after, rejected) - total(before, rejected) == 1
    assert total(after, "loom_events_total") == total(before, "loom_events_total")     # nothing was counted
    assert_healthy(agent)


@pytest.mark.slow
def test_a_batch_with_invalid_events_counts_none_of_its_valid_ones(agent: AgentProcess) -> None:
    before = metrics(agent)
    body = _batch_with({1: envelope("goal_created", {"goalId": 7}), 3: {"event": "goal_created"}})
    error = assert_json_error(post(agent, "/v1/events/batch", body), 400)
    assert [e["index"] for e in error["errors"]] == [1, 3]
    assert "2 invalid events" in error["error"]
    after = metrics(agent)
    assert events_total(after, "goal_created", "goal") == events_total(before, "goal_created", "goal")
    assert value(after, "loom_goals_total", status="created") == value(before, "loom_goals_total", status="created")
    del body[3], body[1]
    assert post(agent, "/v1/events/batch", body)[2]["accepted"] == 3                # fixed and resent
    assert events_total(metrics(agent), "goal_created", "goal") - events_total(before, "goal_created", "goal") == 3


@pytest.mark.slow
def test_a_body_arriving_in_pieces_is_read_whole(agent: AgentProcess) -> None:
    batch = [envelope("cta_click", {"ctaId": "pieces_cta", "ctaText": "x" * 500}) for _ in range(MAX_BATCH)]
    pieces = iter([orjson.dumps(batch)[i:i + 1000] for i in range(0, len(orjson.dumps(batch)), 1000)])
    assert accepted(post(agent, "/v1/events/batch", pieces)) == (200, MAX_BATCH)
    body = orjson.dumps(envelope("feature_used"))
    head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as sock:
        for piece in (head + body[:5], body[5:20], body[20:]):
            sock.sendall(piece)
            time.sleep(0.05)          # separate TCP segments; correctness never depends on the pause
        response = sock.makefile("rb").read()
    assert response.startswith(b"HTTP/1.1 200"), response


@pytest.mark.slow
def test_gzip_bodies_valid_corrupt_and_a_bomb(agent: AgentProcess) -> None:
    before = metrics(agent)
    body = gzip.compress(orjson.dumps([envelope("task_completed", {"taskId": "gz"})] * 3))
    gz = {"Content-Encoding": "gzip"}
    assert accepted(post(agent, "/v1/events/batch", body, gz)) == (200, 3)
    assert_json_error(post(agent, "/v1/events/batch", body[:-12] + b"not the end!", gz), 400)
    assert_json_error(post(agent, "/v1/events", b"plain, not gzip", gz), 400)
    bomb = gzip.compress(b"[" + b" " * (64 * MAX_BODY) + b"]")          # 64 MB of JSON in ~65 kB
    assert len(bomb) < MAX_BODY
    assert_json_error(post(agent, "/v1/events/batch", bomb, gz), 413)
    after = metrics(agent)
    rejected = "loom_agent_ingest_rejected_total"
    assert value(after, rejected, api="events", reason="malformed") - \
        value(before, rejected, api="events", reason="malformed") == 2
    assert value(after, rejected, api="events", reason="too_large") - \
        value(before, rejected, api="events", reason="too_large") == 1
    assert events_total(after, "task_completed", "task") - events_total(before, "task_completed", "task") == 3
    assert_healthy(agent)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def test_json_nesting_guard_on_tricky_bodies() -> None:
    assert json_nesting_within(b'[[[1]]]', 3) and not json_nesting_within(b'[[[[1]]]]', 3)
    assert json_nesting_within(b'{"a": {"b": [{}]}}', 4) and not json_nesting_within(b'{"a": {"b": [{}]}}', 3)
    # brackets, quotes and backslashes inside strings are not structure
    assert json_nesting_within(b'{"a": "[[[[[[[[\\"[[[{{{", "b": "]]]]]]"}', 1)
    assert json_nesting_within(b'["\\\\", "[", "]", "\\\\\\"]]]"]', 1)
    assert not json_nesting_within(b'{"a": "' + b"]" * 100 + b'", "b": ' + b"[" * 70 + b"]" * 70 + b"}", 64)
    assert json_nesting_within(b'"just a string"', 0) and json_nesting_within(b"42", 0)
    assert json_nesting_within(orjson.dumps([envelope(n) for n in ("resource_search", "feature_used")] * 100), 4)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(alphabet='[]{}"\\ab\u00e9'),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=3), max_leaves=30))
def test_json_nesting_guard_agrees_with_the_parsed_depth(value: Any) -> None:
    body, depth = orjson.dumps(value), _depth(value)
    assert json_nesting_within(body, depth)
    assert depth == 0 or not json_nesting_within(body, depth - 1)


@pytest.mark.slow
def test_a_broken_chunk_encoding_is_400_and_the_agent_keeps_serving(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {})
    head = (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    try:
        response = raw_request(agent, head + b"zz\r\n{}\r\n0\r\n\r\n")       # aiohttp's parser answers
        assert response.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), response
        # headers first, a broken chunk later: aiohttp never finishes the request (no response
        # until the client gives up); the agent must go on serving everyone else meanwhile
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as stuck:
            stuck.sendall(head + b"5\r\n[1,2]\r\n")
            assert post(agent, "/v1/events", envelope("feature_used"))[0] == 200
            stuck.sendall(b"zz\r\n{}\r\n0\r\n\r\n")
            assert post(agent, "/v1/events", envelope("feature_used"))[0] == 200
        assert post(agent, "/v1/events", envelope("feature_used"))[0] == 200
        assert value(metrics(agent), "loom_events_total", category="business", event="feature_used") == 3
        # aiohttp logs its own parser's error with a traceback; none may come from the agent's code
        log = agent.log()
        assert "Traceback" not in log or "BadHttpMessage" in log, log
        assert 'File "' + str(ROOT / "agent") not in log, log
    finally:
        agent.stop()


# --- a bigger body limit: the string itself is too long ------------------------------------------------

@pytest.mark.slow
def test_5mb_string_within_a_bigger_body_limit_is_400_for_the_string(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {"events": {"max_body_bytes": 8 * 1024 * 1024}})
    try:
        error = assert_json_error(post(agent, "/v1/events", BIG_STRING), 400)
        assert [(e["index"], e["field"]) for e in error["errors"]] == [(None, "properties.note")]
        assert "at most 4096 characters" in error["errors"][0]["message"]
        assert_json_error(post(agent, "/v1/events", BIG_STRING * 2), 413)
        after = metrics(agent)
        assert value(after, "loom_agent_ingest_rejected_total", api="events", reason="invalid") == 1
        assert value(after, "loom_agent_ingest_rejected_total", api="events", reason="too_large") == 1
        assert_healthy(agent)
    finally:
        agent.stop()


# --- API keys -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_api_keys(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {"events": {"api_keys": [KEY, OTHER_KEY]}})
    try:
        body = envelope("feature_used")
        missing = assert_json_error(post(agent, "/v1/events", body), 401)
        assert "API key" in missing["error"]
        assert_json_error(post(agent, "/v1/events/batch", [body]), 401)
        assert_json_error(post(agent, "/v1/events", body, {"Authorization": "Bearer wrong-key-0123456789"}), 403)
        assert_json_error(post(agent, "/v1/events", body, {"X-Loom-Api-Key": KEY[:-1]}), 403)
        assert_json_error(post(agent, "/v1/events", body, {"Authorization": f"Basic {KEY}"}), 401)
        assert post(agent, "/v1/events", body, {"Authorization": f"Bearer {KEY}"})[0] == 200
        assert post(agent, "/v1/events", body, {"authorization": f"bearer {OTHER_KEY}"})[0] == 200
        assert post(agent, "/v1/events/batch", [body], {"X-Loom-Api-Key": OTHER_KEY})[0] == 200
        # header bytes that are not UTF-8 are a wrong key, not a crash
        raw_body = orjson.dumps(body)
        for header in (b"X-Loom-Api-Key: \xff\xfe\xc3\x28", b"Authorization: Bearer \xff\xfe"):
            response = raw_request(agent, b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header +
                                   b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                   b"Content-Length: " + str(len(raw_body)).encode() + b"\r\n\r\n" + raw_body)
            assert response.startswith(b"HTTP/1.1 403"), response
        # PostHog: the body's api_key (or token), else the headers
        capture = {"event": "$pageview", "distinct_id": "d1", "properties": {}}
        assert_json_error(post(agent, "/capture", capture), 401)
        assert_json_error(post(agent, "/capture", {**capture, "api_key": "phc_not_a_configured_key"}), 403)
        assert post(agent, "/capture", {**capture, "api_key": KEY})[0] == 200
        assert post(agent, "/capture", {**capture, "properties": {"token": OTHER_KEY}})[0] == 200
        assert post(agent, "/capture", capture, {"Authorization": f"Bearer {KEY}"})[0] == 200
        assert_json_error(post(agent, "/batch", {"batch": [capture]}), 401)
        assert_json_error(post(agent, "/batch", {"api_key": "nope-nope-nope-nope", "batch": [capture]}), 403)
        assert post(agent, "/batch", {"api_key": OTHER_KEY, "batch": [capture, capture]})[0] == 200
        after = metrics(agent)
        assert value(after, "loom_agent_ingest_rejected_total", api="events", reason="auth") == 7
        assert value(after, "loom_agent_ingest_rejected_total", api="posthog", reason="auth") == 4
        assert value(after, "loom_events_total", category="business", event="feature_used") == 3
        assert value(after, "loom_events_total", category="posthog", event="$pageview") == 5
        assert "Traceback" not in agent.log(), agent.log()
    finally:
        agent.stop()


@pytest.mark.slow
def test_api_keys_from_the_environment(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {}, env={"LOOM_AGENT_INGEST_API_KEYS": f"{KEY}, {OTHER_KEY}"})
    try:
        assert post(agent, "/v1/events", envelope("feature_used"))[0] == 401
        assert post(agent, "/v1/events", envelope("feature_used"), {"X-Loom-Api-Key": OTHER_KEY})[0] == 200
    finally:
        agent.stop()


# --- mapping rules through the config file ------------------------------------------------------------

@pytest.mark.slow
def test_mapping_rules_from_the_config_file(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {"events": {"mappings": [
        {"match": "debug_*", "action": "drop"},
        {"match": "checkout_*", "action": "observe", "name": "loom_checkout_value", "value": "cart_value",
         "buckets": [10, 100], "labels": {"step": "step"}}]}})
    try:
        batch = [envelope("checkout_done", {"cartValue": 50, "step": "pay"}), envelope("debug_ping", {})]
        assert post(agent, "/v1/events/batch", batch)[2]["accepted"] == 2
        after = metrics(agent)
        assert value(after, "loom_checkout_value_bucket", step="pay", le="10.0") == 0
        assert value(after, "loom_checkout_value_bucket", step="pay", le="100.0") == 1
        assert value(after, "loom_checkout_value_sum", step="pay") == 50
        assert value(after, "loom_agent_events_dropped_total", reason="mapping_drop") == 1
        assert value(after, "loom_events_total", category="custom", event="debug_ping") == 0
    finally:
        agent.stop()


@pytest.mark.slow
def test_a_reload_with_a_colliding_rule_is_rejected_and_the_running_rules_stay(tmp_path: Path) -> None:
    config: dict[str, Any] = {"events": {"mappings": [{"match": "video_*", "name": "loom_video_events"}]}}
    agent = AgentProcess(tmp_path, config)
    try:
        assert post(agent, "/v1/events", envelope("video_played", {}))[0] == 200
        agent.write_config({"events": {"mappings": [
            {"match": "audio_*", "name": "loom_audio_events"},
            {"match": "x_*", "name": "loom_cta_clicks", "labels": {"page": "page"}}]}})
        status, _, body = post(agent, "/-/reload", b"")
        assert status == 400 and "loom_cta_clicks" in json.dumps(body), body
        assert post(agent, "/v1/events", envelope("video_played", {}))[0] == 200
        after = metrics(agent)
        assert value(after, "loom_video_events_total") == 2
        assert not [key for key in after if key[0].startswith("loom_audio_events")]
    finally:
        agent.stop()
