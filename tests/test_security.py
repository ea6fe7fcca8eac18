"""Security (issue 8): every authenticated route refuses a missing token (401) and a wrong one (403), the
routes taken from agent/api/openapi.json and from the app's router alike, so a new route that forgets
its auth (documented or not) fails here; the business-metrics rate limit holds under concurrency; no
secret the config takes reaches the logs, /metrics, /probe?debug, /api/status, the status page, an OTLP
export or a reload's error answer; no request reads a file.

Elsewhere: the application's personal data and the agent's keys in every sink (tests/test_no_pii_leaks.py);
the Docker image runs as the non-root uid 10001 (tests/test_stack_deploy.py::
test_the_image_runs_as_the_non_root_user_it_creates, and the Kubernetes manifests' runAsNonRoot there).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import re
import secrets
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from google.protobuf import text_format

from agent.app.root import build_app
from agent.config.load import parse_config
from tests.support.agent_app import served
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.pg import PostgresServer
from tests.support.procs import AgentProcess, http_get, http_post, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOC = json.loads((ROOT / "agent/api/openapi.json").read_text())
METHODS = ("get", "post", "put", "patch", "delete", "options")
INGEST, ADMIN = "ingest-key-security-0123456789", "admin-token-security-0123456789"
WRONG = "wrong-token-security-0123456789"
PERSONAL = "personal-key-security-0123456789"
# deliberately public: Prometheus-style lifecycle and exposition endpoints, the blackbox /probe, the
# status page and its JSON, the API description, the CORS preflights of the Sentry endpoints (a browser
# sends a preflight without credentials). Anything else needs a token.
SENTRY_PATHS = ("/api/{project_id}/envelope/", "/api/{project_id}/envelope", "/api/{project_id}/store/",
                "/api/{project_id}/store")
PUBLIC = {("GET", "/metrics"), ("GET", "/probe"), ("GET", "/-/healthy"), ("GET", "/-/ready"), ("POST", "/-/reload"),
          ("GET", "/"), ("GET", "/api/status"), ("GET", "/openapi.json"),
          *(("OPTIONS", path) for path in SENTRY_PATHS),
          # the replay pages hold no data (their script asks the admin API with the token); the player is npm's
          ("GET", "/replay"), ("GET", "/replay/{sessionId}"), ("GET", "/replay/player/{file}"),
          ("OPTIONS", "/s"), ("OPTIONS", "/s/"),
          # PostHog's CORS preflights (no credentials, as a browser sends them) and posthog-js's remote config
          # (public, like the project token in a web page)
          *(("OPTIONS", base + slash) for base in ("/e", "/i/v0/e", "/capture", "/batch", "/track", "/engage",
                                                   "/i/v1/analytics/events", "/flags", "/decide")
            for slash in ("", "/")),
          *((method, path) for path in ("/array/{token}/config", "/array/{token}/config.js")
            for method in ("GET", "OPTIONS"))}
# the admin analytics page signs in with a form and a session cookie, not a bearer token: signed out, its pages
# are a 303 to the sign-in, and sign-out needs the session's CSRF token (tests/test_analytics_page.py checks
# every route under /analytics, and that there are no others)
SESSION_PAGES = {("GET", "/analytics"), ("GET", "/analytics/insights"), ("GET", "/analytics/sign-in"),
                 ("POST", "/analytics/sign-in"), ("POST", "/analytics/sign-out")}
PATH_VALUES = {"{userId}": "user-1", "{experimentId}": "exp-1", "{project_id}": "1"}
# the Sentry endpoints take Sentry's own key schemes (X-Sentry-Auth, ?sentry_key=): a public key of sentry.projects
SENTRY_SCHEMES = {"sentryAuth", "sentryKey"}
SENTRY_KEY = "sentry-public-key-security-0123456789"


def sentry_auth(key: str) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}


def documented_security() -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) -> the security schemes of the operation (empty: public)."""
    return {(method.upper(), path): {name for requirement in op.get("security") or [] for name in requirement}
            for path, item in DOC["paths"].items() for method, op in item.items() if method in METHODS}


def registered_routes() -> set[tuple[str, str]]:
    app = build_app(parse_config("store: {driver: none}"))
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}


# --- 1. authentication on every route -------------------------------------------------------------

def test_the_public_routes_are_exactly_the_listed_ones() -> None:
    documented = documented_security()
    assert {route for route, schemes in documented.items() if not schemes} == PUBLIC | SESSION_PAGES
    undocumented = registered_routes() - documented.keys() - PUBLIC - SESSION_PAGES
    assert not undocumented, f"routes neither documented with their security nor listed as public: {undocumented}"


def _body(path: str, key: str | None) -> bytes:
    """A body the route parses: PostHog's carry their key inside (`api_key`)."""
    if path.startswith(("/capture", "/e")):
        body: Any = {"event": "$pageview", "distinct_id": "d1"}
    elif path.startswith("/batch"):
        body = {"batch": [{"event": "$pageview", "distinct_id": "d1"}]}
    elif path in ("/s", "/s/"):
        body = {"batch": [{"event": "$snapshot", "distinct_id": "d1", "properties": {
            "$session_id": "s1", "$snapshot_data": [{"type": 4, "timestamp": 1.8e12, "data": {}}]}}]}
    else:
        return b"{}"
    if key is not None:
        body["api_key"] = key
    return json.dumps(body).encode()


def _credentials(schemes: set[str]) -> tuple[str, list[str]]:
    """The credential a route takes, and the valid credentials of the other kind (refused with 403)."""
    if "adminBearer" in schemes:
        return ADMIN, [] if schemes & {"bearerAuth", "apiKeyHeader"} else [INGEST]
    if "personalApiKey" in schemes:
        return PERSONAL, [INGEST, ADMIN]
    return INGEST, [ADMIN]


def test_every_authenticated_route_answers_401_without_a_token_and_403_with_a_wrong_one(tmp_path: Path) -> None:
    """Every route of the router but the public ones (so an undocumented admin route is walked too), with
    the schemes the document gives it: no credentials, Basic auth, a wrong token in each header, the
    valid token of the other kind, and the right token (past the auth check, whatever comes next)."""
    documented = documented_security()
    walked = sorted(registered_routes() - PUBLIC - SESSION_PAGES)
    assert len(walked) >= 20
    config = parse_config(yaml.safe_dump({
        "store": {"driver": "sqlite", "path": str(tmp_path / "store.db")}, "targets": [],
        "privacy": {"hmac_key": "h" * 40}, "events": {"api_keys": [INGEST]}, "api": {"admin_tokens": [ADMIN]},
        "sentry": {"projects": [{"id": 1, "keys": [SENTRY_KEY]}]}, "flags": {"personal_api_keys": [PERSONAL]}}))

    async def walk() -> list[str]:
        problems = []
        async with served(build_app(config)) as agent:
            async def status(method: str, path: str, headers: dict[str, str], key: str | None = None) -> int:
                answer = await agent.fetch(method, path, data=_body(path, key),
                                           headers={"Content-Type": "application/json", **headers})
                return answer.status
            for method, route in walked:
                schemes = documented.get((method, route), {"adminBearer"})       # undocumented: admin
                path = re.sub(r"\{[^}]+\}", lambda m: PATH_VALUES.get(m.group(0), "x1"), route)
                right, other_kind = _credentials(schemes)
                checks = [("no credentials", {}, None, 401),
                          ("Basic auth with the right token", {"Authorization": "Basic " + base64.b64encode(
                              f"admin:{right}".encode()).decode()}, None, 401),
                          ("a wrong bearer token", {"Authorization": f"Bearer {WRONG}"}, None, 403),
                          ("a wrong X-Loom-Api-Key", {"X-Loom-Api-Key": WRONG}, None, 403),
                          *((f"the valid {'ingest key' if other == INGEST else 'admin token'}",
                             {"Authorization": f"Bearer {other}"}, None, 403) for other in other_kind)]
                if path.startswith(("/capture", "/e", "/batch")) or path in ("/s", "/s/"):
                    checks.append(("a wrong api_key in the body", {}, WRONG, 403))
                valid = {"Authorization": f"Bearer {right}"}
                if schemes & SENTRY_SCHEMES:        # the agent's own tokens are not Sentry keys: no key at all
                    checks = [("no credentials", {}, None, 401),
                              ("the valid ingest key", {"Authorization": f"Bearer {INGEST}"}, None, 401),
                              ("the valid admin token", {"Authorization": f"Bearer {ADMIN}"}, None, 401),
                              ("a wrong X-Sentry-Auth key", sentry_auth(WRONG), None, 403),
                              ("the ingest key as X-Sentry-Auth", sentry_auth(INGEST), None, 403)]
                    valid = sentry_auth(SENTRY_KEY)
                for what, headers, key, expected in checks:
                    got = await status(method, path, headers, key)
                    if got != expected:
                        problems.append(f"{method} {path} with {what}: {got}, expected {expected}")
                got = await status(method, path, valid)
                if got in (401, 403):
                    problems.append(f"{method} {path} refuses its own valid token: {got}")
        return problems

    problems = asyncio.run(walk())
    assert problems == [], "\n".join(problems)


@pytest.mark.slow
def test_the_rate_limit_admits_exactly_100_of_101_concurrent_requests(tmp_path: Path) -> None:
    second = "admin-token-second-client-0123456789"
    agent = AgentProcess(tmp_path, {"store": {"driver": "sqlite", "path": str(tmp_path / "store.db")},
                                    "privacy": {"hmac_key": "h" * 40}, "targets": [],
                                    "api": {"admin_tokens": [ADMIN, second], "rate_limit": 100}})
    url = agent.url + "/api/monitoring/business-metrics"

    async def burst() -> tuple[list[tuple[int, str | None]], int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one(token: str) -> tuple[int, str | None]:
                async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After")
            answers = await asyncio.gather(*(one(ADMIN) for _ in range(101)))
            return answers, (await one(second))[0]
    try:
        answers, other_client = asyncio.run(burst())
    finally:
        agent.stop()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 100 + [429]
    assert int(next(retry for status, retry in answers if status == 429)) > 0
    assert other_client == 200                  # per client: another token has its own 100


# --- 2. secrets never leave the agent -------------------------------------------------------------

def _secret(name: str) -> str:
    return f"{name}-{secrets.token_hex(10)}"


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    """A probe target that records the Authorization and X-Api-Key headers it receives."""
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(f"{self.headers.get('Authorization')} {self.headers.get('X-Api-Key')}")
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[tuple[str, list[str]]]:
    handler = type("Recording", (_RecordingHandler,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler.seen
    server.shutdown()
    server.server_close()


def _sinks_of_otlp(receiver: OtlpReceiver) -> bytes:
    messages = receiver.accepted("traces") + receiver.accepted("metrics")
    return b"\n".join([m.SerializeToString() for m in messages] +
                      [text_format.MessageToString(m, as_utf8=True).encode() for m in messages])


def _invalid_config(config: dict[str, Any], bad: dict[str, str]) -> dict[str, Any]:
    """`config` (secrets and all) with errors next to more secrets: each error message must name the key
    and never echo the value."""
    broken = json.loads(json.dumps(config))
    broken["api"]["admin_tokens"].append(bad["short-token"])                         # too short
    broken["store"]["dsn"] = f"mysql://loom:{bad['dsn']}@127.0.0.1/loom"              # not postgresql://
    broken["telemetry"]["otlp"]["headers"]["X-Bad"] = [bad["otlp-list"]]             # not a string
    broken["targets"][1]["bearer_token"] = bad["bearer-and-file"]                     # with bearer_token_file
    broken["targets"][0]["basic_auth"]["pass_word"] = bad["misspelt"]                 # unknown key
    broken["privacy"] = {"hmac_key": bad["short-hmac"]}                               # shorter than 32
    return broken


@pytest.mark.slow
def test_no_configured_secret_reaches_logs_metrics_answers_or_exports(tmp_path: Path,
                                                                       target: tuple[str, list[str]]) -> None:
    url, seen = target
    s = {name: _secret(name) for name in ("ingest-env", "ingest-file", "admin-env", "admin-file", "hmac-file",
                                          "dsn-password", "otlp-bearer", "otlp-key", "probe-password",
                                          "probe-header", "probe-bearer-file", "module-password", "module-bearer")}
    s["hmac-file"] += secrets.token_hex(8)                                            # >= 32 characters
    bad = {name: _secret(name) for name in ("dsn", "otlp-list", "bearer-and-file", "misspelt", "short-hmac")}
    bad["short-token"] = "tk" + secrets.token_hex(5)                                  # 12 characters
    files = {}
    for name in ("ingest-file", "admin-file", "hmac-file", "probe-bearer-file"):
        files[name] = tmp_path / name
        files[name].write_text(s[name] + "\n")
    pg = PostgresServer()
    pg.start()
    dsn = pg.dsn().replace("postgres@", f"postgres:{s['dsn-password']}@")
    with socket.socket() as sock:                      # a port nothing listens on: a failing probe
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    with OtlpReceiver("http/protobuf") as receiver:
        config = {
            "store": {"driver": "postgres", "dsn": "${SEC_DSN}", "connect_timeout": "1s"},
            "privacy": {"hmac_key_file": str(files["hmac-file"])},
            "events": {"api_keys": ["${SEC_INGEST}", {"value_file": str(files["ingest-file"])}]},
            "api": {"admin_tokens": ["${SEC_ADMIN}", {"value_file": str(files["admin-file"])}]},
            "retention": {"interval": 0},
            "telemetry": {"otlp": {"endpoint": receiver.endpoint, "protocol": "http/protobuf", "timeout": "2s",
                                   "metrics_interval": "1s", "headers": {"Authorization": f"Bearer {s['otlp-bearer']}",
                                                                         "X-Api-Key": s["otlp-key"]}}},
            "modules": {"with_password": {"kind": "http", "timeout": "2s", "headers": {"X-Api-Key": s["probe-header"]},
                                          "basic_auth": {"username": "probe", "password": s["module-password"]}},
                        "with_bearer": {"kind": "http", "timeout": "2s", "bearer_token": s["module-bearer"]}},
            "targets": [
                {"name": "basic", "kind": "http", "url": url, "interval": "1s", "timeout": "500ms",
                 "headers": {"X-Api-Key": s["probe-header"]},
                 "basic_auth": {"username": "probe", "password": s["probe-password"]}},
                {"name": "bearer", "kind": "http", "url": url, "interval": "1s", "timeout": "500ms",
                 "bearer_token_file": str(files["probe-bearer-file"])},
                {"name": "down", "kind": "http", "url": dead, "interval": "1s", "timeout": "500ms",
                 "bearer_token_file": str(files["probe-bearer-file"])}]}
        env = {"SEC_DSN": dsn, "SEC_INGEST": s["ingest-env"], "SEC_ADMIN": s["admin-env"]}
        agent = AgentProcess(tmp_path, config, env=env)
        answers: dict[str, bytes] = {}
        try:
            event = json.dumps({"event": "cta_click", "anonymous_id": "a1", "properties": {"ctaId": "x"}}).encode()
            for name, header in (("ingest-env", "Authorization"), ("ingest-file", "X-Loom-Api-Key")):
                value = f"Bearer {s[name]}" if header == "Authorization" else s[name]
                request = urllib.request.Request(agent.url + "/v1/events", data=event, headers={
                    header: value, "Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200                    # each key works
            for name in ("admin-env", "admin-file"):
                status, _, answers[f"/api/errors ({name})"] = http_get(
                    agent.url + "/api/errors", {"Authorization": f"Bearer {s[name]}"})
                assert status == 200
            for name in ("dashboard 401", "dashboard 403"):
                headers = {} if "401" in name else {"Authorization": f"Bearer {s['admin-env']}x"}
                answers[name] = http_get(agent.url + "/api/analytics/dashboard", headers)[2]
            for module in ("with_password", "with_bearer"):
                status, _, answers[f"/probe?debug ({module})"] = http_get(
                    f"{agent.url}/probe?debug=true&module={module}&target={url}")
                assert status == 200
            basic = base64.b64encode(f"probe:{s['probe-password']}".encode()).decode()
            wait_until(lambda: {f"Basic {basic} {s['probe-header']}", f"Bearer {s['probe-bearer-file']} None"}
                       <= set(seen), 15, what="the probes' credentials at the target")
            receiver.wait_for(lambda: any({k.lower(): v for k, v in r.headers.items()}.get("x-api-key") == s["otlp-key"]
                                          for r in receiver.received), 15, "an OTLP export carrying its headers")
            wait_until(lambda: "connect" in http_get(agent.url + "/api/status")[2].decode(), 15,
                       what="the failing probe's reason on the status report")
            answers["/api/status"] = http_get(agent.url + "/api/status")[2]
            answers["/"] = http_get(agent.url + "/")[2]
            answers["/metrics"] = http_get(agent.url + "/metrics")[2]
            answers["/metrics (OpenMetrics)"] = http_get(agent.url + "/metrics", {
                "Accept": "application/openmetrics-text; version=1.0.0"})[2]
            assert pg.psql("SELECT count(*) FROM events", "postgres").strip() == "2"      # the DSN worked

            agent.write_config(_invalid_config(config, bad))
            status, answers["POST /-/reload (invalid)"] = http_post(agent.url + "/-/reload")
            assert status == 400
            assert b"api.admin_tokens[2]" in answers["POST /-/reload (invalid)"]         # the errors name keys

            pg.stop()                                             # the store goes away: 503, logged errors
            request = urllib.request.Request(agent.url + "/v1/events", data=event, headers={
                "Authorization": f"Bearer {s['ingest-env']}", "Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=15)
                raise AssertionError("ingest succeeded with the store down")
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
                answers["ingest with the store down"] = exc.read()
            answers["dashboard with the store down"] = http_get(agent.url + "/api/analytics/dashboard", {
                "Authorization": f"Bearer {s['admin-env']}"})[2]
        finally:
            agent.stop()
            pg.destroy()
        answers["OTLP traces and metrics"] = _sinks_of_otlp(receiver)
    answers["agent log (debug, stdout and stderr)"] = agent.log_path.read_bytes()
    assert b"config reload failed" in answers["agent log (debug, stdout and stderr)"]
    needles = {**s, **{f"bad {k}": v for k, v in bad.items()},
               "probe basic auth (base64)": base64.b64encode(f"probe:{s['probe-password']}".encode()).decode(),
               "module basic auth (base64)": base64.b64encode(f"probe:{s['module-password']}".encode()).decode()}
    leaks = [f"{name} in {sink}: ...{raw[max(0, at - 80):at + 40]!r}"
             for name, secret in needles.items() for sink, raw in answers.items()
             for needle in {secret, secret[-20:]} if (at := raw.find(needle.encode())) >= 0]
    assert leaks == []


# --- 3. no files served ------------------------------------------------------------------------------

TRAVERSALS = ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%252e%252e/%252e%252e/etc/passwd",
              "/openapi.json/../../etc/passwd", "/openapi.json/..%2f..%2fetc%2fpasswd", "/..%5c..%5cetc%5cpasswd",
              "//etc/passwd", "/static/../../etc/passwd", "/agent/api/openapi.json", "/api/openapi.json",
              "/agent.yaml", "/../agent.yaml", "/store.db", "/metrics/../../agent.yaml", "/api/status/../../agent.yaml",
              "/api/analytics/user/..%2F..%2F..%2Fetc%2Fpasswd", "/api/analytics/user/../../../etc/passwd",
              "/api/experiments/..%2F..%2Fetc%2Fpasswd", "/api/experiments/%2e%2e%2f%2e%2e%2fagent.yaml",
              "/api/analytics/export?userId=../../etc/passwd", "/probe?target=file:///etc/passwd&module=http_2xx",
              "/probe?target=/etc/passwd", "/probe?module=../../etc/passwd&target=x", "/%00", "/api/experiments/%00"]


@pytest.mark.slow
def test_no_request_serves_a_file(tmp_path: Path) -> None:
    """Traversal attempts on every route with a path parameter and on static-looking paths, with the
    admin token so that nothing stops at the auth check: 4xx, or an answer about the id as sent (a user
    id may contain anything, and an erasure must reach it), never a file's content."""
    marker = "config-file-marker-" + secrets.token_hex(8)
    app = build_app(parse_config("store: {driver: none}"))
    assert not [r for r in app.router.resources() if isinstance(r, web.StaticResource)]
    agent = AgentProcess(tmp_path, {"store": {"driver": "sqlite", "path": str(tmp_path / "store.db")},
                                    "privacy": {"hmac_key": "h" * 40}, "targets": [],
                                    "api": {"admin_tokens": [ADMIN]}, "modules": {marker: {"kind": "tcp"}}})
    files = [Path("/etc/passwd").read_bytes(), agent.config_path.read_bytes(), b"SQLite format 3", marker.encode()]
    served = []
    try:
        for path in TRAVERSALS:
            for method in ("GET", "DELETE"):
                with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as sock:
                    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {ADMIN}\r\n"
                                 "Connection: close\r\n\r\n".encode())
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
                status = int(answer.split(b" ", 2)[1])
                head, _, body = answer.partition(b"\r\n\r\n")
                if status >= 500 or any(f[:64] in body for f in files if f):
                    served.append(f"{method} {path}: {status} {body[:120]!r}")
                elif status == 200:
                    assert b"application/json" in head or path.startswith("/probe"), (method, path, head)
    finally:
        agent.stop()
    assert served == []
