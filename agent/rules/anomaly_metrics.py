"""The anomaly state the agent keeps, and `loom_anomaly_active{detector,severity}` that exposes it.

`AnomalyMonitor` owns the event windows and the thresholds, and remembers which (detector, severity)
the last evaluation found; it is re-evaluated on a timer (agent/api/anomalies.py) so the gauge is
never older than one interval, and a scrape only reads that remembered set (no counting at scrape
time, no work on a scrape that runs in another thread).

The gauge always carries every detector x {warning, critical}, 0 or 1, so an alert rule can use
`loom_anomaly_active == 1` and a dashboard shows the quiet detectors too. A detection has one
severity at a time: a critical engagement drop is `{severity="critical"} 1`, `{severity="warning"} 0`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.rules.detectors import (
    DETECTORS,
    SEVERITIES,
    Anomaly,
    detector_window_minutes,
    run_anomaly_detection,
)
from agent.rules.thresholds import Thresholds
from agent.rules.windows import EventWindows

# how often the in-agent detectors run (docs/alerting.md quotes it)
EVALUATION_INTERVAL_SECONDS = 30.0
log = logging.getLogger("agent.rules")


class AnomalyMonitor:
    """The windows the ingest path feeds, the thresholds, and the latest evaluation."""

    def __init__(self, thresholds: Thresholds, clock: Callable[[], float] = time.time):
        self.thresholds = thresholds
        self.clock = clock
        self.windows = EventWindows(detector_window_minutes(thresholds), clock)
        self.active: frozenset[tuple[str, str]] = frozenset()
        self.evaluated_at: float | None = None
        self.interval = EVALUATION_INTERVAL_SECONDS    # of the background evaluation

    def evaluate(self, now: float | None = None) -> list[Anomaly]:
        """Run every detection with the configured thresholds and remember what is active."""
        now = self.clock() if now is None else now
        found = run_anomaly_detection(self.windows, self.thresholds, now)
        self.active = frozenset((anomaly.detector, anomaly.severity) for anomaly in found)
        self.evaluated_at = now
        return found

    def prepare(self, thresholds: Thresholds) -> Callable[[], None]:
        """Reloadable: new thresholds apply at once."""
        return lambda: self.reconfigure(thresholds)

    def reconfigure(self, thresholds: Thresholds) -> None:
        """New thresholds (a config reload): the ring follows the largest window, keeping its history."""
        minutes = detector_window_minutes(thresholds)
        if minutes != self.windows.max_window_minutes:
            self.windows.resize(minutes)
        self.thresholds = thresholds
        try:                    # a reload's commit must not fail half-way: the next evaluation tick retries
            self.evaluate()
        except Exception:
            log.exception("anomaly evaluation failed")

    async def run(self, interval: float | None = None) -> None:
        """Evaluate now and every `interval` seconds (default: `self.interval`) until cancelled; a failing
        evaluation is logged and the next one still runs."""
        interval = self.interval if interval is None else interval
        while True:
            try:
                self.evaluate()
            except Exception:        # an agent bug: keep the last state, say so, try again next time
                log.exception("anomaly evaluation failed")
            await asyncio.sleep(interval)


class AnomalyActiveCollector:
    """prometheus_client custom collector: fresh families from the monitor's remembered state."""

    def __init__(self, monitor: AnomalyMonitor):
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        active = self._monitor.active
        family = GaugeMetricFamily("loom_anomaly_active",
                                   "1 while the in-agent detector reports an anomaly at this severity, else 0.",
                                   labels=["detector", "severity"])
        for detector in DETECTORS:
            for level in SEVERITIES:
                family.add_metric([detector, level], 1.0 if (detector, level) in active else 0.0)
        yield family
