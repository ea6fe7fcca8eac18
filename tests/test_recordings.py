"""Session recordings (posthog-js `$snapshot` events to /s/): the wire shape (posthog-js's per-field gzip,
`cv: 2024-10`), wrong shapes named by field, the inflate budget, privacy, storage per session and window
in order and compressed, the session bound, opt-outs and DNT, retention, GDPR export and erasure, the
counters. Both databases for the store parts; the HTTP side is tests/test_recordings_api.py."""

from __future__ import annotations

import gzip
import time
import zlib
from typing import Any

import orjson
import pytest

from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.metrics.exposition import render
from agent.metrics.store import MetricStore
from agent.recordings.ingest import Recordings
from agent.recordings.snapshots import SnapshotError, parse_snapshots, snapshot_api_key
from agent.store.config import DAY, RetentionConfig
from agent.store.gdpr import erase_user, export_user
from agent.store.recordings import session_events
from agent.store.retention import run_cleanup_once
from tests.support.agent_app import HMAC_KEY

pytest_plugins = ["tests.support.store_fixtures"]

T0 = (int(time.time()) - 3600) * 1000          # rrweb milliseconds, an hour ago
PAGE_TEXT = "Pricing for alice@example.com"


def latin1_gzip(value: Any) -> str:
    """posthog-js's compressed field: gzip of the JSON, one char per byte (fflate strFromU8(.., true))."""
    return gzip.compress(orjson.dumps(value)).decode("latin-1")


def full_snapshot(ts: int, text: str = PAGE_TEXT) -> dict[str, Any]:
    node = {"type": 0, "childNodes": [{"type": 2, "tagName": "html", "attributes": {}, "childNodes": [
        {"type": 2, "tagName": "body", "attributes": {"title": "card 4111 1111 1111 1111"}, "childNodes": [
            {"type": 3, "textContent": text, "id": 4}], "id": 3}], "id": 2}], "id": 1}
    return {"type": 2, "timestamp": ts, "data": {"node": node, "initialOffset": {"top": 0, "left": 0}}}


def compressed_full_snapshot(ts: int, text: str = PAGE_TEXT) -> dict[str, Any]:
    event = full_snapshot(ts, text)
    return {**event, "data": latin1_gzip(event["data"]), "cv": "2024-10"}


def mutation(ts: int, compressed: bool = True) -> dict[str, Any]:
    data = {"source": 0, "texts": [{"id": 4, "value": "bob@example.com"}], "attributes": [], "removes": [],
            "adds": []}
    if not compressed:
        return {"type": 3, "timestamp": ts, "data": data}
    return {"type": 3, "timestamp": ts, "cv": "2024-10",
            "data": {**data, **{k: latin1_gzip(data[k]) for k in ("texts", "attributes", "removes", "adds")}}}


def meta(ts: int) -> dict[str, Any]:
    return {"type": 4, "timestamp": ts, "data": {"href": "http://127.0.0.1/", "width": 800, "height": 600}}


def snapshot_event(session: str, data: list[Any] | dict[str, Any], window: str | None = "w1",
                   distinct_id: str = "user_1") -> dict[str, Any]:
    props: dict[str, Any] = {"$session_id": session, "$snapshot_data": data, "$snapshot_bytes": 100,
                             "distinct_id": distinct_id, "token": "phc_test"}
    if window is not None:
        props["$window_id"] = window
    return {"event": "$snapshot", "properties": props, "timestamp": "2027-01-15T08:00:00Z"}


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"api_key": "phc_test", "batch": list(events), "sent_at": "2027-01-15T08:00:01Z"}


def privacy() -> Privacy:
    return Privacy(PrivacyConfig(), HMAC_KEY.encode())


# --- parsing -----------------------------------------------------------------------------------------

def test_posthog_js_compressed_fields_are_inflated_and_every_string_scrubbed():
    p = privacy()
    parsed = parse_snapshots(batch(snapshot_event("s1", [meta(T0), compressed_full_snapshot(T0 + 1),
                                                         mutation(T0 + 2)])), 1 << 20, p.text)
    (group,) = parsed.groups
    assert (group.session_id, group.window_id, group.distinct_id) == ("s1", "w1", "user_1")
    assert parsed.api_key == "phc_test" and parsed.inflated_bytes > 0
    m, full, mut = group.events
    assert m == meta(T0) and "cv" not in full and "cv" not in mut
    body = full["data"]["node"]["childNodes"][0]["childNodes"][0]
    assert body["childNodes"][0]["textContent"] == "Pricing for " + p.pseudonymize("alice@example.com")
    assert body["attributes"]["title"] == "card [card]"
    assert mut["data"]["texts"] == [{"id": 4, "value": p.pseudonymize("bob@example.com")}]
    assert mut["data"]["adds"] == [] and mut["data"]["source"] == 0
    assert (group.first_ts, group.last_ts) == (T0 / 1000, (T0 + 2) / 1000)


def test_shapes_a_bare_array_one_event_an_older_single_snapshot_and_consecutive_grouping():
    one = snapshot_event("s1", meta(T0))                  # older SDKs: $snapshot_data is one event
    assert [len(g.events) for g in parse_snapshots(one, 1000).groups] == [1]
    parsed = parse_snapshots([snapshot_event("s1", [meta(T0)]), snapshot_event("s1", [meta(T0 + 1)]),
                              snapshot_event("s1", [meta(T0 + 2)], window="w2"),
                              {"event": "$pageview", "properties": {}}], 1000)
    assert [(g.window_id, len(g.events)) for g in parsed.groups] == [("w1", 2), ("w2", 1)]
    assert parsed.other_events == 1 and parsed.api_key == "phc_test"
    assert parse_snapshots({"data": [one]}, 1000).groups[0].session_id == "s1"


def _field_id(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith(("batch", "body")) else ""


@pytest.mark.parametrize("obj, field", ids=_field_id, argvalues=[
    ("text", "body"),
    ({"batch": {}}, "batch"),
    ({"batch": [1]}, "batch[0]"),
    ({"batch": [{"event": 5}]}, "batch[0].event"),
    ({"batch": [{"event": "$snapshot", "properties": []}]}, "batch[0].properties"),
    (batch(snapshot_event("", [meta(T0)])), "batch[0].properties.$session_id"),
    (batch(snapshot_event("s" * 201, [meta(T0)])), "batch[0].properties.$session_id"),
    (batch(snapshot_event("s\x00", [meta(T0)])), "batch[0].properties.$session_id"),
    (batch(snapshot_event("s1", [meta(T0)], window="")), "batch[0].properties.$window_id"),
    (batch(snapshot_event("s1", [])), "batch[0].properties.$snapshot_data"),
    (batch(snapshot_event("s1", "x")), "batch[0].properties.$snapshot_data"),
    (batch(snapshot_event("s1", [5])), "batch[0].properties.$snapshot_data[0]"),
    (batch(snapshot_event("s1", [{"type": "2", "timestamp": T0}])), "batch[0].properties.$snapshot_data[0].type"),
    (batch(snapshot_event("s1", [{"type": 2, "timestamp": "now"}])),
     "batch[0].properties.$snapshot_data[0].timestamp"),
    (batch(snapshot_event("s1", [{**meta(T0), "cv": "2031-01"}])), "batch[0].properties.$snapshot_data[0].cv"),
    (batch(snapshot_event("s1", [{"type": 2, "timestamp": T0, "cv": "2024-10", "data": "not gzip"}])),
     "batch[0].properties.$snapshot_data[0].data"),
    (batch(snapshot_event("s1", [{"type": 2, "timestamp": T0, "cv": "2024-10", "data": "\u20ac"}])),
     "batch[0].properties.$snapshot_data[0].data"),
    (batch(snapshot_event("s1", [{"type": 2, "timestamp": T0, "cv": "2024-10",
                                  "data": gzip.compress(b"{nope").decode("latin-1")}])),
     "batch[0].properties.$snapshot_data[0].data"),
    (batch(snapshot_event("s1", [{"type": 2, "timestamp": T0, "cv": "2024-10",
                                  "data": gzip.compress(b"[1, 2, 3]")[:-6].decode("latin-1")}])),
     "batch[0].properties.$snapshot_data[0].data"),
])
def test_wrong_shapes_name_the_field(obj, field):
    with pytest.raises(SnapshotError) as caught:
        parse_snapshots(obj, 1 << 20)
    assert caught.value.field == field and caught.value.status == 400


@pytest.mark.parametrize("obj, key", [
    ({"api_key": "k1", "batch": []}, "k1"),
    ({"token": "k2", "batch": [snapshot_event("s1", [meta(T0)])]}, "k2"),
    ({"batch": [snapshot_event("s1", [meta(T0)])]}, "phc_test"),                 # posthog-js: properties.token
    ([snapshot_event("s1", [meta(T0)])], "phc_test"),
    ({"data": {"batch": [snapshot_event("s1", [meta(T0)])]}}, "phc_test"),
    (snapshot_event("s1", [meta(T0)]), "phc_test"),
    ({"batch": [{"event": "$snapshot", "properties": {"token": 5}}]}, None),
    ({"batch": "x"}, None), ([], None), ("text", None), (None, None),
])
def test_the_key_is_found_before_the_body_is_read(obj, key):
    assert snapshot_api_key(obj) == key


def test_a_compressed_field_inflating_beyond_the_budget_is_413():
    bomb = {"type": 2, "timestamp": T0, "cv": "2024-10",
            "data": gzip.compress(b'"' + b"a" * 5_000_000 + b'"').decode("latin-1")}
    with pytest.raises(SnapshotError) as caught:
        parse_snapshots(batch(snapshot_event("s1", [bomb])), 1_000_000)
    assert caught.value.status == 413


def test_a_dom_deeper_than_the_recursion_limit_is_scrubbed_without_recursion():
    node: dict[str, Any] = {"textContent": "x@example.com"}
    for _ in range(5000):
        node = {"childNodes": [node]}
    parsed = parse_snapshots(batch(snapshot_event("s1", [{"type": 2, "timestamp": T0, "data": node}])), 10,
                             privacy().text)
    inner = parsed.groups[0].events[0]["data"]
    for _ in range(5000):
        inner = inner["childNodes"][0]
    assert inner["textContent"].startswith("email:")


# --- storage, bounds, metrics, retention, GDPR -----------------------------------------------------------

def record(run, store, recordings: Recordings, obj: Any, now: float = 1.8e9, dnt: bool = False):
    return run(recordings.record(store, parse_snapshots(obj, 1 << 24, recordings.scrub), now, dnt=dnt))


def test_sessions_are_stored_per_window_in_order_compressed_and_counted(store, run):
    metrics = MetricStore()
    recordings = Recordings(metrics, privacy())
    events = [meta(T0), compressed_full_snapshot(T0 + 1), *[mutation(T0 + 10 + i) for i in range(50)]]
    record(run, store, recordings, batch(snapshot_event("s1", events[:20])))
    record(run, store, recordings, batch(snapshot_event("s1", [meta(T0 + 5)], window="w2"),
                                         snapshot_event("s1", events[20:]), snapshot_event("s2", [meta(T0)])))
    rows = run(store.fetch("SELECT window_id, snapshots, raw_bytes, codec, data FROM recording_chunks "
                           "WHERE session_id = 's1' ORDER BY id"))
    assert [(r[0], r[1]) for r in rows] == [("w1", 20), ("w2", 1), ("w1", 32)]
    for _, _, raw, codec, data in rows:
        assert codec == "zlib" and len(zlib.decompress(bytes(data))) == raw and len(bytes(data)) < raw
    got, windows = run(session_events(store, "s1"))
    assert windows == ["w1", "w2"] and len(got) == 53
    assert [e["timestamp"] for e in got] == sorted(e["timestamp"] for e in got)
    w1, _ = run(session_events(store, "s1", "w1"))
    assert [e["type"] for e in w1[:3]] == [4, 2, 3] and len(w1) == 52
    (session,) = run(store.fetch("SELECT user_id, start_ts, end_ts, snapshots, chunks FROM recording_sessions "
                                 "WHERE session_id = 's1'"))
    assert session == ("user_1", T0 / 1000, (T0 + 59) / 1000, 53, 3)
    family = metrics.get("loom_recordings_sessions")
    assert family is not None
    text = metrics_text(metrics)
    assert "loom_recordings_sessions_total 2" in text and "loom_recordings_snapshots_total 54" in text
    assert 'loom_recordings_bytes_total{form="raw"}' in text and 'loom_recordings_bytes_total{form="stored"}' in text


def metrics_text(metrics: MetricStore) -> str:
    return render(metrics, None, openmetrics=False).decode()


def test_a_session_past_its_bound_drops_snapshots_counted_never_an_error(store, run):
    metrics = MetricStore()
    recordings = Recordings(metrics, privacy(), max_session_bytes=3000)
    big = [full_snapshot(T0 + i, "x" * 900) for i in range(2)]
    record(run, store, recordings, batch(snapshot_event("s1", big)))
    outcome = record(run, store, recordings, batch(snapshot_event("s1", big), snapshot_event("s3", [meta(T0)])))
    assert outcome.dropped == 2 and outcome.snapshots == 1
    assert run(store.fetch("SELECT snapshots FROM recording_sessions ORDER BY session_id")) == [(2,), (1,)]
    assert 'loom_recordings_dropped_snapshots_total{reason="session_limit"} 2' in metrics_text(metrics)


def test_opted_out_and_dnt_recordings_are_not_kept(store, run):
    p = privacy()
    p.opted_out.add("user_gone")
    recordings = Recordings(MetricStore(), p)
    assert record(run, store, recordings, batch(snapshot_event("s1", [meta(T0)], distinct_id="user_gone"))).dropped == 1
    assert record(run, store, recordings, batch(snapshot_event("s2", [meta(T0)])), dnt=True).dropped == 1
    assert run(store.fetch("SELECT count(*) FROM recording_chunks")) == [(0,)]
    anonymize = Privacy(PrivacyConfig(dnt="anonymize"), HMAC_KEY.encode())
    record(run, store, Recordings(MetricStore(), anonymize), batch(snapshot_event("s3", [meta(T0)])), dnt=True)
    assert run(store.fetch("SELECT user_id FROM recording_chunks")) == [(None,)]


def test_retention_takes_recordings_after_their_own_period(store, run):
    recordings = Recordings(MetricStore(), privacy())
    now = 1.8e9
    record(run, store, recordings, batch(snapshot_event("old", [meta(T0)])), now=now - 31 * DAY)
    record(run, store, recordings, batch(snapshot_event("new", [meta(T0)])), now=now - 29 * DAY)
    assert RetentionConfig().periods()["recordings"] == 30 * DAY
    deleted = run(run_cleanup_once(store, RetentionConfig(), now))
    assert deleted["recordings"] == 2
    assert run(store.fetch("SELECT session_id FROM recording_sessions")) == [("new",)]
    assert run(store.fetch("SELECT session_id FROM recording_chunks")) == [("new",)]
    deleted = run(run_cleanup_once(store, RetentionConfig(session_recordings=28 * DAY), now))
    assert deleted["recordings"] == 2


def test_gdpr_export_holds_the_users_recordings_and_erasure_takes_them(store, run):
    p = privacy()
    recordings = Recordings(MetricStore(), p)
    alice = p.pseudonymize("alice@example.com")
    record(run, store, recordings, batch(snapshot_event("s1", [meta(T0)], distinct_id="anon_1"),
                                         snapshot_event("s1", [full_snapshot(T0 + 1)], distinct_id="alice@example.com"),
                                         snapshot_event("s2", [meta(T0)], distinct_id="user_bob")))
    tables = run(export_user(store, [alice]))
    (session,) = tables["recording_sessions"]
    assert session["session_id"] == "s1" and session["user_id"] == alice and session["start_ts"].endswith("Z")
    assert [e["type"] for e in session["events"]] == [4, 2]
    assert "alice@example.com" not in orjson.dumps(tables).decode()
    deleted = run(erase_user(store, [alice]))
    assert deleted["recording_sessions"] == 1 and deleted["recording_chunks"] == 2
    assert run(store.fetch("SELECT session_id FROM recording_chunks")) == [("s2",)]
    assert run(export_user(store, [alice]))["recording_sessions"] == []
