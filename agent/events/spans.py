"""Product events as OpenTelemetry spans, timed by the events' timestamps (never the wall clock).

* Realtime connection: one span "realtime connection" (CLIENT) per `connection_id`, from the earliest
  event seen for it (normally connection_attempt) to connection_disconnected (status OK) or
  connection_error (ERROR). Every other event is a span event, at most `max_span_events`, the rest
  counted in loom.span.events_dropped. The span reaches the SDK only when it ends, as probe spans do:
  an open connection is a small record, a message a tuple append, and events that arrive out of
  order (established before attempt) still land in time order under the right start.
* Onboarding flow: one trace per user_id (or anonymous_id) and flow_id if sent. The root span
  "onboarding" starts in the SDK at the flow's first event so that each step span ("onboarding.step")
  is exported when it completes; a step completed without a start began time_spent_seconds earlier.
  onboarding_completed ends the root OK; onboarding_abandoned ends it UNSET with
  loom.onboarding.outcome=abandoned: abandoning is a user's choice, not a failure, and ERROR would
  count in span-derived error rates. Steps still open when the flow ends are exported as unfinished.
* Trace context: an event whose context has W3C trace_id/span_id becomes a zero-duration span named
  after it, a child of that remote span, so it shows in the application's trace (a span event is
  impossible: the remote span is not ours). A connection or flow joins the trace its first event
  names (for a connection: its first event other than a message that names one).
* Bounded: at most `max_open` open spans per kind (when full, the least recently active ends), and
  `sweep(now)` ends those idle for `idle_timeout` on the agent's clock (`received_at`), at their last
  event's timestamp, with loom.span.timed_out=true and loom.span.end_reason=idle|evicted|shutdown.
* An event for a key closed within `idle_timeout`, not newer than its end, is late: a late step
  completion still joins the closed flow; other late events are dropped and counted. A newer event
  opens a new span (applications reuse ids).
* No user identifier becomes an attribute: properties in IDENTIFYING are left out, and the user id
  is only the in-memory key of a flow. Not thread-safe: call it from the ingesting event loop.
"""


from __future__ import annotations

import asyncio
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import (NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags,
                                 Tracer, set_span_in_context)

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
    ok = isinstance(spent, (int, float)) and not isinstance(spent, bool) and 0 <= spent < math.inf
    return float(spent) if ok else 0.0


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


@dataclass(slots=True)
class _Connection:
    start: float
    last: float
    seen_at: float
    parent: OtelContext | None
    opening: dict[str, Any] = field(default_factory=dict)     # properties of the first connection_attempt
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    attempts: int = 0
    messages: int = 0
    dropped: int = 0

    def touch(self, event: Event) -> None:
        ts = event.timestamp
        if ts > self.last:
            self.last = ts
        elif ts < self.start:
            self.start = ts
        self.seen_at = event.received_at
        if self.parent is None and event.context.trace_id is not None:
            self.parent = event_parent(event)


def new_connection(event: Event) -> Callable[[], _Connection]:
    return lambda: _Connection(event.timestamp, event.timestamp, event.received_at, event_parent(event))


class Connections(_Tracker):
    """Realtime connections: one span per connection id, its events recorded until it ends."""

    def __init__(self, tracer: Tracer, idle_timeout: float, max_open: int, max_events: int):
        super().__init__(tracer, idle_timeout, max_open)
        self.max_events = max_events

    def message(self, event: Event) -> None:
        """realtime_message, the hottest path: the open-connection case is inlined."""
        key = event.properties.get("connection_id")
        record = self.open.get(key) if key.__class__ is str else None
        if record is None:
            record = self.find(connection_key(event), event, new_connection(event))
            if record is None:
                return
        else:
            self.open.move_to_end(key)
            ts = event.timestamp
            if ts > record.last:
                record.last = ts
            elif ts < record.start:
                record.start = ts
            record.seen_at = event.received_at
        record.messages += 1
        self._add(record, event)

    def attempt(self, event: Event) -> None:
        record = self.find(connection_key(event), event, new_connection(event))
        if record is not None:
            record.attempts += 1
            if record.attempts == 1:
                record.opening = event.properties
            else:
                self._add(record, event)

    def other(self, event: Event) -> None:
        """established, latency, health check, upgrade, fallback to polling: span events."""
        record = self.find(connection_key(event), event, new_connection(event))
        if record is not None:
            self._add(record, event)

    def end(self, event: Event) -> None:
        """connection_disconnected (OK) or connection_error (ERROR)."""
        key = connection_key(event)
        record = self.take(key, event, new_connection(event))
        if record is not None:
            self._emit(key, record, event, None)

    def finish(self, key: str, record: _Connection, end_reason: str) -> None:
        self._emit(key, record, None, end_reason)

    def _add(self, record: _Connection, event: Event) -> None:
        if len(record.events) < self.max_events:
            record.events.append((event.timestamp, event.name, event.properties))
        else:
            record.dropped += 1

    def _emit(self, key: str, record: _Connection, closing: Event | None, end_reason: str | None) -> None:
        attributes = prefixed(closing.properties, CONNECTION_PREFIX) if closing is not None else {}
        attributes.update(prefixed(record.opening, CONNECTION_PREFIX))
        attributes.update(ended_early(end_reason))
        attributes.update({"loom.connection.id": key, "loom.connection.attempts": record.attempts,
                           "loom.connection.messages": record.messages})
        if record.dropped:
            attributes["loom.span.events_dropped"] = record.dropped
        events = sorted(record.events, key=lambda item: item[0])
        if "loom.connection.transport" not in attributes:      # no attempt seen: the first transport named
            attributes.update(next(({"loom.connection.transport": p["transport"]} for _, _, p in events
                                    if isinstance(p.get("transport"), str)), {}))
        span = self.tracer.start_span("realtime connection", context=record.parent, kind=SpanKind.CLIENT,
                                      start_time=to_ns(record.start), attributes=attributes)
        for ts, name, props in events:
            span.add_event(name, prefixed(props, CONNECTION_PREFIX), timestamp=to_ns(ts))
        if closing is not None and closing.name == "connection_error":
            error_type = first_text(closing.properties, "error_type", "error_code") or "connection_error"
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, first_text(closing.properties, "error", "reason") or error_type))
        elif closing is not None:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=to_ns(record.last))
        self.remember(key, _Closed(record.last, record.seen_at, None))


@dataclass(slots=True)
class _Flow:
    root: Span
    parent: OtelContext                  # the root, as the parent of step spans
    last: float
    seen_at: float
    pending: dict[Any, tuple[float, dict[str, Any]]] = field(default_factory=dict)   # started, not completed
    done: dict[Any, float] = field(default_factory=dict)                             # step -> completion time
    steps: int = 0

    def touch(self, event: Event) -> None:
        self.last = max(self.last, event.timestamp)
        self.seen_at = event.received_at


class Flows(_Tracker):
    """Onboarding flows: a root span per user (or anonymous id) and a child span per step."""

    def step_started(self, event: Event) -> None:
        flow = self.find(flow_key(event), event, self._new(event, event.timestamp))
        step = step_key(event.properties)
        if flow is not None and flow.done.get(step, -math.inf) < event.timestamp:
            flow.pending[step] = (event.timestamp, event.properties)

    def step_completed(self, event: Event) -> None:
        key, ts = flow_key(event), event.timestamp
        derived_start = ts - seconds_spent(event.properties)
        if key is not None and key not in self.open and (closed := self.late(key, ts)) is not None:
            self._emit_step(closed.parent, derived_start, ts, event.properties, "completed")
            return
        flow = self.find(key, event, self._new(event, derived_start))
        if flow is None:
            return
        step = step_key(event.properties)
        started = flow.pending.pop(step, None)
        start, properties = (started[0], {**started[1], **event.properties}) if started else (
            derived_start, event.properties)
        self._emit_step(flow.parent, start, ts, properties, "completed")
        flow.done[step] = ts
        flow.steps += 1

    def finished(self, event: Event) -> None:
        """onboarding_completed or onboarding_abandoned: the root ends."""
        key = flow_key(event)
        spent = seconds_spent(event.properties, "total_time_seconds") or seconds_spent(event.properties)
        flow = self.take(key, event, self._new(event, event.timestamp - spent))
        if flow is not None:
            flow.root.set_attributes(prefixed(event.properties, ONBOARDING_PREFIX))
            self._end(key, flow, "completed" if event.name == "onboarding_completed" else "abandoned", None)

    def finish(self, key: str, record: _Flow, end_reason: str) -> None:
        self._end(key, record, "timed_out", end_reason)

    def _new(self, event: Event, start: float) -> Callable[[], _Flow]:
        def new() -> _Flow:
            flow_id = event.properties.get("flow_id")
            attributes = {"loom.onboarding.flow_id": flow_id} if isinstance(flow_id, str) else None
            root = self.tracer.start_span("onboarding", context=event_parent(event), start_time=to_ns(start),
                                          attributes=attributes)
            return _Flow(root, set_span_in_context(root), event.timestamp, event.received_at)
        return new

    def _end(self, key: str, flow: _Flow, outcome: str, end_reason: str | None) -> None:
        for start, properties in flow.pending.values():
            self._emit_step(flow.parent, start, max(start, flow.last), properties, "unfinished")
        flow.root.set_attributes({"loom.onboarding.outcome": outcome, "loom.onboarding.steps_completed": flow.steps,
                                  **ended_early(end_reason)})
        if outcome == "completed":
            flow.root.set_status(Status(StatusCode.OK))
        flow.root.end(end_time=to_ns(flow.last))
        self.remember(key, _Closed(flow.last, flow.seen_at, flow.parent))

    def _emit_step(self, parent: OtelContext | None, start: float, end: float, properties: dict[str, Any],
                   outcome: str) -> None:
        attributes = prefixed(properties, ONBOARDING_PREFIX)
        attributes["loom.onboarding.step_outcome"] = outcome
        span = self.tracer.start_span("onboarding.step", context=parent, start_time=to_ns(start),
                                      attributes=attributes)
        span.end(end_time=to_ns(end))


class EventSpans:
    """The spans of the event pipeline: `handle(event)` for each event, `sweep(now)` now and then."""

    def __init__(self, tracer: Tracer, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_open: int = DEFAULT_MAX_OPEN, max_span_events: int = DEFAULT_MAX_SPAN_EVENTS):
        self.tracer = tracer
        self.connections = Connections(tracer, idle_timeout, max_open, max_span_events)
        self.flows = Flows(tracer, idle_timeout, max_open)
        self.attached = SpanCounts()        # trace-context spans (never open)
        c, f = self.connections, self.flows
        self._handlers = {
            "connection_attempt": c.attempt, "connection_established": c.other, "connection_latency": c.other,
            "connection_health_check": c.other, "connection_upgrade": c.other,
            "fallback_polling_activated": c.other, "realtime_message": c.message,
            "connection_disconnected": c.end, "connection_error": c.end,
            "onboarding_step_started": f.step_started, "onboarding_step_completed": f.step_completed,
            "onboarding_completed": f.finished, "onboarding_abandoned": f.finished,
        }

    def handle(self, event: Event) -> None:
        handler = self._handlers.get(event.name)
        if handler is not None:
            handler(event)
        elif event.context.trace_id is not None:
            self._attach(event)

    def _attach(self, event: Event) -> None:
        parent = event_parent(event)
        if parent is None:
            self.attached.unkeyed += 1
            return
        attributes = prefixed(event.properties, EVENT_PREFIX)
        attributes["loom.event.category"] = event.category
        ts = to_ns(event.timestamp)
        self.tracer.start_span(event.name, context=parent, start_time=ts, attributes=attributes).end(end_time=ts)
        self.attached.spans += 1

    def sweep(self, now: float | None = None) -> None:
        """End the spans idle for idle_timeout (agent clock, unix seconds) and forget old closed keys."""
        now = time.time() if now is None else now
        self.connections.sweep(now)
        self.flows.sweep(now)

    async def run_sweeper(self, interval: float = 5.0) -> None:
        """Sweep every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def close(self) -> None:
        """At shutdown: end every open span (loom.span.end_reason=shutdown)."""
        self.connections.close_all()
        self.flows.close_all()

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind (connection, onboarding, trace_context): open spans and the SpanCounts totals, as
        plain ints for the metrics layer (e.g. loom_agent_event_spans_timed_out_total{kind})."""
        return {"connection": {"open": len(self.connections.open), **asdict(self.connections.counts)},
                "onboarding": {"open": len(self.flows.open), **asdict(self.flows.counts)},
                "trace_context": {"open": 0, **asdict(self.attached)}}
