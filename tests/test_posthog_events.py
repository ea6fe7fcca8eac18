"""PostHog's event semantics (issue 14, item 4): what each PostHog event becomes. The payloads are modelled
on what the real SDKs send (posthog-js 1.449's `$pageview`, `$autocapture`, `$web_vitals`; posthog-python
7.91's captured payloads for `$set`, `$create_alias`, `$groupidentify`, `$exception`)."""

from __future__ import annotations

import copy
from typing import Any

from agent.events.config import EventsConfig
from agent.events.limits import DEFAULT_LIMITS
from agent.events.mapping import EventMetrics
from agent.events.posthog import parse_posthog_batch, parse_posthog_event
from agent.events.posthog_props import MAX_DOLLAR_PROPERTIES, element_tag, lift_dollar, path_template
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
                "$feature/new-onboarding", "$web_vitals_enabled_server_side", "$sdk_debug_replay_internal_buffer_length",
                "$replay_script_config", "token", "distinct_id"):
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
