"""The alerting thresholds: the one place both the in-agent detectors and the Prometheus rules read.

They come from the `alerting:` block of config.yaml, one sub-block per detection (snake_case keys;
the documentation's `windowMinutes`, `dropThresholdPercent` and `spikeThreshold` are
`window_minutes`, `drop_threshold_percent` and `spike_threshold`). Keeping one source means a
threshold changed in the config moves the detector and the rendered alert rule together.

Severity rule, shared by detectors and alert rules: a detection at its threshold is `warning`; at
twice the threshold's deviation (twice the drop percent, the spike count, the failure rate) it is
`critical`. A drop threshold above 50% therefore never reaches `critical`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from agent.config.node import Node
from agent.events.metric_table import API_LATENCY

CRITICAL_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class EngagementDrop:
    """Events accepted in the window against the previous window of the same length."""

    window_minutes: int = 60
    drop_threshold_percent: float = 30.0
    min_baseline: int = 20


@dataclass(frozen=True, slots=True)
class AuthFailureSpike:
    """Failed logins (login_attempt with result=failure) in the window."""

    window_minutes: int = 15
    spike_threshold: int = 10


@dataclass(frozen=True, slots=True)
class MfaAnomalies:
    """Failed MFA verifications as a share of all verifications in the window."""

    window_minutes: int = 15
    failure_rate_percent: float = 30.0
    min_attempts: int = 10


@dataclass(frozen=True, slots=True)
class NotificationFailures:
    """Delivery failures as a share of (delivered + failures) in the window."""

    window_minutes: int = 15
    failure_rate_percent: float = 10.0
    min_attempts: int = 20


@dataclass(frozen=True, slots=True)
class PerformanceDegradation:
    """Share of API requests slower than slow_request_ms in the window."""

    window_minutes: int = 15
    slow_request_ms: float = 1000.0
    slow_percent: float = 10.0
    min_requests: int = 20


@dataclass(frozen=True, slots=True)
class FunnelDrop:
    """Completed signup steps in the window against the previous window."""

    window_minutes: int = 60
    drop_threshold_percent: float = 30.0
    min_baseline: int = 10


@dataclass(frozen=True, slots=True)
class Probes:
    """Probe alerts: down, slow, certificate expiry."""

    down_for_seconds: int = 60
    latency_threshold_seconds: float = 1.0
    latency_for_seconds: int = 300
    cert_warning_days: int = 14
    cert_critical_days: int = 3


@dataclass(frozen=True, slots=True)
class Slo:
    """The uptime objective the burn-rate alerts spend the error budget of."""

    uptime_objective: float = 0.999


@dataclass(frozen=True, slots=True)
class ReleaseHealth:
    """Crash-free sessions of each release and environment (Sentry session items) over the window: below
    `crash_free_sessions`, with at least `min_sessions` started, is a warning (the crash rate at the
    threshold's); at twice the threshold's crash rate it is critical."""

    window_minutes: int = 60
    crash_free_sessions: float = 0.98
    min_sessions: int = 50


@dataclass(frozen=True, slots=True)
class CronMonitors:
    """Cron monitors (Sentry check_in items): a run is missed when no check-in came `missed_grace_seconds`
    after the monitor's next expected check-in plus its own margin; failed when the last finished
    check-in (error or timeout) is newer than the last ok one, for `failed_for_seconds`."""

    missed_grace_seconds: int = 60
    failed_for_seconds: int = 0


@dataclass(frozen=True, slots=True)
class Thresholds:
    engagement_drop: EngagementDrop = field(default_factory=EngagementDrop)
    auth_failure_spike: AuthFailureSpike = field(default_factory=AuthFailureSpike)
    mfa_anomalies: MfaAnomalies = field(default_factory=MfaAnomalies)
    notification_failures: NotificationFailures = field(default_factory=NotificationFailures)
    performance_degradation: PerformanceDegradation = field(default_factory=PerformanceDegradation)
    funnel_drop: FunnelDrop = field(default_factory=FunnelDrop)
    probes: Probes = field(default_factory=Probes)
    slo: Slo = field(default_factory=Slo)
    release_health: ReleaseHealth = field(default_factory=ReleaseHealth)
    cron_monitors: CronMonitors = field(default_factory=CronMonitors)


def severity(deviation: float, threshold: float) -> str | None:
    """`critical` at twice the threshold, `warning` at the threshold, None below it."""
    if deviation >= threshold * CRITICAL_FACTOR:
        return "critical"
    if deviation >= threshold:
        return "warning"
    return None


# (minimum, maximum) per field; a field not listed takes any value of its type at or above 1
_BOUNDS: dict[str, tuple[float, float | None]] = {
    "window_minutes": (1, 1440),
    "drop_threshold_percent": (1, 100),
    "failure_rate_percent": (1, 100),
    "slow_percent": (1, 100),
    "slow_request_ms": (1, None),
    "down_for_seconds": (0, 86400),
    "latency_for_seconds": (0, 86400),
    "latency_threshold_seconds": (0.001, None),
    "cert_critical_days": (0, None),
    "uptime_objective": (0.5, 1),
    "crash_free_sessions": (0.5, 1),
    "missed_grace_seconds": (0, 86400),
    "failed_for_seconds": (0, 86400),
}


def parse_thresholds(node: Node) -> Thresholds:
    """The `alerting:` block -> Thresholds; every mistake is an error naming its key."""
    blocks = {f.name: _parse_block(node.child(f.name), _default_block(f)) for f in dataclasses.fields(Thresholds)}
    node.finish()
    return Thresholds(**blocks)


def _default_block(f: dataclasses.Field[Any]) -> Any:
    """The default of one block of Thresholds: each has a default_factory."""
    if f.default_factory is dataclasses.MISSING:
        raise TypeError(f"Thresholds.{f.name} has no default_factory")
    return f.default_factory()


def _parse_block(node: Node, default: Any) -> Any:
    _refuse_camel_case(node, default)
    # str(): the annotation as written, a string already (postponed annotations)
    values = {f.name: _parse_field(node, f.name, str(f.type), getattr(default, f.name))
              for f in dataclasses.fields(default)}
    node.finish()
    block = type(default)(**values)
    _check_block(node, block)
    return block


def _parse_field(node: Node, key: str, kind: str, default: Any) -> Any:
    low, high = _BOUNDS.get(key, (1, None))
    if kind == "int":
        return node.int(key, default, minimum=int(low), maximum=None if high is None else int(high))
    return node.number(key, default, minimum=low, maximum=high)


def _check_block(node: Node, block: Any) -> None:
    """The checks that span fields or need more than a bound."""
    if isinstance(block, Slo) and block.uptime_objective >= 1:
        node.error("must be less than 1 (an objective of 1 leaves no error budget)", "uptime_objective")
    if isinstance(block, ReleaseHealth) and block.crash_free_sessions >= 1:
        node.error("must be less than 1 (at 1 every crash alerts: there is no crash rate to compare)",
                   "crash_free_sessions")
    if isinstance(block, Probes) and block.cert_critical_days >= block.cert_warning_days:
        node.error(f"must be less than cert_warning_days ({block.cert_warning_days})", "cert_critical_days")
    if isinstance(block, PerformanceDegradation) and block.slow_request_ms / 1000 not in API_LATENCY:
        bounds = ", ".join(f"{b * 1000:g}" for b in API_LATENCY)
        node.error(f"must be a bucket bound of loom_api_request_duration_seconds in ms ({bounds}) "
                   f"so that Prometheus can count the slow requests, got {block.slow_request_ms:g}",
                   "slow_request_ms")


def _refuse_camel_case(node: Node, default: Any) -> None:
    """`windowMinutes:` (the documentation's spelling) is named with its config key, not just 'unknown'."""
    names = {f.name for f in dataclasses.fields(default)}
    for key in list(node.data):
        snake = re.sub(r"(?<!^)([A-Z])", r"_\1", str(key)).lower()
        if snake != key and snake in names:
            node.raw(key)
            node.error(f"use {snake} (the documentation's {key} is spelled in snake_case here)", key)
