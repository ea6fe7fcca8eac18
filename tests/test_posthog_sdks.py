"""The real PostHog SDKs against a real agent process (`python -m agent run`, SQLite store), configured with
nothing but the agent as their host (issue 14):

- posthog (PyPI; scripts/test.sh installs the `test` extra): capture, `set` (identify traits), batches of
  several flushes, in the default mode (`/batch/`) and `capture_mode="v1"` (`/i/v1/analytics/events`,
  Bearer key, gzip); no request errs (`on_error` is never called), every event is in the store.
- posthog-node (npm, tests/js): capture, identify, several batches; every request 2xx, every event stored.
- posthog-js (npm, bundled with esbuild) in headless Chromium on a page served from another 127.0.0.1
  origin, `opt_out_useragent_filter` for the headless browser: the remote config is fetched (200, JSON),
  the first `$pageview` arrives in a gzip body without `?compression=` (recognised by its magic bytes),
  every answer carries the CORS header, no request fails; the events are in the store.

What each event becomes (pageviews, autocapture, identify semantics) is tested where it is made
(agent/events/posthog.py's tests); here: that everything the SDKs send arrives.
"""

from __future__ import annotations

import functools
import http.server
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import AgentProcess, loopback_http_server
from tests.test_sentry_js import CHROMIUM, JS, _missing, run_node

posthog = pytest.importorskip("posthog", reason="posthog is not installed (the `test` extra; scripts/test.sh)")

pytestmark = [pytest.mark.slow]
needs_node = pytest.mark.skipif(_missing("posthog-node") is not None, reason=_missing("posthog-node") or "")
needs_browser = pytest.mark.skipif(
    _missing("posthog-js", "puppeteer-core", "esbuild") is not None or CHROMIUM is None,
    reason=_missing("posthog-js", "puppeteer-core", "esbuild") or "chromium is not installed (Debian `chromium`)")

KEY = "phc_loom_agent_test_0123456789abcdef"


def start_agent(tmp_path: Path, origins: list[str] | None = None) -> AgentProcess:
    config: dict[str, Any] = {"targets": [], "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
                              "retention": {"interval": 0}, "events": {"api_keys": [KEY]}}
    if origins is not None:
        config["posthog"] = {"allowed_origins": origins}
    return AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})


def stored(tmp_path: Path) -> list[tuple[str, str | None, str | None]]:
    """(name, user_id, anonymous_id) of every stored event."""
    with sqlite3.connect(f"file:{tmp_path / 'loom.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT name, user_id, anonymous_id FROM events ORDER BY id").fetchall()


def wait_stored(tmp_path: Path, count: int, timeout: float = 10) -> list[tuple[str, str | None, str | None]]:
    deadline = time.monotonic() + timeout
    while len(rows := stored(tmp_path)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


@pytest.mark.parametrize("mode", ["v0", "v1"])
def test_posthog_python_with_only_a_host(tmp_path: Path, mode: str) -> None:
    agent = start_agent(tmp_path)
    errors: list[Any] = []
    try:
        client = posthog.Posthog(KEY, host=agent.url, capture_mode=mode, flush_at=10, max_retries=0,
                                 on_error=lambda error, batch: errors.append((repr(error), len(batch))),
                                 **({"capture_compression": "gzip"} if mode == "v1" else {}))
        client.capture("cta_click", distinct_id="py-user-1", properties={"ctaId": "py_cta", "plan": "pro"})
        client.set(distinct_id="py-user-1", properties={"plan": "pro", "role": "coach"})
        for i in range(25):
            client.capture("py_batch_event", distinct_id=f"py-user-{i % 3}", properties={"n": i})
        client.flush()
        client.shutdown()
        rows = wait_stored(tmp_path, 27)
    finally:
        assert agent.stop() == 0
    assert errors == []
    names = [name for name, _, _ in rows]
    assert names.count("cta_click") == 1 and names.count("py_batch_event") == 25, names
    assert names.count("$set") == 1, names
    assert ("cta_click", "py-user-1", None) in rows


@needs_node
def test_posthog_node_with_only_a_host(tmp_path: Path) -> None:
    agent = start_agent(tmp_path)
    try:
        report = run_node(tmp_path, ["posthog_node_app.js"], env={"POSTHOG_HOST": agent.url, "POSTHOG_KEY": KEY})
        rows = wait_stored(tmp_path, report["events"])
    finally:
        assert agent.stop() == 0
    sent = report["sent"]
    assert len(sent) >= 3 and all(200 <= s["status"] < 300 for s in sent), sent
    names = [name for name, _, _ in rows]
    assert names.count("cta_click") == 1 and names.count("node_batch_event") == 45, names
    assert names.count("$identify") == 1, names


@pytest.fixture(scope="module")
def posthog_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("posthog_page")
    run_node(out, ["posthog_browser_run.js", "bundle", str(out)], timeout=120)
    (out / "index.html").write_text((JS / "posthog_page" / "index.html").read_text())
    return out


@needs_browser
def test_posthog_js_in_chromium_from_another_origin(tmp_path: Path, posthog_bundle: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(posthog_bundle))
    with loopback_http_server(handler) as origin:
        agent = start_agent(tmp_path, [origin])
        try:
            report = run_node(tmp_path, ["posthog_browser_run.js", "visit",
                                         f"{origin}/index.html?host={agent.url}&key={KEY}", agent.url],
                              env={"CHROMIUM": CHROMIUM or "", "CHROMIUM_PROFILE": str(tmp_path / "profile")})
            rows = wait_stored(tmp_path, 3)
        finally:
            assert agent.stop() == 0
    assert report["done"], report
    assert report["failed"] == [], report["failed"]
    assert not [line for line in report["console"] if "CORS" in line], report["console"]
    responses = report["responses"]
    assert responses and all(200 <= r["status"] < 300 for r in responses), responses
    assert all(r["headers"].get("access-control-allow-origin") == origin for r in responses), responses
    configs = [r for r in responses if r["method"] == "GET" and "/array/" in r["url"]]
    assert configs and configs[0]["url"].endswith(f"/array/{KEY}/config") and configs[0]["status"] == 200
    posts = [r for r in responses if r["method"] == "POST"]
    assert posts and all("compression=" not in r["url"] for r in posts), posts
    assert any(r["gzip"] for r in posts), posts                # gzip as text/plain: read by its magic bytes
    names = [name for name, _, _ in rows]
    assert "$pageview" in names and "cta_click" in names, names
    assert "$autocapture" in names, names                      # the click, autocapture on by remote config
