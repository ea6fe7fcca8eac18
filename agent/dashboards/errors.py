"""The Errors and Releases dashboard: application errors (POST /v1/errors: loom_errors_total by
feature, type and release; loom_release_info marks the releases seen), and the error signals the
event metrics already carry (API 5xx, realtime connection errors, failed payments); release health and
cron monitors from the Sentry SDKs' sessions and check-ins (the crash-free rates are the recording rules
of prometheus/rules/loom-sentry.yml, for the window the alert uses)."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, q, stat, table, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE
from agent.dashboards.promql import num, per_minute, sel, share, top, total
from agent.rules.alerts_sentry import release_name
from agent.rules.ruledef import minutes
from agent.rules.thresholds import Thresholds

RELEASE = 'release=~"$release"'
RELEASE_VARIABLE = {**INSTANCE_VARIABLE, "name": "release", "label": "Release",
                    "description": "A release of the application (loom_release_info)",
                    "definition": "label_values(loom_release_info, release)",
                    "query": "label_values(loom_release_info, release)"}


def _release_health(thresholds: Thresholds) -> Row:
    health = thresholds.release_health
    window = minutes(health.window_minutes)
    floor = [("red", None), ("green", health.crash_free_sessions)]

    def crash_free(what: str) -> str:
        return f'min by (release, environment) ({release_name(what, "ratio", window)}{{{RELEASE}}})'

    late = ("max by (monitor) (loom_cron_next_expected_timestamp_seconds{instance=~\"$instance\"} "
            "+ loom_cron_checkin_margin_seconds{instance=~\"$instance\"}) - time()")
    return Row("Release health and cron monitors (Sentry SDKs)", [
        timeseries("Crash-free sessions", f"Share of each release's sessions that did not crash over the last "
                   f"{window} (Sentry session items; the alert fires below {num(health.crash_free_sessions * 100)}% "
                   f"with at least {health.min_sessions} sessions).", "percentunit",
                   q(crash_free("loom_sessions_crash_free"), "{{release}} {{environment}}"), width=8,
                   threshold_line=floor, maximum=1),
        timeseries("Crash-free users", f"Share of each release's users (per hour) without a crashed session over "
                   f"the last {window}.", "percentunit",
                   q(crash_free("loom_session_users_crash_free"), "{{release}} {{environment}}"), width=8,
                   threshold_line=floor, maximum=1),
        timeseries("Sessions by status", "Sessions ended per minute by final status (exited is healthy), in the "
                   "selected releases.", "cpm",
                   q(per_minute("loom_sessions_total", RELEASE, by=("status",)), "{{status}}"), width=8, stack=True),
        table("Cron monitors", "Each cron monitor: seconds until its next expected check-in plus margin (negative: "
              "late, LoomCronMissedRun), and its check-ins by status over the range.", "s",
              q(late, instant=True, fmt="table"),
              q(total("loom_cron_checkins_total", 'status=~"ok"', by=("monitor",)), instant=True, fmt="table"),
              q(total("loom_cron_checkins_total", 'status=~"error|timeout"', by=("monitor",)), instant=True,
                fmt="table"),
              columns={"monitor": "Monitor", "Value #A": "Next check-in due in", "Value #B": "OK runs",
                       "Value #C": "Failed runs"},
              column_units={"OK runs": "short", "Failed runs": "short"},
              column_steps={"Next check-in due in": [("red", None), ("green", 0)],
                            "Failed runs": [("green", None), ("red", 1)]}, width=24),
    ])


def errors_releases(thresholds: Thresholds) -> dict[str, Any]:
    errors = Row("Application errors", [
        stat("Errors", "Errors reported over the range (POST /v1/errors), in the selected releases.", "short",
             q(total("loom_errors_total", RELEASE), instant=True), width=6, graph=False,
             steps=[("green", None), ("orange", 1)]),
        stat("Features affected", "Distinct features (the `feature` tag) with errors over the range.", "short",
             q(f"count(sum by (feature) (increase({sel('loom_errors_total', RELEASE)}[$__range])) > 0)",
               instant=True), width=6, graph=False),
        stat("Releases seen", "Releases the agent has seen events, errors or metrics from (loom_release_info).",
             "short", q(f"count({sel('loom_release_info', RELEASE)})", instant=True), width=6, graph=False),
        stat("Error types", "Distinct exception types reported over the range.", "short",
             q(f"count(sum by (type) (increase({sel('loom_errors_total', RELEASE)}[$__range])) > 0)",
               instant=True), width=6, graph=False),
        timeseries("Errors by feature", "Errors per minute, by the feature tag (e.g. payment, booking).", "cpm",
                   q(per_minute("loom_errors_total", RELEASE, by=("feature",)), "{{feature}}"), width=12, stack=True),
        timeseries("Errors by release", "Errors per minute, by release: a new release that raises the line is "
                   "the suspect.", "cpm",
                   q(per_minute("loom_errors_total", RELEASE, by=("release",)), "{{release}}"), width=12),
        bars("Top error types", "The 10 exception types reported most over the range.", "short",
             q(top(10, total("loom_errors_total", RELEASE, by=("type",))), "{{type}}", instant=True), width=12),
        table("Releases", "Every release seen, with the errors each reported over the range.", "short",
              q(f"max by (release) ({sel('loom_release_info', RELEASE)})", instant=True, fmt="table"),
              q(total("loom_errors_total", RELEASE, by=("release",)), instant=True, fmt="table"),
              columns={"release": "Release", "Value #B": "Errors"}, column_units={"Errors": "short"}, width=12),
    ])
    signals = Row("Errors seen in the event metrics", [
        timeseries("API 5xx", "API requests answered with a 5xx per minute, by route (api_request events).",
                   "cpm", q(per_minute("loom_api_request_duration_seconds_count", 'status_class="5xx"', by=("route",)),
                            "{{route}}"), width=8),
        timeseries("API error share", "Share of API requests answered with a 4xx or 5xx, by status class.",
                   "percentunit",
                   q(share("loom_api_request_duration_seconds_count", 'status_class=~"4xx|5xx"', by=()), "4xx+5xx"),
                   q(share("loom_api_request_duration_seconds_count", 'status_class="5xx"'), "5xx"), width=8,
                   threshold_line=[("green", None), ("red", 0.05)]),
        timeseries("Other failures", "Realtime connection errors, failed payments and failed notification "
                   "deliveries per minute.", "cpm",
                   q(per_minute("loom_realtime_connection_errors_total"), "realtime connection errors"),
                   q(per_minute("loom_payments_total", 'result="failure"'), "failed payments"),
                   q(per_minute("loom_notifications_total", 'stage="failed"'), "failed notifications"), width=8),
    ])
    return dashboard(
        "loom-errors-releases", "Errors and Releases",
        "Application errors by feature, type and release (POST /v1/errors), the releases seen, and the error "
        "signals of the event metrics, release health and cron monitors.", [INSTANCE_VARIABLE, RELEASE_VARIABLE],
        [errors, _release_health(thresholds), signals],
        tags=("errors", "releases"))
