"""Feature flags (issue 15) with the real JavaScript SDKs against a real agent process (`python -m agent run`,
SQLite store) whose `flags:` block is tests/test_flags.py's:

- posthog-node (npm, tests/js), remote evaluation: `isFeatureEnabled`, `getFeatureFlag`,
  `getFeatureFlagPayload` answer what the agent's /flags answers (a forced variant and its JSON payload, a
  person-property rollout, a group flag, a switched-off flag), every request 2xx; local evaluation with
  `personalApiKey`: the SDK loads the agent's definitions (/flags/definitions) and its own evaluation of
  every flag agrees with the agent's /flags for 300 distinct ids (hash parity, as tests/test_flags.py
  shows for posthog-python on 10,000).
- posthog-js (npm, bundled with esbuild) in headless Chromium on a page served from another 127.0.0.1
  origin (listed in posthog.allowed_origins; `opt_out_useragent_filter` for the headless browser): the
  remote config says flags exist, posthog-js asks /flags/ itself, `onFeatureFlags` fires,
  `isFeatureEnabled` / `getFeatureFlag` / `getFeatureFlagPayload` give the agent's answers for the page's
  distinct id (the browser's own /flags/ request replayed to the agent), and the `$feature_flag_called`
  exposure events the SDK sends are stored for that distinct id, flag by flag.
"""

from __future__ import annotations

import base64
import functools
import gzip
import http.server
import json
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.procs import AgentProcess, loopback_http_server
from tests.test_flags import CONFIG, FLAGS_BLOCK, INGEST_KEY, PERSONAL
from tests.test_posthog_sdks import posthog_bundle  # noqa: F401 - the fixture: posthog-js bundled once per module
from tests.test_sentry_js import CHROMIUM, JS, _missing, run_node

pytestmark = [pytest.mark.slow]
needs_node = pytest.mark.skipif(_missing("posthog-node") is not None, reason=_missing("posthog-node") or "")
needs_browser = pytest.mark.skipif(
    _missing("posthog-js", "puppeteer-core", "esbuild") is not None or CHROMIUM is None,
    reason=_missing("posthog-js", "puppeteer-core", "esbuild") or "chromium is not installed (Debian `chromium`)")

FLAG_KEYS = [f["key"] for f in FLAGS_BLOCK["definitions"]]
PEOPLE = [{"plan": "pro", "email": "x@y.example", "age": 20, "country": "DE", "signed_up": "2025-06-01",
           "name": "Alex", "legacy": True},
          {"plan": "free", "email": "a@loom.example", "age": 45, "country": "FR", "signed_up": "2026-03-01",
           "name": "Zed", "legacy": False},
          {"plan": "team", "email": "b@c.example", "age": 30, "country": "fr", "signed_up": "2026-01-02",
           "name": "Mia", "legacy": "yes"}]
PARITY_IDS = 300


def start_agent(tmp_path: Path, origins: list[str] | None = None) -> AgentProcess:
    config: dict[str, Any] = {"targets": [], "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
                              "retention": {"interval": 0}, **CONFIG}
    if origins is not None:
        config["posthog"] = {"allowed_origins": origins}
    return AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})


def agent_flags(agent: AgentProcess, body: dict[str, Any] | bytes, path: str = "/flags",
                content_type: str = "application/json") -> dict[str, Any]:
    """The agent's own /flags answer for a body."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    request = urllib.request.Request(agent.url + path, data=data, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def stored_events(tmp_path: Path, name: str) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    """(user_id, anonymous_id, properties) of every stored event called `name`."""
    with sqlite3.connect(f"file:{tmp_path / 'loom.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT user_id, anonymous_id, properties FROM events WHERE name = ? ORDER BY id",
                          [name]).fetchall()
    return [(user, anonymous, json.loads(properties)) for user, anonymous, properties in rows]


def sent_body(text: str | None) -> bytes:
    """A request body as DevTools gave it: JSON text as it is, a binary (gzip) body base64-encoded."""
    assert text, "the browser's /flags/ request had no body"
    if text.lstrip().startswith("{"):
        return text.encode()
    raw = base64.b64decode(text)
    assert raw[:2] == b"\x1f\x8b", raw[:20]
    return raw


def case(i: int) -> dict[str, Any]:
    return {"distinctId": f"node-{i}-{i * 7919 % 10007}", "personProperties": PEOPLE[i % len(PEOPLE)],
            "groups": {"company": f"co-{i % 97}"}, "groupProperties": {"company": {"seats": i % 40}}}


@needs_node
def test_posthog_node_remote_and_local_evaluation(tmp_path: Path) -> None:
    agent = start_agent(tmp_path)
    sam = {"personProperties": {"email": "sam@loom.example", "plan": "pro", "age": 40, "country": "DE"}}
    company = {"groups": {"company": "acme"}, "groupProperties": {"company": {"seats": 500}}}
    remote = [("isFeatureEnabled", "pricing-test", "sam", sam), ("getFeatureFlag", "pricing-test", "sam", sam),
              ("getFeatureFlagPayload", "pricing-test", "sam", sam), ("getFeatureFlag", "beta-reports", "sam", sam),
              ("getFeatureFlagPayload", "beta-reports", "sam", sam), ("isFeatureEnabled", "switched-off", "sam", {}),
              ("getFeatureFlag", "new-checkout", "sam", sam),
              ("isFeatureEnabled", "company-dashboards", "sam", company)]
    cases = [case(i) for i in range(PARITY_IDS)]
    spec = {"host": agent.url, "key": INGEST_KEY, "personalApiKey": PERSONAL,
            "remote": [{"call": c, "key": k, "distinctId": d, "options": o} for c, k, d, o in remote],
            "local": {"flags": FLAG_KEYS, "cases": cases}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    try:
        report = run_node(tmp_path, ["posthog_flags_node.js", str(tmp_path / "spec.json")], timeout=120)
        expected_sam = agent_flags(agent, {"token": INGEST_KEY, "distinct_id": "sam",
                                           "person_properties": sam["personProperties"]})
        expected_company = agent_flags(agent, {"token": INGEST_KEY, "distinct_id": "sam", "groups": company["groups"],
                                               "group_properties": company["groupProperties"]})
        remote_expected = [True, "test", {"color": "blue"}, expected_sam["featureFlags"]["beta-reports"],
                           orjson.loads(expected_sam["featureFlagPayloads"]["beta-reports"])
                           if "beta-reports" in expected_sam["featureFlagPayloads"] else None,
                           False, expected_sam["featureFlags"]["new-checkout"],
                           expected_company["featureFlags"]["company-dashboards"]]
        mismatches = []
        for c, local in zip(cases, report["local"], strict=True):
            answer = agent_flags(agent, {"token": INGEST_KEY, "distinct_id": c["distinctId"],
                                         "person_properties": c["personProperties"], "groups": c["groups"],
                                         "group_properties": c["groupProperties"]})["featureFlags"]
            if answer != local:
                mismatches.append((c["distinctId"], local, answer))
        exposures = wait_for(lambda: stored_events(tmp_path, "$feature_flag_called"), 7)
    finally:
        assert agent.stop() == 0
    assert expected_sam["featureFlags"]["beta-reports"] is True           # age 40 in DE: the first condition
    assert report["remote"] == remote_expected, (report["remote"], remote_expected)
    assert report["localReady"] is True
    sent = report["sent"]
    assert any("/flags/definitions" in s["url"] for s in sent), sent      # the personal key's definitions
    assert sent and all(200 <= s["status"] < 300 for s in sent), sent
    assert mismatches == [], mismatches[:5]
    # with enabled and disabled answers of every flag among the cases (the parity is not all-false)
    for key in FLAG_KEYS:
        seen = {json.dumps(local[key]) for local in report["local"]}
        assert len(seen) >= (1 if key == "switched-off" else 2), (key, seen)
    # the remote calls' exposures (posthog-node sends one per flag and answer; the local ones send none), stored
    # with the flag and the answer
    called = {props.get("$feature_flag"): props.get("$feature_flag_response") for _, _, props in exposures}
    assert called == {"pricing-test": "test", "beta-reports": True, "switched-off": False,
                      "new-checkout": expected_sam["featureFlags"]["new-checkout"],
                      "company-dashboards": expected_company["featureFlags"]["company-dashboards"]}, exposures
    assert {user or anonymous for user, anonymous, _ in exposures} == {"sam"}, exposures


def wait_for(read: Any, count: int, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while len(rows := read()) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


@needs_browser
def test_posthog_js_flags_in_chromium_from_another_origin(tmp_path: Path, posthog_bundle: Path) -> None:  # noqa: F811
    (posthog_bundle / "flags.html").write_text((JS / "posthog_flags_page" / "index.html").read_text())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(posthog_bundle))
    with loopback_http_server(handler) as origin:
        agent = start_agent(tmp_path, [origin])
        try:
            page = f"{origin}/flags.html?host={agent.url}&key={INGEST_KEY}"
            report = run_node(tmp_path, ["posthog_flags_run.js", page, agent.url],
                              env={"CHROMIUM": CHROMIUM or "", "CHROMIUM_PROFILE": str(tmp_path / "profile")})
            assert report["flagsRequests"], report
            sent = report["flagsRequests"][0]
            body = sent_body(sent["body"])
            # the browser's own /flags/ request, replayed: the agent's answers for the page's distinct id
            expected = agent_flags(agent, body, path="/flags/?v=2", content_type=sent["contentType"] or "text/plain")
            flags = report["flags"]
            exposures = wait_for(lambda: stored_events(tmp_path, "$feature_flag_called"), 4)
        finally:
            assert agent.stop() == 0
    assert report["done"], report
    assert report["failed"] == [] and report["pageErrors"] == [], (report["failed"], report["pageErrors"])
    responses = report["responses"]
    assert responses and all(200 <= r["status"] < 300 for r in responses), responses
    assert all(r["allowOrigin"] == origin for r in responses), responses
    assert any("/array/" in r["url"] for r in responses), responses          # remote config first ...
    assert any(r["method"] == "POST" and "/flags/" in r["url"] for r in responses), responses    # ... then /flags/
    assert flags is not None, report["console"][-20:]
    answers = {key: entry["variant"] if entry["enabled"] and entry["variant"] is not None else entry["enabled"]
               for key, entry in expected["flags"].items()}
    assert set(answers) == set(FLAG_KEYS)
    distinct_id = flags["distinctId"]
    assert orjson.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)["distinct_id"] == distinct_id
    assert flags["pricing"] == answers["pricing-test"] == "test"              # forced by the e-mail condition
    assert flags["pricingPayload"] == {"color": "blue"}
    assert flags["newCheckout"] is bool(answers["new-checkout"])
    assert flags["beta"] == answers["beta-reports"] is True                  # age 40 in DE
    assert flags["switchedOff"] is False and answers["switched-off"] is False
    enabled = {k: v for k, v in answers.items() if v is not False}       # onFeatureFlags gets the enabled ones
    assert flags["variants"] == enabled and sorted(flags["flags"]) == sorted(enabled), (flags, answers)
    # one $feature_flag_called per flag the page read, with the answer it got, from the page's distinct id
    called = {props.get("$feature_flag"): props.get("$feature_flag_response") for _, _, props in exposures}
    assert len(exposures) == 4 and called == {"pricing-test": "test", "beta-reports": True, "switched-off": False,
                                              "new-checkout": answers["new-checkout"]}, exposures
    assert {anonymous or user for user, anonymous, _ in exposures} == {distinct_id}, exposures
