"""The rule files loom-agent ships (prometheus/rules/), each with the groups it holds, for a set of
thresholds. Read by the renderer (render.py) and by the alerting page (alerting_doc.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.rules.alerts_agent import agent_group
from agent.rules.alerts_events import events_group
from agent.rules.alerts_probe import probe_group, slo_group
from agent.rules.alerts_sentry import sentry_groups
from agent.rules.thresholds import Thresholds

# file name -> the groups it holds
FILES: dict[str, Callable[[Thresholds], list[dict[str, Any]]]] = {
    "loom-probes.yml": lambda t: [probe_group(t.probes)],
    "loom-slo.yml": lambda t: [slo_group(t.slo)],
    "loom-events.yml": lambda t: [events_group(t)],
    "loom-agent.yml": lambda t: [agent_group()],
    "loom-sentry.yml": sentry_groups,
}
