"""The MFA Health dashboard: MFA adoption, verification success, and the security signals around
logins; the failure-rate and failed-login graphs show the alert thresholds of config.yaml."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, q, stat, state_timeline, timeseries, value_map
from agent.dashboards.product import INSTANCE_VARIABLE
from agent.dashboards.promql import per_minute, quantile, ratio, recorded, sel, share, total
from agent.rules.thresholds import Thresholds

SUCCESS, FAILURE = 'result="success"', 'result="failure"'
AUTH_DETECTORS = 'detector=~"mfa_anomalies|auth_failure_spike"'
ACTIVE = value_map(("0", "ok", "green"), ("1", "ACTIVE", "red"))


def mfa_health(t: Thresholds) -> dict[str, Any]:
    mfa, spike = t.mfa_anomalies, t.auth_failure_spike
    verification = Row("Verification", [
        stat("Verification success", "Successful / all MFA verifications over the range.", "percentunit",
             q(ratio(total("loom_mfa_verifications_total", SUCCESS), total("loom_mfa_verifications_total")),
               instant=True), width=6, decimals=1, graph=False,
             steps=[("red", None), ("orange", 1 - mfa.failure_rate_percent / 100), ("green", 0.95)]),
        stat("Challenges sent", "MFA challenges sent over the range.", "short",
             q(total("loom_mfa_challenges_total"), instant=True), width=6, graph=False),
        stat("Enrolments", "Second factors enrolled over the range.", "short",
             q(total("loom_mfa_enrolments_total"), instant=True), width=6, graph=False),
        stat("Disablements", "Second factors removed over the range.", "short",
             q(total("loom_mfa_disablements_total"), instant=True), width=6, graph=False),
        timeseries("Failure rate (alert window)", f"Failed / all MFA verifications over the last "
                   f"{mfa.window_minutes} minutes (recording rules): LoomMFAAnomaly fires at "
                   f"{mfa.failure_rate_percent:g}% with at least {mfa.min_attempts} verifications.", "percentunit",
                   q(f"{recorded('loom_mfa_verification_failures', mfa.window_minutes)}\n/\n"
                     f"{recorded('loom_mfa_verifications', mfa.window_minutes)}", "{{job}}"),
                   width=12, threshold_line=[("green", None), ("red", mfa.failure_rate_percent / 100)]),
        timeseries("Verifications", "MFA verifications per minute, by method and result.", "cpm",
                   q(per_minute("loom_mfa_verifications_total", by=("method", "result")), "{{method}} {{result}}"),
                   width=12),
        bars("Failure share by method", "Failed / all verifications over the range, per method.", "percentunit",
             q(share("loom_mfa_verifications_total", FAILURE, by=("method",), window="$__range"), "{{method}}",
               instant=True), width=8, maximum=1,
             steps=[("green", None), ("red", mfa.failure_rate_percent / 100)]),
        timeseries("Time to verify", "Median and 95th percentile time from challenge to verification, by "
                   "method.", "s",
                   q(quantile(0.5, "loom_mfa_verification_duration_seconds", by=("method",)), "p50 {{method}}"),
                   q(quantile(0.95, "loom_mfa_verification_duration_seconds", by=("method",)), "p95 {{method}}"),
                   width=8),
        timeseries("Challenges by method", "MFA challenges sent per minute, by method.", "cpm",
                   q(per_minute("loom_mfa_challenges_total", by=("method",)), "{{method}}"), width=8, stack=True),
    ])
    adoption = Row("Adoption", [
        bars("Enrolments by method", "Second factors enrolled over the range, by method.", "short",
             q(total("loom_mfa_enrolments_total", by=("method",)), "{{method}}", instant=True), width=12),
        bars("Disablements by method", "Second factors removed over the range, by method.", "short",
             q(total("loom_mfa_disablements_total", by=("method",)), "{{method}}", instant=True), width=12),
    ])
    security = Row("Logins and security", [
        timeseries("Failed logins (alert window)", f"Failed logins in the last {spike.window_minutes} minutes "
                   f"(recording rule): LoomAuthFailureSpike fires at {spike.spike_threshold}.", "short",
                   q(recorded("loom_login_failures", spike.window_minutes), "{{job}}"), width=8,
                   threshold_line=[("green", None), ("red", spike.spike_threshold)]),
        timeseries("Login attempts", "Login attempts per minute, by method and result.", "cpm",
                   q(per_minute("loom_login_attempts_total", by=("method", "result")), "{{method}} {{result}}"),
                   width=8),
        bars("Login failures by reason", "Failed logins over the range, by reason.", "short",
             q(total("loom_login_failures_total", by=("reason",)), "{{reason}}", instant=True), width=8),
        bars("Security events", "Security events over the range, by type and severity.", "short",
             q(total("loom_security_events_total", by=("type", "severity")), "{{type}} ({{severity}})",
               instant=True), width=12),
        state_timeline("Auth and MFA anomalies", "The in-agent auth-failure and MFA detectors over time (the same "
                       "thresholds as the alerts, evaluated by the agent every 30 s).", "none",
                       q(f"max by (detector, severity) ({sel('loom_anomaly_active', AUTH_DETECTORS)})",
                         "{{detector}} {{severity}}"), mappings=ACTIVE, steps=[("green", None), ("red", 1)], width=12),
    ])
    return dashboard(
        "loom-mfa-health", "MFA Health",
        "The documentation's MFA health dashboard: MFA adoption, verification success rates and security "
        "issues, with the thresholds of the LoomMFAAnomaly and LoomAuthFailureSpike alerts.",
        [INSTANCE_VARIABLE], [verification, adoption, security], tags=("security", "mfa"))
