"""The Notification Analytics dashboard: delivery, engagement (the funnel delivered -> displayed ->
clicked) and preferences; the failure-rate graph shows the LoomNotificationDeliveryFailures threshold."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, pie, q, stat, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE, RATE_STEPS
from agent.dashboards.promql import per_minute, quantile, rate, ratio, recorded, top, total
from agent.rules.thresholds import Thresholds

DELIVERED, CLICKED, FAILED = 'stage="delivered"', 'stage="clicked"', 'stage="failed"'


def notification_analytics(t: Thresholds) -> dict[str, Any]:
    n = t.notification_failures
    delivery = Row("Delivery", [
        stat("Delivered", "Notifications delivered over the range.", "short",
             q(total("loom_notifications_total", DELIVERED), instant=True), width=6, graph=False),
        stat("Delivery success", "Delivered / (delivered + failed) over the range.", "percentunit",
             q(ratio(total("loom_notifications_total", DELIVERED),
                     total("loom_notifications_total", 'stage=~"delivered|failed"')), instant=True),
             width=6, decimals=1, graph=False,
             steps=[("red", None), ("orange", 1 - 2 * n.failure_rate_percent / 100),
                    ("green", 1 - n.failure_rate_percent / 100)]),
        stat("Click-through rate", "Clicked / delivered over the range.", "percentunit",
             q(ratio(total("loom_notifications_total", CLICKED), total("loom_notifications_total", DELIVERED)),
               instant=True), width=6, decimals=1, graph=False),
        stat("Opt-outs", "Users who opted out of a notification channel over the range.", "short",
             q(total("loom_notification_opt_outs_total"), instant=True), width=6, graph=False),
        timeseries("Delivery failure rate (alert window)", f"Failed / attempted deliveries over the last "
                   f"{n.window_minutes} minutes (recording rules): LoomNotificationDeliveryFailures fires at "
                   f"{n.failure_rate_percent:g}% with at least {n.min_attempts} deliveries.", "percentunit",
                   q(f"{recorded('loom_notification_failures', n.window_minutes)}\n/\n"
                     f"{recorded('loom_notification_deliveries', n.window_minutes)}", "{{job}}"),
                   width=12, threshold_line=[("green", None), ("red", n.failure_rate_percent / 100)]),
        timeseries("Delivered and failed by channel", "Deliveries and failures per minute, by channel.", "cpm",
                   q(per_minute("loom_notifications_total", 'stage=~"delivered|failed"', by=("stage", "channel")),
                     "{{channel}} {{stage}}"), width=12),
        bars("Failures by reason", "Failed deliveries over the range, by channel and reason.", "short",
             q(total("loom_notification_delivery_failures_total", by=("channel", "reason")),
               "{{channel}}: {{reason}}", instant=True), width=12),
        timeseries("Delivery latency p95", "95th percentile latency from send to delivery reported by the "
                   "provider, by channel.", "s",
                   q(quantile(0.95, "loom_notification_delivery_latency_seconds", by=("channel",)), "{{channel}}"),
                   width=12),
    ])
    engagement = Row("Engagement", [
        bars("Notification funnel", "Notifications over the range by stage: delivered, displayed, clicked, "
             "action clicked, dismissed, failed.", "short",
             q(f"sort_desc({total('loom_notifications_total', by=('stage',))})", "{{stage}}", instant=True),
             width=8),
        bars("Click-through by channel", "Clicked / delivered over the range, per channel.", "percentunit",
             q(ratio(total("loom_notifications_total", CLICKED, by=("channel",)),
                     total("loom_notifications_total", DELIVERED, by=("channel",))), "{{channel}}", instant=True),
             width=8, maximum=1, steps=RATE_STEPS),
        timeseries("Time to click", "Median and 90th percentile time from delivery to click.", "s",
                   q(quantile(0.5, "loom_notification_time_to_click_seconds"), "p50"),
                   q(quantile(0.9, "loom_notification_time_to_click_seconds"), "p90"), width=8),
        bars("Top notification types", "The 10 notification types clicked most over the range.", "short",
             q(top(10, total("loom_notifications_total", CLICKED, by=("type",))), "{{type}}", instant=True), width=12),
        timeseries("Dismissed share", "Dismissed / displayed notifications, by channel.", "percentunit",
                   q(ratio(rate("loom_notifications_total", 'stage="dismissed"', by=("channel",)),
                           rate("loom_notifications_total", 'stage="displayed"', by=("channel",))),
                     "{{channel}}"), width=12),
    ])
    preferences = Row("Permissions and preferences", [
        pie("Push permission answers", "Answers to push permission prompts over the range.", "short",
            q(total("loom_push_permission_requests_total", by=("result",)), "{{result}}", instant=True)),
        bars("Opt-outs by channel", "Notification opt-outs over the range, by channel.", "short",
             q(total("loom_notification_opt_outs_total", by=("channel",)), "{{channel}}", instant=True), width=8),
        bars("Preference changes", "Preference updates over the range, by channel and new frequency.", "short",
             q(total("loom_notification_preference_updates_total", by=("channel", "frequency")),
               "{{channel}} -> {{frequency}}", instant=True), width=8),
    ])
    return dashboard(
        "loom-notification-analytics", "Notification Analytics",
        "The documentation's notification analytics dashboard: delivery, engagement and user preferences.",
        [INSTANCE_VARIABLE], [delivery, engagement, preferences], tags=("notifications",))
