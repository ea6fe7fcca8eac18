"""Errors in the store, on both databases (real SQLite file, real PostgreSQL): one row per occurrence,
committed before record() returns, a client event id never stored or counted twice, a failing store
counting nothing; and the issues list (grouping, counts, users affected, first/last seen, the latest
sample, release/feature/environment filters, the half-open range, limit)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agent.analytics.timerange import TimeRange
from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.queries import IssueFilter, list_issues
from agent.error_tracking.sink import ErrorSink
from agent.error_tracking.validate import parse_error
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.events.validate import Limits
from agent.metrics.store import MetricStore
from agent.store.errors import StoreUnavailable

pytest_plugins = ["tests.support.store_fixtures"]

T0 = 1_795_500_000.0                 # 2026-11-24T06:00:00Z
NOW = T0 + 3600
KEY = b"k" * 32
COLUMNS = ("event_id", "fingerprint", "ts", "received_at", "user_id", "release", "environment", "feature", "type",
           "message", "sample")


def checkout_bug(offset: int, at: float, user: str | None, **fields: Any) -> dict[str, Any]:
    """The checkout bug, its lines moved by `offset` (another build of the same code)."""
    body = {"type": "TypeError", "message": f"Cannot read 'amount' of order {1000 + offset}",
            "stacktrace": {"frames": [
                {"filename": "src/pages/checkout.tsx", "function": "onSubmit", "lineno": 40 + offset, "inApp": True},
                {"filename": "src/lib/payment.ts", "function": "chargeCard", "lineno": 88 + offset, "colno": 5,
                 "inApp": True}]},
            "tags": {"feature": "payment"}, "release": "1.4.2", "environment": "production", "timestamp": at,
            **fields}
    if user is not None:
        body["userId"] = user
    return body


def goals_bug(at: float, user: str | None, **fields: Any) -> dict[str, Any]:
    body = {"type": "RangeError", "message": "Invalid time value", "frames": [
        {"filename": "src/goals/progress.ts", "function": "daysLeft", "lineno": 7, "inApp": True}],
        "tags": {"feature": "goals"}, "release": "1.5.0", "environment": "staging", "timestamp": at, **fields}
    if user is not None:
        body["userId"] = user
    return body


class Recorder:
    def __init__(self, store: Any):
        self.store = store
        self.metrics = MetricStore()
        self.privacy = Privacy(PrivacyConfig(), KEY)
        self.sink = ErrorSink(ErrorsConfig(), self.metrics, self.privacy)

    def record(self, run, *bodies: dict[str, Any]):
        errors = [parse_error(body, now=NOW, config=ErrorsConfig(), limits=Limits()) for body in bodies]
        return run(self.sink.record(errors, self.store))

    def counted(self) -> float:
        return sum(self.metrics.get("loom_errors").series.values())


def rows(run, store) -> list[dict[str, Any]]:
    found = run(store.fetch(f"SELECT {', '.join(COLUMNS)} FROM errors ORDER BY ts, id"))
    out = []
    for row in found:
        item = dict(zip(COLUMNS, row))
        item["sample"] = orjson.loads(item["sample"]) if isinstance(item["sample"], (str, bytes)) else item["sample"]
        out.append(item)
    return out


# --- storage ----------------------------------------------------------------------------------------

def test_each_occurrence_is_one_committed_row(store, run):
    recorder = Recorder(store)
    result = recorder.record(run, checkout_bug(0, T0 + 10, "alice@example.com", eventId="e-1",
                                               extra={"amount": 49.5, "password": "hunter2"},
                                               context={"traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                                        "spanId": "00f067aa0ba902b7", "page": "/checkout"}))
    (row,) = rows(run, store)
    pseudonym = recorder.privacy.pseudonymize("alice@example.com")
    assert {k: v for k, v in row.items() if k != "sample"} == {
        "event_id": "e-1", "fingerprint": result.fingerprints[0], "ts": T0 + 10, "received_at": NOW,
        "user_id": pseudonym, "release": "1.4.2", "environment": "production", "feature": "payment",
        "type": "TypeError", "message": "Cannot read 'amount' of order 1000"}
    assert row["sample"] == {
        "level": "error", "tags": {"feature": "payment"}, "extra": {"amount": 49.5},
        "frames": [{"filename": "src/pages/checkout.tsx", "function": "onSubmit", "lineno": 40, "inApp": True},
                   {"filename": "src/lib/payment.ts", "function": "chargeCard", "lineno": 88, "colno": 5,
                    "inApp": True}],
        "context": {"page": "/checkout", "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"}}


def test_a_client_event_id_is_never_stored_or_counted_twice(store, run):
    recorder = Recorder(store)
    first = recorder.record(run, checkout_bug(0, T0, "u1", eventId="e-1"), checkout_bug(0, T0, "u1", eventId="e-1"),
                            checkout_bug(0, T0, "u2", eventId="e-2"))
    assert (first.accepted, first.stored, first.duplicates) == (3, 2, 1)
    retry = recorder.record(run, checkout_bug(0, T0, "u1", eventId="e-1"), checkout_bug(0, T0, "u3", eventId="e-3"))
    assert (retry.accepted, retry.stored, retry.duplicates) == (2, 1, 1)
    without_ids = recorder.record(run, checkout_bug(0, T0, "u4"), checkout_bug(0, T0, "u4"))
    assert without_ids.stored == 2                        # no event id: every occurrence is new
    assert [row["event_id"] for row in rows(run, store)] == ["e-1", "e-2", "e-3", None, None]
    assert recorder.counted() == 5.0


def test_oversized_stacks_and_messages_are_stored_cut_and_marked(store, run):
    recorder = Recorder(store)
    frames = [{"filename": f"src/f{i}.ts", "function": f"fn{i}", "lineno": i} for i in range(250)]
    recorder.record(run, {"type": "RecursionError", "message": "m" * 10_000, "frames": frames, "timestamp": T0})
    (row,) = rows(run, store)
    assert len(row["message"]) == 8192 and row["sample"]["messageTruncated"] is True
    assert len(row["sample"]["frames"]) == 100
    assert (row["sample"]["framesOmitted"], row["sample"]["framesOmittedAt"]) == (150, 50)
    assert row["sample"]["frames"][49]["lineno"] == 49 and row["sample"]["frames"][50]["lineno"] == 200


class FailingStore:
    dialect = "sqlite"

    async def execute(self, statements):
        raise StoreUnavailable("database is locked")


def test_a_store_that_cannot_commit_raises_and_nothing_is_counted(run):
    recorder = Recorder(FailingStore())
    with pytest.raises(StoreUnavailable):
        recorder.record(run, checkout_bug(0, T0, "u1"))
    assert recorder.counted() == 0.0


# --- the issues list -------------------------------------------------------------------------------

RANGE = TimeRange(T0, T0 + 100)


def seed(run, recorder: Recorder) -> list[str]:
    """Checkout bug: alice (T0+10), bob at another line offset (T0+20), alice again (T0+30, latest);
    goals bug: carol (T0+40); an anonymous checkout bug at T0 exactly (in) and one at T0+100 (out)."""
    result = recorder.record(run, checkout_bug(0, T0 + 10, "alice"), checkout_bug(7, T0 + 20, "bob"),
                             checkout_bug(3, T0 + 30, "alice", extra={"attempt": 3}), goals_bug(T0 + 40, "carol"),
                             goals_bug(T0, None, release="1.4.2"), checkout_bug(0, T0 + 100, "dave"),
                             checkout_bug(0, T0 - 1, "erin"))
    return result.fingerprints


def test_issues_group_count_users_and_show_the_latest_sample(store, run):
    recorder = Recorder(store)
    prints = seed(run, recorder)
    checkout, goals = prints[0], prints[3]
    assert len({prints[0], prints[1], prints[2], prints[5], prints[6]}) == 1 and checkout != goals
    document = run(list_issues(store, RANGE))
    assert document["range"] == {"from": "2026-11-24T06:00:00Z", "to": "2026-11-24T06:01:40Z"}
    assert document["totalIssues"] == 2
    summary = [(i["fingerprint"], i["type"], i["count"], i["usersAffected"], i["firstSeen"], i["lastSeen"])
               for i in document["issues"]]
    assert summary == [(goals, "RangeError", 2, 1, "2026-11-24T06:00:00Z", "2026-11-24T06:00:40Z"),
                       (checkout, "TypeError", 3, 2, "2026-11-24T06:00:10Z", "2026-11-24T06:00:30Z")]
    latest = document["issues"][1]["latest"]
    assert document["issues"][1]["title"] == "Cannot read 'amount' of order 1003"
    assert latest == {
        "eventId": None, "timestamp": "2026-11-24T06:00:30Z", "receivedAt": "2026-11-24T07:00:00Z",
        "type": "TypeError", "message": "Cannot read 'amount' of order 1003", "release": "1.4.2",
        "environment": "production", "feature": "payment", "userId": "alice", "level": "error",
        "tags": {"feature": "payment"}, "extra": {"attempt": 3},
        "frames": [{"filename": "src/pages/checkout.tsx", "function": "onSubmit", "lineno": 43, "inApp": True},
                   {"filename": "src/lib/payment.ts", "function": "chargeCard", "lineno": 91, "colno": 5,
                    "inApp": True}]}


def test_issues_filter_by_release_feature_and_environment(store, run):
    recorder = Recorder(store)
    checkout, _, _, goals, *_ = seed(run, recorder)

    def listed(**filters: str) -> list[tuple[str, int]]:
        document = run(list_issues(store, RANGE, IssueFilter(**filters)))
        return [(issue["fingerprint"], issue["count"]) for issue in document["issues"]]
    assert listed(release="1.5.0") == [(goals, 1)]
    assert listed(release="1.4.2") == [(checkout, 3), (goals, 1)]         # the goals bug at T0 was 1.4.2
    assert listed(feature="payment") == [(checkout, 3)]
    assert listed(feature="goals", release="1.4.2") == [(goals, 1)]
    assert listed(environment="staging") == [(goals, 2)]
    assert listed(release="9.9.9") == []


def test_issues_limit_keeps_the_most_recently_seen_and_total_counts_all(store, run):
    recorder = Recorder(store)
    seed(run, recorder)
    document = run(list_issues(store, RANGE, limit=1))
    assert [issue["type"] for issue in document["issues"]] == ["RangeError"] and document["totalIssues"] == 2
    assert run(list_issues(store, TimeRange(T0 + 200, T0 + 300))) == {
        "issues": [], "totalIssues": 0, "range": {"from": "2026-11-24T06:03:20Z", "to": "2026-11-24T06:05:00Z"}}
