"""The Realtime Connections dashboard: the realtime channel as the clients report it (connection
events: open connections, connect time, latency, disconnects, errors, fallbacks, messages) next to
the agent's own WebSocket probe of it."""

from __future__ import annotations

from typing import Any

from agent.dashboards.panels import Row, bars, dashboard, pie, q, stat, timeseries
from agent.dashboards.product import INSTANCE_VARIABLE
from agent.dashboards.promql import per_minute, quantile, rate, ratio, sel, share, total
from agent.rules.thresholds import Thresholds

CONNECTION_SPANS = 'kind="connection"'


def realtime_connections(_thresholds: Thresholds) -> dict[str, Any]:
    connections = Row("Connections", [
        stat("Open connections", "Realtime connections open now (attempted or established, not yet closed), "
             "by transport: the agent's connection spans.", "short",
             q(f"sum by (transport) ({sel('loom_realtime_connections_open')})", "{{transport}}", instant=True),
             width=8),
        stat("Connection success", "Established / attempted connections over the range.", "percentunit",
             q(ratio(total("loom_realtime_connect_duration_seconds_count"),
                     total("loom_realtime_connection_attempts_total")), instant=True),
             width=4, decimals=1, graph=False, steps=[("red", None), ("orange", 0.9), ("green", 0.98)]),
        stat("Clean disconnects", "Disconnects with an orderly close / all disconnects over the range.",
             "percentunit", q(ratio(total("loom_realtime_disconnects_total", 'clean="true"'),
                                    total("loom_realtime_disconnects_total")), instant=True),
             width=4, decimals=1, graph=False, steps=[("red", None), ("orange", 0.8), ("green", 0.95)]),
        stat("Polling fallbacks", "Clients that fell back to polling over the range.", "short",
             q(total("loom_realtime_polling_fallbacks_total"), instant=True), width=4, graph=False),
        stat("Healthy checks", "Connection health checks that passed / all, over the range.", "percentunit",
             q(ratio(total("loom_realtime_health_checks_total", 'healthy="true"'),
                     total("loom_realtime_health_checks_total")), instant=True), width=4, decimals=1, graph=False),
        timeseries("Open connections over time", "Realtime connections open, by transport.", "short",
                   q(f"sum by (transport) ({sel('loom_realtime_connections_open')})", "{{transport}}"),
                   width=12, stack=True),
        timeseries("Attempts and disconnects", "Connection attempts and disconnects per minute.", "cpm",
                   q(per_minute("loom_realtime_connection_attempts_total", by=("transport",)),
                     "attempts {{transport}}"),
                   q(per_minute("loom_realtime_disconnects_total", by=("clean",)), "disconnects clean={{clean}}"),
                   width=12),
    ])
    latency = Row("Latency", [
        timeseries("Connect time", "Median and 95th percentile time to establish a connection, by transport.",
                   "s", *[q(quantile(p, "loom_realtime_connect_duration_seconds", by=("transport",)),
                            f"p{int(p * 100)} {{{{transport}}}}") for p in (0.5, 0.95)],
                   width=8),
        timeseries("Connection latency", "Median and 95th percentile round trip reported by the clients.", "s",
                   *[q(quantile(p, "loom_realtime_connection_latency_seconds", by=("transport",)),
                       f"p{int(p * 100)} {{{{transport}}}}") for p in (0.5, 0.95)],
                   width=8),
        timeseries("Probe round trip", "The agent's own WebSocket probe of the realtime channel "
                   "(probe_websocket_round_trip_seconds, targets labelled service=realtime).", "s",
                   q(sel("probe_websocket_round_trip_seconds", 'service=~"realtime.*"'), "{{target}}"), width=8),
    ])
    problems = Row("Errors and fallbacks", [
        bars("Errors by code", "Connection errors over the range, by transport and error code.", "short",
             q(total("loom_realtime_connection_errors_total", by=("transport", "code")), "{{transport}} {{code}}",
               instant=True), width=8),
        timeseries("Error rate", "Connection errors / attempts, by transport.", "percentunit",
                   q(ratio(rate("loom_realtime_connection_errors_total", by=("transport",)),
                           rate("loom_realtime_connection_attempts_total", by=("transport",))), "{{transport}}"),
                   width=8, threshold_line=[("green", None), ("red", 0.05)]),
        bars("Transport changes", "Fallbacks to polling and upgrades over the range, by transport.", "short",
             q(total("loom_realtime_polling_fallbacks_total", by=("from_transport",)),
               "fallback from {{from_transport}}", instant=True),
             q(total("loom_realtime_upgrades_total", by=("from_transport", "to_transport")),
               "{{from_transport}} -> {{to_transport}}", instant=True), width=8),
        timeseries("Unhealthy checks", "Share of connection health checks that failed.", "percentunit",
                   q(share("loom_realtime_health_checks_total", 'healthy="false"'), "unhealthy"), width=12),
        timeseries("Connection spans ended by timeout", "Connections whose span ended without a disconnect "
                   "event (idle for events.spans.idle_timeout) or was evicted, per minute.", "cpm",
                   q(per_minute("loom_agent_event_spans_timed_out_total", CONNECTION_SPANS), "timed out"),
                   q(per_minute("loom_agent_event_spans_evicted_total", CONNECTION_SPANS), "evicted"), width=12),
    ])
    messages = Row("Messages", [
        timeseries("Messages", "Realtime messages per second, by direction.", "cps",
                   q(rate("loom_realtime_messages_total", by=("direction",)), "{{direction}}"), width=8, stack=True),
        timeseries("Message bytes", "Realtime message bytes per second, by direction.", "Bps",
                   q(rate("loom_realtime_message_bytes_total", by=("direction",)), "{{direction}}"), width=8),
        pie("Message types", "Messages over the range by application message type.", "short",
            q(total("loom_realtime_messages_total", by=("type",)), "{{type}}", instant=True)),
    ])
    return dashboard(
        "loom-realtime-connections", "Realtime Connections",
        "The realtime channel: connections open, connect time, latency, disconnects, errors, polling fallbacks "
        "and messages, from the clients' connection events, beside the agent's WebSocket probe.",
        [INSTANCE_VARIABLE], [connections, latency, problems, messages], tags=("realtime",))
