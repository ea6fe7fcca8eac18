"""Shared pieces of the event spans (see agent/events/spans.py): time and id helpers, the
counts, and the bounded tracker of open spans that connections and onboarding flows both use."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, Tracer, set_span_in_context

from agent.events.config import IDENTIFYING
from agent.events.model import Event

DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_OPEN = 10_000
DEFAULT_MAX_SPAN_EVENTS = 128
CONNECTION_PREFIX, ONBOARDING_PREFIX, EVENT_PREFIX = "loom.connection.", "loom.onboarding.", "loom.event."
_SCALARS = (str, bool, int, float)
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def to_ns(seconds: float) -> int:
    """Unix seconds to nanoseconds, without the float rounding of seconds * 1e9 at today's dates."""
    whole = math.floor(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def remote_parent(trace_id: str | None, span_id: str | None) -> OtelContext | None:
    """A context whose current span is the application's span named by W3C hex ids; None if invalid."""
    if not trace_id or not span_id or not _TRACE_ID.fullmatch(trace_id) or not _SPAN_ID.fullmatch(span_id):
        return None
    tid, sid = int(trace_id, 16), int(span_id, 16)
    if not tid or not sid:
        return None
    return set_span_in_context(NonRecordingSpan(SpanContext(tid, sid, is_remote=True, trace_flags=_SAMPLED)))


def event_parent(event: Event) -> OtelContext | None:
    context = event.context
    return None if context.trace_id is None else remote_parent(context.trace_id, context.span_id)


def prefixed(properties: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Scalar, non-identifying properties as span attributes named prefix + key."""
    return {prefix + key: value for key, value in properties.items()
            if key not in IDENTIFYING and isinstance(value, _SCALARS)}


def seconds_spent(properties: dict[str, Any], name: str = "time_spent_seconds") -> float:
    spent = properties.get(name)
    if isinstance(spent, (int, float)) and not isinstance(spent, bool) and 0 <= spent < math.inf:
        return float(spent)
    return 0.0


def ended_early(end_reason: str | None) -> dict[str, Any]:
    return {} if end_reason is None else {"loom.span.timed_out": True, "loom.span.end_reason": end_reason}


def first_text(properties: dict[str, Any], *names: str) -> str | None:
    return next((v for v in map(properties.get, names) if isinstance(v, str) and v), None)


def connection_key(event: Event) -> str | None:
    value = event.properties.get("connection_id")
    if value.__class__ is str:
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def flow_key(event: Event) -> str | None:
    """A flow is keyed by its user (or anonymous) id, and its flow_id when the application sends one."""
    user, flow_id = event.user_id or event.anonymous_id, event.properties.get("flow_id")
    return f"{user}\x1f{flow_id}" if user is not None and isinstance(flow_id, str) else user


def step_key(properties: dict[str, Any]) -> str | int | None:
    step = properties.get("step")
    step = properties.get("step_number") if step is None else step
    return step if isinstance(step, (str, int)) else None


@dataclass(slots=True)
class SpanCounts:
    spans: int = 0        # spans ended, whatever the reason
    timed_out: int = 0    # ended by sweep() after idle_timeout
    evicted: int = 0      # ended because max_open were open
    late: int = 0         # events dropped: their span had already ended
    unkeyed: int = 0      # events dropped: no usable connection id, user id or trace context


@dataclass(slots=True)
class _Closed:
    end: float                     # the span's end (event timestamp)
    seen_at: float                 # agent clock of its last event
    parent: OtelContext | None     # flows: the closed root, parent of late steps


class _Tracker:
    """Open records by key, least recently active first, and the keys closed recently.

    A record has `last` (latest event timestamp), `seen_at` (agent clock) and `touch(event)`."""

    def __init__(self, tracer: Tracer, idle_timeout: float, max_open: int):
        self.tracer = tracer
        self.idle_timeout = idle_timeout
        self.max_open = max_open
        self.open: OrderedDict[str, Any] = OrderedDict()
        self.closed: OrderedDict[str, _Closed] = OrderedDict()
        self.counts = SpanCounts()

    def finish(self, key: str, record: Any, end_reason: str) -> None:
        raise NotImplementedError

    def find(self, key: str | None, event: Event, new: Callable[[], Any]) -> Any:
        """The open record for `key`, touched; else a new open one; None when late or unkeyed."""
        if key is None:
            self.counts.unkeyed += 1
            return None
        record = self.open.get(key)
        if record is not None:
            self.open.move_to_end(key)
            record.touch(event)
            return record
        if self.dropped_late(key, event.timestamp):
            return None
        while len(self.open) >= self.max_open:
            old_key, old = self.open.popitem(last=False)
            self.counts.evicted += 1
            self.finish(old_key, old, "evicted")
        record = self.open[key] = new()
        return record

    def take(self, key: str | None, event: Event, new: Callable[[], Any]) -> Any:
        """The record an ending event closes: the open one (removed) or a new one; None when late."""
        if key is None:
            self.counts.unkeyed += 1
            return None
        record = self.open.pop(key, None)
        if record is None and self.dropped_late(key, event.timestamp):
            return None
        record = new() if record is None else record
        record.touch(event)
        return record

    def late(self, key: str, timestamp: float) -> _Closed | None:
        """The closed span an event for `key` at `timestamp` belongs to, if that span has ended."""
        closed = self.closed.get(key)
        return closed if closed is not None and timestamp <= closed.end else None

    def dropped_late(self, key: str, timestamp: float) -> bool:
        late = self.late(key, timestamp) is not None
        self.counts.late += late
        return late

    def remember(self, key: str, closed: _Closed) -> None:
        self.counts.spans += 1
        self.closed.pop(key, None)
        self.closed[key] = closed
        if len(self.closed) > self.max_open:
            self.closed.popitem(last=False)

    def sweep(self, now: float) -> None:
        limit = now - self.idle_timeout
        while self.open:
            key, record = next(iter(self.open.items()))
            if record.seen_at > limit:
                break
            del self.open[key]
            self.counts.timed_out += 1
            self.finish(key, record, "idle")
        while self.closed and next(iter(self.closed.values())).seen_at <= limit:
            self.closed.popitem(last=False)

    def close_all(self) -> None:
        while self.open:
            key, record = self.open.popitem(last=False)
            self.finish(key, record, "shutdown")
