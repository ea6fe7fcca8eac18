"""Received log records: checked, refused one by one when invalid, counted by service and severity.

`loom_otlp_log_records_total{service_name, severity}`: severity is OTel's severity number bucketed to
the closed set trace (1-4), debug (5-8), info (9-12), warn (13-16), error (17-20), fatal (21-24); a
record without a number is read by its severity text (TRACE, DEBUG, INFO, WARN/WARNING, ERROR,
FATAL/CRITICAL, any case), else `unspecified`. Service names are the application's: at most
`max_services` are told apart (the span metrics' bound), later ones count as `other`, and the family
has a series limit.

A record is invalid when its trace id is neither empty nor 16 bytes, or its span id neither empty nor
8 bytes (the log data model's ids): taken out of the request and reported in partial_success.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent.metrics.store import OTHER, MetricStore
from agent.receiver.spans import drop, service_name

RECORDS = "loom_otlp_log_records"
SEVERITIES = ("trace", "debug", "info", "warn", "error", "fatal", "unspecified")
SERIES_LIMIT = 2000
_BY_NUMBER = ["unspecified"] + [SEVERITIES[(n - 1) // 4] for n in range(1, 25)]
_BY_TEXT = {"trace": "trace", "debug": "debug", "info": "info", "information": "info", "notice": "info",
            "warn": "warn", "warning": "warn", "error": "error", "err": "error", "fatal": "fatal",
            "critical": "fatal", "crit": "fatal", "emergency": "fatal", "alert": "fatal"}


def severity(number: int, text: str) -> str:
    if 0 < number <= 24:
        return _BY_NUMBER[number]
    return _BY_TEXT.get(text.strip().lower(), "unspecified") if text else "unspecified"


@dataclass(slots=True)
class LogRead:
    accepted: int = 0
    rejected: int = 0
    message: str = ""


class LogCounts:
    def __init__(self, store: MetricStore, max_services: int):
        self.records = store.counter(RECORDS, "Log records received over OTLP, by service and severity.",
                                     ("service_name", "severity"), series_limit=SERIES_LIMIT,
                                     allow={"severity": set(SEVERITIES)})
        self._store = store
        self.max_services = max_services
        self._services: set[str] = set()

    def read(self, request: ExportLogsServiceRequest) -> tuple[LogRead, dict[tuple[str, str], int]]:
        """Check every record (removing the invalid ones from `request`); the valid ones' counts, to be
        added by `count` once the request is accepted."""
        read = LogRead()
        counts: dict[tuple[str, str], int] = {}
        for resource_logs in request.resource_logs:
            service = self._bounded(service_name(resource_logs.resource))
            for scope_logs in resource_logs.scope_logs:
                records = scope_logs.log_records
                bad: list[int] = []
                for index, record in enumerate(records):
                    trace_id, span_id = record.trace_id, record.span_id
                    if (trace_id and len(trace_id) != 16) or (span_id and len(span_id) != 8):
                        bad.append(index)
                        continue
                    key = (service, severity(record.severity_number, record.severity_text))
                    counts[key] = counts.get(key, 0) + 1
                if bad:
                    drop(records, bad)
                read.rejected += len(bad)
        read.accepted = sum(counts.values())
        if read.rejected:
            read.message = f"{read.rejected} log record(s) refused: trace_id must be empty or 16 bytes, span_id " \
                           "empty or 8 bytes"
        return read, counts

    def count(self, counts: dict[tuple[str, str], int]) -> None:
        inc = self.records.inc
        for key, number in counts.items():
            inc(key, number)

    def _bounded(self, service: str) -> str:
        if service in self._services:
            return service
        if len(self._services) >= self.max_services:
            overflow = self._store.overflow
            overflow[(RECORDS, "service_name")] = overflow.get((RECORDS, "service_name"), 0) + 1
            return OTHER
        self._services.add(service)
        return service
