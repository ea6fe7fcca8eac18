"""loom-agent: a sidecar observability agent (probes, product events, /metrics, OTLP)."""

__version__ = "0.1.0"
