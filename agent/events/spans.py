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
import time
from dataclasses import asdict

from opentelemetry.trace import Tracer

from agent.events.model import Event
from agent.events.span_common import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_OPEN,
    DEFAULT_MAX_SPAN_EVENTS,
    EVENT_PREFIX,
    SpanCounts,
    event_parent,
    prefixed,
    to_ns,
)
from agent.events.span_connections import Connections
from agent.events.span_onboarding import Flows


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
