"""A session recording made by the real posthog-js plays on the agent's replay page, both in headless Chromium
(Debian's chromium through puppeteer-core; nothing downloaded):

1. posthog-js 1.449.2 (npm, tests/js; bundled with esbuild) on a page served from another 127.0.0.1 origin,
   `opt_out_useragent_filter` for the headless browser, `disable_session_recording: false`; the agent's
   remote config turns recording on (`posthog.remote_config.session_recording: true`) and names `/s/`.
   The page changes a counter a few times and types into an input.
2. The agent (a real process, SQLite) stores the recording: `GET /api/recordings` lists the session with its
   user, `GET /api/recordings/{id}` answers rrweb events with a full snapshot, posthog-js's compression undone.
3. The replay page (`/replay/<id>#token=<admin token>`) plays it with rrweb-player (agent/replay/node_modules,
   installed by scripts/test.sh): the player's iframe holds the recorded page, its text and the counter's last
   value, the typed input masked by posthog-js; the screenshot holds the recorded banner's colour.
"""

from __future__ import annotations

import functools
import http.server
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.recordings.page import player_installed
from tests.support.procs import AgentProcess, loopback_http_server
from tests.support.status_fixtures import png_pixels
from tests.test_sentry_js import CHROMIUM, JS, _missing, run_node

pytestmark = [pytest.mark.slow]
needs_browser = pytest.mark.skipif(
    _missing("posthog-js", "puppeteer-core", "esbuild") is not None or CHROMIUM is None or not player_installed(),
    reason=_missing("posthog-js", "puppeteer-core", "esbuild") or ("chromium is not installed (Debian `chromium`)"
           if CHROMIUM is None else "rrweb-player is not installed (npm ci --prefix agent/replay)"))

KEY = "phc_loom_agent_test_0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
BANNER = (230, 30, 140)                 # the recorded page's banner, rgb(230, 30, 140)


def api(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def wait_recording(agent_url: str, timeout: float = 15) -> dict[str, Any]:
    """The first recorded session once it holds a full snapshot and a later mutation."""
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        listed = api(agent_url + "/api/recordings?range=1d")["recordings"]
        if listed:
            found = api(f"{agent_url}/api/recordings/{listed[0]['sessionId']}")
            types = [event["type"] for event in found["events"]]
            if 2 in types and 3 in types[types.index(2):]:
                return found
        time.sleep(0.3)
    raise AssertionError(f"no playable recording arrived: {found}")


@needs_browser
def test_a_posthog_js_recording_plays_on_the_replay_page(tmp_path: Path) -> None:
    page_dir = tmp_path / "page"
    page_dir.mkdir()
    run_node(tmp_path, ["posthog_browser_run.js", "bundle", str(page_dir)], timeout=120)
    (page_dir / "index.html").write_text((JS / "recording_page" / "index.html").read_text())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page_dir))
    with loopback_http_server(handler) as origin:
        agent = AgentProcess(tmp_path, {
            "targets": [], "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
            "retention": {"interval": 0}, "events": {"api_keys": [KEY]}, "api": {"admin_tokens": [ADMIN]},
            "posthog": {"allowed_origins": [origin], "remote_config": {"session_recording": True}},
        }, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})
        try:
            env = {"CHROMIUM": CHROMIUM or "", "CHROMIUM_PROFILE": str(tmp_path / "profile")}
            visit = run_node(tmp_path, ["posthog_browser_run.js", "visit",
                                        f"{origin}/index.html?host={agent.url}&key={KEY}", agent.url], env=env)
            recording = wait_recording(agent.url)
            listed = api(agent.url + "/api/recordings?range=1d")["recordings"]
            screenshot = tmp_path / "replay.png"
            replay = run_node(tmp_path, ["replay_run.js", f"{agent.url}/replay/{recording['sessionId']}#token={ADMIN}",
                                         str(screenshot)], env={**env, "CHROMIUM_PROFILE": str(tmp_path / "profile2")})
            metrics = agent.metrics()
        finally:
            assert agent.stop() == 0

    snapshots = [r for r in visit["responses"] if "/s/" in r["url"]]
    assert snapshots and all(r["status"] == 200 for r in snapshots), visit["responses"]
    assert all(r["headers"].get("access-control-allow-origin") == origin for r in snapshots)
    assert visit["failed"] == [], visit["failed"]
    (session,) = listed
    assert session["sessionId"] == recording["sessionId"] and session["userId"] and session["snapshots"] >= 3
    assert all("cv" not in event for event in recording["events"])          # posthog-js's compression undone
    assert "secret@example.com" not in json.dumps(recording["events"])      # masked by posthog-js
    assert "loom_recordings_sessions_total 1" in metrics and "loom_recordings_snapshots_total" in metrics

    assert replay["pageErrors"] == [], replay
    assert replay["playing"], replay
    assert "Loom replay check" in replay["text"], replay
    assert "step 6" in replay["text"], replay                               # played to the end
    assert replay["input"] != "secret@example.com", replay
    assert replay["banner"]["colour"] == "rgb(230, 30, 140)", replay
    _, _, colours = png_pixels(screenshot.read_bytes())
    assert BANNER in colours, "the screenshot does not show the replayed banner"
