"""Received spans: checked, refused one by one when invalid, and summed per request for span metrics.

One pass over an ExportTraceServiceRequest's spans, reading only what span metrics need (name, kind,
status code, start and end) and the ids that make a span forwardable: a trace id of 16 bytes and a
span id of 8, neither all zeros, a parent span id empty or of 8 bytes (the OTLP spec's validity
rules; a collector's exporters would fail on them further on). An invalid span is taken out of the
request (the rest is forwarded and counted) and reported in partial_success. The spans' calls and
durations are grouped by (service.name, span name, kind, status code) in a dict for the request, so
the metric store is touched once per group and once per duration, never through a Python object
per span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

UNKNOWN_SERVICE = "unknown_service"            # the SDKs' default when service.name is not set
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
DELETE_ONE_BY_ONE = 64             # at most this many items refused in a field: deleted in place, else it is rebuilt

# (service, span name, kind number, status code number) -> durations in seconds
Groups = dict[tuple[str, str, int, int], list[float]]


@dataclass(slots=True)
class SpanRead:
    accepted: int = 0
    rejected: int = 0
    message: str = ""
    groups: Groups = field(default_factory=dict)


def service_name(resource: object) -> str:
    """The resource's service.name string, else unknown_service."""
    for attribute in resource.attributes:  # type: ignore[attr-defined]
        if attribute.key == "service.name":
            value = attribute.value
            return value.string_value if value.WhichOneof("value") == "string_value" and value.string_value \
                else UNKNOWN_SERVICE
    return UNKNOWN_SERVICE


def drop(items: Any, bad: list[int]) -> None:
    """Take the items at the ascending indexes `bad` out of a repeated message field. Each deletion moves
    every later item, so past DELETE_ONE_BY_ONE the field is rebuilt from the kept items in one pass:
    a 3.8 MB request of 1,000,000 empty spans before 60,000 valid ones cost 7.0 s of CPU deleted one by
    one (the event loop held all along), 0.5 s so; 64 deletions before 120,000 spans cost 1 ms, a rebuild
    of those 0.15 s."""
    if len(bad) <= DELETE_ONE_BY_ONE:
        for index in reversed(bad):
            del items[index]
        return
    refused = set(bad)
    kept = [item for index, item in enumerate(items) if index not in refused]
    del items[:]
    items.extend(kept)


def _problem(span: object) -> str | None:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id  # type: ignore[attr-defined]
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return "trace_id must be 16 bytes, not all zero"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return "span_id must be 8 bytes, not all zero"
    if parent and len(parent) != 8:
        return "parent_span_id must be empty or 8 bytes"
    return None


def read_spans(request: ExportTraceServiceRequest, *, group: bool = True) -> SpanRead:
    """Check every span (removing the invalid ones from `request`) and group the valid ones' durations."""
    read = SpanRead()
    groups = read.groups
    accepted = 0
    first_problem = ""
    for resource_spans in request.resource_spans:
        service = service_name(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            bad: list[int] = []
            for index, span in enumerate(spans):
                trace_id, span_id = span.trace_id, span.span_id
                if len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN \
                        or (span.parent_span_id and len(span.parent_span_id) != 8):
                    bad.append(index)
                    first_problem = first_problem or (_problem(span) or "")
                    continue
                accepted += 1
                if group:
                    key = (service, span.name, span.kind, span.status.code)
                    duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
                    durations = groups.get(key)
                    if durations is None:
                        groups[key] = [duration if duration > 0 else 0.0]
                    else:
                        durations.append(duration if duration > 0 else 0.0)
            if bad:
                drop(spans, bad)
            read.rejected += len(bad)
    read.accepted = accepted
    if read.rejected:
        read.message = f"{read.rejected} span(s) refused: {first_problem}"
    return read
