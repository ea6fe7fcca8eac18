"""The documentation's Admin Analytics and Business Metrics dashboards, from the event metrics.

Prometheus counts events; it cannot count distinct users. Active users, retention and per-coach
tables come from the store through GET /api/analytics/dashboard and /api/monitoring/business-metrics
(the dashboards link there); everything countable is here, over the time picker's range.
"""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, pie, q, query_variable, stat, timeseries
from agent.dashboards.promql import RANGE, per_minute, quantile, rate, ratio, sel, share, top, total
from agent.rules.ruledef import le
from agent.rules.thresholds import Thresholds

INSTANCE_VARIABLE = query_variable("instance", "Agent", "label_values(loom_agent_build_info, instance)",
                                   "The agent (sidecar) instance")
CUSTOM_COUNTERS = '__name__=~"loom_app_.+_total"'    # POST /v1/metrics and StatsD counters
RATE_STEPS = [("red", None), ("orange", 0.5), ("green", 0.8)]


def _uptime_over_range() -> str:
    return ratio(total("loom_probes_total", 'result="success"', by=("target",)),
                 total("loom_probes_total", by=("target",)))


def admin_analytics(_thresholds: Thresholds) -> dict[str, Any]:
    summary = Row("Summary over the range", [
        stat("Sessions booked", "Coaching sessions booked in the range (session_booked).", "short",
             q(total("loom_coaching_sessions_total", 'status="booked"'), instant=True), width=4, graph=False),
        stat("Sessions completed", "Coaching sessions that took place in the range (session_completed).", "short",
             q(total("loom_coaching_sessions_total", 'status="completed"'), instant=True), width=4, graph=False),
        stat("Session completion rate", "Completed / booked sessions in the range.", "percentunit",
             q(ratio(total("loom_coaching_sessions_total", 'status="completed"'),
                     total("loom_coaching_sessions_total", 'status="booked"')), instant=True),
             width=4, steps=RATE_STEPS, graph=False, decimals=1),
        stat("Goals completed / created", "Goals completed per goal created in the range.", "percentunit",
             q(ratio(total("loom_goals_total", 'status="completed"'), total("loom_goals_total", 'status="created"')),
               instant=True), width=4, steps=RATE_STEPS, graph=False, decimals=1),
        stat("Task completion rate", "Tasks completed per task created in the range (the documentation's "
             "engagement metric).", "percentunit",
             q(ratio(total("loom_tasks_total", 'status="completed"'), total("loom_tasks_total", 'status="created"')),
               instant=True), width=4, steps=RATE_STEPS, graph=False, decimals=1),
        stat("Average session rating", "Mean rating (1-5 stars) of the sessions rated in the range.",
             "suffix: ★", q(ratio(total("loom_coaching_session_rating_sum"),
                                  total("loom_coaching_session_rating_count")), instant=True),
             width=4, graph=False, decimals=2, steps=[("red", None), ("orange", 3), ("green", 4)]),
    ])
    activity = Row("Activity", [
        timeseries("Coaching sessions", "Sessions booked, completed and cancelled per minute.", "cpm",
                   q(per_minute("loom_coaching_sessions_total", by=("status",)), "{{status}}"), width=8),
        timeseries("Goals and tasks", "Goals and tasks created and completed per minute.", "cpm",
                   q(per_minute("loom_goals_total", by=("status",)), "goals {{status}}"),
                   q(per_minute("loom_tasks_total", by=("status",)), "tasks {{status}}"), width=8),
        timeseries("Events by category", "Every accepted event per minute, by catalog category "
                   "(loom_events_total): the application's overall activity.", "cpm",
                   q(per_minute("loom_events_total", by=("category",)), "{{category}}"), width=8, stack=True),
        pie("Sessions by type", "Completed sessions in the range by session type.", "short",
            q(total("loom_coaching_sessions_total", 'status="completed"', by=("type",)), "{{type}}", instant=True)),
        stat("Session duration", "Median and 90th percentile length of the sessions completed in the range.",
             "s", q(quantile(0.5, "loom_coaching_session_duration_seconds", window=RANGE), "p50", instant=True),
             q(quantile(0.9, "loom_coaching_session_duration_seconds", window=RANGE), "p90", instant=True),
             width=8, height=8, graph=False),
        bars("Cancellations by type", "Cancelled sessions in the range by session type.", "short",
             q(total("loom_coaching_sessions_total", 'status="cancelled"', by=("type",)), "{{type}}", instant=True),
             width=8),
    ])
    resources = Row("Resources and engagement (coach productivity, client engagement)", [
        timeseries("Resource interactions", "Resource library events per minute, by action (viewed, downloaded, "
                   "shared, created...).", "cpm",
                   q(per_minute("loom_resource_events_total", by=("action",)), "{{action}}"), width=8, stack=True),
        bars("Resources created by type", "Resources coaches created in the range, by type.", "short",
             q(total("loom_resource_events_total", 'action="created"', by=("type",)), "{{type}}", instant=True),
             width=8),
        timeseries("Resource view time", "Median and 90th percentile time a resource stays on screen.", "s",
                   q(quantile(0.5, "loom_resource_view_duration_seconds"), "p50"),
                   q(quantile(0.9, "loom_resource_view_duration_seconds"), "p90"), width=8),
        stat("Scroll depth p50", "Median scroll depth reached in viewed resources over the range.", "percentunit",
             q(quantile(0.5, "loom_resource_scroll_depth_ratio", window=RANGE), instant=True), width=6,
             graph=False),
        stat("Average resource rating", "Mean resource rating (1-5) over the range.", "suffix: ★",
             q(ratio(total("loom_resource_rating_sum"), total("loom_resource_rating_count")), instant=True),
             width=6, graph=False, decimals=2),
        stat("Searches without results", "Share of resource searches that returned nothing over the range.",
             "percentunit", q(ratio(total("loom_resource_search_results_bucket", 'le="0.0"'),
                                    total("loom_resource_search_results_count")), instant=True),
             width=6, graph=False, steps=[("green", None), ("orange", 0.1), ("red", 0.25)]),
        stat("Files shared", "Files shared in the range (file_shared).", "short",
             q(total("loom_files_total", 'action="shared"'), instant=True), width=6, graph=False),
    ])
    uptime = Row("Service uptime", [
        bars("Uptime over the range", "Successful / all probes per target over the range (details: Service "
             "Uptime dashboard).", "percentunit", q(_uptime_over_range(), "{{target}}", instant=True),
             width=24, minimum=0.9, maximum=1, steps=[("red", None), ("orange", 0.99), ("green", 0.999)]),
    ])
    return dashboard(
        "loom-admin-analytics", "Admin Analytics",
        "The documentation's admin analytics dashboard from the event metrics: sessions, goals, tasks, "
        "resources and service uptime. Users and per-coach tables: GET /api/analytics/dashboard.",
        [INSTANCE_VARIABLE], [summary, activity, resources, uptime], tags=("analytics",))


def business_metrics(t: Thresholds) -> dict[str, Any]:
    perf = t.performance_degradation
    slow_le = le(perf.slow_request_ms / 1000)   # a bucket bound (thresholds.py checks)
    fast = rate("loom_api_request_duration_seconds_bucket", f'le="{slow_le}"')
    slow_share = f"1 - {ratio(fast, rate('loom_api_request_duration_seconds_count'))}"
    users = Row("Users and authentication", [
        timeseries("Logins", "Login attempts per minute by result.", "cpm",
                   q(per_minute("loom_login_attempts_total", by=("result",)), "{{result}}"), width=8, stack=True),
        stat("Login success rate", "Successful / all login attempts over the range.", "percentunit",
             q(ratio(total("loom_login_attempts_total", 'result="success"'), total("loom_login_attempts_total")),
               instant=True), width=4, steps=[("red", None), ("orange", 0.8), ("green", 0.95)], decimals=1,
             graph=False),
        stat("MFA enrolments, net", "MFA enrolments minus disablements over the range (adoption per user: "
             "GET /api/monitoring/business-metrics).", "short",
             q(f"{total('loom_mfa_enrolments_total')} - ({total('loom_mfa_disablements_total')} or vector(0))",
               instant=True), width=4, graph=False),
        timeseries("Logouts by reason", "Logouts per minute by reason (user, timeout, expired, revoked).",
                   "cpm", q(per_minute("loom_logouts_total", by=("reason",)), "{{reason}}"), width=8),
    ])
    sessions = Row("Sessions and files", [
        timeseries("Bookings, completions, cancellations", "Coaching sessions per minute, by status.", "cpm",
                   q(per_minute("loom_coaching_sessions_total", by=("status",)), "{{status}}"), width=8),
        stat("Average rating", "Mean session rating over the range (1-5).", "suffix: ★",
             q(ratio(total("loom_coaching_session_rating_sum"), total("loom_coaching_session_rating_count")),
               instant=True), width=4, decimals=2, graph=False, steps=[("red", None), ("orange", 3), ("green", 4)]),
        timeseries("File operations", "Uploads, downloads and shares per minute.", "cpm",
                   q(per_minute("loom_files_total", by=("action",)), "{{action}}"), width=6),
        timeseries("File bytes", "Bytes uploaded and downloaded per second (storage growth: uploaded).", "Bps",
                   q(rate("loom_file_bytes_total", by=("action",)), "{{action}}"), width=6),
    ])
    revenue = Row("Trials, subscriptions and payments", [
        stat("Trial conversion", "Trials converted / trials started over the range.", "percentunit",
             q(ratio(total("loom_trials_converted_total"), total("loom_trials_started_total")), instant=True),
             width=6, graph=False, decimals=1, steps=[("red", None), ("orange", 0.1), ("green", 0.25)]),
        stat("Payment success rate", "Successful / all payments over the range.", "percentunit",
             q(ratio(total("loom_payments_total", 'result="success"'), total("loom_payments_total")), instant=True),
             width=6, graph=False, decimals=1, steps=[("red", None), ("orange", 0.9), ("green", 0.97)]),
        stat("Conversion value", "Summed campaign conversion value over the range (in the currency the "
             "application sends).", "short", q(total("loom_conversion_value_total"), instant=True), width=6,
             graph=False),
        stat("Subscriptions, net", "Subscriptions started minus cancelled over the range.", "short",
             q(f"{total('loom_subscriptions_started_total')} - ({total('loom_subscriptions_cancelled_total')} "
               f"or vector(0))", instant=True), width=6, graph=False),
        timeseries("Subscriptions", "Subscriptions started, changed and cancelled per minute.", "cpm",
                   q(per_minute("loom_subscriptions_started_total", by=("interval",)), "started ({{interval}})"),
                   q(per_minute("loom_subscription_changes_total", by=("direction",)), "{{direction}}"),
                   q(per_minute("loom_subscriptions_cancelled_total", by=("cancelled_by",)),
                     "cancelled by {{cancelled_by}}"), width=8),
        bars("Payment failures by reason", "Failed payments in the range by reason.", "short",
             q(total("loom_payment_failures_total", by=("reason",)), "{{reason}}", instant=True), width=8),
        bars("Feature usage", "The 10 most used features over the range (feature_used).", "short",
             q(top(10, total("loom_feature_usage_total", by=("feature",))), "{{feature}}", instant=True), width=8),
        bars("Trials by plan", "Trials started over the range, by plan.", "short",
             q(total("loom_trials_started_total", by=("plan",)), "{{plan}}", instant=True), width=12),
        bars("Custom business metrics", "Counters the application sends through POST /v1/metrics or StatsD "
             "(loom_app_*), the 10 largest over the range.", "short",
             q(top(10, f"sum by (__name__) (increase({sel('', CUSTOM_COUNTERS)}[{RANGE}]))"),
               "{{__name__}}", instant=True), width=12),
    ])
    performance = Row("Performance", [
        timeseries("Page load time", "p50, p75 and p95 page load time (page_load).", "s",
                   *[q(quantile(p, "loom_page_load_duration_seconds"), f"p{int(p * 100)}") for p in (0.5, 0.75, 0.95)],
                   width=8),
        timeseries("API response time", "p50, p95 and p99 API request duration (api_request).", "s",
                   *[q(quantile(p, "loom_api_request_duration_seconds"), f"p{int(p * 100)}")
                     for p in (0.5, 0.95, 0.99)],
                   width=8),
        timeseries("API error rate", "Share of API requests answered with a 5xx status.", "percentunit",
                   q(share("loom_api_request_duration_seconds_count", 'status_class="5xx"'), "5xx"), width=8,
                   threshold_line=[("green", None), ("red", 0.05)]),
        timeseries("Slow API requests", f"Share of API requests slower than {perf.slow_request_ms:g} ms; "
                   f"LoomPerformanceDegradation fires at {perf.slow_percent:g}%.",
                   "percentunit", q(slow_share, "slower than threshold"), width=8,
                   threshold_line=[("green", None), ("red", perf.slow_percent / 100)]),
        bars("Uptime over the range", "Successful / all probes per target over the range.", "percentunit",
             q(_uptime_over_range(), "{{target}}", instant=True), width=8, minimum=0.9, maximum=1,
             steps=[("red", None), ("orange", 0.99), ("green", 0.999)]),
        stat("Core Web Vitals p75", "75th percentile of LCP, FID and INP over the range (details: Web Vitals).",
             "s", *[q(quantile(0.75, f"loom_web_vitals_{v}_seconds", window=RANGE), v.upper(), instant=True)
                    for v in ("lcp", "fid", "inp")], width=8, graph=False, decimals=2),
    ])
    return dashboard(
        "loom-business-metrics", "Business Metrics",
        "The documentation's business metrics dashboard: authentication, sessions, files, revenue events and "
        "performance. DAU/WAU/MAU and retention: GET /api/monitoring/business-metrics.",
        [INSTANCE_VARIABLE], [users, sessions, revenue, performance], tags=("business",))
