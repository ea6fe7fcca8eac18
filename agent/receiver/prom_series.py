"""OTLP metric points -> Prometheus series on /metrics (first cut of the interface; the conversion follows).

`OtlpMetricSeries.consume(request)` takes one ExportMetricsServiceRequest and answers how many data
points it accepted and refused (`Consumed`: the receiver turns `rejected` and `message` into OTLP's
partial_success).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from prometheus_client.metrics_core import Metric as PromMetric


@dataclass(frozen=True, slots=True)
class Consumed:
    """What one request's data points came to: `rejected` points are OTLP's rejected_data_points, `message`
    says why (empty when none was refused)."""

    accepted: int
    rejected: int
    message: str


class OtlpMetricSeries:
    def __init__(self, *, max_series: int, stale_after: float, clock: Callable[[], float] = time.monotonic):
        self.max_series, self.stale_after, self._clock = max_series, stale_after, clock

    def consume(self, request: ExportMetricsServiceRequest) -> Consumed:
        points = sum(1 for rm in request.resource_metrics for sm in rm.scope_metrics for _ in sm.metrics)
        return Consumed(points, 0, "")

    def reconfigure(self, *, max_series: int, stale_after: float) -> None:
        self.max_series, self.stale_after = max_series, stale_after

    def collect(self) -> Iterator[PromMetric]:
        return iter(())
