"""The real JavaScript Sentry SDKs (npm, pinned in tests/js/package-lock.json, installed by scripts/test.sh)
against a real agent process (`python -m agent run`, SQLite store), configured with nothing but a DSN.

- @sentry/node, run by node (tests/js/sentry_node_app.js): an exception with a chained cause, a message, a
  transaction with a child span, metrics (count, gauge, distribution), logs, a session and a cron check-in.
  Every envelope is answered 2xx (the SDK's own transport, wrapped to record each status), every item is
  accepted; the errors are issues in GET /api/errors with their frames, source lines and chained cause;
  the metrics are `loom_app_*` series; the transaction `loom_transactions_*` series and OTLP spans with
  Sentry's ids (a receiver on 127.0.0.1); the logs `loom_agent_sentry_logs_total` and OTLP log records;
  the sessions release health (`loom_sessions_*`); the check-ins a cron monitor (`loom_cron_*`).
- @sentry/browser in headless Chromium (Debian's, driven by puppeteer-core: nothing is downloaded), on a
  page served from 127.0.0.1 on another port than the agent's (another origin): an uncaught TypeError and
  a message arrive when the page's origin is in `sentry.allowed_origins`; with it not listed, the browser
  refuses the answers (no CORS header), the agent counts the refusals and stores nothing.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import ROOT, AgentProcess, http_get, loopback_http_server

JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium")
NODE_MIN = (20, 19)            # @sentry/node 11's engines: >=20.19 <22 || >=22.12


def _node_version() -> tuple[int, ...] | None:
    if NODE is None:
        return None
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2])) if match else None


def _missing(*packages: str) -> str | None:
    """Why the JavaScript tests cannot run here, or None."""
    if NODE is None:
        return "node is not installed (Debian package `nodejs`; scripts/test.sh installs it)"
    for package in packages:
        if not (JS / "node_modules" / package / "package.json").is_file():
            return (f"{package} is not installed under tests/js/node_modules (scripts/test.sh runs "
                    "`npm ci` in tests/js)")
    return None


pytestmark = [pytest.mark.slow]
needs_node = pytest.mark.skipif(
    (_missing("@sentry/node") is not None) or (_node_version() or (0,)) < NODE_MIN,
    reason=_missing("@sentry/node") or f"@sentry/node 11 needs node >= {NODE_MIN[0]}.{NODE_MIN[1]}, "
                                       f"this is {'.'.join(map(str, _node_version() or ()))}")
needs_browser = pytest.mark.skipif(
    _missing("@sentry/browser", "puppeteer-core", "esbuild") is not None or CHROMIUM is None,
    reason=_missing("@sentry/browser", "puppeteer-core", "esbuild") or
    "chromium is not installed (Debian package `chromium`; scripts/test.sh installs it)")

KEY = "0123456789abcdef0123456789abcdef"
ADMIN = "admin-token-sentry-js-0123456789abcdef"
RELEASE = "loom-web@2.3.1"
ENVIRONMENT = "staging"


def start_agent(tmp_path: Path, allowed_origins: list[str] | None = None, otlp: str | None = None,
                source_maps_dir: Path | None = None) -> AgentProcess:
    sentry: dict[str, Any] = {"projects": [{"id": 1, "keys": [KEY]}]}
    if allowed_origins is not None:
        sentry["allowed_origins"] = allowed_origins
    if source_maps_dir is not None:
        sentry["source_maps_dir"] = str(source_maps_dir)
    config = {"targets": [], "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
              "api": {"admin_tokens": [ADMIN]}, "retention": {"interval": 0}, "sentry": sentry}
    if otlp is not None:
        config["telemetry"] = {"otlp": {"endpoint": otlp, "protocol": "http/protobuf", "timeout": "2s"}}
    return AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})


def run_node(tmp_path: Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 90) -> Any:
    """node on a script of tests/js, to completion; the JSON line it printed (None if it printed none).
    Killed (its process group, by its id: Chromium included) on timeout."""
    proc = subprocess.Popen([NODE, *args], cwd=JS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            env={**os.environ, "HOME": str(tmp_path), "PUPPETEER_SKIP_DOWNLOAD": "1", **(env or {})})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"node {args} did not finish within {timeout}s") from None
    assert proc.returncode == 0, f"node {args} exited {proc.returncode}:\n{err.decode(errors='replace')[-3000:]}"
    lines = out.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def api_errors(agent: AgentProcess) -> list[dict[str, Any]]:
    status, _, raw = http_get(agent.url + "/api/errors?range=1h", {"Authorization": f"Bearer {ADMIN}"})
    assert status == 200, raw
    return orjson.loads(raw)["issues"]


def wait_for_issues(agent: AgentProcess, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        issues = api_errors(agent)
        if sum(issue["count"] for issue in issues) >= count or time.monotonic() > deadline:
            return issues
        time.sleep(0.2)


def items_total(metrics: str) -> dict[tuple[str, str], float]:
    """loom_agent_sentry_items_total by (type, outcome)."""
    found = {}
    for match in re.finditer(r'^loom_agent_sentry_items_total\{type="([^"]+)",outcome="([^"]+)"\} (\S+)$', metrics,
                             re.MULTILINE):
        found[(match[1], match[2])] = float(match[3])
    return found


# --- @sentry/node -------------------------------------------------------------------------------------

@needs_node
def test_sentry_node_with_only_a_dsn(tmp_path: Path) -> None:
    with OtlpReceiver("http/protobuf") as receiver:
        agent = start_agent(tmp_path, otlp=receiver.endpoint)
        try:
            report = run_node(tmp_path, ["sentry_node_app.js"], env={
                "SENTRY_DSN": f"http://{KEY}@127.0.0.1:{agent.port}/1", "SENTRY_RELEASE": RELEASE,
                "SENTRY_ENVIRONMENT": ENVIRONMENT})
            issues = wait_for_issues(agent, 2)
            metrics = agent.metrics()
            spans = receiver.wait_for(lambda: {span.name: span for span in receiver.spans()}.keys()
                                      >= {"checkout", "SELECT 1"} and receiver.spans(), what="the SDK's spans")
            records = receiver.wait_for(lambda: len(receiver.log_records()) >= 2 and receiver.log_records(),
                                        what="the SDK's log records")
            resources = [rs.resource for request in receiver.accepted("traces") for rs in request.resource_spans
                         if any(span.name == "checkout" for ss in rs.scope_spans for span in ss.spans)]
        finally:
            assert agent.stop() == 0

    # every envelope the SDK sent was answered 2xx, and it sent every kind of item
    sent = report["sent"]
    assert sent and all(s["status"] is not None and 200 <= s["status"] < 300 for s in sent), sent
    types = [kind for s in sent for kind in s["types"]]
    assert {"event", "session", "check_in", "trace_metric", "log"} <= set(types), types
    assert {"transaction", "span"} & set(types), types     # @sentry/node 11 sends the transaction as spans
    assert types.count("event") == 2

    # no item was refused: each type the SDK sent was counted, and none of it rejected
    counted = items_total(metrics)
    for kind in set(types):
        arrived = sum(value for (t, _), value in counted.items() if t == kind)
        assert arrived == types.count(kind), (kind, counted)
        assert (kind, "rejected") not in counted, (kind, counted)
    for kind in set(types):
        assert counted.get((kind, "accepted")) == types.count(kind), (kind, counted)

    # the errors, as issues with their frames
    by_title = {issue["title"]: issue for issue in issues}
    assert set(by_title) == {"charge failed for order 42", "nightly export finished"}, issues
    failure = by_title["charge failed for order 42"]
    assert failure["type"] == "Error" and failure["count"] == 1
    latest = failure["latest"]
    assert latest["eventId"] == report["eventIds"]["exception"]
    assert (latest["release"], latest["environment"], latest["level"]) == (RELEASE, ENVIRONMENT, "error")
    assert latest["feature"] == "payment" and latest["context"]["library"].startswith("sentry.javascript.node/")
    app_frames = [frame for frame in latest["frames"] if frame.get("inApp")]
    assert app_frames and app_frames[-1]["function"] == "chargeCard", latest["frames"]
    assert app_frames[-1]["filename"].endswith("sentry_node_app.js") and app_frames[-1]["lineno"] > 0
    assert "throw new Error(`charge failed for order" in app_frames[-1].get("contextLine", ""), app_frames[-1]
    assert not any(frame.get("inApp") for frame in latest["frames"] if "node_modules" in frame["filename"])
    # the chained cause (`new Error(..., {cause})`), kept with its own frames
    assert [(c["type"], c["value"]) for c in latest["causes"]] == [("RangeError", "division by zero")], latest
    cause_frames = [frame for frame in latest["causes"][0]["frames"] if frame.get("inApp")]
    assert cause_frames and cause_frames[-1]["function"] == "divide", latest["causes"]
    assert latest["mechanism"]["handled"] is True

    message = by_title["nightly export finished"]
    assert message["latest"]["eventId"] == report["eventIds"]["message"]
    assert message["latest"]["level"] == "warning" and message["count"] == 1
    # @sentry/node sends a message as a synthetic exception (mechanism.synthetic) beside it: a message event
    assert message["type"] == "Message", message

    assert f'loom_errors_total{{feature="payment",type="Error",release="{RELEASE}"}} 1.0' in metrics
    assert f'loom_errors_total{{feature="payment",type="Message",release="{RELEASE}"}} 1.0' in metrics
    # the SDK's metrics and logs
    assert 'loom_app_conversions_total{plan="pro"} 2.0' in metrics, metrics
    assert 'loom_app_queue_depth{queue="emails"} 7.0' in metrics
    assert 'loom_app_checkout_time_seconds_sum 0.25' in metrics
    assert 'loom_agent_sentry_logs_total{level="info",logger="unknown"} 1.0' in metrics
    assert 'loom_agent_sentry_logs_total{level="warn",logger="unknown"} 1.0' in metrics

    # the transaction: RED metrics, and its spans over OTLP with Sentry's ids, the application as resource
    assert 'loom_transactions_total{transaction="checkout",op="task",status="ok"} 1.0' in metrics
    assert 'loom_transaction_duration_seconds_count{transaction="checkout",op="task"} 1' in metrics
    by_name = {span.name: span for span in spans}
    checkout, query = by_name["checkout"], by_name["SELECT 1"]
    assert query.trace_id == checkout.trace_id and query.parent_span_id == checkout.span_id
    assert query.end_time_unix_nano - query.start_time_unix_nano >= 4_000_000          # it slept 5 ms
    attributes = {a.key: a.value.string_value for a in resources[0].attributes}
    assert (attributes["service.name"], attributes["service.version"]) == ("loom-web", "2.3.1"), attributes
    assert attributes["deployment.environment.name"] == ENVIRONMENT
    # the logs over OTLP
    bodies = {record.body.string_value: record for record in records}
    assert {"payment p-1 done", "slow checkout"} <= bodies.keys(), bodies.keys()
    assert bodies["slow checkout"].severity_text == "warn" and bodies["payment p-1 done"].severity_number == 9

    # release health: @sentry/node's own session at start and the one the app started, both ended cleanly
    sessions = types.count("session")
    assert f'loom_sessions_started_total{{release="{RELEASE}",environment="{ENVIRONMENT}"}} {sessions}.0' in metrics
    assert (f'loom_sessions_total{{release="{RELEASE}",environment="{ENVIRONMENT}",status="exited"}} '
            f'{sessions}.0') in metrics
    assert f'loom_session_users_total{{release="{RELEASE}",environment="{ENVIRONMENT}",status="all"}} 1.0' in metrics
    # the cron monitor, with the schedule the SDK sent (crontab 0 3 * * * UTC, margin 5 min, max runtime 30 min)
    assert 'loom_cron_checkins_total{monitor="nightly-export",status="ok"} 1.0' in metrics
    assert 'loom_cron_checkins_total{monitor="nightly-export",status="in_progress"} 1.0' in metrics
    assert 'loom_cron_run_duration_seconds_sum{monitor="nightly-export"} 1.5' in metrics
    assert 'loom_cron_checkin_margin_seconds{monitor="nightly-export"} 300.0' in metrics
    assert 'loom_cron_max_runtime_seconds{monitor="nightly-export"} 1800.0' in metrics
    next_run = re.search(r'^loom_cron_next_expected_timestamp_seconds\{monitor="nightly-export"\} (\S+)$', metrics,
                         re.MULTILINE)
    assert next_run and float(next_run[1]) % 86400 == 3 * 3600, metrics          # the next 03:00 UTC


# --- @sentry/browser in Chromium ------------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def page_server(directory: Path) -> AbstractContextManager[str]:
    """The page's own origin: a static file server on 127.0.0.1:<port 0>; yields its origin."""
    return loopback_http_server(functools.partial(_Quiet, directory=str(directory)))


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's files: index.html, recording_transport.js, @sentry/browser bundled (esbuild) into sentry.js
    and browser_page/app.js minified into app.min.js with its source map app.min.js.map."""
    directory = tmp_path_factory.mktemp("page")
    shutil.copyfile(JS / "browser_page" / "index.html", directory / "index.html")
    shutil.copyfile(JS / "recording_transport.js", directory / "recording_transport.js")
    run_node(directory, ["sentry_browser_run.js", "bundle", str(directory)])
    return directory


def source_maps(tmp_path: Path, page_dir: Path) -> Path:
    """sentry.source_maps_dir laid out by release and URL path: <dir>/<release>/app.min.js(.map)."""
    directory = tmp_path / "source-maps"
    (directory / RELEASE).mkdir(parents=True)
    for name in ("app.min.js", "app.min.js.map"):
        shutil.copyfile(page_dir / name, directory / RELEASE / name)
    return directory


def visit(tmp_path: Path, page: str, agent: AgentProcess) -> dict[str, Any]:
    query = urllib.parse.urlencode({"dsn": f"http://{KEY}@127.0.0.1:{agent.port}/1", "release": RELEASE,
                                    "environment": ENVIRONMENT})
    return run_node(tmp_path, ["sentry_browser_run.js", "visit", f"{page}/index.html?{query}", agent.url],
                    env={"CHROMIUM": CHROMIUM or "/usr/bin/chromium",
                         "CHROMIUM_PROFILE": str(tmp_path / "chromium-profile")})


@needs_browser
def test_sentry_browser_from_an_allowed_origin(tmp_path: Path, page_dir: Path) -> None:
    with page_server(page_dir) as page:
        agent = start_agent(tmp_path, allowed_origins=[page], source_maps_dir=source_maps(tmp_path, page_dir))
        try:
            report = visit(tmp_path, page, agent)
            issues = wait_for_issues(agent, 2)
            metrics = agent.metrics()
        finally:
            assert agent.stop() == 0

    assert report["done"], report
    assert report["page"]["origin"] == page != agent.url                    # another origin than the agent's
    assert report["pageErrors"] == ["Cannot read properties of undefined (reading 'percent')"], report
    sent = report["page"]["sent"]
    assert sent and all(s["status"] == 200 for s in sent), report
    assert report["failed"] == [], report
    posts = [r for r in report["responses"] if r["method"] == "POST"]
    assert posts and all(r["status"] == 200 and r["headers"].get("access-control-allow-origin") == page
                         for r in posts), report["responses"]
    types = [kind for s in sent for kind in s["types"]]
    assert types.count("event") == 2 and "session" in types, types      # release health is on by default
    counted = items_total(metrics)
    assert counted.get(("event", "accepted")) == 2, counted
    assert not [kind for kind, outcome in counted if outcome == "rejected"], f"items of the SDK rejected: {counted}"
    assert counted.get(("session", "accepted")), counted                 # release health from the browser
    assert f'loom_sessions_started_total{{release="{RELEASE}",environment="{ENVIRONMENT}"}}' in metrics, metrics

    by_title = {issue["title"]: issue for issue in issues}
    assert set(by_title) == {"Cannot read properties of undefined (reading 'percent')", "checkout page shown"}, issues
    crash = by_title["Cannot read properties of undefined (reading 'percent')"]
    assert crash["type"] == "TypeError"
    latest = crash["latest"]
    assert (latest["release"], latest["environment"]) == (RELEASE, ENVIRONMENT)
    assert latest["context"]["library"].startswith("sentry.javascript.browser/")
    assert latest["mechanism"]["handled"] is False                     # uncaught: it reached the global handler
    # the minified frames, resolved with the release's source map: original file, names and source lines
    app = [frame for frame in latest["frames"] if frame.get("absPath", "").startswith("webpack://checkout/")]
    assert len(app) >= 2 and app[-1]["function"] == "applyDiscount", latest["frames"]    # the throw, last
    # the caller came as "HTMLButtonElement.o" (the browser's receiver-qualified name of the mangled onPay)
    assert app[-2]["function"] == "onPay", app
    assert all(frame["sourceMap"] == "resolved" and frame["filename"] == "src/app.js" for frame in app), app
    assert app[-1]["contextLine"].strip() == "return cart.coupon.percent;                 // cart.coupon is " \
        "undefined: a TypeError, uncaught", app[-1]
    assert 'loom_agent_sentry_source_map_frames_total{outcome="resolved"}' in metrics
    assert by_title["checkout page shown"]["latest"]["level"] == "info"


@needs_browser
def test_sentry_browser_from_an_origin_not_allowed(tmp_path: Path, page_dir: Path) -> None:
    with page_server(page_dir) as page:
        agent = start_agent(tmp_path, allowed_origins=["https://app.example.com"])
        try:
            report = visit(tmp_path, page, agent)
            time.sleep(0.5)
            issues = api_errors(agent)
            metrics = agent.metrics()
        finally:
            assert agent.stop() == 0

    assert report["done"], report
    sent = report["page"]["sent"]
    assert sent and all(s["status"] is None for s in sent), report      # the SDK could not read an answer
    # the browser refused each answer: CORS, since the agent's 403 carries no Access-Control-Allow-Origin
    assert report["failed"] and all(f["method"] == "POST" for f in report["failed"]), report
    assert any("CORS" in line or "Access-Control-Allow-Origin" in line for line in report["console"]), report
    assert all("access-control-allow-origin" not in r["headers"] for r in report["responses"]), report
    assert issues == []
    refused = re.search(r'^loom_agent_ingest_rejected_total\{api="sentry",reason="auth"\} (\S+)$', metrics,
                        re.MULTILINE)
    # each envelope refused (a client report sent as the page closes may add one)
    assert refused and float(refused[1]) >= len(sent), metrics
    assert not any(outcome == "accepted" for _, outcome in items_total(metrics)), metrics
