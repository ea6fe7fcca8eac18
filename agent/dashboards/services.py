"""The Services (OpenTelemetry) dashboard: RED of the application's own spans, which its OpenTelemetry SDK
sends to the agent's OTLP receiver (docs/otlp-receiver.md): rate, errors and duration by service and
span name from loom_span_calls_total and loom_span_duration_seconds (the spanmetrics connector's
series), the log records by severity, and the receiver's own health (items received, refused,
forwarded)."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, dashboard, q, query_variable, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE
from agent.dashboards.promql import quantile, rate, ratio
from agent.rules.thresholds import Thresholds

CALLS = "loom_span_calls_total"
DURATION = "loom_span_duration_seconds"
SERVICE = 'service_name=~"$service"'
# RED is read on the spans that serve a request: a service's SERVER (and CONSUMER) spans; its CLIENT spans
# are the time it waits for others
ENTRY = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"'
SERVICE_VARIABLE = query_variable("service", "Service", f"label_values({CALLS}, service_name)",
                                  "A service whose OpenTelemetry SDK sends spans to the agent (service.name)")
BY = ("service_name", "span_name")
LEGEND = "{{service_name}} {{span_name}}"


def services(t: Thresholds) -> dict[str, Any]:
    red = Row("Requests, errors and duration (spans the services' SDKs send)", [
        timeseries("Request rate", "Server and consumer spans per second, by service and span name "
                   "(loom_span_calls_total).", "reqps", q(rate(CALLS, SERVICE, ENTRY, by=BY), LEGEND), width=8),
        timeseries("Error ratio", "Share of the server and consumer spans that ended with status ERROR "
                   "(status_code=\"STATUS_CODE_ERROR\"), by service and span name.", "percentunit",
                   q(ratio(rate(CALLS, SERVICE, ENTRY, 'status_code="STATUS_CODE_ERROR"', by=BY),
                           rate(CALLS, SERVICE, ENTRY, by=BY)), LEGEND), width=8, maximum=1),
        timeseries("Errors", "Server and consumer spans with status ERROR per second, by service and span name.",
                   "reqps", q(rate(CALLS, SERVICE, ENTRY, 'status_code="STATUS_CODE_ERROR"', by=BY), LEGEND),
                   width=8),
        timeseries("Duration p50", "Median duration of the server and consumer spans (loom_span_duration_seconds), "
                   "by service and span name.", "s", q(quantile(0.5, DURATION, SERVICE, ENTRY, by=BY), LEGEND),
                   width=8),
        timeseries("Duration p95", "95th percentile of the server and consumer spans' duration.", "s",
                   q(quantile(0.95, DURATION, SERVICE, ENTRY, by=BY), LEGEND), width=8),
        timeseries("Duration p99", "99th percentile of the server and consumer spans' duration.", "s",
                   q(quantile(0.99, DURATION, SERVICE, ENTRY, by=BY), LEGEND), width=8),
        timeseries("Calls by kind", "Every span per second by service and span kind (client spans: the calls the "
                   "services make to databases and other services).", "ops",
                   q(rate(CALLS, SERVICE, by=("service_name", "span_kind")), "{{service_name}} {{span_kind}}"),
                   width=12),
        timeseries("Log records by severity", "Log records the services send over OTLP per second, by severity "
                   "(loom_otlp_log_records_total).", "ops",
                   q(rate("loom_otlp_log_records_total", SERVICE, by=("service_name", "severity")),
                     "{{service_name}} {{severity}}"), width=12, stack=True),
    ])
    receiver = Row("The OTLP receiver", [
        timeseries("Items received", "Spans, metric points and log records received per second, by transport "
                   "(loom_agent_otlp_received_*_total).", "ops",
                   q(rate("loom_agent_otlp_received_spans_total", by=("transport",)), "spans {{transport}}"),
                   q(rate("loom_agent_otlp_received_metric_points_total", by=("transport",)),
                     "metric points {{transport}}"),
                   q(rate("loom_agent_otlp_received_log_records_total", by=("transport",)),
                     "log records {{transport}}"), width=8),
        timeseries("Refused", "Requests refused whole (by reason: unauthorized, malformed, too_large, queue_full, "
                   "...) and items refused inside accepted requests (partial success), per second.", "ops",
                   q(rate("loom_agent_otlp_refused_requests_total", by=("signal", "reason")),
                     "requests {{signal}} {{reason}}"),
                   q(rate("loom_agent_otlp_refused_total", by=("signal", "reason")), "items {{signal}} {{reason}}"),
                   width=8),
        timeseries("Forwarding", "Spans and log records the agent's OTLP export delivered, dropped, or did not "
                   "forward for lack of a destination, per second.", "ops",
                   q(rate("loom_agent_exported_total", 'signal=~"traces|logs"', by=("signal",)), "exported {{signal}}"),
                   q(rate("loom_agent_export_dropped_total", 'signal=~"traces|logs"', by=("signal",)),
                     "dropped {{signal}}"),
                   q(rate("loom_agent_otlp_not_forwarded_total", by=("signal",)), "not forwarded {{signal}}"),
                   width=8),
    ])
    return dashboard("loom-services-otel", "Services (OpenTelemetry)",
                     "RED of the services that send their OpenTelemetry spans to the agent's OTLP receiver (span "
                     "metrics as the collector's spanmetrics connector makes them), their log records, and the "
                     "receiver's health (docs/otlp-receiver.md).", [INSTANCE_VARIABLE, SERVICE_VARIABLE],
                     [red, receiver], tags=("services",))
