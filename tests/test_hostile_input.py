"""Hostile input (issue 8): a flood of distinct label values stays within the series limits; label values
with quotes, backslashes, newlines and unicode come back exact from both exposition formats and from a
real Prometheus; U+0000 and out-of-range integers, which PostgreSQL cannot store, are 4xx on both stores
and never fail the other requests of a group commit; oversized requests are refused before their body is
read; slow clients are timed out by the agent while everyone else is answered.

Figures for docs/reliability.md are printed (`pytest -s tests/test_hostile_input.py`), one `FIGURE` line
each. The label checks of the exposition code itself live in tests/test_exposition.py; this file sends
the values through the agent's ingest paths.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.api import body as body_limits
from agent.app.root import build_app
from agent.config.load import parse_config
from agent.events.mapping import EventMetrics
from agent.events.model import Event
from agent.metrics.exposition import render
from agent.metrics.store import OTHER, MetricStore
from tests.support.procs import AgentProcess, PrometheusProcess, http_get, wait_until
from tests.test_custom_metrics_agent import free_udp_port

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

KEY, ADMIN = "hostile-ingest-key-0123456789", "hostile-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROUTE_LIMIT, RULE_LIMIT, CUSTOM_EVENT_LIMIT, TAG_LIMIT = 500, 2000, 500, 1000
DOC = json.loads((Path(__file__).resolve().parent.parent / "agent/api/openapi.json").read_text())
# the Sentry endpoints have their own body bound (sentry.max_envelope_bytes, 20 MiB) and project path:
# tests/test_sentry_api.py covers them
BODY_ROUTES = sorted(path for path, item in DOC["paths"].items() for op in item.values()
                     if isinstance(op, dict) and "requestBody" in op and op.get("tags") != ["sentry"])


def figure(name: str, **values: Any) -> None:
    print(f"\nFIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def flood_config(statsd_port: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": {"driver": "none"}, "targets": [],
        "events": {"api_keys": [KEY], "max_batch": 5000, "max_body_bytes": 4 * 1024 * 1024,
                   "series_limit": RULE_LIMIT, "custom_event_limit": CUSTOM_EVENT_LIMIT,
                   "series_limits": {"loom_api_request_duration_seconds": ROUTE_LIMIT},
                   "mappings": [{"match": "flood_*", "action": "count", "name": "loom_flood_events",
                                 "labels": {"tenant": "tenant"}},
                                {"match": "nasty_*", "action": "count", "name": "loom_nasty_events",
                                 "labels": {"kind": "kind"}}]},
        "custom_metrics": {"series_limit": TAG_LIMIT}}
    if statsd_port is not None:
        config["custom_metrics"]["statsd"] = {"enabled": True, "listen": f"127.0.0.1:{statsd_port}"}
    return config


def series(text: str, family: str, sample: str | None = None) -> list[dict[str, str]]:
    """The label sets of `family`'s samples named `sample` (default: the family name) in a text exposition."""
    wanted = sample or family
    return [s.labels for f in parse_text(text) if f.name == family for s in f.samples if s.name == wanted]


def overflow(text: str) -> dict[tuple[str, str], float]:
    return {(s.labels["metric"], s.labels["label"]): s.value for f in parse_text(text)
            if f.name == "loom_agent_label_overflow" for s in f.samples}


# --- 1. a million distinct label values ------------------------------------------------------------

def test_a_million_label_values_in_process_stay_within_the_series_limits() -> None:
    """1,000,000 distinct routes (an open-set catalog label) and 1,000,000 invented event names each
    carrying a distinct mapping-rule label value, through the same EventMetrics the pipeline runs."""
    store = MetricStore(RULE_LIMIT)
    metrics = EventMetrics(store, parse_config(yaml.safe_dump(flood_config())).events)
    n = 1_000_000
    started = time.perf_counter()
    for i in range(n):
        metrics.apply(Event("api_request", "performance", 0.0, 0.0,
                            {"route": f"/r/{i}", "method": "GET", "status": 503, "duration_ms": 5.0}))
        metrics.apply(Event(f"flood_{i}", "custom", 0.0, 0.0, {"tenant": f"t{i}"}, known=False))
    seconds = time.perf_counter() - started
    routes = store.get("loom_api_request_duration_seconds").series
    assert len(routes) == ROUTE_LIMIT + 1
    assert sum(routes[(OTHER, "GET", "5xx")][:-1]) == n - ROUTE_LIMIT     # its count: every folded observation
    # the closed labels keep their values past the limit: the 5xx of unknown routes still count as 5xx
    assert {key[1:] for key in routes} == {("GET", "5xx")}
    assert len(store.get("loom_flood_events").series) == RULE_LIMIT + 1
    assert store.get("loom_flood_events").series[(OTHER,)] == n - RULE_LIMIT
    custom_names = [key for key in store.get("loom_events").series if key[0] == "custom"]
    assert len(custom_names) == CUSTOM_EVENT_LIMIT + 1
    assert store.overflow == {("loom_api_request_duration_seconds", "route"): n - ROUTE_LIMIT,
                              ("loom_flood_events", "tenant"): n - RULE_LIMIT,
                              ("loom_events", "event"): n - CUSTOM_EVENT_LIMIT}
    started = time.perf_counter()
    text = render(store, None, openmetrics=False)
    render_ms = (time.perf_counter() - started) * 1000
    assert overflow(text.decode())[("loom_flood_events", "tenant")] == n - RULE_LIMIT
    figure("cardinality in process", values_per_path=n, seconds=round(seconds, 1),
           series=sum(len(f.series) for f in store.families()), exposition_bytes=len(text),
           render_ms=round(render_ms, 1))


async def _post_all(url: str, bodies: list[bytes], concurrency: int = 4) -> list[int]:
    statuses: list[int] = []
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(headers={**AUTH, "Content-Type": "application/json"}) as session:
        async def worker() -> None:
            while queue:
                async with session.post(url, data=queue.pop()) as response:
                    statuses.append(response.status)
                    await response.read()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def _event_batches(count: int, batch: int) -> list[bytes]:
    bodies = []
    for start in range(0, count, batch):
        items = []
        for i in range(start, min(start + batch, count)):
            items.append(b'{"event":"api_request","anonymous_id":"a","properties":{"route":"/r/%d","method":"GET",'
                         b'"status":200,"duration_ms":5}}' % i)
            items.append(b'{"event":"flood_%d","anonymous_id":"a","properties":{"tenant":"t%d"}}' % (i, i))
        bodies.append(b"[" + b",".join(items) + b"]")
    return bodies


def _metric_batches(count: int, batch: int) -> list[bytes]:
    return [b"[" + b",".join(b'{"name":"flood_http","type":"counter","value":1,"tags":{"tenant":"t%d"}}' % i
                             for i in range(start, min(start + batch, count))) + b"]"
            for start in range(0, count, batch)]


def _statsd_flood(port: int, count: int, per_second: float = 100_000, per_datagram: int = 250) -> None:
    """`count` lines, paced so that a busy agent on a shared core keeps up (UDP drops the excess)."""
    started = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for start in range(0, count, per_datagram):
            sock.sendto(b"\n".join(b"flood_statsd:1|c|#tenant:t%d" % i
                                   for i in range(start, min(start + per_datagram, count))), ("127.0.0.1", port))
            ahead = start / per_second - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)


def _accepted(text: str) -> float:
    return sum(s.value for f in parse_text(text) if f.name == "loom_agent_statsd_lines" for s in f.samples
               if s.labels["result"] == "accepted")


def test_a_flood_over_http_and_statsd_stays_within_the_limits(tmp_path: Path) -> None:
    """Through a real agent: 1,000,000 distinct custom-metric tag values over POST /v1/metrics, 200,000
    over StatsD, and 100,000 distinct routes plus 100,000 invented event names with distinct mapping-rule
    labels over POST /v1/events/batch (the million of each of those: the in-process test above)."""
    statsd_port = free_udp_port()
    agent = AgentProcess(tmp_path, flood_config(statsd_port))
    try:
        rss_before, fds_before = rss_mib(agent.proc.pid), open_fds(agent.proc.pid)
        events, metrics_n, statsd_n = 100_000, 1_000_000, 200_000
        started = time.perf_counter()
        statuses = asyncio.run(_post_all(agent.url + "/v1/metrics", _metric_batches(metrics_n, 5000)))
        metrics_seconds = time.perf_counter() - started
        assert set(statuses) == {200}
        started = time.perf_counter()
        statuses = asyncio.run(_post_all(agent.url + "/v1/events/batch", _event_batches(events, 2500)))
        events_seconds = time.perf_counter() - started
        assert set(statuses) == {200}
        started = time.perf_counter()
        _statsd_flood(statsd_port, statsd_n)
        statsd_seconds = time.perf_counter() - started

        counts: list[float] = []

        def statsd_settled() -> bool:           # the count of accepted lines stops moving
            counts.append(_accepted(agent.metrics()))
            return len(counts) > 1 and counts[-1] == counts[-2] > 0
        wait_until(statsd_settled, 20, interval=0.3, what="StatsD lines counted")
        started = time.perf_counter()
        text = agent.metrics()
        scrape_ms = (time.perf_counter() - started) * 1000
        rss_after = rss_mib(agent.proc.pid)
    finally:
        agent.stop()
    accepted = _accepted(text)
    folded = overflow(text)
    routes = series(text, "loom_api_request_duration_seconds", "loom_api_request_duration_seconds_count")
    assert len(routes) == ROUTE_LIMIT + 1 and {"route": OTHER, "method": "GET", "status_class": "2xx"} in routes
    assert folded[("loom_api_request_duration_seconds", "route")] == events - ROUTE_LIMIT
    assert len(series(text, "loom_flood_events", "loom_flood_events_total")) == RULE_LIMIT + 1
    assert folded[("loom_flood_events", "tenant")] == events - RULE_LIMIT
    assert len([s for s in series(text, "loom_events", "loom_events_total") if s["category"] == "custom"]) == \
        CUSTOM_EVENT_LIMIT + 1
    assert folded[("loom_events", "event")] == events - CUSTOM_EVENT_LIMIT
    http_series = [s for f in parse_text(text) if f.name == "loom_app_flood_http" for s in f.samples]
    assert len(http_series) == TAG_LIMIT + 1 and sum(s.value for s in http_series) == metrics_n
    assert folded[("loom_app_flood_http", "tenant")] == metrics_n - TAG_LIMIT
    statsd_series = [s for f in parse_text(text) if f.name == "loom_app_flood_statsd" for s in f.samples]
    assert accepted > TAG_LIMIT and sum(s.value for s in statsd_series) == accepted   # UDP may drop; none is lost inside
    assert len(statsd_series) == TAG_LIMIT + 1
    assert folded[("loom_app_flood_statsd", "tenant")] == accepted - TAG_LIMIT
    total_series = sum(len(f.samples) for f in parse_text(text))
    assert len(text) < 4 * 1024 * 1024                   # ~7,000 series whatever the flood
    assert rss_after - rss_before < 150                  # a million series would be several hundred MiB
    figure("cardinality over HTTP/StatsD", metrics_http=metrics_n, metrics_http_seconds=round(metrics_seconds, 1),
           events_http=2 * events, events_seconds=round(events_seconds, 1), statsd_sent=statsd_n,
           statsd_accepted=int(accepted), statsd_seconds=round(statsd_seconds, 1), samples=total_series,
           metrics_bytes=len(text), scrape_ms=round(scrape_ms), rss_before_mib=round(rss_before),
           rss_after_mib=round(rss_after), fds_before=fds_before)


# --- 2. quotes, backslashes, newlines and unicode in label values ----------------------------------

NASTY = ['quo"te', "back\\slash", "new\nline", '\\"\n\\n mixed', "ünïcødé ✓ 🚀", '{a="b"}, # EOF', "tab\there",
         "trailing\\", "esc\x1b[31m", "line\u2028sep", "\ufeffbom", "cr\rlf"]        # U+0000: test below
NASTY_ROUTE = '/a"b\\c/ünï/✓'


def _nasty_values(text: str, openmetrics: bool) -> dict[str, set[str]]:
    parse = parse_openmetrics if openmetrics else parse_text
    out: dict[str, set[str]] = {}
    for family in parse(text):
        for s in family.samples:
            if family.name in ("loom_nasty_events", "loom_app_nasty"):
                out.setdefault(family.name, set()).add(s.labels["kind"])
            elif family.name == "loom_api_request_duration_seconds":
                out.setdefault(family.name, set()).add(s.labels["route"])
    return out


class _TextOnlyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards a scrape to the agent asking for the classic text format (Prometheus 2.42 always prefers
    OpenMetrics), so that a real Prometheus parses the agent's text exposition too."""
    upstream = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, headers, body = http_get(self.upstream + self.path, {"Accept": "text/plain"})
        self.send_response(status)
        self.send_header("Content-Type", headers["Content-Type"])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_nasty_label_values_come_back_exact_from_both_formats_and_prometheus(tmp_path: Path) -> None:
    statsd_port = free_udp_port()
    agent = AgentProcess(tmp_path, flood_config(statsd_port))
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Proxy", (_TextOnlyProxy,), {"upstream": agent.url}))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    prometheus = None
    try:
        events = [{"event": "nasty_thing", "anonymous_id": "a", "properties": {"kind": v}} for v in NASTY]
        events.append({"event": "api_request", "anonymous_id": "a",
                       "properties": {"route": NASTY_ROUTE, "method": "GET", "status": 200, "duration_ms": 5}})
        metrics = [{"name": "nasty", "type": "counter", "value": 1, "tags": {"kind": v}} for v in NASTY]
        assert asyncio.run(_post_all(agent.url + "/v1/events/batch", [json.dumps(events).encode()])) == [200]
        assert asyncio.run(_post_all(agent.url + "/v1/metrics", [json.dumps(metrics).encode()])) == [200]
        expected = {"loom_nasty_events": set(NASTY), "loom_app_nasty": set(NASTY),
                    "loom_api_request_duration_seconds": {NASTY_ROUTE}}
        for accept, openmetrics in ((None, False), ("application/openmetrics-text; version=1.0.0", True)):
            for encoding in ("identity", "gzip"):
                request = urllib.request.Request(agent.url + "/metrics", headers={
                    "Accept-Encoding": encoding, **({"Accept": accept} if accept else {})})
                with urllib.request.urlopen(request, timeout=10) as response:
                    raw = response.read()
                    assert (response.headers.get("Content-Encoding") == "gzip") == (encoding == "gzip")
                text = (gzip.decompress(raw) if encoding == "gzip" else raw).decode()
                assert _nasty_values(text, openmetrics) == expected, (accept, encoding)

        address = f"127.0.0.1:{agent.port}"
        prometheus = PrometheusProcess(tmp_path, [
            {"job_name": "loom-agent", "static_configs": [{"targets": [address]}]},
            {"job_name": "text-format", "static_configs": [{"targets": [f"127.0.0.1:{proxy.server_address[1]}"]}]}])
        for job in ("loom-agent", "text-format"):
            found = wait_until(lambda: (lambda r: r if len(r) == len(NASTY) else None)(
                prometheus.query(f'loom_app_nasty_total{{job="{job}"}}')), 30, what=f"nasty series in job {job}")
            assert {r["metric"]["kind"] for r in found} == set(NASTY), job
            found = prometheus.query(f'loom_nasty_events_total{{job="{job}"}}')
            assert {r["metric"]["kind"] for r in found} == set(NASTY), job
            found = prometheus.query(f'loom_api_request_duration_seconds_count{{job="{job}"}}')
            assert [r["metric"]["route"] for r in found] == [NASTY_ROUTE], job
            for value in NASTY:                  # each one selectable by an exact matcher
                selector = f'loom_app_nasty_total{{job="{job}",kind={json.dumps(value, ensure_ascii=False)}}}'
                assert [r["metric"]["kind"] for r in prometheus.query(selector)] == [value], selector
    finally:
        if prometheus is not None:
            prometheus.stop()
        proxy.shutdown()
        proxy.server_close()
        agent.stop()


# --- 3. what PostgreSQL cannot store ---------------------------------------------------------------

NUL_REQUESTS = [   # method, path, body, credential
    ("POST", "/v1/events", {"event": "cta_click", "anonymous_id": "a", "properties": {"ctaId": "x\x00y"}}, KEY),
    ("POST", "/v1/events", {"event": "cta_click", "user_id": "u\x00", "properties": {"ctaId": "x"}}, KEY),
    ("POST", "/capture", {"api_key": KEY, "event": "$pageview", "distinct_id": "d\x00"}, None),
    ("POST", "/v1/identify", {"userId": "u1", "traits": {"role": "co\x00ach"}}, KEY),
    ("POST", "/v1/errors", {"type": "Type\x00Error", "message": "m"}, KEY),
    ("POST", "/api/analytics/opt-out", {"userId": "a\x00b", "optOut": True}, ADMIN),
    ("GET", "/api/experiments/%00", None, ADMIN), ("GET", "/api/experiments/x?control=a%00b", None, ADMIN),
    ("DELETE", "/api/analytics/user/%00", None, ADMIN), ("GET", "/api/analytics/export?userId=%00", None, ADMIN),
    ("GET", "/api/errors?feature=a%00b", None, ADMIN),
    # not a NUL, the same failure: an integer past PostgreSQL's int4 column (onboarding_funnel.step_number)
    ("POST", "/v1/events", {"event": "onboarding_step_started", "anonymous_id": "a",
                            "properties": {"step": "s", "stepNumber": 3_000_000_000}}, KEY)]


def test_what_postgresql_cannot_store_is_never_a_5xx_nor_fails_the_requests_beside_it(store_config, tmp_path: Path) -> None:
    """U+0000 is valid JSON and valid in a URL, PostgreSQL refuses it in text and jsonb (and a step number
    past 2^31 in its int4 column). The same input must get the same answer on both stores (a 4xx naming
    the field, or stored), and a request carrying one must not fail the other requests of its group
    commit (each of them was a 500)."""
    store = ({"driver": "sqlite", "path": store_config.path} if store_config.driver == "sqlite"
             else {"driver": "postgres", "dsn": store_config.dsn})
    agent = AgentProcess(tmp_path, {"store": store, "privacy": {"hmac_key": "h" * 40}, "targets": [],
                                    "events": {"api_keys": [KEY]}, "api": {"admin_tokens": [ADMIN]}})

    async def scenario() -> tuple[list[str], list[int]]:
        async with aiohttp.ClientSession() as session:
            async def send(method: str, path: str, body: Any, credential: str | None) -> int:
                headers = {"Authorization": f"Bearer {credential}"} if credential else {}
                async with session.request(method, agent.url + path, json=body, headers=headers) as response:
                    await response.read()
                    return response.status
            answers = [(await send(*request), request) for request in NUL_REQUESTS]
            five_hundreds = [f"{status}: {request}" for status, request in answers if status >= 500]
            good = {"event": "cta_click", "anonymous_id": "a", "properties": {"ctaId": "ok"}}
            mixed = await asyncio.gather(*(send("POST", "/v1/events", NUL_REQUESTS[0][2] if i % 5 == 0 else good, KEY)
                                           for i in range(40)))
            return five_hundreds, [status for i, status in enumerate(mixed) if i % 5]
    try:
        five_hundreds, others = asyncio.run(scenario())
    finally:
        agent.stop()
    failed_beside = sum(1 for status in others if status != 200)
    assert (five_hundreds, failed_beside) == ([], 0), "\n".join(five_hundreds) + \
        f"\n{failed_beside} valid requests sent beside them failed: {others}"


# --- 4. oversized requests -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> AgentProcess:
    process = AgentProcess(tmp_path_factory.mktemp("agent"), {"store": {"driver": "none"}, "targets": [],
                                                               "events": {"api_keys": [KEY]},
                                                               "api": {"admin_tokens": [ADMIN]}})
    yield process
    process.stop()


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, bytes, float]:
    """Send `data` on a fresh connection; the answer's status, its body and the seconds it took."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    return int(head.split(b" ")[1]), body, time.perf_counter() - started


def request_head(method: str, path: str, *headers: str) -> bytes:
    """The request's head with the credential and content type its operation documents: the admin token where
    only an admin may post (the insights), the ingest key elsewhere; a form for the analytics page's sign-in."""
    operation = DOC["paths"].get(path, {}).get(method.lower(), {})
    schemes = [name for requirement in operation.get("security", [{}]) for name in requirement]
    credential = ADMIN if schemes == ["adminBearer"] else KEY
    content_type = next(iter(operation.get("requestBody", {}).get("content", {})), "application/json")
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: agent", f"Authorization: Bearer {credential}",
                        f"Content-Type: {content_type}", *headers, "", ""]).encode()


def error_text(body: bytes) -> str:
    """The refusal's message: the JSON error of an API, the page's text of the analytics sign-in (HTML)."""
    return json.loads(body)["error"] if body.startswith(b"{") else body.decode()


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_100mb_content_length_is_refused_before_any_body_byte(agent: AgentProcess, path: str) -> None:
    status, body, seconds = exchange(agent.port, request_head("POST", path, "Content-Length: 100000000"))
    assert status == 413, body
    assert "larger than" in error_text(body)
    assert seconds < 5                       # answered without waiting for a body that never comes


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_chunked_body_past_the_limit_is_413_without_its_end(agent: AgentProcess, path: str) -> None:
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    # 17 x 64 KiB > 1 MiB (the ingest bodies' bound), 257 x 64 KiB > 16 MiB (a recording's, /s/), and the
    # terminating chunk never sent
    chunks = 257 if path.rstrip("/") == "/s" else 17
    status, body, _ = exchange(agent.port, request_head("POST", path, "Transfer-Encoding: chunked") + chunk * chunks)
    assert status == 413, body


OVERSIZED_HEADS = {
    "request line of 20 kB": b"GET /metrics?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: agent\r\n\r\n",
    "header value of 20 kB": b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "header name of 20 kB": b"GET /metrics HTTP/1.1\r\nHost: agent\r\n" + b"X" * 20000 + b": v\r\n\r\n",
    "200 headers": b"GET /metrics HTTP/1.1\r\nHost: agent\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
    "Authorization of 9 kB": b"GET /api/errors HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer " + b"a" * 9000 + b"\r\n\r\n",
    "negative Content-Length": b"POST /v1/events HTTP/1.1\r\nHost: agent\r\nContent-Length: -1\r\n\r\n",
    "two Content-Lengths": b"POST /v1/events HTTP/1.1\r\nHost: agent\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "chunk size overflow": b"POST /v1/events HTTP/1.1\r\nHost: agent\r\nTransfer-Encoding: chunked\r\n\r\n" + b"F" * 40 + b"\r\n",
}


@pytest.mark.parametrize("name", OVERSIZED_HEADS)
def test_oversized_or_malformed_heads_are_400_or_431_never_5xx(agent: AgentProcess, name: str) -> None:
    status, _, _ = exchange(agent.port, OVERSIZED_HEADS[name])
    assert status in (400, 431)
    assert http_get(agent.url + "/-/healthy")[0] == 200


def test_a_body_that_does_not_decode_is_400_not_500(agent: AgentProcess) -> None:
    """Content-Encoding: gzip over bytes that are not gzip, on every route that reads a body (the opt-out
    endpoint answered 500 before agent/api/body.py)."""
    for path in BODY_ROUTES:
        status, body, _ = exchange(agent.port, request_head("POST", path, "Content-Encoding: gzip",
                                                            "Content-Length: 10") + b"not gzip!!")
        assert status == 400 and b"cannot read the request body" in body, (path, body)


# --- 5. slow clients -------------------------------------------------------------------------------

async def _drip_headers(port: int, stop: asyncio.Event) -> bool:
    """Send a request's headers a byte a second until told to stop; True when the agent answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Slow: " + b"a" * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
                break
            except TimeoutError:
                pass
        try:
            return await asyncio.wait_for(reader.read(1), 0.1) != b""       # b"": closed, never answered
        except TimeoutError:
            return False
    finally:
        writer.close()


async def _stalled_body(port: int, path: str) -> tuple[int, float, bool]:
    """Declare a 1,000-byte body, send 9 bytes of it, then nothing: the status, the seconds until the
    answer, and whether the agent closed the connection after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_head("POST", path, "Content-Length: 1000") + b'{"event":')
        started = time.perf_counter()
        status = int((await asyncio.wait_for(reader.readline(), 40)).split()[1])
        seconds = time.perf_counter() - started
        await asyncio.wait_for(reader.read(), 5)                  # returns at EOF: the agent closed it
        return status, seconds, True
    finally:
        writer.close()


async def _normal_requests(url: str, rounds: int) -> list[float]:
    event = {"event": "cta_click", "anonymous_id": "a", "properties": {"ctaId": "x"}}
    took = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=AUTH) as session:
        for _ in range(rounds):
            for method, path, body in (("GET", "/-/healthy", None), ("POST", "/v1/events", event), ("GET", "/metrics", None)):
                started = time.perf_counter()
                async with session.request(method, url + path, json=body) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                took.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)
    return took


def test_slow_clients_are_timed_out_and_never_hold_up_the_others(agent: AgentProcess) -> None:
    """100 connections sending headers a byte a second and 100 that stall in the middle of their body;
    meanwhile normal requests are answered, the stalled bodies get a 408 after IDLE_SECONDS of silence
    and their connections are closed. (The slow headers end at the keep-alive timeout, 75 s: tested
    in process below with a short one.)"""
    async def scenario() -> tuple[list[tuple[int, float, bool]], list[float], list[bool], int]:
        stop = asyncio.Event()
        drips = [asyncio.create_task(_drip_headers(agent.port, stop)) for _ in range(100)]
        stalls = [asyncio.create_task(_stalled_body(agent.port, BODY_ROUTES[i % len(BODY_ROUTES)]))
                  for i in range(100)]
        await asyncio.sleep(1)
        fds = open_fds(agent.proc.pid)
        took = await _normal_requests(agent.url, 10)
        stalled = await asyncio.gather(*stalls)
        stop.set()
        return stalled, took, await asyncio.gather(*drips), fds

    fds_before = open_fds(agent.proc.pid)
    stalled, took, answered_drips, fds_during = asyncio.run(scenario())
    assert max(took) < 5                      # a liveness bound, not a speed target
    assert {status for status, _, _ in stalled} == {408}
    assert all(closed for _, _, closed in stalled)
    waits = sorted(seconds for _, seconds, _ in stalled)
    assert body_limits.IDLE_SECONDS - 1 < waits[0] and waits[-1] < body_limits.IDLE_SECONDS + 10
    assert not any(answered_drips)           # half-sent headers are never answered
    fds_after = wait_until(lambda: (lambda n: n if n <= fds_before + 2 else None)(open_fds(agent.proc.pid)), 10,
                           what="the slow connections' sockets closed")
    figure("slow clients", slow_header_connections=100, stalled_body_connections=100,
           normal_requests=len(took), normal_max_ms=round(max(took) * 1000), stalled_answered_408_after_s=
           f"{waits[0]:.1f}-{waits[-1]:.1f}", fds_before=fds_before, fds_during=fds_during, fds_after=fds_after)


def test_a_dripping_body_and_dripping_headers_end_at_their_time_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same limits, shortened, in process: a body that keeps arriving a byte at a time ends at the
    total limit; headers that never end are closed at the keep-alive timeout, which the agent sets."""
    import inspect

    import agent.__main__ as main
    keepalive = getattr(main, "KEEPALIVE_SECONDS", None)
    assert keepalive is not None and 0 < keepalive <= 120, "agent/__main__.py sets no header timeout"
    assert "keepalive_timeout=KEEPALIVE_SECONDS" in inspect.getsource(main.run)
    monkeypatch.setattr(body_limits, "IDLE_SECONDS", 0.5)
    monkeypatch.setattr(body_limits, "TOTAL_SECONDS", 2.0)

    async def scenario() -> tuple[bytes, float, bool]:
        runner = web.AppRunner(build_app(parse_config(f"store: {{driver: none}}\nevents: {{api_keys: [{KEY}]}}\n")),
                               keepalive_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_head("POST", "/v1/events", "Content-Length: 1000"))
            started = time.perf_counter()
            answer = asyncio.ensure_future(reader.readline())
            while not answer.done() and time.perf_counter() - started < 10:
                writer.write(b" ")                   # a byte every 0.2 s: never idle, never done
                await asyncio.sleep(0.2)
            dripped = time.perf_counter() - started
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            closed = False
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.1)
                except ConnectionError:
                    closed = True
                    break
                if reader.at_eof():
                    closed = True
                    break
            writer.close()
            return await answer, dripped, closed and time.perf_counter() - started < 5
        finally:
            await runner.cleanup()

    status_line, dripped, headers_closed = asyncio.run(scenario())
    assert status_line.split()[1] == b"408" and 1.5 < dripped < 4
    assert headers_closed
