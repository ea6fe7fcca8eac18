"""The Web Vitals dashboard: Core Web Vitals at the 75th percentile (the way Google rates a page),
with the good / needs-improvement / poor bounds web.dev publishes, and page and API timings."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, heatmap, q, stat, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE
from agent.dashboards.promql import RANGE, buckets, quantile, rate, share, top, total
from agent.rules.thresholds import Thresholds

# vital -> (histogram, unit, good up to, poor above): web.dev's published thresholds
VITALS: dict[str, tuple[str, str, float, float]] = {
    "LCP": ("loom_web_vitals_lcp_seconds", "s", 2.5, 4.0),
    "INP": ("loom_web_vitals_inp_seconds", "s", 0.2, 0.5),
    "FID": ("loom_web_vitals_fid_seconds", "s", 0.1, 0.3),
    "CLS": ("loom_web_vitals_cls", "none", 0.1, 0.25),
    "TTFB": ("loom_web_vitals_ttfb_seconds", "s", 0.8, 1.8),
    "FCP": ("loom_web_vitals_fcp_seconds", "s", 1.8, 3.0),
}
TITLES = {"LCP": "Largest Contentful Paint", "INP": "Interaction to Next Paint", "FID": "First Input Delay",
          "CLS": "Cumulative Layout Shift", "TTFB": "Time to First Byte", "FCP": "First Contentful Paint"}


def _vital_stat(name: str) -> Any:
    histogram, unit, good, poor = VITALS[name]
    return stat(f"{name} p75", f"{TITLES[name]}, 75th percentile over the range: good up to {good:g}"
                f"{'' if unit == 'none' else ' s'}, poor above {poor:g}.", unit,
                q(quantile(0.75, histogram, window=RANGE), instant=True), width=4, graph=False,
                decimals=3 if unit == "none" else 2, steps=[("green", None), ("orange", good), ("red", poor)])


def web_vitals(t: Thresholds) -> dict[str, Any]:
    vitals = Row("Core Web Vitals", [
        *[_vital_stat(name) for name in VITALS],
        timeseries("Loading vitals p75", "75th percentile of LCP, FCP and TTFB over time.", "s",
                   *[q(quantile(0.75, VITALS[name][0]), name) for name in ("LCP", "FCP", "TTFB")], width=8),
        timeseries("Interactivity vitals p75", "75th percentile of INP and FID over time.", "s",
                   *[q(quantile(0.75, VITALS[name][0]), name) for name in ("INP", "FID")], width=8),
        timeseries("CLS p75", "75th percentile of Cumulative Layout Shift over time (unitless).", "none",
                   q(quantile(0.75, VITALS["CLS"][0]), "CLS"), width=8,
                   threshold_line=[("green", None), ("orange", 0.1), ("red", 0.25)]),
        bars("Ratings by vital", "Share of measurements rated good, needs-improvement and poor over the range, "
             "per vital (the web-vitals library's rating).", "percentunit",
             q(f"{total('loom_web_vitals_ratings_total', by=('name', 'rating'))}\n/ ignoring (rating) group_left\n"
               f"{total('loom_web_vitals_ratings_total', by=('name',))}", "{{name}} {{rating}}", instant=True),
             width=24, height=10, maximum=1),
    ])
    perf = t.performance_degradation
    pages = Row("Pages and API", [
        bars("Slowest pages (p75 load)", "The 10 pages with the slowest 75th percentile load time over the range.",
             "s", q(top(10, quantile(0.75, "loom_page_load_duration_seconds", by=("page",), window=RANGE)), "{{page}}",
                    instant=True), width=12, steps=[("green", None), ("orange", 2.5), ("red", 4)]),
        bars("Slowest API routes (p95)", "The 10 API routes with the slowest 95th percentile over the range.",
             "s", q(top(10, quantile(0.95, "loom_api_request_duration_seconds", by=("route",), window=RANGE)),
                    "{{route}}", instant=True), width=12,
             steps=[("green", None), ("red", perf.slow_request_ms / 1000)]),
        heatmap("API latency distribution", "API requests per latency bucket over time (api_request events): a "
                "second band is a slow dependency, a drifting band a regression.", "s",
                q(buckets("loom_api_request_duration_seconds"), "{{le}}", fmt="heatmap"), width=24),
        timeseries("API requests by status class", "API requests per second, by status class.", "reqps",
                   q(rate("loom_api_request_duration_seconds_count", by=("status_class",)), "{{status_class}}"),
                   width=12, stack=True),
        timeseries("API 5xx share by route", "Share of each route's requests answered with a 5xx.", "percentunit",
                   q(share("loom_api_request_duration_seconds_count", 'status_class="5xx"', by=("route",)),
                     "{{route}}"),
                   width=12, threshold_line=[("green", None), ("red", 0.05)]),
    ])
    return dashboard(
        "loom-web-vitals", "Web Vitals",
        "Core Web Vitals (LCP, INP, FID, CLS, TTFB, FCP) at the 75th percentile with web.dev's thresholds, and "
        "page load and API timings.", [INSTANCE_VARIABLE], [vitals, pages], tags=("performance",))
