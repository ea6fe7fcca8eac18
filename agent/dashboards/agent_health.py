"""The Agent Health dashboard: the agent's own metrics (`loom_agent_*`, process): is it scraped, does it
keep its probe schedule, does ingest keep up, does the store commit, does OTLP export drain."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, dashboard, q, query_variable, stat, table, timeseries, value_map
from agent.dashboards.promql import RATE, mean, per_minute, quantile, rate, sel
from agent.rules.thresholds import Thresholds

JOB = 'job="loom-agent"'      # the scrape job the rules select on (README: Alerting)
OK_FAILED = value_map(("1", "OK", "green"), ("0", "FAILED", "red"))


def agent_health(_thresholds: Thresholds) -> dict[str, Any]:
    overview = Row("Overview", [
        stat("Scraped", "Prometheus' `up` for the loom-agent job: 1 when the last scrape succeeded. "
             "LoomAgentDown fires after a minute without.", "none",
             q('up{job="loom-agent",instance=~"$instance"}', "{{instance}}", instant=True),
             steps=[("red", None), ("green", 1)], mappings=value_map(("1", "UP", "green"), ("0", "DOWN", "red")),
             graph=False),
        stat("Version", "The agent's version and Python runtime (loom_agent_build_info).", "none",
             q(sel("loom_agent_build_info"), "{{version}} (Python {{python_version}})", instant=True),
             text="name", graph=False),
        stat("Process uptime", "Time since the agent process started.", "s",
             q(f"time() - {sel('process_start_time_seconds', JOB)}", "{{instance}}", instant=True),
             graph=False),
        stat("Config reload", "Whether the last configuration (re)load succeeded; a failed reload keeps the "
             "previous configuration running (LoomAgentConfigReloadFailed).", "none",
             q(sel("loom_agent_config_last_reload_successful"), "{{instance}}", instant=True),
             steps=[("red", None), ("green", 1)], mappings=OK_FAILED, graph=False),
    ])
    probes = Row("Probe scheduling", [
        timeseries("Scheduler lag p99", "How late probes start against their schedule (includes waiting for "
                   "a concurrency slot, scheduler.max_concurrency).", "s",
                   q(quantile(0.99, "loom_agent_scheduler_lag_seconds", by=("instance",)), "{{instance}}"), width=8),
        timeseries("Targets by kind", "Configured probe targets, by kind.", "short",
                   q(f"sum by (kind) ({sel('loom_agent_targets')})", "{{kind}}"), width=8, stack=True),
        timeseries("Probes in flight", "Probes running at this moment.", "short",
                   q(sel("loom_agent_probes_in_flight"), "{{instance}}"), width=8),
        timeseries("Probes per second", "Probes completed per second, by result.", "ops",
                   q(rate("loom_probes_total", by=("result",)), "{{result}}"), width=8, stack=True),
        timeseries("Missed probe slots", "Scheduled runs skipped because the previous run of the target "
                   "overran its interval; 0 normally.", "short",
                   q(f"sum by (kind) (increase({sel('loom_agent_probe_slots_missed_total')}[{RATE}]))", "{{kind}}"),
                   width=8, bars=True, no_value="0"),
        timeseries("Probe internal errors", "Probes that ended in an agent bug (reason `internal`); 0 "
                   "normally: report one.", "short",
                   q(f"sum by (kind) (increase({sel('loom_agent_probe_internal_errors_total')}[{RATE}]))",
                     "{{kind}}"), width=8, bars=True, no_value="0"),
    ])
    ingest = Row("Event ingest and store", [
        timeseries("Events accepted", "Events accepted per second, by API (events: /v1/events, posthog: "
                   "/capture and /batch).", "cps",
                   q(rate("loom_agent_ingest_batch_size_sum", by=("api",)), "{{api}}"), width=8, stack=True),
        timeseries("Ingest requests rejected", "Requests refused per minute, by API and reason (invalid, auth, "
                   "too_large, malformed, store_unavailable).", "cpm",
                   q(per_minute("loom_agent_ingest_rejected_total", by=("api", "reason")), "{{api}} {{reason}}"),
                   width=8, bars=True, no_value="0"),
        timeseries("Events dropped and anonymised", "Events dropped by privacy (Do-Not-Track, opted-out users) "
                   "or a mapping rule, and events stored without identity, per minute.", "cpm",
                   q(per_minute("loom_agent_events_dropped_total", by=("reason",)), "dropped: {{reason}}"),
                   q(per_minute("loom_agent_events_anonymized_total", by=("reason",)), "anonymised: {{reason}}"),
                   width=8),
        timeseries("Store commits", "Group commits to the event store per second, by result (ok, unavailable, "
                   "full, error).", "ops", q(rate("loom_agent_store_commits_total", by=("result",)), "{{result}}"),
                   width=8, stack=True),
        timeseries("Store commit latency", "p50 and p99 duration of one group commit (an ingest request is "
                   "answered after its commit).", "s",
                   q(quantile(0.5, "loom_agent_store_commit_seconds"), "p50"),
                   q(quantile(0.99, "loom_agent_store_commit_seconds"), "p99"), width=8),
        timeseries("Events waiting for commit", "Events accepted but not yet committed; ingest answers 503 past "
                   "store.max_pending_events.", "short",
                   q(sel("loom_agent_store_pending_events"), "{{instance}}"), width=8),
        timeseries("Events per commit", "Mean events per group commit: ingest batches many requests into one "
                   "transaction when busy.", "short", q(mean("loom_agent_store_commit_events"), "mean"), width=8),
        timeseries("Label values folded", "Label values the cardinality guard folded to `other`, per minute, "
                   "by metric and label: raise events.series_limit or fix the label.", "cpm",
                   q(per_minute("loom_agent_label_overflow_total", by=("metric", "label")), "{{metric}} {{label}}"),
                   width=8, bars=True, no_value="0"),
        timeseries("Retention clean-up", "Rows deleted in the last hour by class of data (the first clean-up "
                   "runs a minute after start, then every retention.interval).", "short",
                   q(f"sum by (class) (increase({sel('loom_agent_retention_deleted_rows_total')}[1h]))",
                     "{{class}}"), width=8, bars=True),
    ])
    spans = Row("Spans and export", [
        timeseries("Open event spans", "Realtime connection and onboarding spans open now, by kind.", "short",
                   q(f"sum by (kind) ({sel('loom_agent_event_spans_open')})", "{{kind}}"), width=8),
        timeseries("Spans ended abnormally", "Event spans ended by the idle timeout or evicted at "
                   "events.spans.max_open, per minute, by kind.", "cpm",
                   q(per_minute("loom_agent_event_spans_timed_out_total", by=("kind",)), "timed out: {{kind}}"),
                   q(per_minute("loom_agent_event_spans_evicted_total", by=("kind",)), "evicted: {{kind}}"), width=8),
        timeseries("OTLP exported", "Items exported per second, by signal (metrics, traces).", "ops",
                   q(rate("loom_agent_exported_total", by=("signal",)), "{{signal}}"), width=8),
        timeseries("OTLP export problems", "Failed export batches, retries and dropped items per minute, by "
                   "signal: the collector is unreachable, slow or refusing (LoomAgentExportDropping).", "cpm",
                   q(per_minute("loom_agent_export_failures_total", by=("signal",)), "failures: {{signal}}"),
                   q(per_minute("loom_agent_export_retries_total", by=("signal",)), "retries: {{signal}}"),
                   q(per_minute("loom_agent_export_dropped_total", by=("signal",)), "dropped: {{signal}}"), width=8),
        timeseries("OTLP queue", "Items waiting for export, by signal (telemetry.otlp.queue_size bounds it).",
                   "short", q(f"sum by (signal) ({sel('loom_agent_export_queue_size')})", "{{signal}}"), width=8),
        table("Anomaly detectors", "The in-agent detectors (GET /api/anomalies) and whether each is active now, "
              "by severity: 1 active.", "none",
              q(f"max by (detector, severity) ({sel('loom_anomaly_active')})", instant=True, fmt="table"),
              columns={"detector": "Detector", "severity": "Severity", "Value": "Active"}, width=8),
    ])
    process = Row("Process", [
        timeseries("CPU", "CPU time used per second (1 = one core).", "percentunit",
                   q(f"rate({sel('process_cpu_seconds_total', JOB)}[{RATE}])", "{{instance}}"),
                   width=8),
        timeseries("Memory", "Resident memory of the agent process.", "bytes",
                   q(sel("process_resident_memory_bytes", JOB), "{{instance}}"), width=8),
        timeseries("Open file descriptors", "Open file descriptors (sockets included) against the limit.",
                   "short", q(sel("process_open_fds", JOB), "open {{instance}}"),
                   q(sel("process_max_fds", JOB), "limit {{instance}}"), width=8),
    ])
    return dashboard(
        "loom-agent-health", "Agent Health",
        "loom-agent's own health: scraping, probe scheduling, event ingest, the event store, span export "
        "and the process.",
        [query_variable("instance", "Agent", "label_values(loom_agent_build_info, instance)",
                        "The agent (sidecar) instance")],
        [overview, probes, ingest, spans, process], tags=("agent",))
