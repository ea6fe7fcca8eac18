"""The application's Sentry log records as OTLP log records: `log` items (`{"items": [{timestamp,
level, body, trace_id, span_id, severity_number, attributes: {key: {value, type}}}]}`, what
`sentry_sdk.logger.*` and `Sentry.logger.*` send) and `otel_log` items (one OTLP JSON record,
`timeUnixNano`, `severityNumber`, `severityText`, `body`, `attributes`, `traceId`, `spanId`, or the
same `items` container). They are counted by level in any case (agent/sentry/items.py); this module
exports them when `telemetry.otlp.export_logs` is on and an OTLP endpoint is set.

Each record becomes: the time (now when it has none; `observed` is when the agent read it); the
severity number (the record's own when it is 1-24, else the level's: trace 1, debug 5, info 9,
warn 13, error 17, fatal 21) and its level as severity text; the body, through the privacy rules
(`Privacy.text`: e-mails pseudonymized, card numbers removed), cut at 16 KiB; the trace and span
ids, so the record sits on its trace; the attributes through agent/sentry/otel.py `scrubbed` (no
user PII, the privacy rules). `sentry.release`, `sentry.environment` and `sentry.sdk.*` name the
resource, as a span's do; the SDK's copies of the severity (`sentry.severity_*`) are dropped.
A record that is not an object is left out; the item is refused (`ItemError`) only for its shape.

Why a bounded queue and no store: a log line is worth a collector's time, not the agent's disk; a
full queue drops new records, counted in loom_agent_export_dropped_total{signal="logs"}.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from agent.events.privacy import Privacy
from agent.otlp.logs import LogQueue, LogRecord
from agent.sentry.items import LEVELS, _records, level_label
from agent.sentry.otel import (
    Resources,
    attribute_value,
    otlp_attributes,
    otlp_value,
    scrub_text,
    scrubbed,
    span_id,
    timestamp_ns,
    trace_id,
    typed,
    unix_nanos,
)

MAX_BODY = 16 * 1024
SEVERITY = {level: 1 + 4 * index for index, level in enumerate(LEVELS)}      # trace 1 ... fatal 21
_RESOURCE_KEYS = ("sentry.release", "sentry.environment", "sentry.sdk.name", "sentry.sdk.version")
_DROPPED = ("sentry.severity_number", "sentry.severity_text")


def _severity(record: dict[str, Any]) -> tuple[int, str]:
    number = record.get("severity_number", record.get("severityNumber"))
    raw_level = record.get("level", record.get("severityText", record.get("severity_text")))
    level = level_label(raw_level)
    if type(number) is int and 1 <= number <= 24:
        if raw_level is None:
            level = LEVELS[(number - 1) // 4]
        return number, level
    return SEVERITY.get(level, 0), level


def _body(raw: Any) -> str:
    raw = otlp_value(raw)
    if type(raw) is not str:
        raw = "" if raw is None else attribute_value(raw)
        raw = raw if type(raw) is str else orjson.dumps(raw).decode()
    return raw[:MAX_BODY]


class SentryLogs:
    """Turns log items into LogRecords for the OTLP log queue (None: logs are not exported)."""

    def __init__(self, privacy: Privacy | None, queue: LogQueue | None, clock: Any = time.time_ns):
        self.privacy, self.queue, self.clock = privacy, queue, clock
        self.resources = Resources(privacy)

    @property
    def exporting(self) -> bool:
        return self.queue is not None

    def records(self, payload: Any, item_type: str = "log") -> list[LogRecord]:
        """An item's records, scrubbed; raises ItemError for an item of the wrong shape."""
        if item_type == "otel_log" and type(payload) is dict and "items" not in payload:
            raws = [payload]
        else:
            raws = _records(payload, item_type)
        now = self.clock()
        out = []
        for raw in raws:
            if type(raw) is dict:
                out.append(self._record(raw, now))
        return out

    def export(self, payload: Any, item_type: str = "log") -> int:
        """Queue an item's records; returns how many were queued. Raises ItemError."""
        if self.queue is None:
            return 0
        records = self.records(payload, item_type)
        return len(records) - self.queue.put(records)

    def _record(self, raw: dict[str, Any], now: int) -> LogRecord:
        attributes = raw.get("attributes")
        attributes = otlp_attributes(attributes) if type(attributes) is list else \
            {key: typed(value) for key, value in attributes.items()} if type(attributes) is dict else {}
        named = [attributes.pop(key, None) for key in _RESOURCE_KEYS]
        for key in _DROPPED:
            attributes.pop(key, None)
        resource, scope = self.resources.get(*named)
        number, level = _severity(raw)
        at = timestamp_ns(raw.get("timestamp")) if "timestamp" in raw else \
            unix_nanos(raw.get("timeUnixNano", raw.get("time_unix_nano")))
        tid = trace_id(raw.get("trace_id", raw.get("traceId")))
        sid = span_id(raw.get("span_id", raw.get("spanId"))) if tid is not None else None
        return LogRecord(resource=resource, scope=scope, time_ns=at or now, severity_number=number,
                         severity_text=level, body=scrub_text(_body(raw.get("body")), self.privacy),
                         attributes=scrubbed(attributes, self.privacy), trace_id=tid or 0, span_id=sid or 0,
                         observed_ns=now)

