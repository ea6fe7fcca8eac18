"""The status page `/` and `/api/status` on the real app (agent.app.root.build_app on 127.0.0.1:0) probing
real loopback targets: state, kind, latency, uptime (since start without a store; 24 h from a real
SQLite or PostgreSQL probe_rollups table with one), failures with their reasons, active anomalies;
every hostile value escaped; no external asset. Then the page's parts on their own: the failure ring,
the uptime cache (refresh at most every ttl, a failing store kept out of the page's way), rendering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer

from agent import __version__
from agent.api.keys import EVENT_STORE, UPTIME_CACHE
from agent.app.root import build_app
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.config.load import load_config, parse_config
from agent.rules.anomaly_metrics import AnomalyMonitor
from agent.rules.thresholds import Thresholds
from agent.status.history import MAX_DETAIL_CHARS, ProbeHistory
from agent.status.model import build_report
from agent.status.page import ago, percent, render_page
from agent.status.uptime import UptimeCache
from agent.store.config import StoreConfig
from agent.store.errors import StoreUnavailable
from agent.store.open import open_store
from agent.store.probe_rollups import ProbeRollups
from tests.support.event_examples import envelope
from tests.support.procs import free_port, loopback_http_server
from tests.support.status_fixtures import HOSTILE_LABEL, HOSTILE_STATUS_LINE, hostile_http_server, read_page

pytest_plugins = ["tests.support.store_fixtures"]

KEY = "status-page-ingest-key-0123"
TOKEN = "status-page-admin-token-0123"
FAST = {"interval": "1s", "timeout": "500ms"}


def write_config(tmp_path: Path, targets: list[dict[str, Any]], store: dict[str, Any] | None = None,
                 **extra: Any) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"targets": targets, "store": store or {"driver": "none"}, **extra}))
    return str(path)


@asynccontextmanager
async def running(config_path: str) -> AsyncIterator[TestClient]:
    """The agent's app on 127.0.0.1:0 with its background tasks (probes, store) running."""
    server = TestServer(build_app(load_config(config_path, environ={})), host="127.0.0.1", port=0)
    async with TestClient(server) as client:
        yield client


async def status_json(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/status")
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def probed(client: TestClient, names: set[str]) -> dict[str, Any]:
    """The status once every named target has a result."""
    async def ready() -> dict[str, Any] | None:
        body = await status_json(client)
        states = {t["name"]: t["state"] for t in body["targets"]}
        return body if all(states.get(n, "unknown") != "unknown" for n in names) else None
    return await eventually(ready, what=f"a first result for {sorted(names)}")


async def page_html(client: TestClient) -> str:
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    return await resp.text()


# --- the real app, real targets ---------------------------------------------------------------------

def test_up_and_down_targets_with_the_failure_reason(tmp_path: Path) -> None:
    closed = free_port()              # nothing listens there: connection refused
    with loopback_http_server() as web_url:
        config = write_config(tmp_path, [
            {"name": "web", "kind": "http", "url": web_url + "/", "labels": {"service": "frontend"}, **FAST},
            {"name": "db", "kind": "tcp", "address": f"127.0.0.1:{closed}", **FAST}])

        async def scenario() -> tuple[dict[str, Any], Any]:
            async with running(config) as client:
                body = await probed(client, {"web", "db"})
                page = read_page(await page_html(client))
                return body, page
        body, page = asyncio.run(scenario())

    assert body["version"] == __version__ and body["summary"] == {"up": 1, "down": 1, "unknown": 0}
    assert body["uptimeSource"] == "memory"
    web, db = sorted(body["targets"], key=lambda t: t["name"] != "web")
    assert [t["name"] for t in body["targets"]] == ["db", "web"]          # problems first
    assert (web["state"], web["kind"], web["labels"], web["lastFailure"]) == ("up", "http", {"service": "frontend"}, None)
    assert web["endpoint"] == web_url + "/" and 0 < web["lastLatencySeconds"] < 0.5
    assert web["uptime"]["window"] == "since_start" and web["uptime"]["ratio"] == 1.0
    assert (db["state"], db["kind"], db["uptime"]["ratio"]) == ("down", "tcp", 0.0)
    assert db["lastFailure"]["reason"] == "connect" and "refused" in db["lastFailure"]["detail"].lower()
    assert {f["target"] for f in body["recentFailures"]} == {"db"}

    assert page.title == "loom-agent status"
    assert "target up" in page.row_classes["web"] and "target down" in page.row_classes["db"]
    web_cells, db_cells = page.cells["web"], page.cells["db"]
    assert web_cells["Target"] == f"web http {web_url}/ service=frontend"
    assert (web_cells["State"], web_cells["Last failure"]) == ("up", "none")
    assert web_cells["Uptime"].startswith("100.00 % since start,") and web_cells["Latency"].endswith(" ms")
    assert db_cells["Target"] == f"db tcp 127.0.0.1:{closed}"
    assert (db_cells["State"], db_cells["Uptime"][:6]) == ("down", "0.00 %")
    assert db_cells["Last failure"].startswith("connect ") and "refused" in db_cells["Last failure"].lower()
    assert page.sections["failures"].startswith("Recent failures db connect")
    assert "No store is configured" in page.sections["targets"]
    assert "None active" in page.sections["anomalies"]


def test_hostile_label_and_failure_detail_are_escaped(tmp_path: Path) -> None:
    with hostile_http_server() as url:
        config = write_config(tmp_path, [{"name": "gateway", "kind": "http", "url": url,
                                          "labels": {"owner": HOSTILE_LABEL}, **FAST}])

        async def scenario() -> tuple[dict[str, Any], str]:
            async with running(config) as client:
                return await probed(client, {"gateway"}), await page_html(client)
        body, document = asyncio.run(scenario())

    failure = body["targets"][0]["lastFailure"]
    assert failure["reason"] == "protocol" and "<script>" in failure["detail"]    # JSON keeps the text as it is
    assert "<script" not in document and "<img" not in document and "onerror=\"" not in document
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in document
    page = read_page(document)                     # and a reader sees exactly the hostile text
    assert HOSTILE_STATUS_LINE in page.rows["gateway"]
    assert f"owner={HOSTILE_LABEL}" in page.rows["gateway"]
    assert page.tags.isdisjoint({"script", "img", "iframe", "object"})


def test_page_has_no_external_asset_and_is_made_for_phones(tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name": "db", "kind": "tcp", "address": f"127.0.0.1:{free_port()}", **FAST}])

    async def scenario() -> tuple[str, Any]:
        async with running(config) as client:
            await probed(client, {"db"})
            resp = await client.get("/", headers={"Accept-Encoding": "gzip"})
            return await resp.text(), resp.headers
    document, headers = asyncio.run(scenario())
    page = read_page(document)
    assert all(url.startswith("/") and not url.startswith("//") for url in page.urls), page.urls
    assert page.tags.isdisjoint({"script", "link", "img", "iframe"})          # CSS inline, nothing fetched
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in document
    assert "@media (max-width:720px)" in document
    assert headers["Content-Encoding"] == "gzip" and headers["Cache-Control"] == "no-store"


def test_no_targets_is_said_plainly(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, dict[str, Any]]:
        async with running(write_config(tmp_path, [])) as client:
            return await page_html(client), await status_json(client)
    document, body = asyncio.run(scenario())
    assert "No targets are configured." in read_page(document).sections["targets"]
    assert body["targets"] == [] and body["summary"] == {"down": 0, "unknown": 0, "up": 0}


def test_active_anomalies_of_the_last_evaluation(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], events={"api_keys": [KEY]}, api={"admin_tokens": [TOKEN]},
                          alerting={"auth_failure_spike": {"window_minutes": 15, "spike_threshold": 3}})
    failure = envelope("login_attempt", {"result": "failure", "method": "password",
                                         "failure_reason": "invalid_credentials"})

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        async with running(config) as client:
            before = await status_json(client)
            resp = await client.post("/v1/events/batch", json=[failure] * 4, headers={"X-Loom-Api-Key": KEY})
            assert resp.status == 200, await resp.text()
            # the monitor re-evaluates every 30 s; an admin GET /api/anomalies evaluates now
            resp = await client.get("/api/anomalies", headers={"Authorization": f"Bearer {TOKEN}"})
            assert resp.status == 200
            return before, await status_json(client), await page_html(client)
    before, after, document = asyncio.run(scenario())
    assert before["anomalies"]["active"] == [] and before["anomalies"]["evaluatedAt"] is not None
    assert after["anomalies"]["active"] == [{"detector": "auth_failure_spike", "severity": "warning",
                                            "windowMinutes": 15}]
    assert "warning auth_failure_spike over 15 min" in read_page(document).sections["anomalies"]


# --- 24 h uptime from the store ---------------------------------------------------------------------

def rollups(*probes: tuple[str, float, int, int]) -> ProbeRollups:
    """(target, ended_at, probes, successes) counted as the runtime counts probes, ready to flush."""
    found = ProbeRollups()
    for name, ended_at, n, successes in probes:
        for i in range(n):
            found.observe(name, i < successes, 0.01, ended_at)
    return found


def store_section(store_config: StoreConfig) -> dict[str, Any]:
    if store_config.driver == "sqlite":
        return {"driver": "sqlite", "path": store_config.path}
    return {"driver": "postgres", "dsn": store_config.dsn}


def test_24h_uptime_comes_from_the_stores_probe_rollups_and_is_cached(
        tmp_path: Path, store_config: StoreConfig, run: Callable[..., Any]) -> None:
    now = time.time()

    async def seed() -> None:
        store = await open_store(store_config)
        assert store is not None
        await rollups(("web", now - 600, 60, 57),               # 95 % over the day
                      ("web", now - 5 * 3600, 40, 38),
                      ("web", now - 25 * 3600, 500, 0),         # older than 24 h: not counted
                      ("gone", now - 300, 10, 0)).flush(store)  # not configured: not shown
        await store.close()
    run(seed())

    with loopback_http_server() as web_url:
        config = write_config(tmp_path, [
            {"name": "web", "kind": "http", "url": web_url + "/", **FAST},
            {"name": "fresh", "kind": "http", "url": web_url + "/", **FAST}],
            store=store_section(store_config), privacy={"hmac_key": "k" * 32})

        async def scenario() -> tuple[dict[str, Any], str, dict[str, Any], dict[str, Any]]:
            async with running(config) as client:
                first = await probed(client, {"web", "fresh"})
                document = await page_html(client)
                app = client.server.app
                await rollups(("web", now - 120, 100, 0)).flush(app[EVENT_STORE].store)
                await status_json(client)                   # within the ttl: no query...
                await asyncio.sleep(0.3)                    # ...not even one in the background
                cached = await status_json(client)
                cache = app[UPTIME_CACHE]
                cache.clock = lambda: time.time() + cache.ttl + 1

                async def refreshed() -> dict[str, Any] | None:
                    body = await status_json(client)
                    uptime = by_name(body)["web"]["uptime"]
                    return body if uptime["probes"] - uptime["successes"] == 105 else None
                return first, document, cached, await eventually(refreshed, what="the uptime cache's refresh")
        first, document, cached, later = run(scenario())

    # the agent's own probes of "web" (all successes) reach the store every 15 s: exact counts are the
    # seeded failures; the totals are at least the seeded probes
    web, fresh = by_name(first)["web"], by_name(first)["fresh"]
    assert first["uptimeSource"] == "store" and first["uptimeError"] is None
    assert web["uptime"]["window"] == "24h" and web["uptime"]["probes"] >= 100
    assert web["uptime"]["probes"] - web["uptime"]["successes"] == 5
    assert fresh["uptime"]["window"] == "since_start"        # no flushed minute yet: this process's counts
    assert "gone" not in by_name(first)
    assert read_page(document).cells["web"]["Uptime"] == (
        f"{percent(web['uptime']['ratio'])} 24 h, {web['uptime']['probes']} probes")
    assert by_name(cached)["web"]["uptime"] == web["uptime"]           # cached: the added minute not seen yet
    later_web = by_name(later)["web"]["uptime"]
    assert later_web["probes"] - later_web["successes"] == 105


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in body["targets"]}


# --- the parts ------------------------------------------------------------------------------------

def target(name: str, **labels: str) -> ProbeTarget:
    return ProbeTarget(name, "tcp", None, "127.0.0.1:1", 15.0, 5.0, 0, labels, None)


def failed(detail: str = "refused", reason: Reason = Reason.CONNECT) -> ProbeResult:
    return ProbeResult(False, 0.002, reason, detail)


def test_failure_ring_is_bounded_newest_first_and_cuts_long_details() -> None:
    history = ProbeHistory(max_failures=3)
    a, b = target("a"), target("b")
    for second in range(5):
        history.observe(a, failed(f"a{second}"), 1000.0 + second)
    history.observe(b, ProbeResult(True, 0.001), 1010.0)
    history.observe(b, failed("x" * 5000, Reason.TIMEOUT), 1011.0)
    assert [(f.target, f.detail[:2]) for f in history.recent_failures()] == [("b", "xx"), ("a", "a4"), ("a", "a3")]
    assert len(history.last_failure("b").detail) == MAX_DETAIL_CHARS
    assert history.last_failure("a").detail == "a4"
    assert (history.counts("a"), history.counts("b"), history.counts("c")) == ((5, 0), (2, 1), (0, 0))


def test_reload_forgets_removed_targets() -> None:
    history = ProbeHistory()
    history.observe(target("kept"), failed(), 1.0)
    history.observe(target("removed"), failed(), 2.0)
    new = parse_config("targets:\n  - {name: kept, kind: tcp, address: '127.0.0.1:1'}\n", environ={})
    history.prepare(new.targets)()
    assert history.counts("removed") == (0, 0) and history.last_failure("removed") is None
    assert history.counts("kept") == (1, 0)


class FailingStore:
    """A store whose reads fail, counting them: what the cache does when PostgreSQL is down."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.fetches = 0

    async def fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.fetches += 1
        raise StoreUnavailable("connection refused")


def test_a_failing_store_is_asked_once_per_ttl_and_named() -> None:
    clock = [1000.0]
    cache = UptimeCache(ttl=30.0, first_wait=1.0, clock=lambda: clock[0])
    store = FailingStore()

    async def scenario() -> list[Any]:
        seen = [await cache.get(store), cache.error]
        for _ in range(5):
            await cache.get(store)
        seen.append(store.fetches)
        clock[0] += 31
        await cache.get(store)
        await asyncio.sleep(0)
        seen.append(store.fetches)
        await cache.close()
        return seen
    assert asyncio.run(scenario()) == [None, "connection refused", 1, 2]


class HangingStore(FailingStore):
    """A store whose reads never end: PostgreSQL behind a dropped connection."""

    async def fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.fetches += 1
        await asyncio.Event().wait()
        return []


def test_a_hanging_store_delays_only_the_first_page_and_only_by_first_wait() -> None:
    cache = UptimeCache(ttl=30.0, first_wait=0.05)
    store = HangingStore()

    async def scenario() -> tuple[Any, Any, int]:
        first = await cache.get(store)
        cache.first_wait = 3600.0             # were the next page to wait again, it would time out below
        second = await asyncio.wait_for(cache.get(store), 10)
        fetches = store.fetches
        await cache.close()                   # cancels the hung read
        return first, second, fetches
    assert asyncio.run(scenario()) == (None, None, 1)


def test_unknown_state_and_rendering_details() -> None:
    history = ProbeHistory(clock=lambda: 1000.0)
    monitor = AnomalyMonitor(Thresholds(), clock=lambda: 1000.0)
    report = build_report(version="9.9", now=1060.0, last_results={"new": (target("new"), None, 0.0)},
                          history=history, uptime_rows=None, store_configured=False, uptime_error=None,
                          monitor=monitor)
    page = read_page(render_page(report))
    cells = page.cells["new"]
    assert (cells["State"], cells["Latency"], cells["Last probe"]) == ("unknown", "–", "never")
    assert cells["Uptime"] == "– since start, no probes yet"
    assert report.to_json()["summary"] == {"down": 0, "unknown": 1, "up": 0}
    assert report.to_json()["anomalies"] == {"evaluatedAt": None, "active": []}
    assert "not evaluated yet" in page.sections["anomalies"]


def test_uptime_is_never_rounded_up_to_100_percent() -> None:
    assert percent(1.0) == "100.00 %"
    assert percent(99_999 / 100_000) == "99.99 %"
    assert percent(0.95) == "95.00 %"
    assert [ago(0.2), ago(12), ago(600), ago(7200), ago(3 * 86400)] == [
        "just now", "12 s ago", "10 min ago", "2 h ago", "3 d ago"]
