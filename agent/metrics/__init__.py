"""Prometheus-side metrics: the event metric store and its exposition, the probe results in
blackbox_exporter's names, the agent's own `loom_agent_*` metrics and `loom_release_info`.

May import: agent.collectors.base (probe results) and agent.collectors.kinds (the gauges each kind
carries), agent.config. Never agent.app or agent.api.
"""
