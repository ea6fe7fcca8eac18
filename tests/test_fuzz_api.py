"""Schemathesis against the agent's own /openapi.json, served by a real agent process (SQLite store in a
temp dir, an admin token, an ingest key): every operation, generated from the document (its examples,
its boundary values, then random data), must never answer 5xx, and every answer must have a documented
status code, content type, headers and a body that matches the documented schema. A stateful run
follows the document's links (opt-out -> export / erase of the same user).

The run is bounded for CI: LOOM_FUZZ_EXAMPLES random cases per operation (default 25) and
LOOM_FUZZ_STEPS stateful scenarios (default 20). A long run for bench/docs:

    LOOM_FUZZ_EXAMPLES=1000 LOOM_FUZZ_STEPS=500 python3 -m pytest tests/test_fuzz_api.py -q -s

which prints one line per operation (cases sent, answers by status class) and the totals.

Side-effecting operations (DELETE a user, opt-out, POST /-/reload of an unchanged file) run against
this throwaway agent like any other.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st

from agent.api.probe import probe_target
from agent.collectors.base import ProbeResult, Reason
from agent.collectors.kinds import KINDS
from agent.collectors.scheduler import probe_once
from agent.config.load import parse_config
from tests.support.procs import AgentProcess

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

EXAMPLES = int(os.environ.get("LOOM_FUZZ_EXAMPLES", "25"))
STEPS = int(os.environ.get("LOOM_FUZZ_STEPS", "20"))
INGEST_KEY = "fuzz-ingest-key-0123456789"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
PERSONAL_KEY = "fuzz-personal-key-0123456789"
SESSION_ID = "fuzz-session-1"
SENTRY_KEY, SENTRY_PROJECT = "fuzzsentrypublickey0123456789ab", "1"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance")
TIMEOUTS = 15.0          # seconds per request: a probe of a generated target ends at its 1 s timeout

# "METHOD /path" -> Counter of status classes ("2xx", "4xx", ...), across every phase of the run
ANSWERS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def fuzz_config() -> schemathesis.Config:
    """Credentials per security scheme of the document (schemathesis sends, per operation, the
    scheme it requires: ingest endpoints the ingest key, admin endpoints the admin token), only
    the checks this suite is about, and the bounded example count."""
    return schemathesis.Config.from_dict({
        "auth": {"openapi": {"bearerAuth": {"bearer": INGEST_KEY},
                             "apiKeyHeader": {"api_key": INGEST_KEY},
                             "adminBearer": {"bearer": ADMIN_TOKEN},
                             "personalApiKey": {"bearer": PERSONAL_KEY},
                             "sentryAuth": {"api_key": f"Sentry sentry_key={SENTRY_KEY}, sentry_version=7"},
                             "sentryKey": {"api_key": SENTRY_KEY}}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "generation": {"max-examples": EXAMPLES, "database": "none"},
        "phases": {"stateful": {"max-steps": 6}},
        "request-timeout": TIMEOUTS,
    })


def agent_config(db: Path) -> dict[str, Any]:
    return {
        "defaults": {"interval": "5s", "timeout": "1s"},
        "store": {"driver": "sqlite", "path": str(db)},
        "events": {"api_keys": [INGEST_KEY]},
        # the business-metrics rate limit would turn most of its cases into (documented) 429s
        "api": {"admin_tokens": [ADMIN_TOKEN], "rate_limit": 1_000_000},
        # a target that fails at once (nothing listens on port 1): probe rollups and failures to report
        "targets": [{"name": "down", "kind": "tcp", "address": "127.0.0.1:1"}],
        "sentry": {"projects": [{"id": int(SENTRY_PROJECT), "keys": [SENTRY_KEY]}]},
        "flags": {"personal_api_keys": [PERSONAL_KEY], "group_types": ["company"], "definitions": [
            {"key": "beta", "conditions": [{"properties": [{"key": "plan", "operator": "exact", "value": "pro"}],
                                            "rollout_percentage": 50}]},
            {"key": "split", "variants": [{"key": "control", "rollout_percentage": 50},
                                          {"key": "test", "rollout_percentage": 50}], "payloads": {"test": [1]}},
            {"key": "teams", "group_type": "company"}]},
    }


def with_ingest_key(body: Any) -> Any:
    """A PostHog body names its project key (`api_key`, `token`, `properties.token`), and that key wins
    over the header: generated strings there are the real key, so the fuzzer gets past the 403 into
    the validator. Non-string keys are left alone (the validator must refuse them with a 4xx)."""
    if type(body) is dict:
        for name in ("api_key", "token"):
            if type(body.get(name)) is str:
                body[name] = INGEST_KEY
        props = body.get("properties")
        if type(props) is dict and type(props.get("token")) is str:
            props["token"] = INGEST_KEY
        for event in body.get("batch") if type(body.get("batch")) is list else ():
            with_ingest_key(event)
    return body


def as_sentry_body(path: str, body: Any) -> Any:
    """A Sentry route's generated body, made a well-formed envelope (or /store/ event) around what was
    generated, so the fuzzer reaches the event mapping and not only the envelope parser's 400: the
    generated value becomes the event's message. The parser itself is fuzzed in tests/test_sentry_*.py."""
    if "/envelope" in path and isinstance(body, str | bytes):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return b"{}\n" + b'{"type":"event"}\n' + json.dumps({"message": text}).encode()
    if "/store" in path and isinstance(body, dict):
        return {**body, "message": str(body.get("message", ""))}
    return body


def map_body(context: schemathesis.HookContext, body: Any) -> Any:      # schemathesis hook, by name
    path = context.operation.path if context.operation is not None else ""
    return as_sentry_body(path, with_ingest_key(body)) if path.startswith("/api/{project_id}") else \
        with_ingest_key(body)


def map_path_parameters(context: schemathesis.HookContext, parameters: dict[str, Any] | None
                        ) -> dict[str, Any] | None:
    """The Sentry routes' project: the configured one (a random project id is a documented 403); a
    recording's session: the one seeded at start (a random one is a documented 404)."""
    if parameters and "project_id" in parameters:
        parameters["project_id"] = SENTRY_PROJECT
    if parameters and "sessionId" in parameters:
        parameters["sessionId"] = SESSION_ID
    return parameters


def seed_recording(process: AgentProcess) -> None:
    """One recording, so GET /api/recordings/{sessionId} has a session to answer 200 for."""
    snapshot = {"type": 4, "timestamp": 1_800_000_000_000, "data": {"href": "http://x/", "width": 1, "height": 1}}
    body = {"api_key": INGEST_KEY, "batch": [{"event": "$snapshot", "distinct_id": "fuzz-user", "properties": {
        "$session_id": SESSION_ID, "$window_id": "w1", "$snapshot_data": [snapshot]}}]}
    request = urllib.request.Request(process.url + "/s/", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    tmp = tmp_path_factory.mktemp("fuzz-agent")
    process = AgentProcess(tmp, agent_config(tmp / "events.db"))
    try:
        seed_recording(process)
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"the agent exited with {code} after fuzzing:\n{process.log()[-4000:]}"


@pytest.fixture(scope="module")
def served_schema(agent: AgentProcess) -> schemathesis.BaseSchema:
    """The document as the agent serves it; requests go to that agent."""
    schema = schemathesis.openapi.from_url(agent.url + "/openapi.json", config=fuzz_config())
    schema.hook(map_body)
    schema.hook(map_path_parameters)
    return schema


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    response = case.call(timeout=TIMEOUTS)
    ANSWERS[f"{case.method.upper()} {case.path}"][f"{response.status_code // 100}xx"] += 1
    case.validate_response(response)


# the analytics page's routes: a form sign-in and a session cookie, no credential schemathesis can send (signed
# out, a page is a 303 to the sign-in, a sign-in with a generated token a 401 page); they are fuzzed for their
# documented answers all the same, and their signed-in side is tests/test_analytics_page*.py's
SESSION_PAGES = {"GET /analytics", "GET /analytics/insights", "POST /analytics/sign-in", "POST /analytics/sign-out"}


def test_fuzzing_reached_past_auth_on_every_operation(served_schema: schemathesis.BaseSchema) -> None:
    """The run above is only worth something if the credentials worked: every operation answered at
    least one case with a 2xx (a wrong key or token would make every answer a documented 401/403)."""
    operations = {f"{op.method.upper()} {op.path}" for op in
                  (result.ok() for result in served_schema.get_all_operations())}
    if not ANSWERS:
        pytest.skip("runs after test_every_operation_answers_as_documented (not selected)")
    summary = "\n".join(f"  {name}: {sum(ANSWERS[name].values())} cases {dict(sorted(ANSWERS[name].items()))}"
                        for name in sorted(operations))
    print(f"\nfuzzed {len(operations)} operations, {sum(sum(c.values()) for c in ANSWERS.values())} cases:\n"
          + summary)
    assert operations - set(ANSWERS) == set(), "operations never called"
    never_ok = sorted(name for name in operations - SESSION_PAGES if not ANSWERS[name]["2xx"])
    assert never_ok == [], f"no 2xx answer at all (credentials not applied?):\n{summary}"


def test_the_agent_logged_no_exception_while_fuzzed(agent: AgentProcess) -> None:
    """A swallowed exception answers 200 all the same: schemathesis' /probe?target=%C2%92 was a probe
    failing with reason `internal` (an agent bug) and a traceback in the log, never a 5xx."""
    log = agent.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-6000:]


def test_a_malformed_header_leaves_no_secret_in_the_log(agent: AgentProcess) -> None:
    """Schemathesis' NUL-in-a-header probe showed aiohttp logging the raw bytes of a header it cannot
    parse, at ERROR with a traceback: an Authorization header with one stray control character put the
    token in the log."""
    for bad in (b"\x01", b"\x00", b"\x7f"):
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as sock:
            sock.sendall(b"GET /api/errors HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer "
                         + ADMIN_TOKEN.encode() + bad + b"\r\nConnection: close\r\n\r\n")
            answer = sock.recv(65536)
        assert answer.split(b" ", 2)[1] == b"400", answer
    log = agent.log()
    assert ADMIN_TOKEN not in log and "Traceback" not in log, log[-4000:]


def test_a_user_id_with_a_line_break_can_be_erased(agent: AgentProcess) -> None:
    """The long fuzz run's DELETE /api/analytics/user/%C3%BC%0Al: the route's `{userId:.+}` did not match
    "\\n", so such a user (any id is accepted at ingest) was a text/plain 404 and could never be erased."""
    user = "line\nbreak/ü"
    request = urllib.request.Request(agent.url + "/v1/events", method="POST", data=json.dumps(
        {"event": "feature_used", "userId": user, "properties": {"feature": "x"}}).encode(),
        headers={"Content-Type": "application/json", "X-Loom-Api-Key": INGEST_KEY})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    request = urllib.request.Request(agent.url + "/api/analytics/user/" + urllib.parse.quote(user, safe=""),
                                     method="DELETE", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read())["deleted"]["events"] == 1


PROBE_CONFIG = parse_config("""
store: {driver: none}
defaults: {timeout: 1s}
modules:
  dns_udp: {kind: dns, query_name: example.com}
""")
# host names the IDNA codec refuses before any packet is sent: a label past 63 characters, an empty
# label, a C1 control or private-use character. Schemathesis sent /probe?target=%C2%92: a 200 all the
# same, but the http probe failed with reason `internal` (an agent bug) and a traceback in the log.
BAD_HOSTS = st.one_of(st.integers(64, 80).map(lambda n: "a" * n + ".example"), st.just("a..b"),
                      st.builds(lambda a, c, b: a + c + b, st.text(alphabet="ab1-.", max_size=6),
                                st.sampled_from(["\x85", "\x92", "\x9d", "\uf8ff"]), st.just("x")))


@hypothesis.settings(max_examples=max(20, EXAMPLES), deadline=None)
@hypothesis.given(host=BAD_HOSTS, module=st.sampled_from(sorted(PROBE_CONFIG.modules)))
def test_a_host_name_no_resolver_can_take_fails_the_probe_with_resolve(host: str, module: str) -> None:
    kind = PROBE_CONFIG.modules[module].kind
    param = {"http": f"http://{host}/", "websocket": f"ws://{host}/", "icmp": host}.get(kind, f"{host}:53")
    target = probe_target(PROBE_CONFIG, PROBE_CONFIG.modules[module], param, None)

    async def probe() -> ProbeResult:
        collector = KINDS[kind].collector_factory()
        try:
            return await probe_once(collector, target, target.timeout)
        finally:
            if hasattr(collector, "close"):
                await collector.close()

    result = asyncio.run(probe())
    assert (result.success, result.reason) == (False, Reason.RESOLVE), result


def test_stateful_links(served_schema: schemathesis.BaseSchema) -> None:
    """Sequences along the document's links (a user opted out, then exported or erased): the same
    checks on every step."""
    machine = served_schema.as_state_machine()
    machine.run(settings=hypothesis.settings(max_examples=STEPS, deadline=None, stateful_step_count=6,
                                             suppress_health_check=list(hypothesis.HealthCheck),
                                             database=None))
