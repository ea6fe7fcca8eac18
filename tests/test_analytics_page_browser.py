"""The admin analytics page in a real browser, with data from the demo: an agent (`python -m agent run`,
SQLite) probing a loopback server that is up and a port that is closed, filled by `python -m agent demo
--agent URL --history 21d` (three weeks of the demo's stories, timestamped, then a second of live traffic);
headless Chromium (Debian's chromium through puppeteer-core, tests/js/analytics_page_run.js) signs in with
the form, and on a laptop (1280x800) and a phone (390x844) the dashboard and the insights view show the
numbers the JSON APIs answer, as SVG charts and tables that fit the screen. The session cookie the browser
keeps is Secure (Chromium keeps a Secure cookie from http://127.0.0.1: a loopback origin counts as
potentially trustworthy), HttpOnly and SameSite=Strict, and is not the token; sign-out ends it.

The screenshots are written under the test's tmp dir; UPDATE_ANALYTICS_SCREENSHOTS=1 also copies them to
docs/ (analytics-page.png, analytics-page-mobile.png, analytics-insights.png): the suite never writes into
the repository otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import ROOT, AgentProcess, free_port, loopback_http_server, wait_until
from tests.support.status_fixtures import png_pixels
from tests.test_sentry_js import CHROMIUM, _missing, run_node

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(_missing("puppeteer-core") is not None or CHROMIUM is None,
                                 reason=_missing("puppeteer-core") or "chromium is not installed (Debian `chromium`)")]

TOKEN = "analytics-browser-admin-token-0123456789"
KEY = "analytics-browser-ingest-key-0123"
ACCENT, GOOD = (0x09, 0x69, 0xDA), (0x1A, 0x7F, 0x37)          # the bars' fills, light scheme (style.py)
INSIGHTS = [("range", "30d"), ("event", "session_booked"), ("breakdown", "session_type"), ("interval", "day"),
            ("step", "login_attempt"), ("step", "session_booked"), ("step", "session_completed"),
            ("step", "session_rated"), ("cohort", "login_attempt"), ("returning", "session_booked"),
            ("period", "week"), ("periods", "4")]
SCREENSHOTS = ("analytics-page.png", "analytics-page-mobile.png", "analytics-insights.png")


def api(agent_url: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(agent_url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def demo_history(agent_url: str) -> str:
    """`python -m agent demo` sending three weeks of history and a second of live traffic to the agent."""
    proc = subprocess.run([sys.executable, "-m", "agent", "demo", "--agent", agent_url, "--no-targets",
                           "--history", "21d", "--history-events", "12000", "--duration", "1s", "--rate", "20",
                           "--seed", "11", "--api-key", KEY], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "history: " in proc.stdout and " errors 0" in proc.stdout, proc.stdout
    return proc.stdout


def test_the_analytics_page_renders_the_demo_in_chromium_on_a_laptop_and_a_phone(tmp_path: Path) -> None:
    closed = free_port()
    with loopback_http_server() as web:
        fast = {"interval": "2s", "timeout": "1s"}
        agent = AgentProcess(tmp_path, {
            "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
            "events": {"api_keys": [KEY]}, "api": {"admin_tokens": [TOKEN]},
            "targets": [{"name": "web-app", "kind": "http", "url": web + "/", **fast},
                        {"name": "reports-db", "kind": "tcp", "address": f"127.0.0.1:{closed}", **fast}]})
        try:
            demo_history(agent.url)
            # probe results reach the store every 15 s (agent/store/probe_rollups.py)
            wait_until(lambda: len(api(agent.url, "/api/analytics/dashboard?range=30d")["serviceUptime"]) == 2, 40,
                       interval=1, what="both targets' uptime in the store")
            dashboard = api(agent.url, "/api/analytics/dashboard?range=30d")
            query = {"range": "30d"}
            steps = [{"event": e} for _, e in INSIGHTS if _ == "step"]
            funnel = api(agent.url, "/api/insights/funnels", {**query, "steps": steps, "window": "14d"})
            trend = api(agent.url, "/api/insights/trends", {**query, "interval": "day", "breakdown": "session_type",
                                                             "breakdown_limit": 5,
                                                             "series": [{"event": "session_booked"}]})
            out = tmp_path / "shots"
            out.mkdir()
            report = run_node(tmp_path, ["analytics_page_run.js", agent.url, TOKEN, str(out),
                                         "&".join(f"{k}={v}" for k, v in INSIGHTS)],
                              env={"CHROMIUM": CHROMIUM or "", "CHROMIUM_PROFILE": str(tmp_path / "profile")},
                              timeout=150)
        finally:
            assert agent.stop() == 0

    assert report["pageErrors"] == [] and report["failed"] == [], report
    # sign-in: the redirect, the form, the cookie Chromium kept over http://127.0.0.1
    assert report["signInUrl"] == "/analytics/sign-in?next=%2Fanalytics%3Frange%3D30d"
    assert report["signInHasForm"]
    (cookie,) = report["cookies"]
    assert cookie["name"] == "loom_admin_session" and cookie["value"] != TOKEN and TOKEN not in cookie["value"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert report["documentCookie"] == ""                              # HttpOnly: no script can read it

    desk = report["desktop"]
    assert desk["url"] == "/analytics?range=30d" and desk["scripts"] == 0 and desk["error"] is None
    summary = dashboard["summary"]
    assert summary["totalSessions"] > 50 and summary["activeUsers"] > 50
    assert desk["cards"]["Sessions booked"] == f"{summary['totalSessions']:,}"
    assert desk["cards"]["Active users"] == f"{summary['activeUsers']:,}"
    assert desk["cards"]["Total users"] == f"{summary['totalUsers']:,}"
    signup = dashboard["funnelMetrics"][0]["steps"]
    sections = desk["sections"]
    assert sections["funnel-signup"]["bars"] == len(signup) >= 4
    assert [v.split(" ·")[0] for v in sections["funnel-signup"]["values"]] == [f"{s['users']:,}" for s in signup]
    widths = sections["funnel-signup"]["barWidths"]
    assert widths[0] > 0 and widths == sorted(widths, reverse=True)       # a funnel narrows
    assert sections["funnel-onboarding"]["bars"] >= 5
    assert sections["coaches"]["rows"] == len(dashboard["coachProductivity"]) > 0
    assert sections["clients"]["rows"] == len(dashboard["clientEngagement"]) > 0
    assert sections["goals"]["bars"] > 0
    uptime = dict(zip(sections["uptime"]["labels"], sections["uptime"]["values"], strict=True))
    assert uptime["web-app"].startswith("100.00 %") and uptime["reports-db"].startswith("0.00 %")
    assert desk["svgs"] == sum(s["bars"] for s in sections.values()) >= 12         # one SVG a bar
    assert desk["scrollWidth"] <= 1280

    ins = report["insights"]
    assert ins["error"] is None, ins
    chart = ins["sections"]["trend"]
    assert chart["polylines"] >= 1 and chart["points"] > 0
    assert chart["series"] == ["other" if r["is_other"] else r["breakdown_value"] for r in trend["results"]], \
        (chart["series"], trend["results"])
    bars = ins["sections"]["funnel"]
    assert [v.split(" ·")[0] for v in bars["values"]] == [f"{s['persons']:,}" for s in funnel["steps"]]
    assert funnel["steps"][0]["persons"] > funnel["steps"][-1]["persons"] > 0
    retention = ins["sections"]["retention"]
    assert retention["rows"] == 4 and retention["cells"][0] and "%" in " ".join(retention["cells"])

    phone = report["phone"]
    assert phone["innerWidth"] == 390 and phone["scrollWidth"] <= 390, phone      # nothing wider than the phone
    assert phone["cards"] == desk["cards"]
    assert phone["sections"]["funnel-signup"]["bars"] == len(signup)
    assert all(s["width"] <= 390 for s in phone["sections"].values())
    assert report["phoneInsights"]["scrollWidth"] <= 390 and report["phoneInsights"]["sections"]["trend"]["polylines"]

    assert report["afterSignOut"] == "/analytics/sign-in" and report["cookiesAfterSignOut"] == []
    assert report["afterSignOutVisit"] == "/analytics/sign-in"

    width, height, colours = png_pixels((out / "analytics-page.png").read_bytes())
    assert width == 1280 and height > 800 and {ACCENT, GOOD} <= colours
    width, height, colours = png_pixels((out / "analytics-page-mobile.png").read_bytes())
    assert (width, height) == (390, 844) and ACCENT in colours
    assert png_pixels((out / "analytics-insights.png").read_bytes())[0] == 1280
    if os.environ.get("UPDATE_ANALYTICS_SCREENSHOTS") == "1":
        for name in SCREENSHOTS:
            shutil.copyfile(out / name, ROOT / "docs" / name)
