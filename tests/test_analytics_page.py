"""The admin analytics page (/analytics, /analytics/insights) and its sign-in, over real HTTP on the real app
(127.0.0.1, port 0) with a real SQLite store filled through the ingest API by the demo's traffic generator:
the auth flows (redirect when signed out, the cookie's attributes, never a token in a URL or a cookie, 401
and 429 for wrong tokens, CSRF-safe sign-out, cross-site posts refused, a session ending with its token),
the pages' numbers against the JSON API's, bad parameters as a 400 naming them, a disabled store as a
503 page, and the HTML escaping everything it prints (unit tests of the renderers with hostile data).
"""

from __future__ import annotations

import re
import time
from http.cookies import SimpleCookie
from typing import Any

import pytest

from agent.analytics_page.charts import Bar, Line, bar_rows, line_chart, nice_ceiling
from agent.analytics_page.dashboard_html import render_dashboard
from agent.analytics_page.insights_form import InsightsForm, form_field, read_form
from agent.analytics_page.insights_html import render_insights
from agent.analytics_page.layout import CONTENT_SECURITY_POLICY, STYLE_HASH
from agent.analytics_page.style import CSS
from agent.api.admin_sessions import COOKIE, AdminSessions, csrf_matches
from agent.api.analytics_page import safe_next
from agent.api.keys import ADMIN_SESSIONS, ADMIN_TOKENS
from agent.demo.traffic import Traffic
from tests.support.agent_app import ServedAgent

pytest_plugins = ["tests.support.store_fixtures"]

TOKEN = "analytics-page-admin-token-0123456789"
KEY = "analytics-page-ingest-key-0123"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"\''
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def start(agent_server: Any, store: Any = None, tokens: tuple[str, ...] = (TOKEN,)) -> ServedAgent:
    config: dict[str, Any] = {"events": {"api_keys": [KEY]}, "api": {"admin_tokens": list(tokens)}}
    if store is None:
        config["store"] = {"driver": "none"}
    return agent_server(config, store=store)


def sign_in(agent: ServedAgent, token: str = TOKEN, next_path: str = "/analytics", **headers: str) -> Any:
    return agent.post("/analytics/sign-in", data=f"token={token}&next={next_path}", headers={**FORM, **headers},
                      allow_redirects=False)


def session_cookie(answer: Any) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in answer.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


def signed_in(agent: ServedAgent) -> dict[str, str]:
    answer = sign_in(agent)
    assert answer.status == 303, answer.body
    return {"Cookie": f"{COOKIE}={session_cookie(answer)[COOKIE].value}"}


def fill(agent: ServedAgent, events: int = 600) -> None:
    """The demo's traffic (every catalog event, then stories), through the ingest API, timestamped now."""
    traffic = Traffic(seed=17)
    batch = traffic.tour() + traffic.events(events)
    for start_at in range(0, len(batch), 500):
        answer = agent.post("/v1/events/batch", json=batch[start_at:start_at + 500], headers={"X-Loom-Api-Key": KEY})
        assert answer.status == 200, answer.body


# --- sign-in, the cookie, sign-out -------------------------------------------------------------------

def test_signed_out_pages_redirect_to_the_sign_in_with_where_to_return(agent_server):
    agent = start(agent_server)
    for path, expected in (("/analytics", "%2Fanalytics"), ("/analytics/insights?event=x",
                                                           "%2Fanalytics%2Finsights%3Fevent%3Dx")):
        answer = agent.get(path, allow_redirects=False)
        assert answer.status == 303
        assert answer.headers["Location"] == f"/analytics/sign-in?next={expected}"
    form = agent.get("/analytics/sign-in?next=%2Fanalytics%2Finsights")
    assert form.status == 200 and form.headers["Content-Type"].startswith("text/html")
    assert 'method="post" action="/analytics/sign-in"' in form.body
    assert 'name="next" value="/analytics/insights"' in form.body
    assert 'type="password"' in form.body


def test_every_analytics_route_needs_a_session_but_the_sign_in(agent_server):
    agent = start(agent_server)
    routes = {(r.method, r.resource.canonical) for r in agent.app.router.routes()
              if r.method != "HEAD" and r.resource.canonical.startswith("/analytics")}
    assert routes == {("GET", "/analytics"), ("GET", "/analytics/insights"), ("GET", "/analytics/sign-in"),
                      ("POST", "/analytics/sign-in"), ("POST", "/analytics/sign-out")}
    for path in ("/analytics", "/analytics/insights"):
        answer = agent.get(path, allow_redirects=False, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status == 303 and answer.headers["Location"].startswith("/analytics/sign-in?")   # no bearer
        forged = agent.get(path, allow_redirects=False, headers={"Cookie": f"{COOKIE}=made-up-session-id"})
        assert forged.status == 303
    out = agent.post("/analytics/sign-out", data="csrf=x", headers=FORM, allow_redirects=False)
    assert out.status == 303 and len(agent.app[ADMIN_SESSIONS]) == 0


def test_sign_in_sets_a_secure_httponly_strict_cookie_that_is_not_the_token(agent_server):
    agent = start(agent_server)
    answer = sign_in(agent, next_path="/analytics/insights")
    assert answer.status == 303 and answer.headers["Location"] == "/analytics/insights"
    (header,) = answer.headers.getall("Set-Cookie")
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=Strict" in header and "Path=/" in header
    value = session_cookie(answer)[COOKIE].value
    assert TOKEN not in header and len(value) >= 40
    assert TOKEN not in answer.headers["Location"]
    assert agent.get("/analytics", headers={"Cookie": f"{COOKIE}={value}"}).status == 503    # signed in: no store
    assert agent.get("/analytics", headers={"Cookie": f"{COOKIE}={TOKEN}"}, allow_redirects=False).status == 303


def test_a_wrong_token_is_a_401_page_and_attempts_are_rate_limited(agent_server):
    agent = start(agent_server)
    statuses = [sign_in(agent, token=f"wrong-{i}").status for i in range(10)]
    assert statuses == [401] * 10
    answer = sign_in(agent, token="wrong-again")
    assert answer.status == 429 and int(answer.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in answer.body
    assert sign_in(agent).status == 429                   # even the right token waits: the address is limited
    assert not answer.headers.getall("Set-Cookie", [])


def test_the_sign_in_warns_when_a_secure_cookie_cannot_stick(agent_server):
    agent = start(agent_server)
    note = "Secure cookie only over HTTPS"
    assert note not in agent.get("/analytics/sign-in").body                          # 127.0.0.1
    assert note not in agent.get("/analytics/sign-in", headers={"Host": "localhost:9464"}).body
    plain = agent.get("/analytics/sign-in", headers={"Host": "agent.example.com:9464"}).body
    assert note in plain and "agent.example.com:9464" in plain
    proxied = agent.get("/analytics/sign-in", headers={"Host": "agent.example.com", "X-Forwarded-Proto": "https"})
    assert note not in proxied.body


def test_the_401_page_says_why_and_sets_no_cookie(agent_server):
    agent = start(agent_server)
    answer = sign_in(agent, token="not-it")
    assert answer.status == 401 and "not an admin token" in answer.body
    assert not answer.headers.getall("Set-Cookie", [])
    empty = sign_in(agent, token="")
    assert empty.status == 401


def test_no_token_is_ever_taken_from_a_url(agent_server):
    agent = start(agent_server)
    for path in ("/analytics?token=" + TOKEN, "/analytics/sign-in?token=" + TOKEN,
                 "/analytics/insights?access_token=" + TOKEN):
        answer = agent.get(path, allow_redirects=False)
        assert answer.status == 400 and "never taken from a URL" in answer.body, path
        assert not answer.headers.getall("Set-Cookie", [])
    posted = agent.post("/analytics/sign-in?token=" + TOKEN, data=f"token={TOKEN}", headers=FORM,
                        allow_redirects=False)
    assert posted.status == 403 and not posted.headers.getall("Set-Cookie", [])
    # the pages link and post nowhere with a token
    cookie = signed_in(agent)
    form = agent.get("/analytics/sign-in?next=/analytics")
    assert "token=" not in re.sub(r'name="token"', "", form.body)
    assert TOKEN not in agent.get("/analytics/insights", headers=cookie).body


def test_a_cross_site_post_is_refused(agent_server):
    agent = start(agent_server)
    assert sign_in(agent, Origin="https://evil.example").status == 403
    assert sign_in(agent, Origin="null").status == 403
    assert sign_in(agent, **{"Sec-Fetch-Site": "cross-site"}).status == 403
    assert sign_in(agent, **{"Sec-Fetch-Site": "same-site"}).status == 403
    assert sign_in(agent, Origin=agent.url, **{"Sec-Fetch-Site": "same-origin"}).status == 303    # its own form
    assert sign_in(agent).status == 303                            # no browser headers: curl, a script


def test_sign_out_needs_the_sessions_csrf_token_and_ends_the_session(agent_server):
    agent = start(agent_server)
    cookie = signed_in(agent)
    page = agent.get("/analytics/insights", headers=cookie)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.body).group(1)
    refused = agent.post("/analytics/sign-out", data="csrf=forged", headers={**FORM, **cookie}, allow_redirects=False)
    assert refused.status == 403
    assert agent.get("/analytics/insights", headers=cookie, allow_redirects=False).status != 303     # still in
    assert agent.post("/analytics/sign-out", data=f"csrf={csrf}", headers={**FORM, **cookie,
                                                                            "Origin": "https://evil.example"},
                      allow_redirects=False).status == 403
    out = agent.post("/analytics/sign-out", data=f"csrf={csrf}", headers={**FORM, **cookie}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/analytics/sign-in"
    assert session_cookie(out)[COOKIE].value == ""                       # the browser drops it
    assert agent.get("/analytics/insights", headers=cookie, allow_redirects=False).status == 303
    assert len(agent.app[ADMIN_SESSIONS]) == 0


def test_a_session_ends_when_its_token_is_no_longer_configured(agent_server):
    agent = start(agent_server, tokens=(TOKEN, "second-admin-token-0123"))
    cookie = signed_in(agent)
    assert agent.get("/analytics/insights", headers=cookie, allow_redirects=False).status != 303
    agent.app[ADMIN_TOKENS].tokens = ("second-admin-token-0123",)        # what a reload does
    assert agent.get("/analytics/insights", headers=cookie, allow_redirects=False).status == 303


def test_no_admin_token_configured_means_no_sign_in(agent_server):
    agent = start(agent_server, tokens=())
    answer = sign_in(agent, token="anything")
    assert answer.status == 403 and "No admin token is configured" in answer.body


def test_sessions_expire_are_bounded_and_keep_only_a_digest():
    now = [1000.0]
    sessions = AdminSessions(seconds=60, max_sessions=3, clock=lambda: now[0])
    cookie, session = sessions.open("admin-tok-9f8e")
    assert sessions.get(cookie, ("admin-tok-9f8e",)) == session
    assert cookie not in repr(sessions._sessions) and "admin-tok-9f8e" not in repr(sessions._sessions)
    assert csrf_matches(session, session.csrf) and not csrf_matches(session, "x") and not csrf_matches(session, None)
    now[0] += 61
    assert sessions.get(cookie, ("admin-tok-9f8e",)) is None and len(sessions) == 0
    cookies = [sessions.open("admin-tok-9f8e")[0] for _ in range(5)]
    assert len(sessions) == 3
    assert sessions.get(cookies[0], ("admin-tok-9f8e",)) is None and sessions.get(cookies[-1], ("admin-tok-9f8e",)) is not None
    assert sessions.get("x" * 500, ("admin-tok-9f8e",)) is None and sessions.get(None, ("admin-tok-9f8e",)) is None


def test_only_paths_under_analytics_are_followed_after_sign_in():
    assert safe_next("/analytics/insights?event=a") == "/analytics/insights?event=a"
    for bad in ("//evil.example/analytics", "https://evil.example/analytics", "/\\evil", "/status", "/analyticsx",
                "/analytics/sign-out", "", None, "/analytics\n", "javascript:alert(1)"):
        assert safe_next(bad) == "/analytics", bad


# --- the pages with data ---------------------------------------------------------------------------

def test_the_dashboard_shows_the_json_apis_numbers(store, run, agent_server):
    """On SQLite and PostgreSQL (slow: it starts a server)."""
    agent = start(agent_server, store)
    fill(agent)
    cookie = signed_in(agent)
    api = agent.get("/api/analytics/dashboard?range=7d", headers={"Authorization": f"Bearer {TOKEN}"}).body
    page = agent.get("/analytics?range=7d", headers=cookie)
    assert page.status == 200, page.body
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["Cache-Control"] == "no-store"
    body = page.body
    summary = api["summary"]
    assert summary["totalSessions"] > 0
    for label, key in (("Sessions booked", "totalSessions"), ("Sessions completed", "completedSessions"),
                       ("Active users", "activeUsers")):
        assert re.search(rf'{label}</div><div class="value">{summary[key]:,}<', body), label
    for section in ("summary", "funnel-signup", "funnel-onboarding", "goals", "uptime", "coaches", "clients"):
        assert f'<section id="{section}">' in body, section
    assert body.count('<svg class="bar"') >= len(api["funnelMetrics"][0]["steps"])
    first_coach = api["coachProductivity"][0]
    assert f'data-label="Coach">{first_coach["coachId"]}</td>' in body
    assert 'aria-current="true">7d</a>' in body
    assert "<script" not in body and "http://" not in body and "https://" not in body


def test_the_release_filter_narrows_the_dashboard(sqlite_store, run, agent_server):
    agent = start(agent_server, sqlite_store)
    fill(agent)
    cookie = signed_in(agent)
    release = "loom-web@2026.11.1"
    page = agent.get("/analytics", params={"release": release, "range": "30d"}, headers=cookie).body
    api = agent.get("/api/analytics/dashboard", params={"release": release, "range": "30d"},
                    headers={"Authorization": f"Bearer {TOKEN}"}).body
    assert f'<option value="{release}" selected>' in page
    booked = api["summary"]["totalSessions"]
    assert re.search(rf'Sessions booked</div><div class="value">{booked:,}<', page)


def test_the_insights_view_draws_the_insights_apis_answers(store, run, agent_server):
    """On SQLite and PostgreSQL (slow: it starts a server)."""
    agent = start(agent_server, store)
    fill(agent, 1500)
    cookie = signed_in(agent)
    query = [("event", "session_booked"), ("interval", "day"), ("breakdown", "session_type"), ("step", "session_booked"),
             ("step", "session_completed"), ("step", "session_rated"), ("cohort", "login_attempt"),
             ("returning", "session_booked"), ("period", "day"), ("periods", "3"), ("range", "7d")]
    page = agent.get("/analytics/insights", params=query, headers=cookie)
    assert page.status == 200, page.body
    auth = {"Authorization": f"Bearer {TOKEN}"}
    funnel = agent.post("/api/insights/funnels", json={"range": "7d", "steps": [
        {"event": "session_booked"}, {"event": "session_completed"}, {"event": "session_rated"}]}, headers=auth).body
    trend = agent.post("/api/insights/trends", json={"range": "7d", "series": [{"event": "session_booked"}],
                                                      "breakdown": "session_type", "breakdown_limit": 5},
                       headers=auth).body
    body = page.body
    assert '<svg class="chart"' in body and "<polyline" in body or "<circle" in body
    for result in trend["results"]:
        value = result["breakdown_value"]
        name = "other" if result["is_other"] else "(none)" if value is None else value
        assert f'data-series="{name}"' in body
    for step in funnel["steps"]:
        assert f'{step["step"]}. {step["event"]}</span>' in body
        assert f'<span class="bar-value">{step["persons"]:,} · {step["conversion_from_first"]:.1f} %' in body
    assert '<table class="retention">' in body and body.count('<td class="cohort">') == 3
    assert 'name="step" value="session_rated"' in body


def test_the_insights_defaults_answer_without_parameters(sqlite_store, run, agent_server):
    agent = start(agent_server, sqlite_store)
    fill(agent)
    page = agent.get("/analytics/insights", headers=signed_in(agent))
    assert page.status == 200
    assert all(f'<section id="{s}">' in page.body for s in ("trend", "funnel", "retention"))


@pytest.mark.parametrize(("query", "field"), [
    ("range=1y", "range"), ("periods=99", "periods"), ("periods=x", "periods"), ("step=a", "step"),
    ("math=median", "math"), ("interval=year", "interval"), ("bogus=1", "bogus"), ("order=random", "order"),
    ("event=" + "e" * 300, "event"), ("event=a%01b", "event"),
])
def test_a_bad_insights_parameter_is_a_400_page_naming_it(agent_server, query, field):
    agent = start(agent_server)
    page = agent.get("/analytics/insights?" + query, headers=signed_in(agent))
    assert page.status == 400
    assert re.search(rf'<p class="error" role="alert">{field}: ', page.body), page.body[-600:]


@pytest.mark.parametrize(("query", "field"), [("range=1y", "range"), ("release=", "release"), ("x=1", "x"),
                                              ("range=7d&range=30d", "range")])
def test_a_bad_dashboard_parameter_is_a_400_page_naming_it(agent_server, query, field):
    agent = start(agent_server)
    page = agent.get("/analytics?" + query, headers=signed_in(agent))
    assert page.status == 400
    assert f'role="alert">{field}: ' in page.body


def test_a_disabled_store_is_a_503_page_not_a_500(agent_server):
    agent = start(agent_server)
    cookie = signed_in(agent)
    for path in ("/analytics", "/analytics/insights"):
        page = agent.get(path, headers=cookie)
        assert page.status == 503 and "store.driver: none" in page.body
        assert page.headers["Retry-After"] if path.endswith("insights") else True


def test_an_empty_store_renders_every_section_empty(sqlite_store, run, agent_server):
    agent = start(agent_server, sqlite_store)
    cookie = signed_in(agent)
    dash = agent.get("/analytics", headers=cookie)
    assert dash.status == 200
    assert "No funnel events in this range." in dash.body and "No coaches in this range." in dash.body
    assert "No probe results in this range." in dash.body
    insights = agent.get("/analytics/insights", headers=cookie)
    assert insights.status == 200
    assert "No such events in this range." in insights.body and "Nobody did step 1" in insights.body


def test_hostile_form_values_come_back_escaped(agent_server):
    agent = start(agent_server)
    page = agent.get("/analytics/insights", params={"event": HOSTILE, "breakdown": HOSTILE, "cohort": HOSTILE},
                     headers=signed_in(agent))
    assert "<script>" not in page.body and "<img" not in page.body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.body


# --- the renderers, with hostile and empty data --------------------------------------------------------

def hostile_dashboard() -> dict[str, Any]:
    return {
        "range": {"from": HOSTILE, "to": "2026-12-04T00:00:00Z"},
        "summary": {"totalUsers": 3, "activeUsers": 2, "activeUsersByRole": {HOSTILE: 2}, "newUsers": 1,
                    "newUsersByRole": {"client": 1}, "totalSessions": 12345, "completedSessions": 10,
                    "sessionCompletionRate": 81.0, "cancelledSessions": 1,
                    "goals": {"total": 4, "completed": 1, "active": 3, "completionRate": 25.0},
                    "engagement": {"averageEngagementScore": None, "taskCompletionRate": 50.0},
                    "coaches": {"activeCoaches": 1, "averageSessionsPerCoach": 10.0}},
        "funnelMetrics": [{"funnel": "signup", "steps": [{"step": HOSTILE, "stepNumber": 1, "users": 5,
                                                          "conversionRate": 100.0, "dropOff": 0, "dropOffRate": 0.0}]},
                          {"funnel": "onboarding", "flowsCompleted": 0, "steps": [
                              {"step": None, "stepNumber": None, "started": 2, "completed": 1, "abandoned": 1,
                               "completionRate": 50.0, "abandonmentRate": 50.0}]}],
        "coachProductivity": [{"coachId": HOSTILE, "sessionsCompleted": 1, "sessionsBooked": 2,
                               "sessionsCancelled": 0, "clientsManaged": 1, "averageRating": 4.5,
                               "resourcesCreated": 0, "tasksManaged": 0}],
        "clientEngagement": [{"userId": HOSTILE, "events": 9, "resourceViews": 1, "tasksCreated": 1,
                              "tasksCompleted": 0, "taskCompletionRate": 0.0, "averageEngagementScore": None}],
        "goalCompletion": [{"category": HOSTILE, "created": 2, "completed": 1, "active": 1, "completionRate": 50.0,
                            "averageDaysToComplete": 3.5}],
        "serviceUptime": [{"target": HOSTILE, "probes": 10, "successes": 9, "uptimeRatio": 0.9,
                           "averageLatencySeconds": 0.012, "maxLatencySeconds": 0.05}],
    }


def assert_escaped(body: str) -> None:
    assert "<script" not in body and "<img" not in body and "onerror=alert(1)>" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_the_dashboard_escapes_every_value_it_prints():
    body = render_dashboard(hostile_dashboard(), range_="30d", release=HOSTILE, releases=[HOSTILE, "v1"],
                            csrf=HOSTILE)
    assert_escaped(body)
    assert body.count("&lt;script&gt;") >= 9        # range, role, step, coach, client, category, target, release x2
    assert "12,345" in body and "90.00 %" in body and "(none)" in body


def test_the_insights_view_escapes_event_names_and_breakdown_values():
    form = InsightsForm(event=HOSTILE, breakdown=HOSTILE, steps=(HOSTILE, "b"), cohort=HOSTILE, returning="")
    trend = {"interval": "day", "buckets": ["2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"],
             "results": [{"event": HOSTILE, "math": "total", "data": [1, 2], "total": 3, "breakdown_value": HOSTILE,
                          "is_other": False}]}
    funnel = {"steps": [{"step": 1, "event": HOSTILE, "persons": 3, "conversion_from_first": 100.0,
                         "conversion_from_previous": 100.0, "median_seconds_from_previous": None},
                        {"step": 2, "event": "b", "persons": 1, "conversion_from_first": 33.3,
                         "conversion_from_previous": 33.3, "median_seconds_from_previous": 90.0}]}
    retention = {"type": "first_time", "cohorts": [
        {"date": HOSTILE, "persons": 2, "values": [{"persons": 2, "percentage": 100.0},
                                                   {"persons": 1, "percentage": 50.0}]}]}
    body = render_insights(form, trend=trend, funnel=funnel, retention=retention, errors={}, csrf="c")
    assert_escaped(body)
    assert 'class="r10"' in body and 'class="r5"' in body
    assert "any event" in body and "median 90.0 s" in body


def test_the_renderers_handle_nothing_at_all():
    body = render_dashboard({"summary": {}, "range": {}}, range_="7d", release=None, releases=[], csrf="c")
    assert "No coaches in this range." in body and "–" in body
    error = render_dashboard(None, range_="7d", release=None, releases=[], csrf="c", error="store down")
    assert "store down" in error
    insights = render_insights(InsightsForm(), trend=None, funnel=None, retention=None,
                               errors={"trends": "t failed", "funnel": "f failed", "retention": "r failed"}, csrf="c")
    assert all(f"{x} failed" in insights for x in "tfr")
    assert line_chart([], [], "nothing").startswith('<svg class="chart"')
    assert 'width="0.00"' in bar_rows([Bar("a", 0, "0")], "zero")


def test_the_line_chart_scales_to_a_round_top_and_leaves_gaps():
    chart = line_chart([Line("a", [0, 7, None, 3])], ["d1", "d2", "d3", "d4"], "t")
    assert ">10</text>" in chart                               # the axis' top: 7 -> 10
    assert chart.count("<polyline") == 1 and chart.count("<circle") == 3       # the gap splits off the 4th
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 240, 2600)] == [1.0, 0.5, 1, 10, 20, 250, 5000]


def test_the_style_is_the_one_the_policy_allows():
    import base64
    import hashlib
    assert STYLE_HASH == base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    assert "script-src" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
    body = render_dashboard(hostile_dashboard(), range_="30d", release=None, releases=[], csrf="c")
    assert body.count("<style>") == 1 and " style=" not in body


def test_form_fields_map_the_insights_api_fields_back():
    assert form_field("trends", "series[0].event") == "event"
    assert form_field("trends", "series[0].math") == "math"
    assert form_field("funnel", "steps[3].event") == "step"
    assert form_field("retention", "cohort.event") == "cohort"
    form = read_form({"event": "a", "periods": "4"})
    assert form.trends_body()["series"] == [{"event": "a", "math": "total"}]
    assert form.retention_body()["periods"] == 4
    assert read_form({"cohort": "", "returning": ""}).retention_body()["cohort"] == {"event": None}
    assert time.time() > 0
