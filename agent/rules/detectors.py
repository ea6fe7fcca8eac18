"""The documentation's six anomaly detections, read from the agent's own per-minute windows.

Each `detect_*` takes the windows, its thresholds block (agent/rules/thresholds.py, the same values
the Prometheus rules are rendered from) and `now`, and returns the anomalies it sees: none, or one
with the severity of the shared rule (`warning` at the threshold, `critical` at twice the deviation).
Too little data (a baseline or an attempt count under its minimum) reports nothing, so a quiet
night is not a 100% drop and one failed MFA code out of two is not a 50% failure rate.

Counts and rates cover the window ending now, the minute in progress included, so a burst shows at
once; a drop compares the last complete `window_minutes` with the complete window before them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from agent.rules import windows as w
from agent.rules.thresholds import (
    AuthFailureSpike,
    EngagementDrop,
    FunnelDrop,
    MfaAnomalies,
    NotificationFailures,
    PerformanceDegradation,
    Thresholds,
    severity,
)
from agent.rules.windows import EventWindows


@dataclass(frozen=True, slots=True)
class Anomaly:
    detector: str            # the detection, also the `detector` label of loom_anomaly_active
    metric_name: str         # what was measured
    severity: str            # warning | critical
    current_value: float
    expected_value: float    # the baseline (drops) or the threshold (counts and rates)
    window_minutes: int
    message: str
    detected_at: float       # unix seconds

    def to_json(self) -> dict[str, Any]:
        """The documentation's camelCase shape."""
        return {"detector": self.detector, "metricName": self.metric_name, "severity": self.severity,
                "currentValue": _round(self.current_value), "expectedValue": _round(self.expected_value),
                "windowMinutes": self.window_minutes, "message": self.message,
                "detectedAt": iso_time(self.detected_at)}


def iso_time(timestamp: float) -> str:
    """Unix seconds -> `2026-11-24T12:00:00.000Z`, the documentation's (JavaScript's) date format."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _round(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 2)


def detect_engagement_drop(windows: EventWindows, t: EngagementDrop, now: float) -> list[Anomaly]:
    """Fewer accepted events in the last window than in the one before, by drop_threshold_percent."""
    return _drop(windows, now, "engagement_drop", "events", w.EVENTS, "events",
                 t.window_minutes, t.drop_threshold_percent, t.min_baseline)


def detect_auth_failure_spike(windows: EventWindows, t: AuthFailureSpike, now: float) -> list[Anomaly]:
    """spike_threshold or more failed logins in the window."""
    failures = windows.counts(now, t.window_minutes)[w.LOGIN_FAILURE]
    level = severity(failures, t.spike_threshold)
    if level is None:
        return []
    return [Anomaly("auth_failure_spike", "login_failures", level, failures, t.spike_threshold, t.window_minutes,
                    f"{failures} failed logins in the last {t.window_minutes} min "
                    f"(threshold {t.spike_threshold}, critical at {t.spike_threshold * 2})", now)]


def detect_mfa_anomalies(windows: EventWindows, t: MfaAnomalies, now: float) -> list[Anomaly]:
    """Failed MFA verifications as a share of all verifications, over failure_rate_percent."""
    counts = windows.counts(now, t.window_minutes)
    failed = counts[w.MFA_FAILURE]
    return _rate(now, "mfa_anomalies", "mfa_failure_rate_percent", "MFA verifications failed",
                 failed, failed + counts[w.MFA_SUCCESS], t.window_minutes, t.failure_rate_percent, t.min_attempts)


def detect_notification_disconnects(windows: EventWindows, t: NotificationFailures, now: float) -> list[Anomaly]:
    """Delivery failures as a share of delivery outcomes (delivered + failed), over failure_rate_percent."""
    counts = windows.counts(now, t.window_minutes)
    failed = counts[w.NOTIFICATION_FAILED]
    return _rate(now, "notification_failures", "notification_failure_rate_percent",
                 "notification deliveries failed", failed, failed + counts[w.NOTIFICATION_DELIVERED],
                 t.window_minutes, t.failure_rate_percent, t.min_attempts)


def detect_performance_degradation(windows: EventWindows, t: PerformanceDegradation, now: float) -> list[Anomaly]:
    """The share of API requests slower than slow_request_ms, over slow_percent."""
    counts = windows.counts(now, t.window_minutes)
    return _rate(now, "performance_degradation", "slow_request_percent",
                 f"API requests took longer than {t.slow_request_ms:g} ms", counts.slower_than(t.slow_request_ms),
                 counts[w.API_REQUESTS], t.window_minutes, t.slow_percent, t.min_requests)


def detect_funnel_drop(windows: EventWindows, t: FunnelDrop, now: float) -> list[Anomaly]:
    """Fewer completed signup steps in the last window than in the one before."""
    return _drop(windows, now, "funnel_drop", "signup_steps_completed", w.SIGNUP_COMPLETED,
                 "completed signup steps", t.window_minutes, t.drop_threshold_percent, t.min_baseline)


def _drop(windows: EventWindows, now: float, detector: str, metric: str, counter: int, noun: str,
          minutes: int, threshold: float, min_baseline: int) -> list[Anomaly]:
    current = windows.counts(now, minutes, minutes_ago=1)[counter]
    baseline = windows.counts(now, minutes, minutes_ago=minutes + 1)[counter]
    if baseline < max(min_baseline, 1):
        return []
    drop = (baseline - current) * 100 / baseline      # multiply first: 29 of 100 is exactly 29.0
    level = severity(drop, threshold)
    if level is None:
        return []
    return [Anomaly(detector, metric, level, current, baseline, minutes,
                    f"{noun} fell {drop:.1f}% to {current} in the last {minutes} min from {baseline} in the "
                    f"{minutes} min before (threshold {threshold:g}%, critical at {threshold * 2:g}%)", now)]


def _rate(now: float, detector: str, metric: str, what: str, bad: int, total: int, minutes: int,
          threshold: float, min_total: int) -> list[Anomaly]:
    if total < max(min_total, 1):
        return []
    percent = bad * 100 / total
    level = severity(percent, threshold)
    if level is None:
        return []
    return [Anomaly(detector, metric, level, percent, threshold, minutes,
                    f"{percent:.1f}% of {what} in the last {minutes} min ({bad} of {total}; "
                    f"threshold {threshold:g}%, critical at {threshold * 2:g}%)", now)]


class Detector(NamedTuple):
    name: str                # the Thresholds field of its block, the `detector` label, `?detector=`
    detect: Callable[[EventWindows, Any, float], list[Anomaly]]


DETECTORS: dict[str, Detector] = {d.name: d for d in (
    Detector("engagement_drop", detect_engagement_drop),
    Detector("auth_failure_spike", detect_auth_failure_spike),
    Detector("mfa_anomalies", detect_mfa_anomalies),
    Detector("notification_failures", detect_notification_disconnects),
    Detector("performance_degradation", detect_performance_degradation),
    Detector("funnel_drop", detect_funnel_drop),
)}
SEVERITIES = ("warning", "critical")


def detector_window_minutes(thresholds: Thresholds) -> int:
    """The largest window of the six detections: the history EventWindows must keep."""
    return max(getattr(thresholds, name).window_minutes for name in DETECTORS)


def run_anomaly_detection(windows: EventWindows, thresholds: Thresholds, now: float,
                          only: Iterable[str] | None = None) -> list[Anomaly]:
    """Every detection (or those named in `only`), as the documentation's runAnomalyDetection()."""
    found: list[Anomaly] = []
    for name in DETECTORS if only is None else only:
        found.extend(DETECTORS[name].detect(windows, getattr(thresholds, name), now))
    return found


def with_overrides(thresholds: Thresholds, names: Iterable[str], overrides: dict[str, Any]) -> Thresholds:
    """`thresholds` with `overrides` (field -> value) applied to each named detector that has the field."""
    blocks = {}
    for name in names:
        block = getattr(thresholds, name)
        fields = {f.name for f in dataclasses.fields(block)}
        blocks[name] = dataclasses.replace(block, **{k: v for k, v in overrides.items() if k in fields})
    return dataclasses.replace(thresholds, **blocks)
