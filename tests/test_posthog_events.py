"""PostHog's event semantics (issue 14, item 4): what each PostHog event becomes. The payloads are modelled
on what the real SDKs send (posthog-js 1.449's `$pageview`, `$autocapture`, `$web_vitals`; posthog-python
7.91's captured payloads for `$set`, `$create_alias`, `$groupidentify`, `$exception`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.events.config import EventsConfig
from agent.events.limits import DEFAULT_LIMITS, Limits
from agent.events.mapping import EventMetrics
from agent.events.posthog import parse_posthog_batch, parse_posthog_event
from agent.events.posthog_props import MAX_DOLLAR_PROPERTIES, element_tag, lift_dollar, path_template
from agent.events.properties import FieldError
from agent.metrics.store import MetricStore

NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z
TS = "2026-11-24T10:00:00.123Z"

# what posthog-js 1.449 puts on every event (abridged only of feature flags), as captured from Chromium
JS_COMMON: dict[str, Any] = {
    "$os": "Linux", "$os_version": "", "$browser": "Chrome", "$device_type": "Desktop",
    "$current_url": "http://127.0.0.1:8123/coaches/42/reviews?tab=recent&token=s3cret#top",
    "$host": "127.0.0.1:8123", "$pathname": "/coaches/42/reviews", "$raw_user_agent": "Mozilla/5.0 HeadlessChrome",
    "$browser_version": 131, "$browser_language": "en-US", "$browser_language_prefix": "en",
    "$screen_height": 600, "$screen_width": 800, "$viewport_height": 600, "$viewport_width": 800,
    "$lib": "web", "$lib_version": "1.449.2", "$insert_id": "s0ff1ybp8mxg7iti", "$time": 1795514400.123,
    "distinct_id": "01936f0a-anon-7000-8000-000000000001", "$device_id": "01936f0a-anon-7000-8000-000000000001",
    "$console_log_recording_enabled_server_side": False, "$session_recording_network_payload_capture": {},
    "$replay_sample_rate": None, "$replay_script_config": None, "$autocapture_disabled_server_side": False,
    "$web_vitals_enabled_server_side": True, "$dead_clicks_enabled_server_side": False,
    "$exception_capture_enabled_server_side": True, "$web_vitals_allowed_metrics": ["LCP", "CLS", "FCP", "INP"],
    "$is_identified": False, "$process_person_profile": True, "$session_id": "01936f0a-sess-7000-8000-0000000000aa",
    "$window_id": "01936f0a-wind-7000-8000-0000000000bb", "$pageview_id": "01936f0a-page-7000-8000-0000000000cc",
    "$session_entry_url": "http://127.0.0.1:8123/?utm_source=newsletter&email=me@example.com",
    "$session_entry_host": "127.0.0.1:8123", "$session_entry_pathname": "/", "$session_entry_referrer": "$direct",
    "$session_entry_utm_source": "newsletter", "$referrer": "$direct", "$referring_domain": "$direct",
    "$timezone": "Europe/Paris", "$timezone_offset": -60, "$sdk_debug_replay_internal_buffer_length": 0,
    "$config_defaults": "2025-05-24", "$lib_custom_api_host": "http://127.0.0.1:9101",
    "$feature/new-onboarding": True, "$active_feature_flags": ["new-onboarding"],
    "token": "phc_project", "utm_source": "newsletter",
}


def js_event(event: str, extra: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    props = copy.deepcopy(JS_COMMON)
    props.update(extra or {})
    return {"uuid": "01936f0a-0000-7000-8000-00000000000" + str(len(event) % 10), "event": event,
            "properties": props, "timestamp": TS, **top}


PAGEVIEW = js_event("$pageview", {"$prev_pageview_pathname": "/dashboard", "$prev_pageview_duration": 12.5,
                                  "$prev_pageview_last_scroll_percentage": 1, "title": "Reviews"})
AUTOCAPTURE = js_event("$autocapture", {
    "$event_type": "click", "$ce_version": 1, "$el_text": "Book a session",
    "$elements_chain": 'button.btn.primary:attr__class="btn primary"attr__data-ph="book"nth-child="2"'
                       'nth-of-type="1"text="Book a session";div.card:attr__class="card"nth-child="1"nth-of-type="1";'
                       'main:nth-child="1"nth-of-type="1";body:nth-child="2"nth-of-type="1"',
    "$elements": [{"tag_name": "button", "$el_text": "Book a session", "classes": ["btn", "primary"],
                   "attr__class": "btn primary", "nth_child": 2, "nth_of_type": 1},
                  {"tag_name": "div", "classes": ["card"], "attr__class": "card", "nth_child": 1, "nth_of_type": 1}]})
WEB_VITALS = js_event("$web_vitals", {
    "$web_vitals_LCP_value": 1850.4, "$web_vitals_LCP_event": {
        "name": "LCP", "value": 1850.4, "rating": "good", "delta": 1850.4, "id": "v5-1795514400000-1",
        "navigationType": "navigate", "$current_url": "http://127.0.0.1:8123/coaches/42/reviews",
        "$session_id": "01936f0a-sess-7000-8000-0000000000aa", "timestamp": 1795514400123,
        "attribution": {"element": "main>img", "timeToFirstByte": 120}},
    "$web_vitals_CLS_value": 0.31, "$web_vitals_CLS_event": {"name": "CLS", "value": 0.31, "delta": 0.31,
                                                             "id": "v5-2", "navigationType": "reload"},
    "$web_vitals_INP_value": 260, "$web_vitals_FCP_value": 900})


def test_posthog_js_pageview_keeps_its_own_properties_within_the_limits() -> None:
    assert len(PAGEVIEW["properties"]) > 50                      # a real event: beyond what a person writes
    [event], dropped = parse_posthog_event(PAGEVIEW, NOW, DEFAULT_LIMITS)
    props = event.properties
    assert (event.name, event.category, event.known, dropped) == ("$pageview", "posthog", True, 0)
    # kept, URLs without query and fragment (tokens, e-mail addresses live there)
    assert props["$current_url"] == "http://127.0.0.1:8123/coaches/42/reviews"
    assert props["$session_entry_url"] == "http://127.0.0.1:8123/"
    assert event.context.page == "http://127.0.0.1:8123/coaches/42/reviews"
    for key in ("$pathname", "$browser", "$os", "$device_type", "$referrer", "$referring_domain", "$screen_width",
                "$window_id", "$pageview_id", "$timezone", "$prev_pageview_duration", "$session_entry_utm_source"):
        assert key in props, key
    assert props["utm_source"] == "newsletter" and props["title"] == "Reviews"
    # where privacy treats them as ids and addresses, or the SDK's echo of its settings: not properties
    for key in ("$session_id", "$ip", "$raw_user_agent", "$insert_id", "$device_id", "$lib", "$is_identified",
                "$feature/new-onboarding", "$web_vitals_enabled_server_side", "$replay_script_config",
                "$sdk_debug_replay_internal_buffer_length", "token", "distinct_id"):
        assert key not in props, key
    assert event.session_id == "01936f0a-sess-7000-8000-0000000000aa"
    assert event.anonymous_id == JS_COMMON["distinct_id"] and event.user_id is None


def test_dollar_properties_are_bounded_one_by_one_never_failing_the_event() -> None:
    limits = DEFAULT_LIMITS
    props = {f"$custom_{i}": i for i in range(MAX_DOLLAR_PROPERTIES + 20)}
    props["$too_long"] = "x" * (limits.max_string_length + 1)
    props["$too_deep"] = [[[[[[1]]]]]]
    props["$elements_chain"] = ";".join(f'div:nth-child="{i}"' for i in range(1000))
    props["$current_url"] = "https://a.test/x"
    kept, dropped = lift_dollar(props, limits)
    assert len(kept) == MAX_DOLLAR_PROPERTIES and dropped == 24     # 22 past the cap, 2 outside the limits
    assert "$current_url" in kept and "$elements_chain" in kept          # the known ones first
    chain = kept["$elements_chain"]
    assert len(chain) <= limits.max_string_length and chain.startswith('div:nth-child="0"') and \
        chain.endswith('"') and not chain.endswith(";")
    event = {"event": "$pageview", "distinct_id": "u", "properties": {**props, "plan": "pro"}}
    [parsed], dropped = parse_posthog_event(event, NOW, limits)
    assert parsed.properties["plan"] == "pro" and dropped == 24
    # the cached plans follow the limits (a reload): a name too long for the new ones is dropped
    short = Limits(max_name_length=11)
    assert lift_dollar({"$current_url": "/a", "$pathname": "/a"}, short) == ({"$pathname": "/a"}, 1)
    assert lift_dollar({"$current_url": "/a", "$pathname": "/a"}, limits)[1] == 0


def test_path_templates_strip_ids_queries_and_people() -> None:
    assert path_template("https://app.test/users/42/edit?x=1#y") == "/users/:id/edit"
    assert path_template("/coaches/7f3c2a1e-9b8d-4c6e-a5f4-3b2a1c0d9e8f/book") == "/coaches/:id/book"
    assert path_template("/invites/Zm9vYmFyYmF6cXV4MTIz") == "/invites/:id"
    assert path_template("/orders/5f2b9c1d") == "/orders/:id"
    assert path_template("/u/me@example.com/profile") == "/u/:id/profile"
    assert path_template("/pricing") == "/pricing" and path_template("https://app.test") == "/"
    assert path_template(None) == "unknown" and path_template("/blog/how-to-coach") == "/blog/how-to-coach"


def test_element_tags_are_a_closed_set() -> None:
    assert element_tag(AUTOCAPTURE["properties"]) == "button"
    assert element_tag({"$elements_chain": 'a:attr__href="/x";div'}) == "a"
    assert element_tag({"$elements_chain": "my-widget.x:nth-child=\"1\""}) == "other"
    assert element_tag({}) == "unknown"


def metrics_of(*events: dict[str, Any]) -> MetricStore:
    store = MetricStore(EventsConfig().series_limit)
    metrics = EventMetrics(store, EventsConfig())
    _, parsed = parse_posthog_batch({"batch": list(events)}, now=NOW, limits=DEFAULT_LIMITS)
    for event in parsed:
        metrics.apply(event)
    return store


def series(store: MetricStore, name: str) -> dict[tuple[tuple[str, str], ...], Any]:
    family = store.get(name)
    assert family is not None, name
    return {tuple(zip(family.labels, key)): value for key, value in family.series.items()}


def test_pageviews_and_time_on_page_by_path_template() -> None:
    leave = js_event("$pageleave", {"$prev_pageview_pathname": "/coaches/42/reviews", "$prev_pageview_duration": 40})
    other = js_event("$pageview", {"$pathname": "/coaches/7/reviews", "$current_url": "http://h/coaches/7/reviews"})
    store = metrics_of(PAGEVIEW, leave, other)
    assert series(store, "loom_pageviews") == {(("path", "/coaches/:id/reviews"),): 2}
    on_page = series(store, "loom_time_on_page_seconds")
    assert set(on_page) == {(("path", "/dashboard"),), (("path", "/coaches/:id/reviews"),)}
    assert on_page[(("path", "/coaches/:id/reviews"),)][-1] == 40       # the sum


def test_autocapture_and_rageclicks_by_event_type_and_tag() -> None:
    rage = js_event("$rageclick", {"$elements_chain": 'a.pay:attr__href="/pay";form'})
    change = js_event("$autocapture", {"$event_type": "change", "$elements_chain": "select:nth-child=\"1\""})
    weird = js_event("$autocapture", {"$event_type": "hover", "$elements_chain": "x-button"})
    store = metrics_of(AUTOCAPTURE, rage, change, weird)
    assert series(store, "loom_autocapture") == {
        (("event_type", "click"), ("tag", "button")): 1, (("event_type", "rageclick"), ("tag", "a")): 1,
        (("event_type", "change"), ("tag", "select")): 1, (("event_type", "other"), ("tag", "other")): 1}
    [event], _ = parse_posthog_event(AUTOCAPTURE, NOW, DEFAULT_LIMITS)
    assert event.properties["$elements"][0]["tag_name"] == "button" and "$elements_chain" in event.properties


def test_web_vitals_become_the_core_web_vitals_events() -> None:
    events, _ = parse_posthog_event(WEB_VITALS, NOW, DEFAULT_LIMITS)
    got = {e.properties["name"]: e.properties for e in events}
    assert all(e.name == "web_vitals" and e.category == "web_vitals" for e in events)
    assert got["LCP"] == {"name": "LCP", "value": 1850.4, "rating": "good", "page": "/coaches/:id/reviews",
                          "navigation_type": "navigate", "delta": 1850.4}
    assert got["CLS"]["rating"] == "poor" and got["INP"]["rating"] == "needs-improvement"
    assert got["FCP"]["rating"] == "good" and set(got) == {"LCP", "CLS", "INP", "FCP"}
    assert len({e.event_id for e in events}) == 4 and events[0].event_id.endswith(":LCP")
    store = metrics_of(WEB_VITALS)
    assert series(store, "loom_web_vitals_ratings") == {
        (("name", "LCP"), ("rating", "good")): 1, (("name", "CLS"), ("rating", "poor")): 1,
        (("name", "INP"), ("rating", "needs-improvement")): 1, (("name", "FCP"), ("rating", "good")): 1}
    lcp = series(store, "loom_web_vitals_lcp_seconds")[(("rating", "good"),)]
    assert abs(lcp[-1] - 1.8504) < 1e-9
    # no vital in it: stays a `$web_vitals` event
    bare = {"event": "$web_vitals", "distinct_id": "u", "properties": {"$web_vitals_LCP_value": "fast"}}
    assert [e.name for e in parse_posthog_event(bare, NOW, DEFAULT_LIMITS)[0]] == ["$web_vitals"]


# --- $exception -> the errors pipeline -----------------------------------------------------------------

# posthog-python 7.91's captureException of `raise RuntimeError("outer") from ValueError("bad value")`,
# as captured from the SDK (source context abridged)
PY_EXCEPTION = {
    "event": "$exception", "distinct_id": "u1", "uuid": "e09212dc-f063-44f9-8573-b8eb1f7fcbda", "timestamp": TS,
    "properties": {
        "$exception_list": [
            {"mechanism": {"exception_id": 0, "type": "generic", "handled": True, "synthetic": False}, "module": None,
             "type": "RuntimeError", "value": "outer", "stacktrace": {"type": "raw", "frames": [
                 {"platform": "python", "filename": "app.py", "abs_path": "/srv/app.py", "function": "<module>",
                  "module": "__main__", "lineno": 23, "context_line": "raise RuntimeError('outer') from e",
                  "pre_context": ["try:"], "post_context": [], "in_app": True}]}},
            {"mechanism": {"exception_id": 1, "source": "cause", "parent_id": 0, "type": "chained",
                           "synthetic": False}, "module": None, "type": "ValueError", "value": "bad value",
             "stacktrace": {"type": "raw", "frames": [
                 {"platform": "python", "filename": "app.py", "abs_path": "/srv/app.py", "function": "<module>",
                  "module": "__main__", "lineno": 22, "in_app": True},
                 {"platform": "python", "filename": "app.py", "abs_path": "/srv/app.py", "function": "inner",
                  "module": "__main__", "lineno": 21, "context_line": "raise ValueError('bad value')",
                  "in_app": True}]}}],
        "$exception_level": "error", "$python_runtime": "CPython", "$os": "Linux", "$lib": "posthog-python",
        "$lib_version": "7.91.1", "$geoip_disable": True, "$is_server": True}}
# posthog-js 1.449's exception autocapture of an uncaught TypeError (abridged)
JS_EXCEPTION = js_event("$exception", {
    "$exception_list": [{"type": "TypeError", "value": "Cannot read properties of undefined (reading 'id')",
                         "mechanism": {"handled": False, "synthetic": False, "type": "onerror"},
                         "stacktrace": {"type": "resolved", "frames": [
                             {"platform": "web:javascript", "filename": "http://127.0.0.1:8123/app.js",
                              "function": "applyDiscount", "in_app": True, "lineno": 1, "colno": 2044,
                              "abs_path": "http://127.0.0.1:8123/app.js", "chunk_id": None}]}}],
    "$exception_level": "error", "$exception_source": "http://127.0.0.1:8123/app.js",
    "$exception_personURL": "http://127.0.0.1:9101/project/phc_project/person/x"})


def test_posthog_python_exception_keeps_its_chain_in_order() -> None:
    from agent.error_tracking.config import ErrorsConfig
    from agent.error_tracking.posthog import posthog_error

    error = posthog_error(PY_EXCEPTION, NOW, ErrorsConfig(), DEFAULT_LIMITS)
    assert (error.type, error.message, error.user_id, error.handled, error.level) == (
        "RuntimeError", "outer", "u1", True, "error")
    assert [c.type for c in error.causes] == ["ValueError"] and error.causes[0].frames[-1].function == "inner"
    assert error.event_id == "e09212dcf06344f98573b8eb1f7fcbda" and error.context.library == "posthog-python/7.91.1"
    js = posthog_error(JS_EXCEPTION, NOW, ErrorsConfig(), DEFAULT_LIMITS)
    assert (js.type, js.handled, js.user_id, js.frames[0].function) == ("TypeError", False, None, "applyDiscount")
    assert js.context.page == "http://127.0.0.1:8123/coaches/42/reviews"
    bad = copy.deepcopy(PY_EXCEPTION)
    bad["properties"]["$exception_list"][1]["stacktrace"]["frames"][1]["lineno"] = "21"
    with pytest.raises(FieldError) as caught:
        posthog_error(bad, NOW, ErrorsConfig(), DEFAULT_LIMITS)
    assert caught.value.field == "properties.$exception_list[1].stacktrace.frames[1].lineno"


# --- through the HTTP routes of the real agent: persons, groups, errors, opt-in/out --------------------

pytest_plugins = ["tests.support.store_fixtures"]
KEY = "phc_project_key_0123456789"
ADMIN = "admin-token-for-the-posthog-event-tests"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = {"events": {"api_keys": [KEY]}, "api": {"rate_limit": 1000}}


def now_ts(offset: float = 0.0) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset)) + "Z"


def js_now(event: str, distinct_id: str, extra: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A posthog-js event of now, with a fresh uuid."""
    import uuid

    body = js_event(event, extra, **top)
    body.update(uuid=str(uuid.uuid4()), timestamp=now_ts(-60))
    body["properties"]["distinct_id"] = distinct_id
    return body


def py_now(event: str, distinct_id: str, properties: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A posthog-python 7.91 event of now (the shape captured from the SDK)."""
    import uuid

    return {"event": event, "distinct_id": distinct_id, "uuid": str(uuid.uuid4()), "timestamp": now_ts(-30),
            "properties": {**properties, "$lib": "posthog-python", "$lib_version": "7.91.1", "$geoip_disable": True,
                           "$is_server": True}, **top}


def export(agent: Any, user: str) -> dict[str, Any]:
    answer = agent.get("/api/analytics/export", params={"userId": user}, headers=ADMIN_AUTH)
    assert answer.status == 200, answer.body
    return answer.body


def test_identify_alias_and_groups_make_one_person_and_no_group_users(store, agent_server) -> None:
    agent = agent_server(CONFIG, store=store, admin_token=ADMIN)
    anon = "01936f0a-anon-7000-8000-00000000beef"
    visit = [js_now("$pageview", anon), js_now("$autocapture", anon, AUTOCAPTURE["properties"] | {"distinct_id": anon})]
    identify = js_now("$identify", "coach-7", {"$anon_distinct_id": anon, "$is_identified": True,
                                               "$set": {"plan": "pro", "email": "coach7@example.com"},
                                               "$set_once": {"signupDate": "2026-01-15"}})
    identify["properties"].pop("distinct_id")
    identify["distinct_id"] = "coach-7"
    assert agent.post("/batch/", json={"api_key": KEY, "batch": visit}).status == 200
    assert agent.post("/e/", json={"api_key": KEY, **identify}).status == 200
    # posthog-python: events under a backend id, then alias(previous_id="backend-7", distinct_id="coach-7"),
    # then a group and an event in it
    server = [py_now("invoice paid", "backend-7", {"amount": 20, "$groups": {"company": "acme"}}),
              py_now("$create_alias", "backend-7", {"distinct_id": "backend-7", "alias": "coach-7"}),
              py_now("$groupidentify", "b5e0a6c4-1c6a-4d0e-9d5b-2f3e1a7c9d11",
                     {"$group_type": "company", "$group_key": "acme", "$group_set": {"name": "Acme", "seats": 12}}),
              py_now("$set_once", "backend-7", {}, **{"$set_once": {"created_at": "2026-01-10"}})]
    assert agent.post("/batch/", json={"api_key": KEY, "batch": server}).status == 200
    assert agent.post("/batch/", json={"api_key": KEY, "batch": [py_now("report viewed", "coach-7", {})]}).status == 200
    # every id gives the same person: all their events, both ids, the traits on one users row
    for user in ("coach-7", "backend-7", anon):
        body = export(agent, user)
        tables = body["tables"]
        names = sorted(row["name"] for row in tables["events"])
        assert names == ["$autocapture", "$identify", "$pageview", "$set_once", "invoice paid", "report viewed"], \
            (user, names)
        assert len({row["user_id"] for row in tables["events"]}) == 1
        assert len(tables["users"]) == 1 and tables["users"][0]["plan"] == "pro"
        assert tables["users"][0]["signed_up_at"].startswith("2026-01-1")
        # PostHog's alias: the event's distinct_id (backend-7) is the person, `alias` joins it; the anonymous
        # id that coach-7 had was merged with coach-7 first and follows it
        assert sorted((row["alias_id"], row["person_id"]) for row in tables["person_aliases"]) == [
            (anon, "backend-7"), ("coach-7", "backend-7")]
        assert [(g["group_type"], g["group_key"], g["properties"]) for g in tables["group_profiles"]] == [
            ("company", "acme", {"name": "Acme", "seats": 12})]
        assert anon in body["anonymousIds"]                           # was `anonymousIds: []`
    invoice = next(row for row in export(agent, "coach-7")["tables"]["events"] if row["name"] == "invoice paid")
    assert invoice["properties"]["$groups"] == {"company": "acme"}
    # the group is no user, the person is one
    dashboard = agent.get("/api/analytics/dashboard", headers=ADMIN_AUTH).body
    assert dashboard["summary"]["totalUsers"] == 1
    # erasure by any id takes the whole person
    erased = agent.request("DELETE", "/api/analytics/user/backend-7", headers=ADMIN_AUTH)
    assert erased.status == 200, erased.body
    assert export(agent, "coach-7")["tables"]["events"] == [] and export(agent, anon)["tables"]["users"] == []


def test_exceptions_reach_the_errors_pipeline_and_bad_traits_never_lose_the_batch(sqlite_store, agent_server) -> None:
    agent = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)
    python_error = copy.deepcopy(PY_EXCEPTION) | {"timestamp": now_ts(-5)}
    js_error = js_now("$exception", "coach-9", JS_EXCEPTION["properties"] | {"$is_identified": True})
    bad_traits = py_now("$set", "coach-9", {}, **{"$set": {"role": 42, "signupDate": "yesterday", "plan": "team"}})
    answer = agent.post("/batch/", json={"api_key": KEY, "batch": [python_error, js_error, bad_traits,
                                                                    js_now("$pageview", "coach-9")]})
    assert answer.status == 200, answer.body
    issues = agent.get("/api/errors", headers=ADMIN_AUTH).body
    types = sorted(issue["type"] for issue in issues["issues"])
    assert types == ["RuntimeError", "TypeError"], issues
    metrics = agent.get("/metrics").body
    assert 'loom_errors_total{feature="unknown",type="RuntimeError",release="unknown"} 1' in metrics
    assert 'loom_agent_posthog_dropped_total{kind="trait"} 2' in metrics
    assert 'loom_pageviews_total{path="/coaches/:id/reviews"} 1' in metrics
    [user] = export(agent, "coach-9")["tables"]["users"]
    assert user["plan"] == "team" and user["role"] is None
    # a bad exception is a 400 naming the PostHog field; nothing of the batch is kept
    broken = copy.deepcopy(PY_EXCEPTION) | {"timestamp": now_ts(-5), "uuid": "0c6f2b1e-0000-4000-8000-000000000001"}
    broken["properties"]["$exception_list"][0]["stacktrace"]["frames"][0]["lineno"] = "x"
    answer = agent.post("/batch/", json={"api_key": KEY, "batch": [js_now("$pageview", "coach-9"), broken]})
    assert answer.status == 400
    assert answer.body["errors"][0]["field"] == "properties.$exception_list[0].stacktrace.frames[0].lineno"
    assert answer.body["errors"][0]["index"] == 1
    assert 'loom_pageviews_total{path="/coaches/:id/reviews"} 1' in agent.get("/metrics").body


def test_opt_in_and_opt_out_events_are_the_opt_out_api(sqlite_store, agent_server) -> None:
    agent = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)
    out = js_now("$opt_out", "coach-3", {"$is_identified": True})
    assert agent.post("/e/", json={"api_key": KEY, **out}).status == 200
    assert export(agent, "coach-3")["optedOut"] is True
    assert agent.post("/e/", json={"api_key": KEY, **js_now("$pageview", "coach-3")}).status == 200
    assert export(agent, "coach-3")["tables"]["events"] == []            # dropped: the person objected
    back = js_now("$opt_in", "coach-3", {"$is_identified": True})
    assert agent.post("/e/", json={"api_key": KEY, **back}).status == 200
    assert export(agent, "coach-3")["optedOut"] is False
    assert agent.post("/e/", json={"api_key": KEY, **js_now("$pageview", "coach-3")}).status == 200
    assert sorted(row["name"] for row in export(agent, "coach-3")["tables"]["events"]) == ["$opt_in", "$pageview"]


def test_retention_takes_aliases_of_persons_gone_and_groups_not_seen_again(store, run) -> None:
    from agent.store.config import RetentionConfig
    from agent.store.people import group_statement, merge_statements
    from agent.store.retention import run_cleanup_once

    now = 1.9e9
    old, recent = now - 400 * 86400, now - 86400
    run(store.execute([
        ("INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?)", ("kept-person", old, recent)),
        *merge_statements(store.dialect, "alias-of-kept", "kept-person", old),
        *merge_statements(store.dialect, "alias-of-gone", "gone-person", old),
        group_statement(store.dialect, "company", "stale", {"n": 1}, old),
        group_statement(store.dialect, "company", "fresh", {"n": 2}, recent)]))
    run(run_cleanup_once(store, RetentionConfig(), now))
    assert run(store.fetch("SELECT alias_id FROM person_aliases")) == [("alias-of-kept",)]
    assert run(store.fetch("SELECT group_key FROM group_profiles")) == [("fresh",)]


def test_after_a_restart_events_under_an_alias_still_reach_the_person(sqlite_store, agent_server) -> None:
    first = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)
    alias = py_now("$create_alias", "person-1", {"distinct_id": "person-1", "alias": "device-1"})
    assert first.post("/batch/", json={"api_key": KEY, "batch": [alias]}).status == 200
    again = agent_server(CONFIG, store=sqlite_store, admin_token=ADMIN)          # a new agent, the same store
    assert again.post("/batch/", json={"api_key": KEY, "batch": [py_now("late event", "device-1", {})]}).status == 200
    [event] = export(again, "person-1")["tables"]["events"]
    assert (event["name"], event["anonymous_id"]) == ("late event", "device-1")
    assert [row["user_id"] for row in export(again, "person-1")["tables"]["users"]] == ["person-1"]


# --- the real posthog-python SDK, its own payloads, against a real agent process -------------------------

@pytest.mark.slow
def test_posthog_python_person_group_and_exception_calls(tmp_path) -> None:
    """posthog (PyPI) 7.91 with only the agent as its host: what its person, group and error calls send
    becomes one person, a group that is no user, traits from a date-only `created_at`, and an issue."""
    import sqlite3
    import time
    import urllib.request

    import orjson

    from tests.support.procs import AgentProcess

    posthog = pytest.importorskip("posthog", reason="posthog is not installed (the `test` extra)")
    config = {"targets": [], "store": {"driver": "sqlite", "path": str(tmp_path / "loom.db")},
              "retention": {"interval": 0}, "events": {"api_keys": [KEY]}, "api": {"admin_tokens": [ADMIN]}}
    agent = AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": "h" * 40})
    failures: list[Any] = []
    try:
        client = posthog.Posthog(KEY, host=agent.url, sync_mode=True, max_retries=0,
                                 enable_exception_autocapture=False,
                                 on_error=lambda error, batch: failures.append(repr(error)))
        client.capture("report viewed", distinct_id="frontend-1", properties={"page": "/r"})
        client.alias(previous_id="frontend-1", distinct_id="backend-1")
        client.set_once(distinct_id="backend-1", properties={"created_at": "2026-01-15", "role": 7})
        client.group_identify("company", "acme", {"name": "Acme", "seats": 12})
        client.capture("invoice paid", distinct_id="backend-1", groups={"company": "acme"})
        try:
            raise ValueError("no invoice for the period")
        except ValueError as exc:
            client.capture_exception(exc, distinct_id="backend-1")
        client.shutdown()

        def admin(path: str) -> Any:
            request = urllib.request.Request(agent.url + path, headers={"Authorization": f"Bearer {ADMIN}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return orjson.loads(response.read())

        exported = admin("/api/analytics/export?userId=backend-1")
        issues = admin("/api/errors")
        metrics = urllib.request.urlopen(agent.url + "/metrics", timeout=30).read().decode()
    finally:
        assert agent.stop() == 0
    assert failures == []
    tables = exported["tables"]
    assert sorted(row["name"] for row in tables["events"]) == ["$set_once", "invoice paid", "report viewed"]
    assert len({row["user_id"] for row in tables["events"]}) == 1 and len(tables["users"]) == 1
    assert tables["users"][0]["signed_up_at"].startswith("2026-01-15")
    assert [g["group_key"] for g in tables["group_profiles"]] == ["acme"]
    assert [issue["type"] for issue in issues["issues"]] == ["ValueError"]
    assert 'loom_agent_posthog_dropped_total{kind="trait"} 1' in metrics        # the role that is no text
    with sqlite3.connect(f"file:{tmp_path / 'loom.db'}?mode=ro", uri=True) as db:
        users = [row[0] for row in db.execute("SELECT user_id FROM users")]
    assert users == ["frontend-1"]       # PostHog's direction: the alias event's distinct_id is the person


def test_person_and_group_events_name_the_posthog_field() -> None:
    from agent.events.posthog import read_posthog
    from agent.events.validate import BatchError

    good = {"event": "$pageview", "distinct_id": "u"}
    bad = [{"event": "$create_alias", "distinct_id": "u", "properties": {}},
           {"event": "$groupidentify", "distinct_id": "x", "properties": {"$group_type": "company"}},
           {"event": "$groupidentify", "distinct_id": "x", "properties": {"$group_key": "acme"}},
           {"event": "$identify", "distinct_id": "u", "properties": {"$anon_distinct_id": ["a"]}},
           {"event": "$opt_in", "properties": {}}]
    with pytest.raises(BatchError) as caught:
        read_posthog([good, *bad], now=NOW)
    assert [(e.index, e.field) for e in caught.value.errors] == [
        (1, "properties.alias"), (2, "properties.$group_key"), (3, "properties.$group_type"),
        (4, "properties.$anon_distinct_id"), (5, "distinct_id")]
    read = read_posthog([good, {"event": "$groupidentify", "distinct_id": "x", "properties": {
        "$group_type": "company", "$group_key": "acme", "$group_set": {"seats": 3, "bad name": 1, "$x": 2}}}],
        now=NOW)
    assert [e.name for e in read.events] == ["$pageview"] and read.dropped["trait"] == 1
    assert [(g.type, g.key, g.properties) for g in read.groups] == [("company", "acme", {"seats": 3})]
