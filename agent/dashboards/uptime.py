"""The Service Uptime dashboard: per target up/down, uptime over the range, latency by phase,
certificate expiry and the SLO burn rate, with the thresholds of the alert rules (config.yaml's
`alerting.probes` and `alerting.slo`), so a line on a graph is where the alert fires."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import (
    Row,
    Steps,
    bars,
    dashboard,
    q,
    query_variable,
    stat,
    state_timeline,
    table,
    timeseries,
    value_map,
)
from agent.dashboards.promql import RANGE, RATE, num, sel
from agent.rules.thresholds import Thresholds

TARGET = ('target=~"$target"', 'service=~"$service"')
SUCCESS = 'result="success"'
UP_DOWN = value_map(("1", "UP", "green"), ("0", "DOWN", "red"))
# a target's own probe_success: with all_addresses each address has one more, under an `ip` label
UP = ("probe_success", 'ip=""')


def probe(metric: str, *matchers: str) -> str:
    return sel(metric, *TARGET, *matchers)


def uptime_ratio(window: str) -> str:
    """Successful probes / all probes per target over `window` (from the counters, not from sampling
    probe_success: every probe counts, whatever the scrape interval)."""
    return (f"sum by (target) (increase({probe('loom_probes_total', SUCCESS)}[{window}]))\n/\n"
            f"sum by (target) (increase({probe('loom_probes_total')}[{window}]))")


def service_uptime(t: Thresholds) -> dict[str, Any]:
    objective, probes = t.slo.uptime_objective, t.probes
    budget = 1 - objective
    uptime_steps = [("red", None), ("orange", 1 - 10 * budget), ("green", objective)]
    days_steps: Steps = [("red", None), ("orange", probes.cert_critical_days), ("green", probes.cert_warning_days)]
    latency_line = [("green", None), ("red", probes.latency_threshold_seconds)]
    burn_line = [("green", None), ("orange", 1), ("red", 14.4)]
    now = Row("Now", [
        stat("Up now", "probe_success of each target's last probe: UP or DOWN. LoomProbeDown fires after "
             f"{probes.down_for_seconds} s down.", "none", q(probe(*UP), "{{target}}", instant=True),
             width=12, steps=[("red", None), ("green", 1)], mappings=UP_DOWN, graph=False),
        stat("Uptime over the range", "Successful probes / all probes per target over the dashboard's time "
             f"range. Green at the objective ({objective:.3%}).", "percentunit",
             q(uptime_ratio(RANGE), "{{target}}", instant=True), width=12, steps=uptime_steps, decimals=2,
             graph=False),
    ])
    history = Row("History", [
        state_timeline("Up / down", "probe_success over time, per target: a red stretch is an outage.", "none",
                       q(probe(*UP), "{{target}}"), mappings=UP_DOWN,
                       steps=[("red", None), ("green", 1)]),
        timeseries("Probe failures by reason", "Failed probes per interval, by target and reason (connect, "
                   "timeout, status, body, tls, ...): why a target is down.", "short",
                   q(f"sum by (target, reason) (increase({probe('loom_probe_failures_total')}[{RATE}]))",
                     "{{target}}: {{reason}}"), bars=True, stack=True),
        timeseries("Uptime (rolling 5 minutes)", "Successful / all probes over the last 5 minutes, per target.",
                   "percentunit", q(uptime_ratio("5m"), "{{target}}"), minimum=0, maximum=1,
                   threshold_line=[("red", None), ("green", objective)]),
    ])
    latency = Row("Latency", [
        timeseries("Probe latency p99", "99th percentile of probe duration per target over the rate interval "
                   f"(loom_probe_duration_seconds). The dashed line is the latency alert threshold "
                   f"({probes.latency_threshold_seconds:g} s for {probes.latency_for_seconds} s).", "s",
                   q(f"histogram_quantile(0.99, sum by (target, le) "
                     f"(rate({probe('loom_probe_duration_seconds_bucket')}[{RATE}])))", "{{target}}"),
                   threshold_line=latency_line),
        timeseries("Last probe duration", "probe_duration_seconds: how long each target's last probe took "
                   "(blackbox_exporter's gauge).", "s", q(probe("probe_duration_seconds"), "{{target}}"),
                   threshold_line=latency_line),
        timeseries("HTTP latency by phase", "Where an HTTP probe spends its time: resolve, connect, tls, "
                   "processing (waiting for the first byte), transfer. Stacked: the top is the total.", "s",
                   q(f"sum by (target, phase) ({probe('probe_http_duration_seconds')})", "{{target}} {{phase}}"),
                   stack=True),
        timeseries("Realtime channel round trip", "probe_websocket_round_trip_seconds: message or ping round "
                   "trip of the WebSocket targets (the realtime notification channel).", "s",
                   q(probe("probe_websocket_round_trip_seconds"), "{{target}}")),
    ])
    slo = Row("Certificates and SLO", [
        bars("Certificate expiry", "Days until the earliest certificate of each TLS/HTTPS target's chain "
             f"expires. Warning under {probes.cert_warning_days} days, critical under "
             f"{probes.cert_critical_days}.", "d",
             q(f"({probe('probe_ssl_earliest_cert_expiry')} - time()) / 86400", "{{target}}", instant=True),
             steps=days_steps, maximum=90),
        timeseries("SLO burn rate", f"How fast each target spends the error budget of its {objective:.3%} "
                   "uptime objective (1 = exactly the budget over 30 days), over 1 hour and 5 minutes: the page "
                   "alert fires when both exceed 14.4. From the loom-slo recording rules.", "suffix:x",
                   q(f"{sel('target:loom_probes_error_ratio:rate1h', *TARGET)} / {num(budget)}", "{{target}} 1h"),
                   q(f"{sel('target:loom_probes_error_ratio:rate5m', *TARGET)} / {num(budget)}", "{{target}} 5m"),
                   threshold_line=burn_line),
        table("Error budget over the range", "Per target: uptime over the dashboard's range, and how much of "
              f"the error budget ({budget:.3%} of probes may fail) is left; negative: overspent.", "percentunit",
              q(uptime_ratio(RANGE), instant=True, fmt="table"),
              q(f"1 - (1 - ({uptime_ratio(RANGE)})) / {num(budget)}", instant=True, fmt="table"),
              columns={"target": "Target", "Value #A": "Uptime", "Value #B": "Budget left"},
              column_units={"Uptime": "percentunit", "Budget left": "percentunit"},
              column_steps={"Uptime": uptime_steps, "Budget left": [("red", None), ("orange", 0), ("green", 0.5)]}),
    ])
    details = Row("Probe details", [
        stat("HTTP status code", "probe_http_status_code of each HTTP target's last response (0: no response).",
             "none", q(probe("probe_http_status_code"), "{{target}}", instant=True), width=12, graph=False,
             steps=[("red", None), ("green", 200), ("orange", 300), ("red", 400)]),
        timeseries("Retries", "Probe attempts retried before a result counted (targets with retries > 0).",
                   "short", q(f"sum by (target) (increase({probe('loom_probe_retries_total')}[{RATE}]))",
                              "{{target}}"), bars=True),
    ])
    return dashboard(
        "loom-service-uptime", "Service Uptime",
        "The services the application depends on, as the agent's probes see them: up/down, uptime, "
        "latency, certificates and the uptime SLO (alert thresholds from config.yaml's alerting block).",
        [query_variable("instance", "Agent", "label_values(loom_agent_build_info, instance)",
                        "The agent (sidecar) instance"),
         query_variable("service", "Service", "label_values(probe_success, service)",
                        "The `service` label of the targets (their static labels)"),
         query_variable("target", "Target", 'label_values(probe_success{service=~"$service"}, target)',
                        "A probe target (the `target` label)")],
        [now, history, latency, slo, details], tags=("probes", "slo"))
