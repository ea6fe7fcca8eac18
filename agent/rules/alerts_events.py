"""The six detections of the Loom documentation as Prometheus rules, mirroring agent/rules' detectors.

Each detection gets recording rules for the counts it compares (per `job`, over its window) and
one alert at each severity: `warning` at the threshold, `critical` at twice the deviation
(thresholds.CRITICAL_FACTOR). The warning rule keeps firing alongside the critical one;
Alertmanager inhibits it. Drops compare the window with the same window just before it
(`offset`), and need a baseline so that a quiet night is not an incident.
"""

from __future__ import annotations

from agent.rules.ruledef import (
    Rule,
    alert,
    group,
    le,
    minutes,
    num,
    record,
    window_increase,
)
from agent.rules.thresholds import (
    CRITICAL_FACTOR,
    AuthFailureSpike,
    EngagementDrop,
    FunnelDrop,
    MfaAnomalies,
    NotificationFailures,
    PerformanceDegradation,
    Thresholds,
)

# `for` per detection: a spike is real at once, a share needs its minimum volume to hold for a
# while, a drop compares two long windows and should outlast the noise of their edge
SPIKE_FOR_SECONDS = 60
RATE_FOR_SECONDS = 300
DROP_FOR_SECONDS = 600


def increase_name(what: str, window: str) -> str:
    return f"job:{what}:increase{window}"


def _count(what: str, selector: str, window: str) -> Rule:
    return record(increase_name(what, window), f"sum by (job) (\n  {window_increase(selector, window)}\n)\n")


def _severities(threshold: float) -> list[tuple[str, float]]:
    return [("warning", threshold), ("critical", threshold * CRITICAL_FACTOR)]


def events_group(t: Thresholds) -> dict:
    rules = [*_engagement(t.engagement_drop), *_auth(t.auth_failure_spike), *_mfa(t.mfa_anomalies),
             *_notifications(t.notification_failures), *_performance(t.performance_degradation),
             *_funnel(t.funnel_drop)]
    return group("loom-events", rules)


def _drop_alerts(name: str, series: str, window: str, percent: float, baseline: int, what: str) -> list[Rule]:
    previous = f"({series} offset {window})"
    return [alert(
        name, f"100 * (1 - {series} / {previous}) >= {num(p)}\nand\n{previous} >= {baseline}\n",
        DROP_FOR_SECONDS, severity,
        f"{what} dropped {{{{ $value | printf \"%.0f\" }}}}% against the previous {window}",
        f"{what} in the last {window} are {{{{ $value | printf \"%.0f\" }}}}% below the {window} before "
        f"(alert at a {num(p)}% drop, with at least {baseline} in the previous {window}).")
        for severity, p in _severities(percent)]


def _share_alerts(name: str, part: str, whole: str, window: str, percent: float, minimum: int,
                  what: str, of: str, labels: dict[str, str] | None = None) -> list[Rule]:
    return [alert(
        name, f"100 * {part} / {whole} >= {num(p)}\nand\n{whole} >= {minimum}\n",
        RATE_FOR_SECONDS, severity,
        f"{{{{ $value | printf \"%.0f\" }}}}% of {of} {what}",
        f"{{{{ $value | printf \"%.1f\" }}}}% of {of} in the last {window} {what} "
        f"(alert at {num(p)}%, with at least {minimum} {of}).", labels=labels)
        for severity, p in _severities(percent)]


def _engagement(d: EngagementDrop) -> list[Rule]:
    window = minutes(d.window_minutes)
    series = increase_name("loom_events", window)
    return [_count("loom_events", "loom_events_total", window),
            *_drop_alerts("LoomEngagementDrop", series, window, d.drop_threshold_percent, d.min_baseline,
                          "Events accepted")]


def _auth(d: AuthFailureSpike) -> list[Rule]:
    window = minutes(d.window_minutes)
    series = increase_name("loom_login_failures", window)
    rules = [_count("loom_login_failures", 'loom_login_attempts_total{result="failure"}', window)]
    for severity, spike in _severities(d.spike_threshold):
        rules.append(alert(
            "LoomAuthFailureSpike", f"{series} >= {num(spike)}", SPIKE_FOR_SECONDS, severity,
            f"{{{{ $value | printf \"%.0f\" }}}} failed logins in {window}",
            f"{{{{ $value | printf \"%.0f\" }}}} login attempts failed in the last {window} "
            f"(alert at {num(spike)}).", labels={"service": "auth"}))
    return rules


def _mfa(d: MfaAnomalies) -> list[Rule]:
    window = minutes(d.window_minutes)
    failed, total = increase_name("loom_mfa_verification_failures", window), increase_name(
        "loom_mfa_verifications", window)
    return [_count("loom_mfa_verification_failures", 'loom_mfa_verifications_total{result="failure"}', window),
            _count("loom_mfa_verifications", "loom_mfa_verifications_total", window),
            *_share_alerts("LoomMFAAnomaly", failed, total, window, d.failure_rate_percent, d.min_attempts,
                           "failed", "MFA verifications", labels={"service": "mfa"})]


def _notifications(d: NotificationFailures) -> list[Rule]:
    window = minutes(d.window_minutes)
    failed, total = increase_name("loom_notification_failures", window), increase_name(
        "loom_notification_deliveries", window)
    return [_count("loom_notification_failures", 'loom_notifications_total{stage="failed"}', window),
            _count("loom_notification_deliveries", 'loom_notifications_total{stage=~"delivered|failed"}', window),
            *_share_alerts("LoomNotificationDeliveryFailures", failed, total, window, d.failure_rate_percent,
                           d.min_attempts, "failed", "notification deliveries")]


def _performance(d: PerformanceDegradation) -> list[Rule]:
    window = minutes(d.window_minutes)
    slow, total = increase_name("loom_api_slow_requests", window), increase_name("loom_api_requests", window)
    count = "loom_api_request_duration_seconds_count"
    fast = f'loom_api_request_duration_seconds_bucket{{le="{le(d.slow_request_ms / 1000)}"}}'
    slow_expr = (f"sum by (job) (\n  {window_increase(count, window)}\n)\n-\n"
                 f"sum by (job) (\n  {window_increase(fast, window)}\n)\n")
    return [_count("loom_api_requests", count, window),
            record(slow, slow_expr),
            *_share_alerts("LoomPerformanceDegradation", slow, total, window, d.slow_percent, d.min_requests,
                           f"took longer than {num(d.slow_request_ms)}ms", "API requests")]


def _funnel(d: FunnelDrop) -> list[Rule]:
    window = minutes(d.window_minutes)
    series = increase_name("loom_signup_steps_completed", window)
    return [_count("loom_signup_steps_completed", 'loom_signup_steps_total{status="completed"}', window),
            *_drop_alerts("LoomSignupFunnelDrop", series, window, d.drop_threshold_percent, d.min_baseline,
                          "Completed signup steps")]
