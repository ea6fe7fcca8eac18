"""Issue 4's "no PII anywhere", end to end. A real agent (SQLite store, OTLP export to a test receiver,
debug logs, an ingest key, an admin token) takes events through every ingest path (/v1/events, its batch,
PostHog /capture and /batch: plain JSON, gzip-js, base64 form) with e-mail addresses, passwords and card
numbers in every free place; the GDPR, analytics, anomaly and /probe?debug endpoints are called and bad
requests are sent. Then every sink is searched as bytes: the database file and its WAL (running, and after
the stop), both /metrics expositions, every exported span and metric, the agent's log, the API answers.

Positive controls prove each sink received the data (pseudonyms in the database and in a mapping label,
"[card]" in the spans), so an empty sink cannot pass for a clean one. Error messages never echo a value;
a key they must name (the field) goes through the privacy scrubber, as event data does.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import struct
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import text_format

from agent.events.privacy import Privacy, luhn
from agent.events.privacy_config import PrivacyConfig
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import AgentProcess, loopback_http_server

INGEST_KEY, ADMIN_TOKEN = "ingest-key-PII-test-0123456789", "admin-token-PII-test-0123456789"
HMAC_KEY = "hmac-key-PII-test-0123456789abcdef0123"
PROBE_USER, PROBE_PASSWORD, PROBE_HEADER = "probe-user", "probe-pw-PII-7788", "probe-hdr-PII-9900"
TRACE = {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"}
INGEST = {"Authorization": f"Bearer {INGEST_KEY}", "Content-Type": "application/json"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEY_PII = {"email": "keyerr.person@pii-keyerr.example", "card": "4000 0000 0000 9995"}   # sent as keys

# --- the inputs: the key names the input in a failure message, the value is what is sent ------------
E = {  # e-mail addresses; "%40": sent URL-encoded. Each has its own domain: "@domain" is searched too
    "user": "Alice.Liddell@pii-user.example", "anon": "anon.visitor@pii-anon.example",
    "session": "session.owner@pii-session.example", "event_id": "event.id@pii-eventid.example",
    "page": "page.person@pii-page.example", "ua": "UA.Person@pii-ua.example", "lib": "lib.person@pii-lib.example",
    "encoded": "encoded.person%40pii-encoded.example", "text": "dave+tag@pii-text.example",
    "url": "erin@pii-url.example", "url_enc": "frank%40pii-urlenc.example", "nested": "nested@pii-nested.example",
    "array": "array.person@pii-array.example", "key": "key.person@pii-key.example",
    "label": "Label.Person@pii-label.example", "conn": "conn.person@pii-conn.example",
    "trace": "trace.person@pii-trace.example", "onboard": "onboard.person@pii-onboard.example",
    "distinct": "POSTHOG.PERSON@PII-DISTINCT.EXAMPLE", "ph_url": "ph.url@pii-phurl.example",
    "ph_batch": "ph.batch@pii-phbatch.example", "gzip": "gzip.person@pii-gzip.example",
    "b64": "b64.person@pii-b64.example", "dnt": "dnt.person@pii-dnt.example",
    "optout": "optout.person@pii-optout.example", "erase": "erase.person@pii-erase.example",
    "invalid": "bad.request@pii-invalid.example", "key_error": KEY_PII["email"],
}
P = {  # passwords, tokens, keys (values of secret-named properties), and the agent's own credentials
    "password": "pw-Plain-Hunter2!", "userPassword": "pw-Camel-Tr0ub4dor", "nested": "pw-Nested-C0rrectHorse",
    "api_key": "ak_live_PIIAPIKEY0123456789", "token": "tok_PII_abcdef0123456789", "array": "at-PII-array-998877",
    "header": "xak-PII-hdr-5566", "client_secret": "cs-PII-secret-1122", "posthog": "pw-PostHog-Secret42",
    "gzip": "pw-Gzip-Secret77", "b64": "pw-B64-Secret88", "conn": "pw-Conn-Secret99", "trace": "pw-Trace-Secret11",
    "onboard": "pw-Onboard-Secret22", "custom": "pw-Custom-Secret33", "invalid": "pw-Invalid-Req-0001",
    "ingest_key": INGEST_KEY, "admin_token": ADMIN_TOKEN, "hmac_key": HMAC_KEY, "probe_password": PROBE_PASSWORD,
    "probe_header": PROBE_HEADER,
    "probe_basic_auth": base64.b64encode(f"{PROBE_USER}:{PROBE_PASSWORD}".encode()).decode(),
}
C = {  # card numbers (Luhn-valid test numbers) as sent: plain, grouped by spaces or dashes
    "plain": "4111111111111111", "spaced": "5500 0000 0000 0004", "amex": "3782-822463-10005",
    "text": "4012 8888 8888 1881", "url": "4242424242424242", "key": "4000056655665556",
    "page": "5105-1051-0510-5118", "ua": "4000 0566 5566 5127", "label": "3566 0020 2036 0505",
    "conn": "6011-1111-1111-1117", "trace": "5200828282828210", "onboard": "2223003122003222",
    "posthog": "4000 0025 0000 3155", "gzip": "4012 8888 8888 1824", "b64": "3714-496353-98431",
    "invalid": "4000 0000 0000 0002", "custom": "5555-5555-5555-4428", "key_error": KEY_PII["card"],
}
CI = {"int": 6011000990139424, "int_in_array": 5555555555554444, "int_conn": 4917610000000000,
      "int_as_float": 5105105105105100}


def pseudonym(sent: str) -> str:
    return Privacy(PrivacyConfig(), HMAC_KEY.encode()).pseudonymize(urllib.parse.unquote(sent))


# --- the bodies ----------------------------------------------------------------------------------

def rich(tag: str) -> dict[str, Any]:
    """Every free place of a properties object, each holding PII."""
    return {"password": P["password"], "userPassword": P["userPassword"], "credentials": {"password": P["nested"]},
            "api_key": P["api_key"], "token": P["token"], "accounts": [{"accessToken": P["array"]}],
            "headers": {"X-Api-Key": P["header"]}, "client_secret": P["client_secret"],
            "note": f"{tag}: please contact {E['text']} about card {C['text']} exp 12/29",
            "invite_url": f"https://app.loom.test/invite?email={E['url']}&ref=1",
            "back_url": f"https://app.loom.test/u?e={E['url_enc']}", "encoded": E["encoded"],
            "card_hint": C["plain"], "card_spaced": C["spaced"], "amex": C["amex"], "card_int": CI["int"],
            "card_float": float(CI["int_as_float"]), "pay_url": f"https://pay.loom.test/?cc={C['url']}",
            "by_card": {C["key"]: "visa"}, "invitees": {E["key"]: "pending"}, "amounts": [1, 2, CI["int_in_array"]],
            "profile": {"contact": {"primary": E["nested"], "backup": [E["array"]]}}}


def context(**extra: Any) -> dict[str, Any]:
    return {"page": f"https://app.loom.test/settings?user={E['page']}&card={C['page']}",
            "userAgent": f"Mozilla/5.0 (X11) LoomApp/3.1 ({E['ua']}; {C['ua']})", "library": E["lib"],
            "ip": "203.0.113.77", **extra}


def ev(name: str, user: str, props: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"event": name, "userId": user, "properties": props, **fields}


def v1_single() -> list[dict[str, Any]]:
    return [ev("feature_used", E["user"], {"feature": "billing", **rich("single")}, sessionId=E["session"],
               eventId=E["event_id"], context=context()),
            {"event": "page_load", "anonymousId": E["anon"], "context": context(),
             "properties": {"page": f"/p?u={E['page']}", "loadTimeMs": 900}},
            ev("api_request", E["user"], {"route": "/api/users/:id", "method": "GET", "status": 200, "durationMs": 12,
                                          "service": f"svc of {E['trace']}", "requester": E["trace"],
                                          "card": C["trace"], "password": P["trace"]}, context=context(**TRACE))]


def v1_batch(now: float) -> list[dict[str, Any]]:
    """A realtime connection (ended, and one ended by an error), an onboarding flow (spans), audit-table
    events, custom events (one named with a card number) through the mapping rules."""
    conn, secret = f"conn-{E['conn']}", {"password": P["conn"], "card": C["conn"], "cardInt": CI["int_conn"]}
    realtime = [
        ev("connection_attempt", E["user"], {"connectionId": conn, "transport": "websocket",
                                             "endpoint": f"wss://rt.loom.test/?u={E['conn']}", **secret},
           timestamp=now - 9, context=context(**TRACE)),
        ev("connection_established", E["user"], {"connectionId": conn, "transport": "websocket", "connectTimeMs": 80,
                                                 "note": E["conn"]}, timestamp=now - 8),
        ev("realtime_message", E["user"], {"connectionId": conn, "messageType": "chat", "bytes": 12,
                                           "preview": f"hi {E['conn']} {C['conn']}"}, timestamp=now - 7),
        ev("connection_disconnected", E["user"], {"connectionId": conn, "transport": "websocket",
                                                  "reason": f"kicked {E['conn']} {C['conn']}", **secret},
           timestamp=now - 6),
        ev("connection_attempt", E["user"], {"connectionId": "conn-2", "transport": "sse"}, timestamp=now - 5),
        ev("connection_error", E["user"], {"connectionId": "conn-2", "error": f"refused {E['conn']}",
                                           "errorCode": C["conn"], "reason": C["conn"], **secret}, timestamp=now - 4)]
    flow = {"flowId": f"flow-{E['onboard']}", "password": P["onboard"], "card": C["onboard"], "helper": E["onboard"]}
    step = f"invite {E['onboard']}"
    onboarding = [
        ev("onboarding_step_started", E["onboard"], {"step": step, **flow}, timestamp=now - 9,
           context=context(**TRACE)),
        ev("onboarding_step_completed", E["onboard"], {"step": step, "timeSpentSeconds": 2, **flow}, timestamp=now - 7),
        ev("onboarding_completed", E["onboard"], {"totalSteps": 1, **flow}, timestamp=now - 6)]
    audit = [
        ev("login_attempt", E["user"], {"result": "success", "method": "password", "password": P["password"]},
           context=context()),
        ev("mfa_verification", E["user"], {"method": "totp", "result": "failure", "code": C["plain"]},
           context=context()),
        ev("resource_downloaded", E["user"], {"resourceId": f"r-{E['nested']}", "bytes": CI["int"]}),
        ev("session_booked", E["user"], {"coachId": E["label"], "sessionType": "coaching", "duration": 60})]
    custom = [
        ev(f"card-{C['conn']}", E["user"], {"x": 1}),
        ev("checkout_started", E["user"], {"customer": E["label"], "plan": C["label"], "password": P["custom"],
                                           "card": C["custom"]}),
        ev("upload_finished", E["user"], {"bytes": 2048, "kind": f"file of {E['label']}", "owner": E["label"],
                                          "token": P["custom"]})]
    return realtime + onboarding + audit + custom


def posthog_props(password: str, card: str, email: str) -> dict[str, Any]:
    return {"$current_url": f"https://app.loom.test/?ref={E['ph_url']}&cc={card}", "$session_id": email,
            "$user_agent": f"Mozilla/5.0 ({email})", "$insert_id": f"id-{email}", "$lib": E["lib"],
            "$ip": "198.51.100.23", "$set": {"email": email}, "$anon_distinct_id": email, "token": INGEST_KEY,
            "password": password, "card": card, "contact": email,
            "deep": {"list": [email, card, {"password": password}]}}


def posthog_bodies() -> list[tuple[str, bytes, str]]:
    """(path, body, content type) of each PostHog wire form."""
    capture = {"api_key": INGEST_KEY, "event": "$pageview", "distinct_id": E["distinct"], "$set": {"e": E["distinct"]},
               "properties": posthog_props(P["posthog"], C["posthog"], E["distinct"])}
    batch = {"api_key": INGEST_KEY, "batch": [
        {"event": "cta_click", "distinct_id": E["ph_batch"], "properties": {
            "ctaId": "hero", "$is_identified": False, **posthog_props(P["posthog"], C["posthog"], E["ph_batch"])}},
        {"event": "Signed Up", "distinct_id": E["ph_batch"], "properties": rich("posthog")},
        {"event": f"Paid {C['posthog']}", "distinct_id": E["ph_batch"], "properties": {}}]}
    gzipped = {"api_key": INGEST_KEY, "batch": [{"event": "$autocapture", "distinct_id": E["gzip"],
                                                 "properties": posthog_props(P["gzip"], C["gzip"], E["gzip"])}]}
    form = {"api_key": INGEST_KEY, "event": "$pageleave", "distinct_id": E["b64"],
            "properties": posthog_props(P["b64"], C["b64"], E["b64"])}
    data = urllib.parse.urlencode({"data": base64.b64encode(orjson.dumps(form)).decode()}).encode()
    return [("/capture", orjson.dumps(capture), "application/json"),
            ("/batch", orjson.dumps(batch), "application/json"),
            ("/batch?compression=gzip-js", gzip.compress(orjson.dumps(gzipped)), "text/plain"),
            ("/e/?compression=base64", data, "application/x-www-form-urlencoded")]


def bad_requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(what, path, body, headers) of bad requests: invalid VALUES with PII around them (never echoed),
    and PII in KEYS, which an error must name (the field) but scrubbed, as in stored events."""
    bad, pii = E["invalid"], {"password": P["invalid"], "card": C["invalid"], "contact": E["invalid"]}
    api = {"event": "api_request", "userId": bad,
           "properties": {"route": "/api/x", "method": "GET", "status": 200, "durationMs": 1, **pii}}
    email, card, plain = KEY_PII["email"], KEY_PII["card"], ev("feature_used", "u1", {"feature": "x"})

    def with_props(**props: Any) -> dict[str, Any]:
        return {**api, "properties": {**api["properties"], **props}}
    cases: list[tuple[str, Any, str]] = [
        ("out of range", ev("resource_viewed", bad, {"resourceId": "r", "scrollDepthPercent": 150, **pii}), ""),
        ("card as an integer", with_props(status=C["invalid"]), ""),
        ("password as an enum value", ev("login_attempt", bad, {"result": "ok", "method": P["invalid"], **pii}), ""),
        ("card in a route template", with_props(route=f"/pay?cc={C['invalid']}"), ""),
        ("card as the timestamp", {**api, "timestamp": C["invalid"]}, ""),
        ("e-mail as context.ip", {**api, "context": {"ip": bad}}, ""),
        ("card as context.traceId", {**api, "context": {"traceId": C["invalid"]}}, ""),
        ("e-mail user id too long", {**api, "userId": bad + "x" * 300}, ""),
        ("string too long", ev("feature_used", bad, {"feature": "x", "n": C["invalid"] + "a" * 5000, **pii}), ""),
        ("missing required property", ev("feature_used", bad, pii), ""),
        ("batch invalid at 1", [ev("feature_used", bad, {"feature": "x", **pii}),
                                ev("feature_used", bad, {"feature": 7, **pii})], "/v1/events/batch"),
        ("PostHog distinct_id an array", {"api_key": INGEST_KEY, "batch": [
            {"event": "e", "distinct_id": [bad], "properties": pii}]}, "/batch"),
        ("opt-out flag not a boolean", {"userId": bad, "optOut": P["invalid"]}, "/api/analytics/opt-out"),
        ("e-mail as a property name", ev("feature_used", "u1", {email: 1}), ""),
        ("card in an unknown envelope key", {**plain, f"cc {card}": 1}, ""),
        ("e-mail as the key of a too long value", ev("feature_used", "u1", {"feature": "x", "m": {email: "a" * 5000}}),
         ""),
        ("card as a context key", {**plain, "context": {card: 1}}, ""),
        ("e-mail as an opt-out field", {"userId": "u1", email: True}, "/api/analytics/opt-out")]
    return [(what, path or "/v1/events", orjson.dumps(body), INGEST) for what, body, path in cases] + [
        ("malformed JSON", "/v1/events", orjson.dumps(ev("feature_used", bad, pii))[:-2], INGEST),
        ("broken gzip-js", "/batch?compression=gzip-js", orjson.dumps(pii), {"Content-Type": "text/plain"}),
        ("bad base64", "/e/?compression=base64", f"data={C['invalid']}%%%".encode(),
         {"Content-Type": "application/x-www-form-urlencoded"})]


# --- the run -------------------------------------------------------------------------------------

@dataclass
class Run:
    sinks: dict[str, bytes] = field(default_factory=dict)
    answers: list[bytes] = field(default_factory=list)                   # 2xx bodies
    bad: list[tuple[str, int, bytes]] = field(default_factory=list)       # (what, status, body)
    span_names: set[str] = field(default_factory=set)
    export: dict[str, Any] = field(default_factory=dict)


def call(agent: AgentProcess, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    if body is not None and not isinstance(body, bytes):
        body = orjson.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def ok(agent: AgentProcess, run: Run, method: str, path: str, body: Any = None,
       headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The 2xx answer (JSON, else {}), kept in `run.answers` without the `userId` a GDPR answer echoes
    (the caller's own query)."""
    status, answer = call(agent, method, path, body, headers)
    assert 200 <= status < 300, (path, status, answer)
    if path.startswith(("/api/analytics/opt-out", "/api/analytics/user/", "/api/analytics/export")):
        answer = orjson.dumps({k: v for k, v in orjson.loads(answer).items() if k != "userId"})
    run.answers.append(answer)
    return orjson.loads(answer) if answer[:1] == b"{" else {}


def send_everything(agent: AgentProcess, run: Run, web: str) -> None:
    for body in v1_single():
        assert ok(agent, run, "POST", "/v1/events", body, INGEST)["stored"] == 1
    batch = v1_batch(time.time())
    assert ok(agent, run, "POST", "/v1/events/batch", {"events": batch}, INGEST)["stored"] == len(batch)
    for path, body, content_type in posthog_bodies():
        ok(agent, run, "POST", path, body, {"Content-Type": content_type})
    dnt = ev("feature_used", E["dnt"], {"feature": "x", **rich("dnt")})
    assert ok(agent, run, "POST", "/v1/events", dnt, {**INGEST, "DNT": "1"})["dropped"] == 1
    ok(agent, run, "POST", "/api/analytics/opt-out", {"userId": E["optout"], "optOut": True}, INGEST)
    opted_out = ev("feature_used", E["optout"], {"feature": "x", **rich("optout")})
    assert ok(agent, run, "POST", "/v1/events", opted_out, INGEST)["dropped"] == 1
    ok(agent, run, "POST", "/v1/events", ev("feature_used", E["erase"], {"feature": "x", **rich("erase")},
                                             context=context()), INGEST)
    ok(agent, run, "DELETE", "/api/analytics/user/" + urllib.parse.quote(E["erase"], safe=""), None, ADMIN)
    run.bad = [(what, *call(agent, "POST", path, body, headers)) for what, path, body, headers in bad_requests()]
    run.export = ok(agent, run, "GET", "/api/analytics/export?userId=" + urllib.parse.quote(E["user"]), None, ADMIN)
    for path in ("/api/analytics/dashboard", "/api/monitoring/business-metrics", "/api/anomalies"):
        ok(agent, run, "GET", path, None, ADMIN)
    query = urllib.parse.urlencode({"target": web + "/", "module": "pii_probe", "debug": "true"})
    ok(agent, run, "GET", "/probe?" + query)
    ok(agent, run, "GET", "/")


def agent_config(store_dir: Path, receiver: OtlpReceiver) -> dict[str, Any]:
    return {
        "store": {"driver": "sqlite", "path": str(store_dir / "loom.db")},
        "telemetry": {"otlp": {"endpoint": receiver.endpoint, "protocol": "http/protobuf", "metrics_interval": "1s",
                               "timeout": "2s"}},
        "events": {"api_keys": [INGEST_KEY], "mappings": [
            {"match": "checkout_*", "action": "count", "name": "loom_checkout_events",
             "labels": {"customer": "customer", "plan": "plan"}},
            {"match": "upload_finished", "action": "observe", "name": "loom_upload_size_bytes", "value": "bytes",
             "labels": {"kind": "kind", "owner": "owner"}, "buckets": [1024, 65536]}]},
        "api": {"admin_tokens": [ADMIN_TOKEN]},
        "retention": {"interval": 0},
        "modules": {"pii_probe": {"kind": "http", "timeout": "2s", "headers": {"X-Api-Key": PROBE_HEADER},
                                  "basic_auth": {"username": PROBE_USER, "password": PROBE_PASSWORD}}},
    }


def store_files(store_dir: Path, when: str) -> dict[str, bytes]:
    """Every file of the store (database, -wal, -shm), as bytes."""
    return {f"SQLite {path.name} ({when})": path.read_bytes() for path in sorted(store_dir.iterdir())}


def otlp_bytes(receiver: OtlpReceiver, signal: str) -> bytes:
    """Every accepted request of `signal`, as protobuf bytes and as protobuf text."""
    messages = receiver.accepted(signal)
    return b"\n".join([m.SerializeToString() for m in messages] +
                      [text_format.MessageToString(m, as_utf8=True).encode() for m in messages])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One agent, everything sent once; the sinks read while it runs (the WAL holds the data) and after
    a clean stop (the WAL checkpointed into the database, the last spans and metrics flushed)."""
    tmp = tmp_path_factory.mktemp("no-pii")
    store_dir = tmp / "store"
    store_dir.mkdir()
    result = Run()
    spans = {"realtime connection", "onboarding", "onboarding.step", "api_request", "probe http"}
    with OtlpReceiver("http/protobuf") as receiver, loopback_http_server() as web:
        agent = AgentProcess(tmp, agent_config(store_dir, receiver), env={"LOOM_AGENT_HMAC_KEY": HMAC_KEY})
        try:
            send_everything(agent, result, web)
            result.sinks["/metrics (text)"] = agent.metrics().encode()
            openmetrics = agent.metrics("application/openmetrics-text; version=1.0.0")
            result.sinks["/metrics (OpenMetrics)"] = openmetrics.encode()
            receiver.wait_for(lambda: spans <= {s.name for s in receiver.spans()}, 15, "the event and probe spans")
            receiver.wait_for(lambda: "loom_checkout_events" in receiver.latest_metrics(), 15, "the mapped metric")
            result.sinks.update(store_files(store_dir, "running agent"))
        finally:
            code = agent.stop()
        assert code == 0, agent.log()
        result.span_names = {span.name for span in receiver.spans()}
        result.sinks["OTLP spans"] = otlp_bytes(receiver, "traces")
        result.sinks["OTLP metrics"] = otlp_bytes(receiver, "metrics")
    result.sinks.update(store_files(store_dir, "after stop"))
    result.sinks["agent log (stdout+stderr)"] = agent.log_path.read_bytes()
    result.sinks["API answers (2xx)"] = b"\n".join(result.answers)
    result.sinks["GDPR export"] = orjson.dumps(result.export)
    yield result


# --- the search ----------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def needles(kind: str, sent: str | int) -> tuple[list[bytes], list[bytes]]:
    """(text needles, searched in the lower-cased sink, for cards the first one also with spaces and dashes
    removed; binary needles, searched in the raw sink: an integer card as SQLite and protobuf store it)."""
    if kind == "e-mail":
        local, domain = urllib.parse.unquote(str(sent)).lower().split("@")
        return [f"{local}@{domain}".encode(), f"{local}%40{domain}".encode(), f"@{domain}".encode(),
                f"%40{domain}".encode()], []
    if kind == "password":
        return [str(sent).lower().encode()], []
    digits = "".join(ch for ch in str(sent) if ch.isdigit())
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    text = [digits, " ".join(groups), "-".join(groups), str(sent)]
    binary = [] if isinstance(sent, str) else [struct.pack(">q", sent), struct.pack(">d", sent), varint(sent),
                                               struct.pack("<q", sent), struct.pack("<d", sent)]
    return [t.encode() for t in text], binary


def inputs(kind: str) -> list[tuple[str, str | int]]:
    table: dict[str, Any] = {"e-mail": E, "password": P, "card": {**C, **CI}}[kind]
    return [(f"{kind} {key!r} (sent as {value!r})", value) for key, value in table.items()]


def find(kind: str, sinks: dict[str, bytes]) -> list[str]:
    """One line per (sink, input) where the input is found, with the bytes around it."""
    leaks = []
    for sink, raw in sinks.items():
        lower = raw.lower()
        stripped = lower.translate(None, b" -")
        for what, sent in inputs(kind):
            text, binary = needles(kind, sent)
            searches = [*((n, lower) for n in text), *((n, raw) for n in binary)]
            if kind == "card":
                searches.append((text[0], stripped))
            for needle, haystack in searches:
                if (at := haystack.find(needle)) >= 0:
                    leaks.append(f"{what} found in {sink} as {needle!r}: ...{haystack[max(0, at - 60):at + 80]!r}...")
                    break
    return leaks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["e-mail", "password", "card"])
def test_no_pii_in_the_database_metrics_spans_logs_or_answers(scenario: Run, kind: str) -> None:
    leaks = find(kind, scenario.sinks)
    assert not leaks, f"{len(leaks)} {kind} leak(s):\n" + "\n".join(leaks)


@pytest.mark.slow
def test_the_sinks_did_receive_the_scrubbed_data(scenario: Run) -> None:
    """Positive controls: without them an empty database or a silent exporter would pass."""
    database = b"".join(raw for name, raw in scenario.sinks.items() if name.startswith("SQLite"))
    for key in ("user", "anon", "session", "event_id", "onboard", "distinct", "ph_batch", "gzip", "b64", "label"):
        assert pseudonym(E[key]).encode() in database, f"the pseudonym of {E[key]} ({key}) is not in the database"
    assert pseudonym(E["erase"]).encode() not in scenario.sinks["SQLite loom.db (after stop)"], "erasure left rows"
    assert b"[card]" in database and b"[card]" in scenario.sinks["OTLP spans"]
    assert {"realtime connection", "onboarding", "onboarding.step", "api_request", "probe http"} <= scenario.span_names
    assert f'customer="{pseudonym(E["label"])}"'.encode() in scenario.sinks["/metrics (text)"]
    assert pseudonym(E["label"]).encode() in scenario.sinks["OTLP metrics"]
    assert scenario.export.get("pseudonymousId") == pseudonym(E["user"]), scenario.export
    assert pseudonym(E["user"]).encode() in scenario.sinks["GDPR export"]
    assert b"'password': '<secret>'" in scenario.sinks["API answers (2xx)"], "no /probe?debug module shown"
    log = scenario.sinks["agent log (stdout+stderr)"]
    assert b"loom-agent started" in log and b"DEBUG" in log and b"Traceback" not in log, log.decode()


def test_the_inputs_are_what_they_claim() -> None:
    """Guards the guard: every card is Luhn-valid, every e-mail an address the scrubber must catch, and no
    two inputs are the same (a failure names the one input it found)."""
    cards = ["".join(ch for ch in str(card) if ch.isdigit()) for _, card in inputs("card")]
    assert all(map(luhn, cards)) and len(set(cards)) == len(C) + len(CI), cards
    addresses = [urllib.parse.unquote(address).lower() for address in E.values()]
    assert all(pseudonym(address).startswith("email:") for address in addresses)
    assert len({address.split("@")[1] for address in addresses}) == len(E)


@pytest.mark.slow
def test_bad_requests_are_4xx_and_echo_no_pii(scenario: Run) -> None:
    """Values are never echoed; a key the error names (an e-mail or a card number as a property name) is
    scrubbed like event data, so a 400 body, often logged by clients and proxies, carries none."""
    assert [(what, status) for what, status, _ in scenario.bad if not 400 <= status < 500] == []
    for what, _, body in scenario.bad:
        assert orjson.loads(body).get("error"), (what, body)
    sinks = {f"the 400 body of {what!r}": body for what, _, body in scenario.bad}
    leaks = find("e-mail", sinks) + find("password", sinks) + find("card", sinks)
    assert not leaks, "\n".join(leaks)
