"""A bounded span queue: the SpanProcessor that replaces the SDK's BatchSpanProcessor.

`on_end` runs on the hot path (every probe and span-producing event), so it only appends the
span to a deque, or counts it as dropped when the queue is full; it takes no lock and never
blocks. Draining the queue and exporting in batches belongs to `agent/otlp/export.py`, which
calls `take()`; when a batch is ready it is woken through `call_soon_threadsafe` once per
batch, not once per span.
"""

from __future__ import annotations

import asyncio
from collections import deque

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


class SpanQueue(SpanProcessor):
    def __init__(self, max_size: int, batch_size: int):
        if max_size < 1 or batch_size < 1:
            raise ValueError("max_size and batch_size must be at least 1")
        self.max_size = max_size
        self.batch_size = batch_size
        self.dropped = 0                  # spans refused because the queue was full (or closed)
        self._limit = max_size
        self._spans: deque[ReadableSpan] = deque()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._wake_pending = False

    def __len__(self) -> int:
        return len(self._spans)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        spans = self._spans
        size = len(spans)
        if size >= self._limit:
            self.dropped += 1
            return
        spans.append(span)
        if size + 1 >= self.batch_size and not self._wake_pending and self._wake is not None:
            self._wake_pending = True
            self._signal_batch()

    def wake_with(self, loop: asyncio.AbstractEventLoop | None, event: asyncio.Event | None = None) -> None:
        """Set `event` on `loop` (from any thread) when a full batch is waiting; None: stop waking."""
        self._wake = (loop, event) if loop is not None and event is not None else None

    def _signal_batch(self) -> None:
        wake = self._wake
        if wake is None:
            return
        try:
            wake[0].call_soon_threadsafe(wake[1].set)
        except RuntimeError:          # the loop is closed: nobody is waiting any more
            self._wake = None

    def take(self, limit: int) -> list[ReadableSpan]:
        """Remove and return up to `limit` of the oldest spans."""
        spans = self._spans
        batch = [spans.popleft() for _ in range(min(limit, len(spans)))]
        self._wake_pending = False
        return batch

    def close(self) -> int:
        """Refuse (and count) every span from now on; discard and return the number still queued."""
        self._limit = 0
        left = len(self._spans)
        self._spans.clear()
        return left

    def shutdown(self) -> None:
        """Nothing to release: OtlpExport.stop() flushes what is queued."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Exporting is OtlpExport's job; report whether anything is still waiting."""
        return not self._spans
