"""Small builders for Prometheus rule entries, so the alert modules read as a list of alerts.

Every alert gets the same shape (`for`, `labels.severity`, summary, description, runbook_url),
which is what tests/test_alert_rules.py and Alertmanager's routing and inhibition rely on.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.utils import floatToGoString

RUNBOOK_BASE = "https://github.com/loom-agent/loom-agent/blob/main/docs/runbooks.md"
SEVERITIES = ("critical", "warning", "info")

Rule = dict[str, Any]


def runbook_url(alertname: str) -> str:
    """The runbook section of an alert: its heading is the alert name, GitHub's anchor its lowercase."""
    return f"{RUNBOOK_BASE}#{alertname.lower()}"


def alert(name: str, expr: str, for_seconds: float, severity: str, summary: str, description: str,
          labels: dict[str, str] | None = None) -> Rule:
    if severity not in SEVERITIES:
        raise ValueError(f"{name}: severity {severity!r} is not one of {SEVERITIES}")
    return {
        "alert": name,
        "expr": expr,
        "for": duration(for_seconds),
        "labels": {"severity": severity, **(labels or {})},
        "annotations": {"summary": summary, "description": description, "runbook_url": runbook_url(name)},
    }


def record(name: str, expr: str) -> Rule:
    return {"record": name, "expr": expr}


def group(name: str, rules: list[Rule]) -> dict[str, Any]:
    """A rule group at Prometheus' global evaluation_interval."""
    return {"name": name, "rules": rules}


def duration(seconds: float) -> str:
    """A Prometheus duration: 3600 -> '1h', 5400 -> '1h30m', 0 -> '0s'."""
    remaining = round(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def minutes(window_minutes: int) -> str:
    return duration(window_minutes * 60)


def num(value: float) -> str:
    """A number as PromQL text: 30, 0.0144 (float noise rounded off), never an exponent."""
    value = round(float(value), 10)
    if value.is_integer():
        return str(int(value))
    return f"{value:.10f}".rstrip("0")


def le(seconds: float) -> str:
    """A histogram bucket's `le` label as the agent writes it (prometheus_client's float text: '1.0')."""
    return floatToGoString(seconds)


def window_increase(selector: str, window: str) -> str:
    """increase() over the window, counting a series born inside the window from zero.

    The agent creates an event counter at its first event, already at 1 (or at a burst's size):
    increase() cannot see that first step, so a burst of failed logins arriving in one scrape
    would count 0. A series with no sample a window ago is new, and all of its value is the
    increase; the others take increase().
    """
    return f"({selector} unless {selector} offset {window}) or increase({selector}[{window}])"
