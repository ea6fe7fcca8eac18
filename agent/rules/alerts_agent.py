"""The agent's own health: not scraped, dropping exports, rejecting ingest, running an old config.

These have no knobs in the `alerting:` block: they watch the agent, not the application, and their
thresholds say "something is broken" rather than "something is unusual".
"""

from __future__ import annotations

from agent.rules.ruledef import alert, group, num, record, window_increase

JOB = "loom-agent"
INGEST_WINDOW = "10m"
INGEST_REJECTED_RATIO = 0.1       # a tenth of the ingest requests of an API refused...
INGEST_REJECTED_MIN = 10          # ...and at least this many in the window, so one bad client is not a page


STORE_WINDOW = "10m"              # a full store: any refused commit or rollup fold in it

REJECTED = f"instance_api:loom_agent_ingest_rejected:increase{INGEST_WINDOW}"
ACCEPTED = f"instance_api:loom_agent_ingest_accepted:increase{INGEST_WINDOW}"


def _per_api(selector: str) -> str:
    return f"sum by (job, instance, api) (\n  {window_increase(selector, INGEST_WINDOW)}\n)\n"


def agent_group() -> dict:
    rejected, accepted = REJECTED, ACCEPTED
    return group("loom-agent", [
        record(REJECTED, _per_api("loom_agent_ingest_rejected_total")),
        record(ACCEPTED, _per_api("loom_agent_ingest_batch_size_count")),
        alert("LoomAgentDown", f'up{{job="{JOB}"}} == 0 or absent(up{{job="{JOB}"}})', 60, "critical",
              "loom-agent is not being scraped",
              "Prometheus has not scraped the loom-agent job{{ with $labels.instance }} at {{ . }}{{ end }} "
              "for a minute: no probe, event or self metric from it is current."),
        alert("LoomAgentExportDropping", "increase(loom_agent_export_dropped_total[10m]) > 0", 300, "warning",
              "loom-agent is dropping OTLP {{ $labels.signal }}",
              "{{ $labels.instance }} dropped {{ $value | printf \"%.0f\" }} OTLP {{ $labels.signal }} items "
              "in the last 10 minutes: the collector is unreachable, slow or refusing them."),
        alert("LoomAgentIngestRejections",
              # an API with no accepted request at all has no batch-size series: count it as 0
              f"{rejected}\n/\n({rejected} + ({accepted} or {rejected} * 0))\n>= {num(INGEST_REJECTED_RATIO)}\n"
              f"and\n{rejected} >= {INGEST_REJECTED_MIN}\n",
              300, "warning",
              "loom-agent is rejecting {{ $labels.api }} ingest requests",
              "{{ $value | humanizePercentage }} of the {{ $labels.api }} ingest requests to {{ $labels.instance }} "
              f"were rejected in the last {INGEST_WINDOW} (alert at {num(INGEST_REJECTED_RATIO * 100)}% and "
              f"{INGEST_REJECTED_MIN} rejections). The reason label of "
              "loom_agent_ingest_rejected_total says why."),
        alert("LoomAgentStoreFull",
              f'sum by (job, instance) (increase(loom_agent_store_commits_total{{result="full"}}[{STORE_WINDOW}])) '
              f"> 0\nor\nsum by (job, instance) (increase(loom_agent_store_fold_failures_total[{STORE_WINDOW}])) > 0\n",
              0, "warning", "loom-agent's event store is full",
              "The event store of {{ $labels.instance }} refused group commits or folds of the analytics rollups "
              f"in the last {STORE_WINDOW}: it reached store.max_size_mb or its disk is full. Ingest answers 503 "
              "once the events no longer fit; before that the events are stored but the analytics lag behind "
              "them. Retention frees room."),
        alert("LoomAgentConfigReloadFailed", "loom_agent_config_last_reload_successful == 0", 300, "warning",
              "loom-agent failed to reload its configuration",
              "The last configuration reload of {{ $labels.instance }} failed; it keeps running the previous "
              "configuration. POST /-/reload returns the errors."),
    ])
