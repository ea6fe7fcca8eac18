"""Realtime connections: one span per connection id (the rules are in agent/events/spans.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from agent.events.model import Event
from agent.events.span_common import (
    CONNECTION_PREFIX,
    _Closed,
    _Tracker,
    connection_key,
    ended_early,
    event_parent,
    first_text,
    prefixed,
    to_ns,
)


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
        # Any: the `__class__` check (cheaper than isinstance here) narrows it to str, which mypy does not follow
        key: Any = event.properties.get("connection_id")
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
        if record is not None and key is not None:      # take() gives no record without a key
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
