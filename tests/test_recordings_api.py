"""Session recordings over HTTP: posthog-js's /s/ (gzip by its magic bytes, ?compression=gzip-js,
base64 form bodies, with and without the trailing slash, CORS), the admin API (`GET /api/recordings`,
`GET /api/recordings/{sessionId}`), the replay pages, and hostile bodies (gzip that is not gzip, base64
that is not base64, a zip bomb, 10 MB recordings, wrong shapes): a 4xx naming what is wrong, or a
documented acceptance, never a 500."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest

from agent.recordings.ingest import MAX_BODY_BYTES
from agent.recordings.page import render_replay
from tests.test_recordings import T0, batch, compressed_full_snapshot, full_snapshot, meta, mutation, snapshot_event

pytest_plugins = ["tests.support.store_fixtures"]

ADMIN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


# --- HTTP ------------------------------------------------------------------------------------------------

@pytest.fixture
def agent(store, agent_server):
    """The agent on SQLite, and on PostgreSQL in the slow lane."""
    return agent_server({"posthog": {"allowed_origins": ["http://127.0.0.1:9"]}}, store=store, admin_token=ADMIN)


def post(agent, body: bytes, path: str = "/s/", **kwargs: Any):
    return agent.post(path, data=body, headers={"Content-Type": "text/plain", **kwargs.pop("headers", {})}, **kwargs)


def test_posthog_js_gzip_body_without_query_with_and_without_slash_and_query_params(agent):
    body = gzip.compress(orjson.dumps(batch(snapshot_event("s1", [meta(T0), compressed_full_snapshot(T0 + 1)]))))
    assert post(agent, body).status == 200
    answer = post(agent, gzip.compress(orjson.dumps(batch(snapshot_event("s1", [mutation(T0 + 3)])))), "/s",
                  params={"ver": "1.449.2", "compression": "gzip-js", "_": "1800000000000", "retry_count": "1"})
    assert (answer.status, answer.body) == (200, {"status": 1})
    form = b"data=" + base64.b64encode(orjson.dumps(batch(snapshot_event("s1", [mutation(T0 + 4)]))))
    assert agent.post("/s/", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    listed = agent.get("/api/recordings", params={"range": "1d"}, headers=AUTH).body
    (row,) = listed["recordings"]
    assert (row["sessionId"], row["userId"], row["snapshots"]) == ("s1", "user_1", 4)
    assert row["start"] == T0 / 1000 and row["durationSeconds"] == pytest.approx(0.004, abs=1e-6)
    got = agent.get("/api/recordings/s1", headers=AUTH)
    assert got.status == 200 and [e["type"] for e in got.body["events"]] == [4, 2, 3, 3]
    assert got.body["windows"] == ["w1"] and "cv" not in got.body["events"][1]
    metrics = agent.get("/metrics").body
    assert "loom_recordings_sessions_total 1" in metrics and "loom_recordings_snapshots_total 4" in metrics


def test_cors_for_the_allowed_origin_and_refusal_for_another(agent):
    pre = agent.request("OPTIONS", "/s/", headers={"Origin": "http://127.0.0.1:9",
                                                    "Access-Control-Request-Method": "POST"})
    assert pre.status == 200 and pre.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"
    ok = post(agent, orjson.dumps(batch(snapshot_event("s1", [meta(T0)]))), headers={"Origin": "http://127.0.0.1:9"})
    assert ok.status == 200 and ok.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    assert post(agent, b"[]", headers={"Origin": "http://evil.test"}).status == 403


HOSTILE = {
    "magic bytes, not gzip": (b"\x1f\x8b\x08\x00not gzip at all", {}, 400, "gzip"),
    "gzip-js, not gzip": (b"not gzip at all", {"compression": "gzip-js"}, 400, "gzip"),
    "base64, not base64": (b"data=%%%not-base64!!", {}, 400, "base64"),
    "JSON cut short": (b"{\"batch\": [", {}, 400, "JSON"),
    "a number for an event": (b"[1]", {}, 400, "batch[0]"),
    "an item not gzip": (orjson.dumps(batch(snapshot_event("s1", [{"type": 2, "timestamp": T0, "cv": "2024-10",
                                                                   "data": "zz"}]))), {}, 400,
                         "$snapshot_data[0].data"),
    "zip bomb": (gzip.compress(b"[" + b" " * (40 * 1024 * 1024) + b"]"), {}, 413, "larger"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_bodies_are_a_4xx_naming_what_is_wrong(agent, case):
    body, params, status, needle = HOSTILE[case]
    content_type = "application/x-www-form-urlencoded" if body.startswith(b"data=") else "text/plain"
    answer = agent.post("/s/", data=body, params=params, headers={"Content-Type": content_type})
    assert answer.status == status, answer.body
    assert needle in orjson.dumps(answer.body).decode()


def test_a_10_mb_recording_is_accepted_and_stored_compressed(agent):
    text = "lorem ipsum " * (10 * 1024 * 1024 // 12)
    body = orjson.dumps(batch(snapshot_event("big", [meta(T0), full_snapshot(T0 + 1, text)])))
    assert 10 * 1024 * 1024 < len(body) < MAX_BODY_BYTES
    assert post(agent, body).status == 200
    got = agent.get("/api/recordings/big", headers=AUTH).body
    assert len(got["events"]) == 2 and got["bytes"] > 10 * 1024 * 1024
    assert got["storedBytes"] < got["bytes"] // 50          # compressed in the store


@pytest.mark.slow
def test_a_body_past_the_bound_is_413(agent):
    """Slow: after a 413 the agent lingers 10 s reading what the client still sends (agent/api/problems.py)."""
    answer = post(agent, b"[" + b" " * MAX_BODY_BYTES + b"]")
    assert answer.status == 413 and "larger than" in answer.body["error"]


def test_the_admin_api_needs_the_admin_token_and_checks_its_parameters(agent):
    post(agent, orjson.dumps(batch(*[snapshot_event(f"s{i}", [meta(T0 + i * 1000)]) for i in range(5)])))
    assert agent.get("/api/recordings").status == 401
    assert agent.get("/api/recordings/s1", headers={"Authorization": "Bearer wrong"}).status == 403
    first = agent.get("/api/recordings", params={"range": "1d", "limit": "2"}, headers=AUTH).body
    assert [r["sessionId"] for r in first["recordings"]] == ["s4", "s3"]
    second = agent.get("/api/recordings", params={"range": "1d", "limit": "2", "cursor": first["nextCursor"]},
                       headers=AUTH).body
    third = agent.get("/api/recordings", params={"range": "1d", "limit": "2", "cursor": second["nextCursor"]},
                      headers=AUTH).body
    assert [r["sessionId"] for r in second["recordings"] + third["recordings"]] == ["s2", "s1", "s0"]
    assert third["nextCursor"] is None
    window = agent.get("/api/recordings", params={"from": str((T0 + 1500) / 1000), "to": str((T0 + 3500) / 1000)},
                       headers=AUTH).body
    assert [r["sessionId"] for r in window["recordings"]] == ["s3", "s2"]
    for params, field in (({"limit": "0"}, "limit"), ({"cursor": "@@"}, "cursor"), ({"from": "soon"}, "from"),
                          ({"colour": "red"}, "colour")):
        answer = agent.get("/api/recordings", params=params, headers=AUTH)
        assert answer.status == 400 and field in orjson.dumps(answer.body).decode(), params
    assert agent.get("/api/recordings/nope", headers=AUTH).status == 404
    assert agent.get("/api/recordings/s1", params={"windowId": ""}, headers=AUTH).status == 400
    assert agent.get("/api/recordings/" + "x" * 201, headers=AUTH).status == 400


def test_the_replay_page_holds_no_data_and_says_how_to_get_the_player(agent, tmp_path):
    page = agent.get("/replay/s%3Cscript%3E")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page.body.split("<body", 1)[1].split("</main>", 1)[0]
    assert "s&lt;script&gt;" in page.body and page.headers["Cache-Control"] == "no-store"
    missing = render_replay("s1", installed=False)
    assert "npm ci --prefix agent/replay" in missing and "rrweb-player.js" not in missing
    assert agent.get("/replay/player/../../pyproject.toml").status == 404
    assert agent.get("/replay/player/other.js").status == 404
    assert agent.get("/replay").status == 200


def test_with_ingest_keys_the_key_is_checked_before_the_recording_is_read(sqlite_store, agent_server):
    agent = agent_server({"events": {"api_keys": ["ingest-key-0123456789abcdef"]}}, store=sqlite_store)
    keyless = {"batch": [{**snapshot_event("s1", [meta(T0)]), "properties": {
        k: v for k, v in snapshot_event("s1", [meta(T0)])["properties"].items() if k != "token"}}]}
    assert post(agent, orjson.dumps(keyless)).status == 401
    assert post(agent, orjson.dumps({**keyless, "batch": [{"event": "$snapshot"}]})).status == 401   # before the shape
    assert post(agent, orjson.dumps({**keyless, "api_key": "wrong-key-0123456789"})).status == 403
    assert post(agent, orjson.dumps({**keyless, "api_key": "ingest-key-0123456789abcdef"})).status == 200
    bearer = {"Authorization": "Bearer ingest-key-0123456789abcdef"}
    assert post(agent, orjson.dumps(keyless), headers=bearer).status == 200

