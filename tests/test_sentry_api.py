"""The Sentry endpoints (agent/api/sentry.py) over real HTTP on 127.0.0.1: POST /api/{project_id}/envelope/
and /store/ on the real app (tests/support/agent_app.py), then the real sentry-sdk from PyPI against a real
agent process, configured with nothing but a DSN.

What is checked: the `sentry:` block (path-named errors, `${ENV}` keys, check-config's exit 2); auth (no key
401, a wrong key or project 403, no project configured 403 saying so); CORS (preflight and POST, an allowed
and a refused origin); an envelope's event stored and grouped while an unknown item type and a session are
skipped and counted; a truncated envelope a 400 naming the field; zip bombs a 413; a store that cannot
commit a 429 with Retry-After and X-Sentry-Rate-Limits; the legacy /store/ body; the SDK's errors (a
chained cause, the same exception twice -> one issue counted 2) and message in GET /api/errors and
loom_errors_total, over Brotli as sentry-python sends it when `brotli` is installed.
"""

from __future__ import annotations

import gzip
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.__main__ import main
from agent.api.keys import EVENT_STORE, METRICS, RELOADER, SENTRY
from agent.app.root import build_app
from agent.config.load import load_config, parse_config
from agent.config.node import ConfigError
from agent.sentry.config import DEFAULT_MAX_ENVELOPE_BYTES
from agent.store.errors import StoreUnavailable
from tests.support.agent_app import agent_config
from tests.support.procs import AgentProcess, http_get
from tests.test_openapi import component, errors_of

pytest_plugins = ["tests.support.store_fixtures"]

KEY = "0123456789abcdef0123456789abcdef"
ADMIN = "admin-token-sentry-0123456789abcdef"
ORIGIN = "https://app.example.com"
EVENT_ID = "fc6d8c0c43fc4630ad850ee518f1b9d0"
RELEASE = "loom-web@2.3.1"
CONFIG: dict[str, Any] = {"sentry": {"projects": [{"id": 1, "keys": [KEY]}], "allowed_origins": [ORIGIN]}}
AUTH = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=hand-made/1.0",
        "Content-Type": "application/x-sentry-envelope"}
ENVELOPE = "/api/1/envelope/"


def sentry_event(value: str = "charge failed for order 42", lineno: int = 10, **fields: Any) -> dict[str, Any]:
    return {"event_id": EVENT_ID, "level": "error", "platform": "python", "release": RELEASE,
            "environment": "production", "tags": {"feature": "payment"}, "user": {"id": "user-42"},
            "exception": {"values": [
                {"type": "ZeroDivisionError", "value": "division by zero",
                 "stacktrace": {"frames": [{"filename": "app/pay.py", "function": "divide", "lineno": 3,
                                            "in_app": True, "context_line": "    return a / b"}]}},
                {"type": "ValueError", "value": value,
                 "stacktrace": {"frames": [{"filename": "app/pay.py", "function": "charge", "lineno": lineno,
                                            "in_app": True, "context_line": "    raise ValueError(...)"}]}}]},
            **fields}


def envelope(*items: tuple[str, Any], header: dict[str, Any] | None = None) -> bytes:
    lines = [orjson.dumps({"event_id": EVENT_ID, "sent_at": "2026-01-01T00:00:00Z"} if header is None else header)]
    for kind, payload in items:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        lines += [orjson.dumps({"type": kind, "length": len(data)}), data]
    return b"\n".join(lines) + b"\n"


def items_counted(agent: Any) -> dict[tuple[str, ...], float]:
    family = agent.app[METRICS].get("loom_agent_sentry_items")
    return {key: value for key, value in family.series.items() if value}


# --- the sentry: block ------------------------------------------------------------------------------

def test_the_block_defaults_and_reads_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_KEY_TEST", "env-key")
    assert agent_config().sentry.projects == ()
    assert agent_config().sentry.max_envelope_bytes == DEFAULT_MAX_ENVELOPE_BYTES == 20 * 1024 * 1024
    config = parse_config("sentry:\n  projects: [{id: 7, keys: ['${SENTRY_KEY_TEST}', other-key]}]\n"
                          "  allowed_origins: ['https://App.example.com/']\n", environ={})
    assert [(p.id, p.keys) for p in config.sentry.projects] == [("7", ("env-key", "other-key"))]
    assert config.sentry.allowed_origins == ("https://app.example.com",)
    assert config.sentry.origin_allowed("https://app.example.com")


def test_bad_settings_are_named_by_their_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigError) as raised:
        parse_config("sentry:\n  projects:\n    - {id: 1, keys: ['bad key!'], dsn: x}\n    - {id: one, keys: [k]}\n"
                     "    - {id: 3, keys: ['${SENTRY_UNSET_VARIABLE}']}\n    - {id: 4}\n"
                     "  allowed_origins: ['https://a.example.com/path']\n  max_envelope_bytes: 10\n  colour: red\n")
    errors = "\n".join(raised.value.errors)
    for expected in ("sentry.projects[0].keys[0]: must be a Sentry public key", "sentry.projects[0].dsn: unknown key",
                     "sentry.projects[1].id: must be an integer", "sentry.projects[2].keys[0].value: environment "
                     "variable SENTRY_UNSET_VARIABLE is not set", "sentry.projects[3].keys: is required",
                     "sentry.allowed_origins[0]: must be an origin", "sentry.max_envelope_bytes: must be at least",
                     "sentry.colour: unknown key"):
        assert expected in errors, (expected, errors)


def test_check_config_exits_2_naming_a_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("targets: []\nsentry:\n  projects: [{id: 1, key: [abc]}]\n")
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    assert "sentry.projects[0].key: unknown key" in out.out + out.err


def test_a_reload_applies_new_keys_and_origins(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("targets: []\nstore: {driver: none}\n")
    app = build_app(load_config(str(path)))
    assert app[SENTRY].keys == {}
    path.write_text(f"targets: []\nstore: {{driver: none}}\nsentry: {{projects: [{{id: 1, keys: [{KEY}]}}], "
                    f"allowed_origins: ['{ORIGIN}']}}\n")
    assert run(app[RELOADER].reload()) is True
    assert app[SENTRY].keys == {"1": frozenset({KEY})} and app[SENTRY].config.origin_allowed(ORIGIN)


# --- auth --------------------------------------------------------------------------------------------

def test_auth_missing_401_wrong_key_or_project_403(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    body = envelope(("event", sentry_event()))
    plain = {"Content-Type": "application/x-sentry-envelope"}
    status, answer, _ = agent.post(ENVELOPE, data=body, headers=plain)
    assert status == 401 and "no Sentry key" in answer["error"]
    other = {**plain, "X-Sentry-Auth": "Sentry sentry_key=ffffffffffffffffffffffffffffffff, sentry_version=7"}
    status, answer, _ = agent.post(ENVELOPE, data=body, headers=other)
    assert status == 403 and answer["error"] == "unknown Sentry key for this project"
    assert agent.post("/api/2/envelope/", data=body, headers=AUTH).status == 403
    dsn_of_2 = envelope(("event", sentry_event()), header={"dsn": f"http://{KEY}@127.0.0.1/2"})
    assert agent.post(ENVELOPE, data=dsn_of_2, headers=AUTH).status == 403
    status, answer, _ = agent.post(ENVELOPE, data=body, params={"sentry_key": KEY}, headers=plain)
    assert (status, answer) == (200, {"id": EVENT_ID})
    rejected = agent.app[METRICS].get("loom_agent_ingest_rejected").series
    assert rejected[("sentry", "auth")] == 4


def test_without_projects_every_envelope_is_403_saying_to_configure_them(agent_server: Any) -> None:
    agent = agent_server()
    status, answer, _ = agent.post(ENVELOPE, data=envelope(), headers=AUTH)
    assert status == 403 and "sentry.projects" in answer["error"]


def test_disabled_endpoints_are_404(agent_server: Any) -> None:
    agent = agent_server({"sentry": {**CONFIG["sentry"], "enabled": False}})
    assert agent.post(ENVELOPE, data=envelope(), headers=AUTH).status == 404
    assert agent.request("OPTIONS", ENVELOPE, headers={"Origin": ORIGIN}).status == 404


# --- CORS --------------------------------------------------------------------------------------------

def test_cors_preflight_and_post_for_an_allowed_origin_and_a_refused_one(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, sentry-trace"}
    status, _, headers = agent.request("OPTIONS", ENVELOPE, headers={"Origin": ORIGIN, **ask})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-sentry-auth", "sentry-trace", "baggage"} <= allowed
    status, _, headers = agent.request("OPTIONS", "/api/1/store", headers={"Origin": "https://evil.example", **ask})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers

    # a browser SDK: the key in the query, text/plain, no preflight
    browser = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"}
    status, answer, headers = agent.post(ENVELOPE, data=envelope(("event", sentry_event())), headers=browser,
                                         params={"sentry_key": KEY, "sentry_version": "7"})
    assert (status, answer) == (200, {"id": EVENT_ID})
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-sentry-rate-limits" in headers["Access-Control-Expose-Headers"]
    status, _, headers = agent.post(ENVELOPE, data=b"\n", headers=browser, params={"sentry_key": KEY})
    assert status == 400 and headers["Access-Control-Allow-Origin"] == ORIGIN      # refusals carry them too
    status, answer, headers = agent.post(ENVELOPE, data=envelope(), params={"sentry_key": KEY},
                                         headers={**browser, "Origin": "https://evil.example"})
    assert status == 403 and "sentry.allowed_origins" in answer["error"]
    assert "Access-Control-Allow-Origin" not in headers


# --- envelopes ---------------------------------------------------------------------------------------

def test_an_event_is_stored_while_unknown_items_are_skipped_and_counted(
        agent_server: Any, sqlite_store: Any) -> None:
    agent = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)
    session = {"sid": str(uuid.uuid4()), "status": "ok", "started": "2026-01-01T00:00:00Z",
               "attrs": {"release": RELEASE}}
    body = envelope(("event", sentry_event()), ("mystery_type", b"\x00\x01 not json"), ("session", session))
    status, answer, _ = agent.post(ENVELOPE, data=body, headers=AUTH)
    assert (status, answer) == (200, {"id": EVENT_ID})
    assert items_counted(agent) == {("event", "accepted"): 1, ("other", "skipped"): 1, ("session", "accepted"): 1}
    status, issues, _ = agent.get("/api/errors", params={"range": "1h"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200 and issues["totalIssues"] == 1
    issue = issues["issues"][0]
    assert (issue["type"], issue["count"], issue["latest"]["release"]) == ("ValueError", 1, RELEASE)
    assert issue["latest"]["frames"][-1]["function"] == "charge"
    assert agent.app[METRICS].get("loom_errors").series == {("payment", "ValueError", RELEASE): 1}
    # the same event id again: acknowledged, never stored or counted twice
    assert agent.post(ENVELOPE, data=body, headers=AUTH).status == 200
    assert agent.app[METRICS].get("loom_errors").series == {("payment", "ValueError", RELEASE): 1}


def test_the_issue_keeps_the_chain_source_lines_breadcrumbs_and_request_scrubbed(
        agent_server: Any, sqlite_store: Any) -> None:
    agent = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)
    event = sentry_event(
        breadcrumbs={"values": [{"timestamp": 1767261500.5, "category": "http", "message": "POST /pay",
                                 "data": {"url": "/pay", "api_token": "tok-123", "to": "sam@example.com"}}]},
        request={"method": "post", "url": "https://shop.example/pay?card=4111111111111111",
                 "headers": {"Cookie": "session=abc", "Authorization": "Bearer t", "Accept": "text/html"},
                 "data": {"card": "4111111111111111"}, "cookies": {"session": "abc"}})
    raising = event["exception"]["values"][1]
    raising["mechanism"] = {"type": "generic", "handled": False}
    raising["stacktrace"]["frames"][0].update(pre_context=["def charge(order):"], post_context=["", "# end"],
                                               vars={"order": 42, "password": "hunter2", "email": "sam@example.com"})
    assert agent.post(ENVELOPE, data=envelope(("event", event)), headers=AUTH).status == 200
    status, issues, _ = agent.get("/api/errors", params={"range": "1h"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200
    latest = issues["issues"][0]["latest"]
    assert [(c["type"], c["value"], c["frames"][0]["contextLine"]) for c in latest["causes"]] == [
        ("ZeroDivisionError", "division by zero", "    return a / b")]
    assert latest["mechanism"] == {"type": "generic", "handled": False}
    frame = latest["frames"][-1]
    assert (frame["preContext"], frame["contextLine"], frame["postContext"]) == (
        ["def charge(order):"], "    raise ValueError(...)", ["", "# end"])
    assert frame["vars"]["order"] == 42 and "password" not in frame["vars"]
    assert frame["vars"]["email"].startswith("email:")                   # pseudonymised like a property
    assert latest["request"] == {"method": "POST", "url": "https://shop.example/pay",
                                 "headers": {"Accept": "text/html"}}
    crumb = latest["breadcrumbs"][0]
    assert (crumb["message"], crumb["data"]["url"]) == ("POST /pay", "/pay") and "api_token" not in crumb["data"]
    assert errors_of(component("ErrorSample"), latest) == []              # as openapi.json documents it
    stored = orjson.dumps(latest).decode()
    for secret in ("hunter2", "tok-123", "4111111111111111", "session=abc", "Bearer t", "sam@example.com"):
        assert secret not in stored


def test_what_a_sentry_event_stored_is_exported_and_erased_with_its_user(agent_server: Any,
                                                                        sqlite_store: Any) -> None:
    agent = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    event = sentry_event(breadcrumbs=[{"message": "opened /pay", "category": "navigation"}])
    other = sentry_event(event_id=uuid.uuid4().hex, user={"id": "user-7"})
    assert agent.post(ENVELOPE, data=envelope(("event", event), ("event", other)), headers=AUTH).status == 200
    status, export, _ = agent.get("/api/analytics/export", params={"userId": "user-42"}, headers=admin)
    assert status == 200
    (row,) = export["tables"]["errors"]
    assert row["sample"]["breadcrumbs"][0]["message"] == "opened /pay" and row["sample"]["causes"]
    status, erased, _ = agent.request("DELETE", "/api/analytics/user/user-42", headers=admin)
    assert status == 200 and erased["deleted"]["errors"] == 1
    status, issues, _ = agent.get("/api/errors", params={"range": "1h"}, headers=admin)
    assert [issue["count"] for issue in issues["issues"]] == [1]          # the other user's error stays


def test_attachments_replays_profiles_and_feedback_are_acknowledged_and_counted(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    counted = ("attachment", "replay_event", "replay_recording", "profile", "profile_chunk", "feedback",
               "user_report")
    body = envelope(("event", sentry_event()), *[(kind, b'{"opaque": true}') for kind in counted])
    status, answer, _ = agent.post(ENVELOPE, data=body, headers=AUTH)
    assert (status, answer) == (200, {"id": EVENT_ID})
    assert items_counted(agent) == {("event", "accepted"): 1, **{(kind, "accepted"): 1 for kind in counted}}


def test_a_message_event_and_an_oversized_item_beside_it(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    message = {"event_id": uuid.uuid4().hex, "level": "warning", "logentry": {"formatted": "nightly export finished"}}
    body = envelope(("event", message), ("transaction", b"{" + b" " * (1024 * 1024) + b"}"))
    assert agent.post(ENVELOPE, data=body, headers=AUTH).status == 200
    assert items_counted(agent) == {("event", "accepted"): 1, ("transaction", "rejected"): 1}
    assert agent.app[METRICS].get("loom_errors").series == {("unknown", "Message", "unknown"): 1}


def test_a_truncated_envelope_is_400_naming_the_field(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    body = envelope(("event", sentry_event()))
    status, answer, _ = agent.post(ENVELOPE, data=body[:-40], headers=AUTH)
    assert status == 400 and answer["errors"][0]["field"] == "items[0].length", answer
    status, answer, _ = agent.post(ENVELOPE, data=b"not json\n", headers=AUTH)
    assert status == 400 and answer["errors"][0]["field"] == "header"
    assert agent.app[METRICS].get("loom_agent_ingest_rejected").series[("sentry", "malformed")] == 2


def test_invalid_events_are_400_naming_the_field_unless_a_sibling_is_valid(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    bad = sentry_event()
    bad["exception"]["values"][1]["stacktrace"]["frames"][0]["lineno"] = "ten"
    status, answer, _ = agent.post(ENVELOPE, data=envelope(("event", bad)), headers=AUTH)
    assert status == 400
    assert answer["errors"] == [{"index": 0, "field": "exception.values[1].stacktrace.frames[0].lineno",
                                 "message": "must be an integer, got string"}]
    good = sentry_event(event_id=uuid.uuid4().hex)
    assert agent.post(ENVELOPE, data=envelope(("event", bad), ("event", good)), headers=AUTH).status == 200
    assert items_counted(agent) == {("event", "rejected"): 2, ("event", "accepted"): 1}


def test_an_invalid_event_does_not_cost_its_sibling_items(agent_server: Any) -> None:
    """The SDK drops an envelope answered 400: its logs and reports must not go with one bad event."""
    agent = agent_server(CONFIG)
    bad = sentry_event()
    bad["exception"]["values"][1]["stacktrace"]["frames"][0]["lineno"] = "ten"
    logs = {"items": [{"level": "info", "body": "checkout started"}]}
    status, _, _ = agent.post(ENVELOPE, data=envelope(("event", bad), ("log", logs)), headers=AUTH)
    assert status == 200
    assert items_counted(agent) == {("event", "rejected"): 1, ("log", "accepted"): 1}


def test_a_client_report_with_unhashable_labels_counts_as_other_and_the_event_answers_200(
        agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    report = {"discarded_events": [{"reason": ["x"], "category": {"a": 1}, "quantity": 1}]}
    status, _, _ = agent.post(ENVELOPE, data=envelope(("event", sentry_event()), ("client_report", report)),
                              headers=AUTH)
    assert status == 200
    assert items_counted(agent) == {("event", "accepted"): 1, ("client_report", "accepted"): 1}
    assert series(agent, "loom_agent_sdk_discarded_events") == {("other", "other"): 1}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_a_zip_bomb_is_413(agent_server: Any, encoding: str) -> None:
    brotli = pytest.importorskip("brotli")
    zstandard = pytest.importorskip("zstandard")
    limit = 64 * 1024
    agent = agent_server({"sentry": {**CONFIG["sentry"], "max_envelope_bytes": limit}})
    inflated = b'{"event_id":"' + EVENT_ID.encode() + b'"}\n' + b" " * (8 * 1024 * 1024)
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
                "zstd": zstandard.ZstdCompressor().compress}[encoding]
    bomb = compress(inflated)
    assert len(bomb) < 100 * 1024
    status, answer, _ = agent.post(ENVELOPE, data=bomb, headers={**AUTH, "Content-Encoding": encoding})
    assert status == 413 and "larger than" in answer["error"]
    small = compress(envelope(("event", sentry_event())))
    assert agent.post(ENVELOPE, data=small, headers={**AUTH, "Content-Encoding": encoding}).status == 200


def test_a_chain_of_codings_aiohttp_leaves_is_undone_by_the_agent(agent_server: Any) -> None:
    brotli = pytest.importorskip("brotli")
    agent = agent_server(CONFIG)
    body = brotli.compress(gzip.compress(envelope(("event", sentry_event()))))
    status, answer, _ = agent.post(ENVELOPE, data=body, headers={**AUTH, "Content-Encoding": "gzip, br"})
    assert (status, answer) == (200, {"id": EVENT_ID})
    status, answer, _ = agent.post(ENVELOPE, data=gzip.compress(envelope()),
                                   headers={**AUTH, "Content-Encoding": "x-gzip"})
    assert (status, answer) == (200, {"id": EVENT_ID})
    assert agent.post(ENVELOPE, data=b"{}", headers={**AUTH, "Content-Encoding": "compress"}).status == 415


class FailingStore:
    dialect = "sqlite"

    async def execute(self, statements: Any) -> Any:
        raise StoreUnavailable("database is locked")

    async def fetch(self, sql: str, params: Any = ()) -> Any:
        raise StoreUnavailable("database is locked")


def test_a_store_that_cannot_commit_is_429_with_the_backoff_headers(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    agent.app[EVENT_STORE].store = FailingStore()
    status, answer, headers = agent.post(ENVELOPE, data=envelope(("event", sentry_event())), headers=AUTH)
    assert status == 429 and headers["Retry-After"] == "5", answer
    assert headers["X-Sentry-Rate-Limits"] == "5:error:organization:store_unavailable"
    assert "locked" not in answer["error"]
    assert agent.app[METRICS].get("loom_errors").series == {}
    assert items_counted(agent) == {}
    status, _, headers = agent.post("/api/1/store/", json=sentry_event(),
                                    headers={"X-Sentry-Auth": AUTH["X-Sentry-Auth"]})
    assert status == 429 and "X-Sentry-Rate-Limits" in headers


def test_the_legacy_store_endpoint(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    auth = {"X-Sentry-Auth": AUTH["X-Sentry-Auth"]}
    for path in ("/api/1/store/", "/api/1/store"):
        event = sentry_event(event_id=str(uuid.uuid4()))
        status, answer, _ = agent.post(path, json=event, headers=auth)
        assert (status, answer) == (200, {"id": uuid.UUID(event["event_id"]).hex})
    status, answer, _ = agent.post("/api/1/store/", data=gzip.compress(orjson.dumps(sentry_event())),
                                   headers={**auth, "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert status == 200
    status, answer, _ = agent.post("/api/1/store/", data=b"[1]", headers=auth)
    assert status == 400 and answer["errors"][0]["field"] == "body"
    assert agent.post("/api/1/store/", json=sentry_event()).status == 401
    assert agent.post("/api/1/envelope", data=envelope(("event", sentry_event())), headers=AUTH).status == 200
    assert agent.app[METRICS].get("loom_agent_sentry_items").series[("event", "accepted")] == 4


# --- client reports, logs and metrics ----------------------------------------------------------------

def series(agent: Any, family: str) -> dict[tuple[str, ...], float]:
    return {key: value for key, value in agent.app[METRICS].get(family).series.items() if value}


def test_a_client_report_counts_what_the_sdk_dropped_with_bounded_labels(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    report = {"timestamp": 1767225600, "discarded_events": [
        {"reason": "queue_overflow", "category": "error", "quantity": 3},
        {"reason": "sample_rate", "category": "transaction", "quantity": 0},
        {"reason": "queue_overflow", "category": "error", "quantity": 2},
        {"reason": "made-up-reason", "category": "a-category-of-mine", "quantity": 1},
        {"reason": "before_send", "category": "log_item", "quantity": 4}]}
    assert agent.post(ENVELOPE, data=envelope(("client_report", report)), headers=AUTH).status == 200
    assert series(agent, "loom_agent_sdk_discarded_events") == {
        ("queue_overflow", "error"): 5, ("other", "other"): 1, ("before_send", "log_item"): 4}
    bad = [{"discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": -1}]},
           {"discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 1.5}]},
           {"discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": True}]},
           {"discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 2**40}]},
           {"discarded_events": {"reason": "queue_overflow"}}, [1, 2], b"not json"]
    good = {"discarded_events": [{"reason": "network_error", "category": "span", "quantity": 7}]}
    status, answer, _ = agent.post(ENVELOPE, data=envelope(*[("client_report", b) for b in bad],
                                                           ("client_report", good)), headers=AUTH)
    assert (status, answer) == (200, {"id": EVENT_ID})
    assert items_counted(agent) == {("client_report", "accepted"): 2, ("client_report", "rejected"): len(bad)}
    assert series(agent, "loom_agent_sdk_discarded_events")[("network_error", "span")] == 7
    assert series(agent, "loom_agent_sdk_discarded_events")[("queue_overflow", "error")] == 5   # nothing half-counted


def test_logs_are_counted_by_a_bounded_level(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    logs = {"version": 2, "items": [
        {"timestamp": 1767225600.0, "level": "info", "body": "payment p-1 done", "trace_id": "0" * 32,
         "attributes": {"logger.name": {"value": "app.payments", "type": "string"}}},
        {"timestamp": 1767225600.0, "level": "warn", "body": "slow", "attributes": {"logger.name": ["not text"]}},
        {"timestamp": 1767225600.0, "level": "warning", "body": "slow again"},
        {"timestamp": 1767225600.0, "level": "Error", "body": "failed"},
        {"timestamp": 1767225600.0, "level": "loud", "body": "?"}, "not a record"]}
    otel = {"severityText": "fatal", "body": {"stringValue": "down"},
            "attributes": [{"key": "logger.name", "value": {"stringValue": "worker"}}]}
    otel_by_number = {"severityNumber": 5, "body": {"stringValue": "details"}}
    personal = {"items": [{"level": "info", "body": "x", "attributes": {"logger.name": "audit.ada@example.com"}}]}
    body = envelope(("log", logs), ("otel_log", otel), ("otel_log", otel_by_number), ("log", {"items": "no"}),
                    ("log", b"{"), ("log", [1]), ("log", personal))
    assert agent.post(ENVELOPE, data=body, headers=AUTH).status == 200
    counted = series(agent, "loom_agent_sentry_logs")
    (pseudonym,) = [logger for level, logger in counted if logger.startswith("email:")]   # not the address
    assert counted == {
        ("info", "app.payments"): 1, ("warn", "unknown"): 2, ("error", "unknown"): 1, ("other", "unknown"): 2,
        ("fatal", "worker"): 1, ("debug", "unknown"): 1, ("info", pseudonym): 1}
    assert "ada@example.com" not in agent.get("/metrics").body
    assert items_counted(agent) == {("log", "accepted"): 2, ("otel_log", "accepted"): 2, ("log", "rejected"): 3}


def sdk_attributes(**extra: Any) -> dict[str, Any]:
    """What sentry-sdk 2.76 attaches to every metric, plus the metric's own attributes."""
    typed = {key: {"value": value, "type": "string" if isinstance(value, str) else "integer"}
             for key, value in extra.items()}
    return {**typed, "sentry.sdk.name": {"value": "sentry.python", "type": "string"},
            "sentry.release": {"value": RELEASE, "type": "string"},
            "sentry.environment": {"value": "production", "type": "string"},
            "server.address": {"value": "web-7f9c", "type": "string"},
            "process.runtime.name": {"value": "CPython", "type": "string"},
            "user.id": {"value": "user-42", "type": "string"}}


def test_trace_metrics_become_custom_metrics_like_post_v1_metrics(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    metrics = {"version": 2, "items": [
        {"timestamp": 1767225600.0, "name": "conversions", "type": "counter", "value": 2.0,
         "attributes": sdk_attributes(plan="pro"), "trace_id": "0" * 32},
        {"timestamp": 1767225600.0, "name": "queue.depth", "type": "gauge", "value": 7, "unit": "none",
         "attributes": sdk_attributes()},
        {"timestamp": 1767225600.0, "name": "checkout.time", "type": "distribution", "value": 250.0,
         "unit": "millisecond", "attributes": sdk_attributes(step=3)},
        {"name": "conversions", "type": "counter", "value": -1, "attributes": sdk_attributes(plan="pro")},
        {"name": "signups", "type": "counter", "value": 1, "attributes": {"email": {"value": "a@b.example"}}},
        {"name": "bad", "type": "set", "value": 1}, "not a metric"]}
    assert agent.post(ENVELOPE, data=envelope(("trace_metric", metrics)), headers=AUTH).status == 200
    store = agent.app[METRICS]
    assert store.get("loom_app_conversions").series == {("pro",): 2.0}
    assert store.get("loom_app_conversions").labels == ("plan",)         # the SDK's own attributes are no tags
    assert store.get("loom_app_queue_depth").series == {(): 7.0}
    histogram = store.get("loom_app_checkout_time_seconds")
    assert histogram.labels == ("step",) and ("3",) in histogram.series   # 250 ms observed as 0.25 s
    assert store.get("loom_app_signups") is None                         # an identifying tag: refused
    assert items_counted(agent) == {("trace_metric", "accepted"): 1}
    # an item none of whose metrics can be recorded, and payloads of the wrong shape: rejected, never a 500
    body = envelope(("trace_metric", {"items": [{"name": "x", "type": "counter", "value": float("inf")}]}),
                    ("trace_metric", {"items": {}}), ("trace_metric", b"[[["), ("trace_metric", {"items": []}))
    assert agent.post(ENVELOPE, data=body, headers=AUTH).status == 200
    assert items_counted(agent) == {("trace_metric", "accepted"): 2, ("trace_metric", "rejected"): 3}


def test_the_retired_statsd_item_becomes_custom_metrics(agent_server: Any) -> None:
    agent = agent_server(CONFIG)
    lines = ("page.load@millisecond:120:80|d|#route:/checkout,region:eu|T1767225600\n"
             "logins@none:3|c|#plan:pro|T1767225600\n"
             "workers:4:1:6:20:5|g|T1767225600\n"
             "visitors@none:1:2|s|T1767225600\n"
             "garbage line\n")
    assert agent.post(ENVELOPE, data=envelope(("statsd", lines.encode())), headers=AUTH).status == 200
    store = agent.app[METRICS]
    histogram = store.get("loom_app_page_load_seconds")
    assert histogram.labels == ("region", "route")
    assert store.get("loom_app_logins").series == {("pro",): 3.0}
    assert store.get("loom_app_workers").series == {(): 4.0}             # last of last:min:max:sum:count
    assert items_counted(agent) == {("statsd", "accepted"): 1}
    assert agent.post(ENVELOPE, data=envelope(("statsd", b"\xff\xfe"), ("statsd", b"v:1|s")),
                      headers=AUTH).status == 200
    assert items_counted(agent)[("statsd", "rejected")] == 2


# --- the real SDK ------------------------------------------------------------------------------------

def divide(a: int, b: int) -> float:
    return a / b


def charge(order: int) -> float:
    try:
        return divide(order, 0)
    except ZeroDivisionError as exc:
        raise ValueError(f"charge failed for order {order}") from exc


@pytest.mark.slow
def test_the_real_sdk_with_only_a_dsn(tmp_path: Path) -> None:
    """sentry-sdk (Brotli when `brotli` is installed, as it is here) against a real agent process."""
    sentry_sdk = pytest.importorskip("sentry_sdk")
    pytest.importorskip("brotli")

    config = {"targets": [], "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
              "api": {"admin_tokens": [ADMIN]}, "retention": {"interval": 0}, **CONFIG}
    agent = AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})
    try:
        def before_send(event: Any, hint: Any) -> Any:                # the SDK reports what it drops
            return None if "dropped on purpose" in f"{event.get('message')} {event.get('logentry')}" else event

        sentry_sdk.init(dsn=f"http://{KEY}@127.0.0.1:{agent.port}/1", release=RELEASE, environment="staging",
                        auto_enabling_integrations=False, enable_logs=True, before_send=before_send)
        # what sentry-python sends whenever `brotli` is importable (a private attribute: the check that
        # this test exercises the br path aiohttp undoes, not the gzip one)
        assert getattr(sentry_sdk.get_client().transport, "_compression_algo", "br") == "br"
        try:
            with sentry_sdk.isolation_scope() as scope:
                scope.set_tag("feature", "payment")
                for _ in range(2):                                 # the same bug twice: one issue, count 2
                    try:
                        charge(42)
                    except ValueError:
                        sentry_sdk.capture_exception()
                sentry_sdk.capture_message("nightly export finished", level="warning")
                sentry_sdk.capture_message("dropped on purpose")
                sentry_sdk.metrics.count("conversions", 2, attributes={"plan": "pro"})
                sentry_sdk.metrics.distribution("checkout.time", 250, unit="millisecond")
                sentry_sdk.logger.info("payment {payment} done", payment="p-1")
                sentry_sdk.logger.warning("slow checkout")
            sentry_sdk.flush(timeout=10)
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.init()                                        # back to the no-op client

        deadline = time.monotonic() + 10
        while True:
            status, _, raw = http_get(agent.url + "/api/errors?range=1h", {"Authorization": f"Bearer {ADMIN}"})
            assert status == 200, raw
            issues = orjson.loads(raw)["issues"]
            if sum(issue["count"] for issue in issues) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        by_type = {issue["type"]: issue for issue in issues}
        assert set(by_type) == {"ValueError", "Message"}, issues
        assert by_type["ValueError"]["count"] == 2 and by_type["Message"]["count"] == 1
        assert by_type["ValueError"]["title"] == "charge failed for order 42"
        assert by_type["Message"]["title"] == "nightly export finished"
        latest = by_type["ValueError"]["latest"]
        assert latest["frames"][-1]["function"] == "charge"
        assert "raise ValueError" in latest["frames"][-1]["contextLine"] and latest["frames"][-1]["preContext"]
        assert latest["frames"][-1]["vars"]["order"] == "42"                   # sentry-python sends repr()s
        assert [(c["type"], c["frames"][-1]["function"]) for c in latest["causes"]] == [("ZeroDivisionError", "divide")]
        assert latest["mechanism"]["handled"] is True
        assert errors_of(component("ErrorSample"), latest) == []
        metrics = agent.metrics()
        assert f'loom_errors_total{{feature="payment",type="ValueError",release="{RELEASE}"}} 2.0' in metrics
        assert 'loom_agent_sentry_items_total{type="event",outcome="accepted"} 3.0' in metrics
        # the SDK's metrics, logs and client report (flush sends them after the events: wait for them)
        while time.monotonic() < deadline and 'loom_agent_sdk_discarded_events_total{' not in metrics:
            time.sleep(0.2)
            metrics = agent.metrics()
        assert 'loom_app_conversions_total{plan="pro"} 2.0' in metrics, metrics
        assert 'loom_app_checkout_time_seconds_sum 0.25' in metrics
        assert 'loom_agent_sentry_logs_total{level="info",logger="unknown"} 1.0' in metrics
        assert 'loom_agent_sentry_logs_total{level="warn",logger="unknown"} 1.0' in metrics
        assert 'loom_agent_sdk_discarded_events_total{reason="before_send",category="error"} 1.0' in metrics
        for kind in ("trace_metric", "log", "client_report"):
            assert f'loom_agent_sentry_items_total{{type="{kind}",outcome="accepted"}}' in metrics
    finally:
        assert agent.stop() == 0
