"""The Onboarding and Funnels dashboard: marketing (landing pages, leads, CTAs, campaigns, A/B
tests, referrals), the signup funnel and the onboarding flow, step by step."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, pie, q, stat, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE, RATE_STEPS
from agent.dashboards.promql import RANGE, per_minute, quantile, ratio, recorded, sel, top, total
from agent.rules.thresholds import Thresholds

COMPLETED = 'status="completed"'
ONBOARDING_SPANS = 'kind="onboarding"'


def onboarding_funnels(t: Thresholds) -> dict[str, Any]:
    funnel = t.funnel_drop
    signup = Row("Signup funnel", [
        bars("Signup funnel", "Visitors completing each signup step over the range, largest first: the drop "
             "between two bars is the funnel's loss at that step.", "short",
             q(f"sort_desc({total('loom_signup_steps_total', COMPLETED, by=('step',))})",
               "{{step}}", instant=True), width=12),
        bars("Signup step outcomes", "Signup step events over the range, by status (started, completed, failed, "
             "abandoned).", "short",
             q(total("loom_signup_steps_total", by=("status",)), "{{status}}", instant=True), width=6),
        stat("Signup completion", "Completed / started signup steps over the range.", "percentunit",
             q(ratio(total("loom_signup_steps_total", COMPLETED),
                     total("loom_signup_steps_total", 'status="started"')), instant=True),
             width=6, steps=RATE_STEPS, decimals=1, graph=False),
        timeseries("Completed signup steps (alert window)", "Completed signup steps in the last "
                   f"{funnel.window_minutes} minutes (recording rule): LoomSignupFunnelDrop fires when it falls "
                   f"{funnel.drop_threshold_percent:g}% below the window before (with at least "
                   f"{funnel.min_baseline} then).", "short",
                   q(recorded("loom_signup_steps_completed", funnel.window_minutes), "{{job}}"), width=12),
        timeseries("Signup steps", "Signup step events per minute, by step and status.", "cpm",
                   q(per_minute("loom_signup_steps_total", by=("step", "status")), "{{step}} {{status}}"), width=12),
    ])
    marketing = Row("Marketing", [
        bars("Landing page views by source", "Landing page views over the range, the 10 largest UTM "
             "source / medium pairs.", "short",
             q(top(10, total("loom_landing_page_views_total", by=("source", "medium"))), "{{source}} / {{medium}}",
               instant=True), width=8),
        pie("Leads by type", "Leads captured over the range, by lead type.", "short",
            q(total("loom_leads_total", by=("type",)), "{{type}}", instant=True)),
        bars("CTA clicks", "The 10 most clicked calls-to-action over the range, with their location.", "short",
             q(top(10, total("loom_cta_clicks_total", by=("cta", "location"))), "{{cta}} ({{location}})",
               instant=True), width=8),
        timeseries("Campaign conversions", "Conversions per minute, by type.", "cpm",
                   q(per_minute("loom_conversions_total", by=("type",)), "{{type}}"), width=8, stack=True),
        bars("Conversion value by type", "Summed conversion value over the range, by conversion type.", "short",
             q(total("loom_conversion_value_total", by=("type",)), "{{type}}", instant=True), width=8),
        bars("Conversions by source", "Conversions over the range by UTM source and medium.", "short",
             q(top(10, total("loom_conversions_total", by=("source", "medium"))), "{{source}} / {{medium}}",
               instant=True), width=8),
        bars("A/B test exposures", "Exposures over the range per experiment and variant.", "short",
             q(total("loom_experiment_exposures_total", by=("experiment", "variant")),
               "{{experiment}} {{variant}}", instant=True), width=8),
        bars("Referrals", "Referrals over the range by stage and channel.", "short",
             q(total("loom_referrals_total", by=("status", "channel")), "{{status}} ({{channel}})", instant=True),
             width=8),
        bars("Newsletter signups", "Newsletter subscriptions over the range, by list.", "short",
             q(total("loom_newsletter_signups_total", by=("list",)), "{{list}}", instant=True), width=8),
    ])
    onboarding = Row("Onboarding flow", [
        bars("Step completion rate", "Per onboarding step: completed / started over the range. A low bar is "
             "the step users struggle with.", "percentunit",
             q(ratio(total("loom_onboarding_steps_total", 'outcome="completed"', by=("step",)),
                     total("loom_onboarding_steps_total", 'outcome="started"', by=("step",))), "{{step}}",
               instant=True), width=8, minimum=0, maximum=1, steps=RATE_STEPS),
        bars("Abandoned at step", "Flows abandoned over the range, by the step the user left from.", "short",
             q(total("loom_onboarding_steps_total", 'outcome="abandoned"', by=("step",)), "{{step}}", instant=True),
             width=8),
        stat("Flow completion", "Onboarding flows completed / ended (completed + abandoned) over the range.",
             "percentunit", q(ratio(total("loom_onboarding_flows_total", 'outcome="completed"'),
                                    total("loom_onboarding_flows_total")), instant=True),
             width=4, steps=RATE_STEPS, decimals=1, graph=False),
        stat("Flow duration p50", "Median time from the first step to completion, over the range.", "s",
             q(quantile(0.5, "loom_onboarding_duration_seconds", window=RANGE), instant=True), width=4, graph=False),
        timeseries("Onboarding steps", "Onboarding steps started, completed and abandoned per minute.", "cpm",
                   q(per_minute("loom_onboarding_steps_total", by=("outcome",)), "{{outcome}}"), width=8),
        timeseries("Time per step", "Median time spent in each onboarding step.", "s",
                   q(quantile(0.5, "loom_onboarding_step_duration_seconds", by=("step",)), "{{step}}"), width=8),
        timeseries("Flows in progress", "Onboarding flows open now (onboarding spans: first step seen, not "
                   "completed or abandoned yet).", "short",
                   q(f"sum({sel('loom_agent_event_spans_open', ONBOARDING_SPANS)})",
                     "open flows"), width=8),
    ])
    activation = Row("Activation", [
        bars("Features discovered", "Features discovered during onboarding over the range, by feature and "
             "discovery method.", "short",
             q(top(10, total("loom_features_discovered_total", by=("feature", "method"))),
               "{{feature}} ({{method}})", instant=True), width=6),
        bars("First actions", "Activation milestones reached over the range.", "short",
             q(total("loom_first_actions_total", by=("action",)), "{{action}}", instant=True), width=6),
        pie("Hint interactions", "Onboarding hint interactions over the range, by action.", "short",
            q(total("loom_onboarding_hint_interactions_total", by=("action",)), "{{action}}", instant=True), width=6),
        pie("Re-engagement channels", "Returns to an unfinished onboarding over the range, by what brought the "
            "user back.", "short",
            q(total("loom_onboarding_reengagements_total", by=("channel",)), "{{channel}}", instant=True), width=6),
    ])
    return dashboard(
        "loom-onboarding-funnels", "Onboarding and Funnels",
        "Marketing, the signup funnel and the onboarding flow, step by step, from the event metrics.",
        [INSTANCE_VARIABLE], [signup, marketing, onboarding, activation], tags=("analytics", "funnels"))
