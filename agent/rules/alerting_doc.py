"""Renders docs/alerting.md: every alert, when it fires with the configured numbers, the key that
changes it, its runbook, and how Alertmanager routes it.

The page is generated for the same reason the rules are: a threshold written by hand in a doc
drifts from config.yaml. The alerts, their severities and `for` come from the very rule dicts
render.py writes; the plain-words "fires when" of each alert is written here, from the same
thresholds and constants the rule modules use; the Routing section is read from
prometheus/alertmanager.yml (routing_doc.py). `python -m agent render-rules` writes it with the
rules; tests/test_alerting_doc.py fails when the committed page is not a fresh render.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from agent.rules import alerts_agent
from agent.rules.alerts_probe import BURN_RATES
from agent.rules.anomaly_metrics import EVALUATION_INTERVAL_SECONDS
from agent.rules.files import FILES
from agent.rules.routing_doc import (
    build_routes,
    load_alertmanager,
    routes_for,
    routing_lines,
)
from agent.rules.ruledef import Rule, minutes, num
from agent.rules.thresholds import CRITICAL_FACTOR, Thresholds

REGENERATE = "python -m agent render-rules"
NOTICE = (f"<!-- Generated from agent/rules/, the alerting: block of config.yaml and prometheus/alertmanager.yml "
          f"by `{REGENERATE}`. Do not edit by hand. -->")
RUNBOOKS = "runbooks.md"
DETECTOR_INTERVAL_SECONDS = EVALUATION_INTERVAL_SECONDS

# the in-agent detector (a Thresholds block, the `detector` label) -> (the detection, its alert)
DETECTOR_ALERTS = {
    "engagement_drop": ("engagement drop", "LoomEngagementDrop"),
    "auth_failure_spike": ("auth failure spike", "LoomAuthFailureSpike"),
    "mfa_anomalies": ("MFA anomalies", "LoomMFAAnomaly"),
    "notification_failures": ("notification delivery failures", "LoomNotificationDeliveryFailures"),
    "performance_degradation": ("performance degradation", "LoomPerformanceDegradation"),
    "funnel_drop": ("signup funnel drop", "LoomSignupFunnelDrop"),
}

# rule group -> (heading, what the group watches)
GROUPS = {
    "loom-probes": ("Probes", "The last probe's gauges of each target; the alerts keep `target` and the "
                              "target's static labels (such as `service`)."),
    "loom-slo": ("Uptime SLO", "Multi-window, multi-burn-rate alerts on the share of failed probes per target "
                               "(`loom_probes_total{result}`): a long window proves the budget is burning, a "
                               "short one that it still is."),
    "loom-events": ("Application detections", "The documentation's six detections, over the event metrics of "
                                              "every agent Prometheus scrapes."),
    "loom-release-health": ("Release health", "Crash-free sessions and users per release and environment, from "
                                              "the Sentry SDKs' sessions (docs/sentry.md)."),
    "loom-crons": ("Cron monitors", "Missed and failed runs of the cron monitors the Sentry SDKs check in to "
                                    "(docs/sentry.md)."),
    "loom-agent": ("The agent itself", "The agent's own health. These have no `alerting:` keys: their "
                                       "thresholds say \"broken\", not \"unusual\"."),
}

# (fires when, config key) of an alert at a severity, from the thresholds and its rule
Explain = Callable[[Thresholds, str, Rule], tuple[str, str]]


def _level(severity: str, threshold: float) -> float:
    return threshold * CRITICAL_FACTOR if severity == "critical" else threshold


def _times(severity: str, field: str) -> str:
    return f" ({num(CRITICAL_FACTOR)} × `{field}`)" if severity == "critical" else ""


def _keys(block: str, main: str, *others: str) -> str:
    also = f" (also {', '.join(f'`{o}`' for o in others)})" if others else ""
    return f"`alerting.{block}.{main}`{also}"


def _never(level: float, field: str) -> str:
    return (f"never: its level, {num(level)}% ({num(CRITICAL_FACTOR)} × `{field}`), cannot be reached; keep "
            f"`{field}` at {num(100 / CRITICAL_FACTOR)} or below to have a critical level")


def _drop(block: str, noun: str) -> Explain:
    def explain(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
        d = getattr(t, block)
        window, level = minutes(d.window_minutes), _level(severity, d.drop_threshold_percent)
        when = (_never(level, "drop_threshold_percent") if level > 100 else
                f"{noun} in the last {window} are {num(level)}% or more below the {window} before"
                f"{_times(severity, 'drop_threshold_percent')}, which had at least {d.min_baseline}")
        return when, _keys(block, "drop_threshold_percent", "window_minutes", "min_baseline")
    return explain


def _share(block: str, field: str, minimum: str, of: str, bad: str) -> Explain:
    """"N% or more of the <of> in the last <window> <bad>"; `bad` may use {slow} (slow_request_ms)."""
    def explain(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
        d = getattr(t, block)
        level = _level(severity, getattr(d, field))
        when = (_never(level, field) if level > 100 else
                f"{num(level)}% or more{_times(severity, field)} of the {of} in the last "
                f"{minutes(d.window_minutes)} {bad.format(slow=num(getattr(d, 'slow_request_ms', 0)))}, "
                f"and there were at least {getattr(d, minimum)}")
        others = [f for f in ("slow_request_ms", "window_minutes", minimum) if hasattr(d, f)]
        return when, _keys(block, field, *others)
    return explain


def _auth(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    d = t.auth_failure_spike
    return (f"{num(_level(severity, d.spike_threshold))} or more login attempts failed"
            f"{_times(severity, 'spike_threshold')}"
            f" in the last {minutes(d.window_minutes)} (`login_attempt` events with `result: failure`)",
            _keys("auth_failure_spike", "spike_threshold", "window_minutes"))


def _probe_down(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return ("every probe of a target fails (`probe_success` is 0) for the `for` time",
            _keys("probes", "down_for_seconds"))


def _probe_latency(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return (f"a target's last probe took longer than {num(t.probes.latency_threshold_seconds)} s "
            "(`probe_duration_seconds`), probe after probe for the `for` time",
            _keys("probes", "latency_threshold_seconds", "latency_for_seconds"))


def _certificate(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    field = "cert_critical_days" if severity == "critical" else "cert_warning_days"
    return (f"the first certificate to expire in the chain a target presents expires in less than "
            f"{getattr(t.probes, field)} days (`probe_ssl_earliest_cert_expiry`)", _keys("probes", field))


def _burn_rate(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    budget = 1 - t.slo.uptime_objective
    pairs = [f"over both {long} and {short}, more than {num(rate * budget * 100)}% of a target's probes fail "
             f"({num(rate)}× the budget)" for level, long, short, rate in BURN_RATES if level == severity]
    return (f"{'; or '.join(pairs)}. The budget is {num(budget * 100)}% of probes, from the "
            f"{num(t.slo.uptime_objective * 100)}% objective",
            "`alerting.slo.uptime_objective`; burn rates and windows fixed (`BURN_RATES`, agent/rules/alerts_probe.py)")


_AGENT_FIXED = "not configurable (agent/rules/alerts_agent.py)"


def _agent_down(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    job = alerts_agent.JOB
    return (f"Prometheus fails to scrape the `{job}` job (`up` is 0), or has no `{job}` target at all",
            f"{_AGENT_FIXED}; the job name is `{job}` in prometheus.yml")


def _export_dropping(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    window = re.search(r"\[(\w+)\]", rule["expr"])
    return (f"the agent dropped OTLP items (`loom_agent_export_dropped_total` rose) in the last "
            f"{window.group(1) if window else '?'}: the collector is unreachable, slow or refusing them", _AGENT_FIXED)


def _ingest_rejections(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return (f"{num(alerts_agent.INGEST_REJECTED_RATIO * 100)}% or more of one ingest API's requests were "
            f"rejected in the last {alerts_agent.INGEST_WINDOW}, and at least {alerts_agent.INGEST_REJECTED_MIN} "
            "of them", f"{_AGENT_FIXED}: `INGEST_REJECTED_RATIO`, `INGEST_REJECTED_MIN`")


def _reload_failed(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return ("the agent's last config reload failed (`loom_agent_config_last_reload_successful` is 0); it keeps "
            "running the previous config", _AGENT_FIXED)


def _store_full(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return (f"the event store refused a group commit (`loom_agent_store_commits_total{{result=\"full\"}}`) or a "
            f"fold of the analytics rollups (`loom_agent_store_fold_failures_total`) in the last "
            f"{alerts_agent.STORE_WINDOW}: `store.max_size_mb` reached or the disk full", _AGENT_FIXED)


def _crash_free(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    d = t.release_health
    crash_rate = _level(severity, 1 - d.crash_free_sessions)
    return (f"fewer than {num((1 - crash_rate) * 100)}% of a release's sessions in an environment did not crash "
            f"over the last {minutes(d.window_minutes)} (a crash rate of {num(crash_rate * 100)}%"
            f"{_times(severity, '1 - crash_free_sessions')}), with at least {d.min_sessions} sessions started",
            _keys("release_health", "crash_free_sessions", "window_minutes", "min_sessions"))


def _cron_missed(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return (f"a cron monitor has not checked in {t.cron_monitors.missed_grace_seconds} s after its next expected "
            "run plus its margin (`loom_cron_next_expected_timestamp_seconds`, from its schedule)",
            _keys("cron_monitors", "missed_grace_seconds"))


def _cron_failed(t: Thresholds, severity: str, rule: Rule) -> tuple[str, str]:
    return ("a cron monitor's last error or timeout check-in is newer than its last ok one",
            _keys("cron_monitors", "failed_for_seconds"))


EXPLAIN: dict[str, Explain] = {
    "LoomProbeDown": _probe_down,
    "LoomProbeHighLatency": _probe_latency,
    "LoomTLSCertificateExpiring": _certificate,
    "LoomUptimeSLOBurnRate": _burn_rate,
    "LoomEngagementDrop": _drop("engagement_drop", "events accepted"),
    "LoomAuthFailureSpike": _auth,
    "LoomMFAAnomaly": _share("mfa_anomalies", "failure_rate_percent", "min_attempts", "MFA verifications", "failed"),
    "LoomNotificationDeliveryFailures": _share("notification_failures", "failure_rate_percent", "min_attempts",
                                               "notification deliveries (delivered + failed)", "failed"),
    "LoomPerformanceDegradation": _share("performance_degradation", "slow_percent", "min_requests",
                                         "API requests", "took longer than {slow} ms"),
    "LoomSignupFunnelDrop": _drop("funnel_drop", "completed signup steps"),
    "LoomAgentDown": _agent_down,
    "LoomAgentExportDropping": _export_dropping,
    "LoomAgentIngestRejections": _ingest_rejections,
    "LoomAgentStoreFull": _store_full,
    "LoomAgentConfigReloadFailed": _reload_failed,
    "LoomReleaseCrashFreeSessionsLow": _crash_free,
    "LoomCronMissedRun": _cron_missed,
    "LoomCronRunFailed": _cron_failed,
}


def runbook_link(alertname: str) -> str:
    return f"[{alertname}]({RUNBOOKS}#{alertname.lower()})"


def rule_groups(thresholds: Thresholds) -> dict[str, list[dict[str, Any]]]:
    """Rule file name -> its groups, exactly as render-rules writes them."""
    return {name: build(thresholds) for name, build in FILES.items()}


def render_alerting_doc(thresholds: Thresholds, alertmanager: Mapping[str, Any] | None = None) -> str:
    """docs/alerting.md for these thresholds and this Alertmanager config (default: the shipped one)."""
    config = load_alertmanager() if alertmanager is None else alertmanager
    files = rule_groups(thresholds)
    alerts = [r for groups in files.values() for g in groups for r in g["rules"] if "alert" in r]
    lines = ["# Alerting", "", NOTICE, "",
             "Every alert loom-agent ships: when it fires, with the thresholds of the `alerting:` block of "
             "[config.yaml](../config.yaml), the key that changes it, and how it reaches people. What to do "
             f"when one fires is in [{RUNBOOKS}]({RUNBOOKS}).", ""]
    lines += overview_lines()
    lines += ["## Alerts", "", "Each alert name links to its runbook section. `for` is how long the condition "
              "must hold before the alert fires; until then it is pending.", ""]
    for name, groups in files.items():
        for group in groups:
            lines += group_lines(name, group, thresholds)
    lines += routing_lines(config, [(a["alert"], a["labels"]) for a in alerts], "../prometheus/alertmanager.yml")
    lines += [""] + changing_lines(thresholds) + [""] + testing_lines(config, alerts)
    return "\n".join(lines) + "\n"


def overview_lines() -> list[str]:
    lines = [
        "## Overview", "",
        "The documentation's anomaly detections are answered on two paths that read the same thresholds:", "",
        "- **Prometheus rules and Alertmanager, for paging.** [prometheus/rules/](../prometheus/rules/) holds "
        "alert and recording rules rendered from agent/rules/ and the `alerting:` block. Prometheus evaluates "
        "them over what it scrapes from every agent (probe results, event counters, the agent's own health) "
        "and sends what fires to Alertmanager, which groups, inhibits and notifies ([Routing](#routing)). The "
        "probe, SLO and agent alerts exist only on this path.",
        "- **The in-agent detectors, for asking.** `GET /api/anomalies` (admin token) runs the six detections "
        "of agent/rules/detectors.py on the agent's own per-minute counts, like the documentation's "
        "`runAnomalyDetection()`: each anomaly has `metricName`, `severity`, `currentValue`, `expectedValue` "
        "and its window; `?detector=<name>` runs one, and the documentation's settings (`windowMinutes`, "
        "`spikeThreshold`, ...) override the configured value for that request. The agent also evaluates "
        f"them every {num(DETECTOR_INTERVAL_SECONDS)} s into `loom_anomaly_active{{detector,severity}}` "
        "(1 while active). Nothing is notified on this path.", "",
        "A threshold is set once, in `alerting:`: `render-rules` writes it into the rules, and the detectors "
        "read it at start and on reload. The two can still disagree for a while: a rule waits for its `for` "
        "and counts over every scraped agent across restarts, while a detector sees one agent's events since "
        "it started, at once. Page from Prometheus; ask the agent when there is no Prometheus at hand or to "
        "see whether it is still happening.", "",
        f"**Severity.** A detection at its threshold is `warning`; at {num(CRITICAL_FACTOR)}× the threshold's "
        "deviation (the drop percent, the failed-login count, the failure or slow share) it is `critical`, "
        "on both paths. The warning rule keeps firing next to its critical one and Alertmanager's inhibition "
        "silences it. Certificate expiry and SLO burn have their own two levels (days left, burn-rate windows).",
        "", "| detection | detector (`?detector=`, `detector` label) | alert | its `alerting:` block |",
        "|---|---|---|---|"]
    lines += [f"| {detection} | `{name}` | {runbook_link(alert)} | `alerting.{name}` |"
              for name, (detection, alert) in DETECTOR_ALERTS.items()]
    return lines + [""]


def group_lines(file_name: str, group: dict[str, Any], thresholds: Thresholds) -> list[str]:
    title, about = GROUPS.get(group["name"], (group["name"], ""))
    lines = [f"### {title}", "", f"[prometheus/rules/{file_name}](../prometheus/rules/{file_name}). {about}".rstrip(),
             "", "| alert | severity | fires when | for | change it with |", "|---|---|---|---|---|"]
    recorded = []
    for rule in group["rules"]:
        if "record" in rule:
            recorded.append(rule["record"])
            continue
        explain = EXPLAIN.get(rule["alert"])
        if explain is None:
            raise KeyError(f"{rule['alert']}: no entry in agent/rules/alerting_doc.py EXPLAIN")
        severity = rule["labels"]["severity"]
        when, key = explain(thresholds, severity, rule)
        lines.append(_row(runbook_link(rule["alert"]), severity, when, rule["for"], key))
    if recorded:
        lines += ["", "Recorded series (for dashboards too): " + ", ".join(f"`{r}`" for r in recorded) + "."]
    return lines + [""]


def changing_lines(t: Thresholds) -> list[str]:
    spike = t.auth_failure_spike
    return [
        "## Changing a threshold", "",
        "1. Edit the `alerting:` block of [config.yaml](../config.yaml) (or your deployment's config), e.g. "
        f"`auth_failure_spike: {{window_minutes: {spike.window_minutes}, spike_threshold: {spike.spike_threshold}}}`. "
        "Keys are snake_case (the documentation's `spikeThreshold` is `spike_threshold`); `python -m agent "
        "check-config` names a wrong key or value.",
        f"2. Run `{REGENERATE}`: it rewrites prometheus/rules/*.yml and this page. `--config FILE` reads another "
        "config; `--out DIR` writes the rules elsewhere and then writes this page only if `--docs-out FILE` says "
        "where; `--check` writes nothing and exits 1 naming each stale file.",
        "3. Reload Prometheus: `curl -X POST http://<prometheus>:9090/-/reload` (needs "
        "`--web.enable-lifecycle`) or send it `SIGHUP`.",
        "4. Reload the agent (`SIGHUP`, or `POST /-/reload`): its detectors take the new thresholds without a restart.",
        "5. In this repository, the promtool tests in [prometheus/tests/](../prometheus/tests/) use the shipped "
        "values: move the series of the alert you changed so it still fires at the new threshold and stays "
        "quiet on the near miss.", "",
        "Values shown as fixed or not configurable live in agent/rules/ (the `for` of each alert too): change "
        "them there and re-render.",
    ]


def testing_lines(config: Mapping[str, Any], alerts: list[Rule]) -> list[str]:
    example = next((a for a in alerts if "service" in a["labels"]), alerts[0])
    labels = {"alertname": example["alert"], **example["labels"]}
    receiver = ",".join(r.receiver for r in routes_for(build_routes(config), labels))
    label_args = " ".join(f"{k}={v}" for k, v in labels.items())
    return [
        "## Testing", "",
        "- `promtool check rules prometheus/rules/*.yml`: the rendered rules are valid.",
        "- `promtool test rules prometheus/tests/*.yml`: every alert fires when it should, with its labels and "
        "annotations, and stays silent on the near miss.",
        "- Alertmanager: the shipped file runs as it is (its secrets are files Alertmanager reads): "
        "`amtool check-config prometheus/alertmanager.yml` and, per route, "
        f"`amtool config routes test --config.file=prometheus/alertmanager.yml --verify.receivers={receiver} "
        f"{label_args}`.",
        "- [tests/test_alerting_e2e.py](../tests/test_alerting_e2e.py): the agent, Debian's Prometheus and "
        "Alertmanager on 127.0.0.1 with short intervals and a webhook receiver in the test: a stopped target's "
        "LoomProbeDown reaches the receiver, so does a burst of failed logins' LoomAuthFailureSpike, and the "
        "resolved notification arrives when the target is back; a cron monitor that stops checking in "
        "(LoomCronMissedRun) and a release whose sessions crash (LoomReleaseCrashFreeSessionsLow), sent by the "
        "Sentry SDK's items, reach it too.",
        "- `python3 -m pytest tests/test_alert_rules.py tests/test_alertmanager_config.py "
        "tests/test_alerting_e2e.py tests/test_alerting_doc.py` runs all of it; "
        f"`{REGENERATE} --check` says whether the rules and this page are fresh.",
    ]


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
