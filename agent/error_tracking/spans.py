"""An error with trace context becomes an OTel exception event on a short span, a child of the
application's span that was current when the error was captured: the trace shows where it failed.

The span is named "exception <type>", has status ERROR, starts and ends at the error's time, and holds
one span event "exception" with the semantic-convention attributes exception.type, exception.message
and exception.stacktrace (the frames rendered as text, the raising frame first). Its attributes are the
fingerprint, level, release, environment and tags; never the user id.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from agent.error_tracking.model import ErrorEvent, Frame
from agent.events.span_common import remote_parent, to_ns

PREFIX = "loom.error."


def render_frame(frame: Frame) -> str:
    where = frame.filename or frame.abs_path or frame.module or "<unknown>"
    if frame.lineno is not None:
        where += f":{frame.lineno}"
        if frame.colno is not None:
            where += f":{frame.colno}"
    return f"    at {frame.function} ({where})" if frame.function else f"    at {where}"


def render_stacktrace(error: ErrorEvent) -> str:
    """`Type: message` then one line per frame, the raising frame first (as JavaScript prints a stack),
    with a line where frames of an oversized stack were omitted."""
    head = error.frames_omitted_at
    lines = [f"{error.type}: {error.message}" if error.message else error.type]
    frames: Sequence[Frame] = error.frames
    if error.frames_omitted:
        lines += [render_frame(f) for f in reversed(frames[head:])]
        lines.append(f"    ... {error.frames_omitted} frames omitted ...")
        lines += [render_frame(f) for f in reversed(frames[:head])]
    else:
        lines += [render_frame(f) for f in reversed(frames)]
    return "\n".join(lines)


def attributes(error: ErrorEvent, fingerprint: str) -> dict[str, str]:
    out = {PREFIX + "fingerprint": fingerprint, PREFIX + "level": error.level}
    if error.release is not None:
        out[PREFIX + "release"] = error.release
    if error.environment is not None:
        out[PREFIX + "environment"] = error.environment
    for key, value in error.tags.items():
        out[f"{PREFIX}tag.{key}"] = value
    return out


def record_exception_span(tracer: Tracer, error: ErrorEvent, fingerprint: str) -> bool:
    """Emit the span when `error` carries trace context (trace and span id); whether it did."""
    parent = remote_parent(error.context.trace_id, error.context.span_id)
    if parent is None:
        return False
    at = to_ns(error.timestamp)
    span = tracer.start_span(f"exception {error.type}", context=parent, kind=SpanKind.INTERNAL, start_time=at,
                             attributes=attributes(error, fingerprint))
    span.add_event("exception", {"exception.type": error.type, "exception.message": error.message,
                                 "exception.stacktrace": render_stacktrace(error)}, timestamp=at)
    span.set_status(Status(StatusCode.ERROR, error.message[:256] or error.type))
    span.end(end_time=at)
    return True
