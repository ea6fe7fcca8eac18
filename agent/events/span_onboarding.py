"""Onboarding flows: one trace per flow, a span per step (the rules are in agent/events/spans.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Span, Status, StatusCode, set_span_in_context

from agent.events.model import Event
from agent.events.span_common import (
    ONBOARDING_PREFIX,
    _Closed,
    _Tracker,
    ended_early,
    event_parent,
    flow_key,
    prefixed,
    seconds_spent,
    step_key,
    to_ns,
)


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
        if flow is not None and key is not None:        # take() gives no record without a key
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
