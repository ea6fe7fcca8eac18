"""The status page's data: one `StatusReport`, built from what the agent already holds in memory
(no query here: the 24 h uptime arrives already cached), rendered as HTML by page.py and as JSON by
`/api/status` (`to_json`, camelCase like the rest of the API).

Targets are listed problems first (down, then unknown, then up), by name within each state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.analytics.queries import Uptime
from agent.collectors.base import ProbeResult, ProbeTarget
from agent.rules.anomaly_metrics import AnomalyMonitor
from agent.rules.detectors import DETECTORS, SEVERITIES, iso_time
from agent.status.history import Failure, ProbeHistory

STATES = ("down", "unknown", "up")       # the listing order
WINDOW_24H, WINDOW_SINCE_START = "24h", "since_start"


@dataclass(frozen=True, slots=True)
class TargetUptime:
    window: str                  # "24h" (the store's probe_rollups) or "since_start" (this process)
    probes: int
    successes: int

    @property
    def ratio(self) -> float | None:
        return self.successes / self.probes if self.probes else None


@dataclass(frozen=True, slots=True)
class TargetStatus:
    name: str
    kind: str
    endpoint: str
    labels: Mapping[str, str]
    state: str                   # up | down | unknown (not probed yet)
    last_latency: float | None   # seconds, of the last probe
    last_probe_at: float | None  # unix seconds the last probe ended
    uptime: TargetUptime
    last_failure: Failure | None


@dataclass(frozen=True, slots=True)
class ActiveAnomaly:
    detector: str
    severity: str
    window_minutes: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    version: str
    rendered_at: float
    since: float                       # when this process started counting probes
    targets: list[TargetStatus]
    failures: list[Failure]            # newest first
    anomalies: list[ActiveAnomaly]
    anomalies_evaluated_at: float | None
    uptime_source: str                 # "store" or "memory"
    uptime_error: str | None           # the store's error when its uptime could not be read

    def counts(self) -> dict[str, int]:
        found = {state: 0 for state in STATES}
        for target in self.targets:
            found[target.state] += 1
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "renderedAt": iso_time(self.rendered_at), "since": iso_time(self.since),
            "summary": self.counts(),
            "uptimeSource": self.uptime_source, "uptimeError": self.uptime_error,
            "targets": [_target_json(t) for t in self.targets],
            "recentFailures": [_failure_json(f) for f in self.failures],
            "anomalies": {"evaluatedAt": _iso(self.anomalies_evaluated_at),
                          "active": [{"detector": a.detector, "severity": a.severity,
                                      "windowMinutes": a.window_minutes} for a in self.anomalies]},
        }


def build_report(*, version: str, now: float, last_results: Mapping[str, tuple[ProbeTarget, ProbeResult | None, float]],
                 history: ProbeHistory, uptime_rows: Mapping[str, Uptime] | None, store_configured: bool,
                 uptime_error: str | None, monitor: AnomalyMonitor) -> StatusReport:
    """The report of this moment. `uptime_rows` is the cached 24 h per target (None: no store, or not
    read yet); a target without a row there shows its counts since start instead."""
    targets = [_target_status(target, result, when, history, uptime_rows)
               for target, result, when in last_results.values()]
    targets.sort(key=lambda t: (STATES.index(t.state), t.name))
    return StatusReport(version=version, rendered_at=now, since=history.since, targets=targets,
                        failures=history.recent_failures(), anomalies=active_anomalies(monitor),
                        anomalies_evaluated_at=monitor.evaluated_at,
                        uptime_source="store" if store_configured else "memory", uptime_error=uptime_error)


def _target_status(target: ProbeTarget, result: ProbeResult | None, when: float, history: ProbeHistory,
                   uptime_rows: Mapping[str, Uptime] | None) -> TargetStatus:
    row = uptime_rows.get(target.name) if uptime_rows is not None else None
    if row is not None and row.probes:
        uptime = TargetUptime(WINDOW_24H, row.probes, row.successes)
    else:
        uptime = TargetUptime(WINDOW_SINCE_START, *history.counts(target.name))
    if result is None:
        state, latency, at = "unknown", None, None
    else:
        state, latency, at = ("up" if result.success else "down"), result.duration_seconds, when
    return TargetStatus(name=target.name, kind=target.kind, endpoint=endpoint(target), labels=target.labels,
                        state=state, last_latency=latency, last_probe_at=at, uptime=uptime,
                        last_failure=history.last_failure(target.name))


def endpoint(target: ProbeTarget) -> str:
    """What the target probes: its URL, its host:port, or for DNS without a server the system resolver."""
    return target.url or target.address or "system resolver"


def active_anomalies(monitor: AnomalyMonitor) -> list[ActiveAnomaly]:
    """The (detector, severity) pairs the monitor's last evaluation found, critical first."""
    found = [ActiveAnomaly(detector, severity, getattr(monitor.thresholds, detector).window_minutes)
             for detector, severity in monitor.active if detector in DETECTORS]
    found.sort(key=lambda a: (-SEVERITIES.index(a.severity) if a.severity in SEVERITIES else 0, a.detector))
    return found


def _target_json(t: TargetStatus) -> dict[str, Any]:
    return {"name": t.name, "kind": t.kind, "endpoint": t.endpoint, "labels": dict(t.labels), "state": t.state,
            "lastLatencySeconds": _round(t.last_latency), "lastProbeAt": _iso(t.last_probe_at),
            "uptime": {"window": t.uptime.window, "probes": t.uptime.probes, "successes": t.uptime.successes,
                       "ratio": _round(t.uptime.ratio)},
            "lastFailure": None if t.last_failure is None else _failure_json(t.last_failure)}


def _failure_json(f: Failure) -> dict[str, Any]:
    return {"target": f.target, "at": iso_time(f.at), "reason": f.reason, "detail": f.detail}


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso_time(timestamp)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
