"""OpenTelemetry export: the tracer provider and resource, the bounded span queue, the metric snapshot
model, the direct span encoder, the sender (retry, backoff) and the `telemetry:` config block; and the
export of log records the agent relays (logs.py: the record model and a bounded queue; log_encoding.py);
the application's spans and log records the OTLP receiver forwards, as encoded bytes (forward.py).

May import: agent.config.node, agent.metrics. Never agent.app or agent.api.
"""
