"""OTLP log encoding written straight to protobuf wire format: the body of an HTTP/protobuf logs export.

Why direct, like agent/otlp/span_encoding.py, rather than the SDK's logs pipeline
(`opentelemetry.sdk._logs` + `encode_logs`): the records the agent exports are not its own logging
calls but the application's Sentry log records, relayed; the SDK's logs API is still underscored
(private, changed shape in 1.3x: LogData -> ReadableLogRecord) and would cost an SDK object per
record plus a protobuf object per attribute. This module writes the ExportLogsServiceRequest bytes
from plain `LogRecord`s (agent/otlp/logs.py) with the span encoder's attribute and AnyValue writers,
its field tags read from the installed opentelemetry-proto descriptors (a type change stops the
import), and is tested for message equality by parsing the bytes back with the generated classes
(tests/test_sentry_telemetry.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogRecordPb, ResourceLogs, ScopeLogs

from agent.otlp.span_encoding import (
    _delimited,
    _fixed32,
    _fixed64,
    _resource_spans,
    _tag,
    any_value,
    attributes,
    varint,
)

_REQUEST_RESOURCE_LOGS = _tag(ExportLogsServiceRequest, "resource_logs", FD.TYPE_MESSAGE)
_RL_RESOURCE = _tag(ResourceLogs, "resource", FD.TYPE_MESSAGE)
_RL_SCOPE_LOGS = _tag(ResourceLogs, "scope_logs", FD.TYPE_MESSAGE)
_RL_SCHEMA_URL = _tag(ResourceLogs, "schema_url", FD.TYPE_STRING)
_SL_SCOPE = _tag(ScopeLogs, "scope", FD.TYPE_MESSAGE)
_SL_RECORDS = _tag(ScopeLogs, "log_records", FD.TYPE_MESSAGE)
_SL_SCHEMA_URL = _tag(ScopeLogs, "schema_url", FD.TYPE_STRING)
_RESOURCE_TAGS = (_RL_RESOURCE, _RL_SCOPE_LOGS, _RL_SCHEMA_URL)    # the span encoder's writers, with these tags
_SCOPE_TAGS = (_SL_SCOPE, _SL_RECORDS, _SL_SCHEMA_URL)
_TIME = _tag(LogRecordPb, "time_unix_nano", FD.TYPE_FIXED64)
_SEVERITY_NUMBER = _tag(LogRecordPb, "severity_number", FD.TYPE_ENUM)
_SEVERITY_TEXT = _tag(LogRecordPb, "severity_text", FD.TYPE_STRING)
_BODY = _tag(LogRecordPb, "body", FD.TYPE_MESSAGE)
_ATTRIBUTES = _tag(LogRecordPb, "attributes", FD.TYPE_MESSAGE)
_FLAGS = _tag(LogRecordPb, "flags", FD.TYPE_FIXED32)
_TRACE_ID = _tag(LogRecordPb, "trace_id", FD.TYPE_BYTES) + varint(16)
_SPAN_ID = _tag(LogRecordPb, "span_id", FD.TYPE_BYTES) + varint(8)
_OBSERVED = _tag(LogRecordPb, "observed_time_unix_nano", FD.TYPE_FIXED64)
_SAMPLED = 0x01                      # W3C trace flags in the low byte of `flags`


def encode_record(record: Any) -> bytes:
    """One LogRecord message body, fields in field-number order."""
    out = []
    if record.time_ns:
        out.append(_TIME + _fixed64(record.time_ns))
    if record.severity_number:
        out.append(_SEVERITY_NUMBER + varint(record.severity_number))
    if record.severity_text:
        out.append(_delimited(_SEVERITY_TEXT, record.severity_text.encode()))
    out.append(_delimited(_BODY, any_value(record.body)))
    attributes(_ATTRIBUTES, record.attributes, out)
    if record.trace_id:
        out.append(_FLAGS + _fixed32(_SAMPLED))
        out += (_TRACE_ID, record.trace_id.to_bytes(16, "big"))
        if record.span_id:
            out += (_SPAN_ID, record.span_id.to_bytes(8, "big"))
    if record.observed_ns:
        out.append(_OBSERVED + _fixed64(record.observed_ns))
    return b"".join(out)


def encode_logs(records: Sequence[Any]) -> bytes:
    """The serialized ExportLogsServiceRequest for `records`, grouped by resource, then scope."""
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    for record in records:
        groups.setdefault(record.resource, {}).setdefault(record.scope, []).append(encode_record(record))
    return b"".join([_delimited(_REQUEST_RESOURCE_LOGS,
                                _resource_spans(resource, scopes, _RESOURCE_TAGS, _SCOPE_TAGS))
                     for resource, scopes in groups.items()])
