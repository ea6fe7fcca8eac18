"""The PostHog endpoints (agent/api/posthog.py) over real HTTP on 127.0.0.1 on the real app: every path
the SDKs call (with and without the slash, their query parameters), every body encoding and shape,
hostile bodies (a clear 4xx, never a 500), clock-skew correction, CORS, remote config, the `posthog:`
block. The real SDKs are tests/test_posthog_sdks.py and tests/test_posthog_js.py."""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from agent.config.node import ConfigError
from agent.posthog.skew import correct, sent_at_of
from tests.support.agent_app import agent_config

pytest_plugins = ["tests.support.store_fixtures"]

KEY = "phc_posthog_endpoints_0123456789"
ORIGIN = "http://127.0.0.1:5173"
CONFIG: dict[str, Any] = {"events": {"api_keys": [KEY]}, "posthog": {"allowed_origins": [ORIGIN]}}


def event(name: str = "cta_click", **extra: Any) -> dict[str, Any]:
    return {"event": name, "distinct_id": "u-1", "uuid": str(uuid.uuid4()),
            "properties": {"token": KEY, "ctaId": "ph", "$lib": "web"}, **extra}


def stored(store, run) -> list[tuple]:
    return run(store.fetch("SELECT name, event_id, ts FROM events ORDER BY id"))


def post(agent, path: str, body: bytes, content_type: str = "text/plain", **headers: str):
    return agent.post(path, data=body, headers={"Content-Type": content_type, **headers})


def test_every_path_and_query_the_sdks_use(sqlite_store, run, agent_server):
    agent = agent_server(CONFIG, store=sqlite_store)
    paths = [f"{base}{slash}" for base in ("/e", "/i/v0/e", "/capture", "/batch", "/track") for slash in ("", "/")]
    for path in paths:
        query = f"?ver=1.449.2&retry_count=1&_={int(time.time() * 1000)}&ip=1"
        answer = post(agent, path + query, orjson.dumps({"api_key": KEY, "batch": [event()]}))
        assert (answer.status, answer.body) == (200, {"status": 1}), path
    assert len(stored(sqlite_store, run)) == len(paths)


def test_bodies_in_every_encoding_and_shape(sqlite_store, run, agent_server):
    agent = agent_server(CONFIG, store=sqlite_store)
    one = event()
    batch = [event(), event()]
    form = b"data=" + quote(base64.b64encode(orjson.dumps(batch)).decode()).encode()
    cases = [
        ("/e/", gzip.compress(orjson.dumps(batch)), "text/plain"),                       # posthog-js >= 1.398.2
        ("/e/?compression=gzip-js", gzip.compress(orjson.dumps(batch)), "text/plain"),
        ("/e/", form, "application/x-www-form-urlencoded"),                            # sendBeacon
        ("/e/?compression=base64", form, "text/plain"),
        ("/batch/", orjson.dumps({"api_key": KEY, "batch": batch, "sent_at": None}), "application/json"),
        ("/capture/", orjson.dumps(one), "application/json"),
        ("/capture/", orjson.dumps({"data": batch}), "application/json"),
        ("/capture/", orjson.dumps({"data": orjson.dumps(one).decode()}), "application/json"),
    ]
    for path, body, content_type in cases:
        answer = post(agent, path, body, content_type)
        assert answer.status == 200, (path, content_type, answer.body)
    answer = post(agent, "/batch/", gzip.compress(orjson.dumps({"api_key": KEY, "batch": batch})),
                  "application/json", **{"Content-Encoding": "gzip"})
    assert answer.status == 200, answer.body
    assert len(stored(sqlite_store, run)) == 3         # every body was read; the same uuids stored once


def test_hostile_bodies_are_clear_4xx_never_500(sqlite_store, run, agent_server):
    agent = agent_server(CONFIG, store=sqlite_store)
    bomb = gzip.compress(b"[" + b" " * 60_000_000 + b"]")
    cases = [
        (b"\x1f\x8bnot gzip at all", "text/plain", "", 400, "invalid gzip body"),
        (gzip.compress(orjson.dumps([event()]))[:-12], "text/plain", "", 400, "invalid gzip body"),
        (b"plain text", "text/plain", "?compression=gzip-js", 400, "invalid gzip body"),
        (b"data=%%%not-base64!!", "application/x-www-form-urlencoded", "", 400, "not base64"),
        (b"data=" + b"A" * 5, "application/x-www-form-urlencoded", "", 400, "not base64"),
        (bomb, "text/plain", "", 413, "larger than"),
        (b"[]", "application/json", "", 400, "must not be empty"),
        (orjson.dumps({"data": 5}), "application/json", "", 400, "data:"),
        (orjson.dumps({"api_key": KEY, "batch": [event()], "sent_at": "yesterday"}), "application/json", "", 400,
         "sent_at"),
    ]
    for body, content_type, query, status, message in cases:
        answer = post(agent, "/e/" + query, body, content_type)
        assert answer.status == status and message in str(answer.body), (body[:30], answer.status, answer.body)
    assert stored(sqlite_store, run) == []


def test_a_valid_batch_is_never_lost_to_clock_skew(sqlite_store, run, agent_server):
    agent = agent_server(CONFIG, store=sqlite_store)
    now = time.time()
    # a device clock a year behind: its timestamps and sent_at agree, the events happened 2 s ago
    past = now - 365 * 86400
    stamps = [time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(past - 2)),
              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(past))]
    body = {"api_key": KEY, "sent_at": stamps[1], "batch": [event(timestamp=stamps[0])]}
    assert post(agent, "/batch/", orjson.dumps(body)).status == 200
    # a clock a year ahead, posthog-js's ?_= send time instead of sent_at
    future = now + 365 * 86400
    late = [event(timestamp=future - 5)]
    assert post(agent, f"/e/?_={int(future * 1000)}", gzip.compress(orjson.dumps(late))).status == 200
    # a timestamp after sent_at (the client contradicts itself): clamped to the receive time
    ahead = {"api_key": KEY, "sent_at": now - 3600, "batch": [event(timestamp=now)]}
    assert post(agent, "/batch/", orjson.dumps(ahead)).status == 200
    times = [ts for _, _, ts in stored(sqlite_store, run)]
    assert len(times) == 3
    assert abs(times[0] - (now - 2)) < 5 and abs(times[1] - (now - 5)) < 5 and abs(times[2] - now) < 5


def test_the_skew_functions() -> None:
    items = [{"timestamp": 100.0}, {"timestamp": 100.0, "properties": {"$ignore_sent_at": True}}, {"offset": 5}]
    assert correct(items, sent_at=110.0, now=1000.0, max_future_skew=300) == 0
    assert items == [{"timestamp": 990.0}, {"timestamp": 100.0, "properties": {"$ignore_sent_at": True}},
                     {"offset": 5}]
    assert correct([{"timestamp": 2000.0}], sent_at=10.0, now=1000.0, max_future_skew=300) == 1
    assert sent_at_of(None, "1700000000000") == 1.7e9 and sent_at_of(None, "x") is None
    assert sent_at_of("2026-01-01T00:00:00Z", None) == 1767225600.0


def test_engage_sets_traits_and_v1_answers_per_event(sqlite_store, run, agent_server):
    agent = agent_server(CONFIG, store=sqlite_store)
    engage = {"$token": KEY, "$distinct_id": "u-engage", "$set": {"plan": "pro"}}
    answer = post(agent, "/engage/", orjson.dumps(engage), "application/json")
    assert answer.status == 200, answer.body
    assert run(sqlite_store.fetch("SELECT count(*) FROM users")) == [(1,)]
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    v1 = {"created_at": "2026-01-01T00:00:00Z", "batch": [
        {"event": "cta_click", "uuid": ids[0], "distinct_id": "u-v1", "timestamp": time.time() - 1,
         "session_id": "s-1", "options": {}, "properties": {"ctaId": "v1"}},
        {"event": "cta_click", "uuid": ids[1], "distinct_id": "u-v1", "timestamp": time.time() - 1,
         "options": {"disable_skew_correction": True}, "properties": {"ctaId": "v1"}}]}
    headers = {"Authorization": f"Bearer {KEY}", "PostHog-Sdk-Info": "posthog-python/7.91.1"}
    answer = agent.post("/i/v1/analytics/events", data=gzip.compress(orjson.dumps(v1)),
                        headers={**headers, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status == 200 and answer.body == {"results": {i: {"result": "ok"} for i in ids}}
    assert agent.post("/i/v1/analytics/events", data=orjson.dumps(v1)).status == 401
    assert {row[1] for row in stored(sqlite_store, run)} >= set(ids)


def test_cors_preflight_headers_and_refusals(sqlite_store, agent_server):
    agent = agent_server(CONFIG, store=sqlite_store)
    for path in ("/e/", "/i/v0/e/", "/batch", "/i/v1/analytics/events", "/array/phc_x/config"):
        answer = agent.request("OPTIONS", path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert answer.status == 200, path
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Access-Control-Allow-Credentials" not in answer.headers
        refused = agent.request("OPTIONS", path, headers={"Origin": "https://evil.example"})
        assert refused.status == 403 and "posthog.allowed_origins" in refused.body["error"]
    answer = post(agent, "/e/", gzip.compress(orjson.dumps([event()])), Origin=ORIGIN)
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    answer = post(agent, "/e/", b"{bad", Origin=ORIGIN)          # refusals carry CORS headers too
    assert answer.status == 400 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert post(agent, "/e/", orjson.dumps([event()]), Origin="https://evil.example").status == 403


def test_remote_config_follows_the_posthog_block(agent_server):
    agent = agent_server({"posthog": {"allowed_origins": ["*"], "remote_config": {
        "autocapture": False, "session_recording": True, "console_log_recording": True}}})
    answer = agent.get("/array/phc_abc/config", headers={"Origin": "http://127.0.0.1:1"})
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:1"
    config = answer.body
    assert config["token"] == "phc_abc" and config["supportedCompression"] == ["gzip", "gzip-js"]
    assert config["autocapture_opt_out"] is True and config["hasFeatureFlags"] is False
    assert config["sessionRecording"]["endpoint"] == "/s/"
    assert config["sessionRecording"]["consoleLogRecordingEnabled"] is True
    assert config["capturePerformance"]["web_vitals"] is True
    script = agent.get("/array/phc_abc/config.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("application/javascript")
    assert "window._POSTHOG_REMOTE_CONFIG[\"phc_abc\"]" in script.body
    assert agent.get("/array/bad%20token/config").status == 400


def test_disabled_endpoints_are_404(agent_server):
    agent = agent_server({"posthog": {"enabled": False}})
    assert post(agent, "/e/", orjson.dumps(event())).status == 404
    assert agent.get("/array/phc_abc/config").status == 404


def test_config_errors_name_the_path() -> None:
    with pytest.raises(ConfigError) as info:
        agent_config({"posthog": {"allowed_origins": ["ftp://x", 3], "skew": 1,
                                  "remote_config": {"console_log_recording": True, "autocapture": "yes"}}})
    text = str(info.value)
    for path in ("posthog.allowed_origins[0]", "posthog.allowed_origins[1]", "posthog.skew: unknown key",
                 "posthog.remote_config.console_log_recording", "posthog.remote_config.autocapture"):
        assert path in text, path
