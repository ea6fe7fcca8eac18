"""The status page in a real browser: headless Chromium (Debian's `chromium`) loads `/` of a running
agent (`python -m agent run`, SQLite store seeded with a day of probe rollups) probing loopback targets
that are up, refused and hostile, with an anomaly active; the rendered DOM says what a person must see,
and a phone-sized screenshot (390 x 844) is saved under the test's output with the page's colours in it.

UPDATE_STATUS_SCREENSHOT=1 also copies the screenshot to docs/status-page.png (the README's picture);
without it the test never writes into the repository.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from agent import __version__
from agent.store.config import StoreConfig
from agent.store.open import open_store
from agent.store.probe_rollups import ProbeRollups
from tests.support.event_examples import envelope
from tests.support.procs import ROOT, AgentProcess, free_port, http_get, loopback_http_server, wait_until
from tests.support.status_fixtures import HOSTILE_STATUS_LINE, hostile_http_server, png_pixels, read_page

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`; "
                                                          "scripts/test.sh installs it)")]
KEY = "browser-test-ingest-key-0123"
TOKEN = "browser-test-admin-token-0123"
PHONE = (390, 844)
# the page's solid fills (agent/status/page.py, light scheme): a styled page has them, a blank one not
UP_FILL, DOWN_FILL, DOWN_EDGE = (0xDA, 0xFB, 0xE1), (0xFF, 0xEB, 0xE9), (0xCF, 0x22, 0x2E)
SEEDED_PROBES = 5700          # one every 15 s, from 86,000 s ago to 500 s ago: all inside the 24 h


def chromium(tmp_path: Path, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium to completion; its stdout. Killed (its process group, by id) on timeout."""
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", "--force-color-profile=srgb", "--force-device-scale-factor=1",
               f"--user-data-dir={profile}", f"--window-size={PHONE[0]},{PHONE[1]}", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "HOME": str(tmp_path)})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium did not finish within {timeout}s: {command}")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{err.decode(errors='replace')[-2000:]}"
    return out.decode()


def seed_a_day(path: Path) -> None:
    """Yesterday-to-now probe rollups in the agent's SQLite database, written as the agent writes them."""

    async def seed() -> None:
        store = await open_store(StoreConfig(driver="sqlite", path=str(path)))
        assert store is not None
        rollups, now = ProbeRollups(), time.time()
        for name, failures in (("loom-web", 3), ("loom-api", 0), ("payments-db", 160), ("legacy-gateway", 760)):
            for i in range(SEEDED_PROBES):
                rollups.observe(name, i >= failures, 0.012, now - 86_000 + i * 15)
        await rollups.flush(store)
        await store.close()
    asyncio.run(seed())


def post_json(url: str, body: object, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status


def test_status_page_renders_in_chromium_on_a_phone(tmp_path: Path) -> None:
    database = tmp_path / "loom-agent.db"
    seed_a_day(database)
    closed = free_port()
    with loopback_http_server() as web, hostile_http_server() as hostile:
        fast = {"interval": "2s", "timeout": "1s"}
        agent = AgentProcess(tmp_path, {
            "store": {"driver": "sqlite", "path": str(database)},
            "events": {"api_keys": [KEY]}, "api": {"admin_tokens": [TOKEN]},
            "alerting": {"auth_failure_spike": {"window_minutes": 15, "spike_threshold": 3}},
            "targets": [
                {"name": "loom-web", "kind": "http", "url": web + "/", "labels": {"service": "web"}, **fast},
                {"name": "loom-api", "kind": "http", "url": web + "/api/health", "labels": {"service": "api"}, **fast},
                {"name": "payments-db", "kind": "tcp", "address": f"127.0.0.1:{closed}",
                 "labels": {"service": "billing"}, **fast},
                {"name": "legacy-gateway", "kind": "http", "url": hostile, "labels": {"service": "gateway"}, **fast}]})
        try:
            failure = envelope("login_attempt", {"result": "failure", "method": "password",
                                                 "failure_reason": "invalid_credentials"})
            assert post_json(agent.url + "/v1/events/batch", [failure] * 4, {"X-Loom-Api-Key": KEY}) == 200
            assert http_get(agent.url + "/api/anomalies", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
            wait_until(lambda: all_probed(agent.url), 20, what="a first result of every target")
            dom = chromium(tmp_path, "--dump-dom", agent.url + "/")
            screenshot = tmp_path / "status-page.png"
            chromium(tmp_path, f"--screenshot={screenshot}", agent.url + "/")
        finally:
            agent.stop()

    page = read_page(dom)
    assert page.title == "loom-agent status"
    assert page.tags.isdisjoint({"script", "img"})            # the hostile detail stayed text
    states = {name: cells["State"] for name, cells in page.cells.items()}
    assert states == {"loom-web": "up", "loom-api": "up", "payments-db": "down", "legacy-gateway": "down"}
    assert list(page.cells)[:2] == ["legacy-gateway", "payments-db"]          # problems first
    assert page.cells["loom-web"]["Uptime"].startswith("99.95 % 24 h, 5,7")
    assert page.cells["loom-api"]["Uptime"].startswith("100.00 % 24 h,")
    assert page.cells["payments-db"]["Uptime"].startswith("97.19 % 24 h,")
    assert page.cells["payments-db"]["Last failure"].startswith("connect ")
    assert "refused" in page.cells["payments-db"]["Last failure"].lower()
    assert page.cells["legacy-gateway"]["Last failure"].startswith("protocol ")
    assert HOSTILE_STATUS_LINE in page.cells["legacy-gateway"]["Last failure"]
    assert page.cells["loom-web"]["Target"] == f"loom-web http {web}/ service=web"
    assert page.cells["loom-web"]["Latency"].endswith(" ms")
    assert "warning auth_failure_spike over 15 min" in page.sections["anomalies"]
    assert "payments-db connect" in page.sections["failures"]
    assert f"loom-agent version {__version__} · rendered just now" in page.text

    width, height, colours = png_pixels(screenshot.read_bytes())
    assert (width, height) == PHONE
    assert {UP_FILL, DOWN_FILL, DOWN_EDGE} <= colours, "the screenshot lacks the page's state colours"
    if os.environ.get("UPDATE_STATUS_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "status-page.png")


def all_probed(url: str) -> bool:
    status, _, body = http_get(url + "/api/status", timeout=2)
    return status == 200 and all(t["state"] != "unknown" for t in orjson.loads(body)["targets"])
