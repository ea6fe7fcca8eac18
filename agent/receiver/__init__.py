"""The OTLP receiver: the application's OpenTelemetry SDKs send traces, metrics and logs to the agent over
OTLP/HTTP (its own listener, protobuf and JSON, gzip) and OTLP/gRPC, as they would to a collector
sidecar. Traces and logs are forwarded through the agent's own OTLP export (agent/otlp) without being
re-encoded per item; spans become span metrics (loom_span_*), log records are counted by service and
severity, and metric points become Prometheus series (prom_series.py). docs/otlp-receiver.md.

May import: agent.otlp, agent.metrics, agent.config.node. Never agent.api or agent.app.
"""
