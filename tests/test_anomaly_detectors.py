"""The in-agent anomaly detectors and the per-minute windows they read, on a fake clock.

Every detection: it fires at its threshold as `warning`, at twice the deviation as `critical`,
stays silent on the near miss, and says nothing with too little data. The windows count what the
detectors need by the agent's receive time, forget minutes older than their ring, and count a slow
request with the `le` rule of loom_api_request_duration_seconds. Events are built by the real
validator, so the property names and values are the ones the ingest path produces.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.events.model import Event
from agent.events.validate import parse_event
from agent.rules import windows as w
from agent.rules.anomaly_metrics import AnomalyActiveCollector, AnomalyMonitor
from agent.rules.detectors import (DETECTORS, SEVERITIES, Anomaly, detect_auth_failure_spike,
                                   detect_engagement_drop, detect_funnel_drop, detect_mfa_anomalies,
                                   detect_notification_disconnects, detect_performance_degradation,
                                   detector_window_minutes, run_anomaly_detection, with_overrides)
from agent.rules.thresholds import (AuthFailureSpike, EngagementDrop, FunnelDrop, MfaAnomalies,
                                    NotificationFailures, PerformanceDegradation, Thresholds)
from agent.rules.windows import EventWindows, slow_bound_index

T0 = 1_795_514_400.0            # 2026-11-24T10:00:00Z, on a minute boundary
NOW = T0 + 3 * 3600 + 30        # half a minute into the minute in progress
MINUTE = 60.0

_TEMPLATES: dict[tuple[str, str], Event] = {}


def event(name: str, at: float, **properties: Any) -> Event:
    """A validated event received at `at` (templates are validated once, then re-timed)."""
    key = (name, repr(sorted(properties.items())))
    if key not in _TEMPLATES:
        _TEMPLATES[key] = parse_event({"event": name, "user_id": "user_1", "properties": properties}, now=T0)
    return dataclasses.replace(_TEMPLATES[key], received_at=at, timestamp=at)


def feed(windows: EventWindows, count: int, name: str, at: float, **properties: Any) -> None:
    windows.observe([event(name, at, **properties)] * count)


def login(windows: EventWindows, count: int, result: str, at: float = NOW) -> None:
    feed(windows, count, "login_attempt", at, result=result, method="password")


def api(windows: EventWindows, count: int, duration_ms: float, at: float = NOW) -> None:
    feed(windows, count, "api_request", at, route="/api/sessions/:id", method="GET", status=200,
         durationMs=duration_ms)


def one(found: list[Anomaly]) -> Anomaly:
    assert len(found) == 1, found
    return found[0]


# --- windows -------------------------------------------------------------------------------------------

def test_windows_count_what_each_detector_reads():
    windows = EventWindows(15)
    login(windows, 3, "failure")
    login(windows, 2, "success")
    feed(windows, 4, "mfa_verification", NOW, method="totp", result="failure")
    feed(windows, 1, "mfa_verification", NOW, method="sms", result="success")
    feed(windows, 5, "notification_delivered", NOW, notificationId="n1", channel="push")
    feed(windows, 2, "notification_delivery_failure", NOW, notificationId="n1", channel="email", reason="timeout")
    feed(windows, 6, "signup_step", NOW, step="verify_email", status="completed")
    feed(windows, 7, "signup_step", NOW, step="verify_email", status="started")
    api(windows, 8, 20)
    api(windows, 1, 1500)
    feed(windows, 10, "cta_click", NOW, ctaId="hero")
    counts = windows.counts(NOW, 15)
    assert (counts[w.LOGIN_FAILURE], counts[w.LOGIN_SUCCESS]) == (3, 2)
    assert (counts[w.MFA_FAILURE], counts[w.MFA_SUCCESS]) == (4, 1)
    assert (counts[w.NOTIFICATION_DELIVERED], counts[w.NOTIFICATION_FAILED]) == (5, 2)
    assert counts[w.SIGNUP_COMPLETED] == 6
    assert (counts[w.API_REQUESTS], counts.slower_than(1000)) == (9, 1)
    assert counts[w.EVENTS] == 3 + 2 + 4 + 1 + 5 + 2 + 6 + 7 + 9 + 10


def test_windows_bucket_by_receive_time_not_the_clients_clock():
    windows = EventWindows(15)
    late = dataclasses.replace(event("login_attempt", NOW, result="failure"), timestamp=NOW - 86400)
    windows.observe([late])
    assert windows.counts(NOW, 1)[w.LOGIN_FAILURE] == 1


def test_windows_sum_only_the_minutes_asked_for():
    windows = EventWindows(15)
    login(windows, 1, "failure", at=NOW - 14 * MINUTE)        # 14 minutes before the minute in progress
    login(windows, 1, "failure", at=NOW - 15 * MINUTE)        # 15: just outside a 15-minute window
    assert windows.counts(NOW, 15)[w.LOGIN_FAILURE] == 1
    assert windows.counts(NOW, 16)[w.LOGIN_FAILURE] == 2
    assert windows.counts(NOW, 15, minutes_ago=1)[w.LOGIN_FAILURE] == 2
    assert windows.counts(NOW, 1, minutes_ago=15)[w.LOGIN_FAILURE] == 1


def test_windows_forget_minutes_older_than_the_ring():
    windows = EventWindows(2)                                  # ring of 5 minutes
    login(windows, 4, "failure", at=NOW)
    assert windows.counts(NOW, 5)[w.LOGIN_FAILURE] == 4
    later = NOW + 5 * MINUTE
    assert windows.counts(later, 5)[w.LOGIN_FAILURE] == 0      # expired without new events
    login(windows, 1, "failure", at=later)                     # reuses the expired minute's row
    assert windows.counts(later, 5)[w.LOGIN_FAILURE] == 1
    login(windows, 9, "failure", at=NOW)                       # older than the ring now: ignored
    assert windows.counts(later, 5)[w.LOGIN_FAILURE] == 1
    login(windows, 2, "failure", at=later - 2 * MINUTE)        # late but inside the ring: counted
    assert windows.counts(later, 5)[w.LOGIN_FAILURE] == 3


def test_windows_refuse_a_span_beyond_the_ring():
    windows = EventWindows(15)
    windows.counts(NOW, 15, minutes_ago=16)                    # the oldest complete window fits
    with pytest.raises(ValueError):
        windows.counts(NOW, 16, minutes_ago=16)


def test_windows_resize_keeps_the_minutes_still_covered():
    windows = EventWindows(5)
    login(windows, 1, "failure", at=NOW - 10 * MINUTE)
    login(windows, 2, "failure", at=NOW - 2 * MINUTE)
    login(windows, 4, "failure", at=NOW)
    windows.resize(30)
    assert windows.size == 61
    assert windows.counts(NOW, 30)[w.LOGIN_FAILURE] == 7
    login(windows, 8, "failure", at=NOW)
    assert windows.counts(NOW, 1)[w.LOGIN_FAILURE] == 12
    windows.resize(1)
    assert windows.counts(NOW, 3)[w.LOGIN_FAILURE] == 14


def test_slow_requests_follow_the_histograms_le_rule():
    windows = EventWindows(15)
    api(windows, 1, 1000)          # le="1": not slower than 1000 ms
    api(windows, 1, 1000.5)
    api(windows, 1, 99999)         # beyond the last bucket
    counts = windows.counts(NOW, 1)
    assert counts.slower_than(1000) == 2
    assert counts.slower_than(250) == 3
    assert counts.slower_than(10000) == 1
    with pytest.raises(ValueError, match="bucket bound"):
        slow_bound_index(1234)


# --- the detectors ------------------------------------------------------------------------------------

def engagement(windows: EventWindows, baseline: int, current: int, minutes: int = 60) -> None:
    feed(windows, baseline, "cta_click", NOW - (minutes + 1) * MINUTE, ctaId="hero")
    feed(windows, current, "cta_click", NOW - MINUTE, ctaId="hero")


@pytest.mark.parametrize(("baseline", "current", "level"), [(100, 70, "warning"), (100, 40, "critical"),
                                                            (100, 71, None), (19, 0, None), (0, 0, None)])
def test_engagement_drop(baseline, current, level):
    windows = EventWindows(60)
    engagement(windows, baseline, current)
    feed(windows, 500, "cta_click", NOW, ctaId="hero")      # the minute in progress is not compared
    found = detect_engagement_drop(windows, EngagementDrop(), NOW)
    if level is None:
        assert found == []
        return
    anomaly = one(found)
    assert (anomaly.detector, anomaly.severity, anomaly.metric_name) == ("engagement_drop", level, "events")
    assert (anomaly.current_value, anomaly.expected_value, anomaly.window_minutes) == (current, baseline, 60)
    assert "fell" in anomaly.message and anomaly.detected_at == NOW


def test_engagement_drop_compares_windows_of_the_configured_length():
    windows = EventWindows(60)
    engagement(windows, 100, 50, minutes=10)
    assert one(detect_engagement_drop(windows, EngagementDrop(window_minutes=10), NOW)).severity == "warning"
    assert detect_engagement_drop(windows, EngagementDrop(window_minutes=10, drop_threshold_percent=51), NOW) == []


@pytest.mark.parametrize(("failures", "level"), [(10, "warning"), (19, "warning"), (20, "critical"), (9, None)])
def test_auth_failure_spike(failures, level):
    windows = EventWindows(15)
    login(windows, failures, "failure")
    login(windows, 500, "success")
    login(windows, 50, "failure", at=NOW - 15 * MINUTE)        # before the window
    found = detect_auth_failure_spike(windows, AuthFailureSpike(), NOW)
    if level is None:
        assert found == []
        return
    anomaly = one(found)
    assert (anomaly.severity, anomaly.current_value, anomaly.expected_value) == (level, failures, 10)
    assert anomaly.metric_name == "login_failures" and anomaly.window_minutes == 15


def mfa(windows: EventWindows, failed: int, succeeded: int) -> None:
    feed(windows, failed, "mfa_verification", NOW - 5 * MINUTE, method="totp", result="failure")
    feed(windows, succeeded, "mfa_verification", NOW, method="totp", result="success")


@pytest.mark.parametrize(("failed", "succeeded", "level"), [
    (3, 7, "warning"), (6, 4, "critical"), (29, 71, None), (5, 4, None)])
def test_mfa_anomalies(failed, succeeded, level):
    windows = EventWindows(15)
    mfa(windows, failed, succeeded)
    found = detect_mfa_anomalies(windows, MfaAnomalies(), NOW)
    if level is None:
        assert found == []
        return
    anomaly = one(found)
    assert (anomaly.detector, anomaly.severity) == ("mfa_anomalies", level)
    assert anomaly.current_value == pytest.approx(failed * 100 / (failed + succeeded))
    assert anomaly.expected_value == 30.0


@pytest.mark.parametrize(("failed", "delivered", "level"), [
    (2, 18, "warning"), (4, 16, "critical"), (1, 19, None), (5, 14, None)])
def test_notification_disconnects(failed, delivered, level):
    windows = EventWindows(15)
    feed(windows, failed, "notification_delivery_failure", NOW, notificationId="n", channel="push", reason="network")
    feed(windows, delivered, "notification_delivered", NOW, notificationId="n", channel="push")
    feed(windows, 100, "notification_clicked", NOW, notificationId="n", channel="push")   # not an outcome
    found = detect_notification_disconnects(windows, NotificationFailures(), NOW)
    if level is None:
        assert found == []
        return
    anomaly = one(found)
    assert (anomaly.detector, anomaly.severity) == ("notification_failures", level)
    assert anomaly.current_value == pytest.approx(failed * 100 / (failed + delivered))


@pytest.mark.parametrize(("slow", "fast", "level"), [
    (2, 18, "warning"), (4, 16, "critical"), (1, 19, None), (10, 9, None)])
def test_performance_degradation(slow, fast, level):
    windows = EventWindows(15)
    api(windows, slow, 1500)
    api(windows, fast, 1000)                                   # exactly the threshold: not slow
    found = detect_performance_degradation(windows, PerformanceDegradation(), NOW)
    if level is None:
        assert found == []
        return
    anomaly = one(found)
    assert (anomaly.detector, anomaly.severity, anomaly.metric_name) == (
        "performance_degradation", level, "slow_request_percent")
    assert anomaly.current_value == pytest.approx(slow * 100 / (slow + fast))


def test_performance_degradation_reads_the_configured_slow_bound():
    windows = EventWindows(15)
    api(windows, 5, 300)
    api(windows, 15, 20)
    assert detect_performance_degradation(windows, PerformanceDegradation(), NOW) == []
    fast_bound = PerformanceDegradation(slow_request_ms=250)
    assert one(detect_performance_degradation(windows, fast_bound, NOW)).severity == "critical"


@pytest.mark.parametrize(("baseline", "current", "level"), [
    (10, 7, "warning"), (10, 3, "critical"), (10, 8, None), (9, 0, None)])
def test_funnel_drop(baseline, current, level):
    windows = EventWindows(60)
    for at, count in ((NOW - 61 * MINUTE, baseline), (NOW - MINUTE, current)):
        feed(windows, count, "signup_step", at, step="profile", status="completed")
        feed(windows, 50, "signup_step", at, step="profile", status="started")   # only completions count
    found = detect_funnel_drop(windows, FunnelDrop(), NOW)
    if level is None:
        assert found == []
        return
    anomaly = one(found)
    assert (anomaly.detector, anomaly.severity, anomaly.metric_name) == ("funnel_drop", level, "signup_steps_completed")
    assert (anomaly.current_value, anomaly.expected_value) == (current, baseline)


def test_run_anomaly_detection_runs_every_detection_or_the_ones_named():
    windows = EventWindows(detector_window_minutes(Thresholds()))
    login(windows, 25, "failure")
    mfa(windows, 5, 5)
    found = run_anomaly_detection(windows, Thresholds(), NOW)
    assert {(a.detector, a.severity) for a in found} == {("auth_failure_spike", "critical"),
                                                          ("mfa_anomalies", "warning")}
    assert [a.detector for a in run_anomaly_detection(windows, Thresholds(), NOW, only=["mfa_anomalies"])] == [
        "mfa_anomalies"]
    quiet = run_anomaly_detection(windows, Thresholds(), NOW + 16 * MINUTE)
    assert quiet == []


def test_overrides_apply_to_the_named_detectors_that_have_the_setting():
    base = Thresholds()
    changed = with_overrides(base, ["auth_failure_spike", "engagement_drop"],
                             {"window_minutes": 5, "spike_threshold": 3})
    assert changed.auth_failure_spike == AuthFailureSpike(window_minutes=5, spike_threshold=3)
    assert changed.engagement_drop == EngagementDrop(window_minutes=5)
    assert changed.mfa_anomalies == base.mfa_anomalies


def test_anomaly_json_is_the_documentations_shape():
    anomaly = Anomaly("mfa_anomalies", "mfa_failure_rate_percent", "warning", 100 / 3, 30.0, 15, "msg", T0 + 0.25)
    assert anomaly.to_json() == {
        "detector": "mfa_anomalies", "metricName": "mfa_failure_rate_percent", "severity": "warning",
        "currentValue": 33.33, "expectedValue": 30, "windowMinutes": 15, "message": "msg",
        "detectedAt": "2026-11-24T10:00:00.250Z"}


# --- the monitor and loom_anomaly_active ---------------------------------------------------------------

class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def gauge(registry: CollectorRegistry, detector: str, severity: str) -> float | None:
    return registry.get_sample_value("loom_anomaly_active", {"detector": detector, "severity": severity})


def test_loom_anomaly_active_has_every_detector_and_severity_and_follows_evaluation():
    clock = Clock(NOW)
    monitor = AnomalyMonitor(Thresholds(), clock)
    registry = CollectorRegistry()
    registry.register(AnomalyActiveCollector(monitor))
    for name in DETECTORS:
        for level in SEVERITIES:
            assert gauge(registry, name, level) == 0.0
    login(monitor.windows, 12, "failure")
    assert gauge(registry, "auth_failure_spike", "warning") == 0.0     # not evaluated yet
    monitor.evaluate()
    assert gauge(registry, "auth_failure_spike", "warning") == 1.0
    assert gauge(registry, "auth_failure_spike", "critical") == 0.0
    login(monitor.windows, 10, "failure")
    monitor.evaluate()
    assert (gauge(registry, "auth_failure_spike", "warning"), gauge(registry, "auth_failure_spike", "critical")) == (
        0.0, 1.0)
    clock.now = NOW + 15 * MINUTE
    monitor.evaluate()
    assert gauge(registry, "auth_failure_spike", "critical") == 0.0


def test_monitor_reconfigure_grows_the_ring_and_keeps_history():
    monitor = AnomalyMonitor(Thresholds(), Clock(NOW))
    assert monitor.windows.size == 121
    login(monitor.windows, 10, "failure", at=NOW - 20 * MINUTE)
    monitor.reconfigure(dataclasses.replace(Thresholds(), auth_failure_spike=AuthFailureSpike(window_minutes=90)))
    assert monitor.windows.size == 181
    assert ("auth_failure_spike", "warning") in monitor.active


def test_a_reload_commit_survives_a_failing_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload commits every binding in turn: an evaluation bug in this one must not stop the rest
    half-way (agent/config/reload.py promises all or nothing); the thresholds still apply."""
    monitor = AnomalyMonitor(Thresholds(), Clock(NOW))

    def broken(now: float | None = None) -> list[Anomaly]:
        raise RuntimeError("a detector bug")
    monkeypatch.setattr(monitor, "evaluate", broken)
    new = dataclasses.replace(Thresholds())
    monitor.prepare(new)()
    assert monitor.thresholds is new
