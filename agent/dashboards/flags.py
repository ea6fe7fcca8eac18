"""The Feature Flags and Experiments dashboard: what the agent's /flags answered
(loom_feature_flag_evaluations_total) and what the SDKs report the application showed
(loom_feature_flag_calls_total, the `$feature_flag_called` exposures experiments read), by flag and
variant. The experiments' results themselves (conversions, intervals, probability to be best, the
sample-ratio check) come from GET /api/experiments/{id} (docs/flags.md)."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, q, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE
from agent.dashboards.promql import per_minute, total
from agent.rules.thresholds import Thresholds

EVALUATIONS = "loom_feature_flag_evaluations_total"
CALLS = "loom_feature_flag_calls_total"


def feature_flags(t: Thresholds) -> dict[str, Any]:
    served = Row("Evaluations served by the agent", [
        timeseries("Evaluations by flag", "Flag evaluations /flags and /decide served per minute, by flag.", "cpm",
                   q(per_minute(EVALUATIONS, by=("flag",)), "{{flag}}"), width=12, stack=True),
        bars("Variants served over the range", "Each flag's answers over the range: the share of each variant "
             "(true / false for a flag without variants).", "percentunit",
             q(f"{total(EVALUATIONS, by=('flag', 'variant'))}\n/ ignoring (variant) group_left\n"
               f"{total(EVALUATIONS, by=('flag',))}", "{{flag}} {{variant}}", instant=True), width=12, maximum=1),
    ])
    exposures = Row("Exposures reported by the SDKs ($feature_flag_called)", [
        timeseries("Exposures by flag and variant", "$feature_flag_called events per minute: the application read "
                   "the flag and showed the variant (the exposures experiments count).", "cpm",
                   q(per_minute(CALLS, by=("flag", "variant")), "{{flag}} {{variant}}"), width=12),
        bars("Exposure split over the range", "Each flag's exposures by variant over the range: a split far from "
             "the configured percentages is what the experiments API's sample-ratio check flags.", "percentunit",
             q(f"{total(CALLS, by=('flag', 'variant'))}\n/ ignoring (variant) group_left\n"
               f"{total(CALLS, by=('flag',))}", "{{flag}} {{variant}}", instant=True), width=12, maximum=1),
        timeseries("Exposures of unknown flags or variants", "$feature_flag_called events naming a flag or a "
                   "variant the flags: block does not define (counted as other): a stale flag key in the "
                   "application, or flags served by another service.", "cpm",
                   q(per_minute(CALLS, 'flag="other"'), "unknown flag"),
                   q(per_minute(CALLS, 'flag!="other"', 'variant="other"'), "unknown variant"),
                   width=24, height=6),
    ])
    return dashboard("loom-feature-flags", "Feature Flags and Experiments",
                     "Feature-flag evaluations the agent served and the exposures the SDKs reported, by flag and "
                     "variant (docs/flags.md).", [INSTANCE_VARIABLE], [served, exposures], tags=("product",))
