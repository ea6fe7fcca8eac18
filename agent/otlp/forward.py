"""Received OTLP data waiting to be forwarded: encoded bytes, never decoded into SDK objects.

The OTLP receiver (agent/receiver) accepts the application's spans and log records and forwards them
through the agent's own export, with the same Sender (one export in flight, retries with backoff)
and the same counters (loom_agent_export*{signal}) as the agent's own spans and relayed log records.
Why bytes: an Export*ServiceRequest is a repeated field 1 of ResourceSpans (ResourceLogs), so a
received request, or its ResourceSpans serialized again after a refused span was taken out, is
already the body of an export request, and the concatenation of such chunks is one request holding
them all. Decoding each span into a ReadableSpan and encoding its attributes again would cost
~15 µs a span; appending the bytes costs nothing per span.

`EncodedQueue.put` takes a request's chunk whole or not at all (the receiver answers 429/503 or
UNAVAILABLE to a chunk that does not fit, and the SDK retries it), bounded in items (spans, log
records) and in bytes. `take` hands the flusher (agent/otlp/export.py) up to `batch_bytes` of chunks
as one `Encoded` batch. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

# a batch stays below the 4 MiB a collector's gRPC receiver accepts by default
BATCH_BYTES = 3 * 1024 * 1024
QUEUE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Encoded:
    """The serialized Export*ServiceRequest of `count` items (spans or log records)."""

    body: bytes
    count: int

    def __len__(self) -> int:
        return self.count


class EncodedQueue:
    """Chunks of encoded items waiting for export: bounded in items and bytes; put is all or nothing."""

    def __init__(self, max_items: int, batch_items: int, *, max_bytes: int = QUEUE_BYTES,
                 batch_bytes: int = BATCH_BYTES):
        if max_items < 1 or batch_items < 1 or max_bytes < 1 or batch_bytes < 1:
            raise ValueError("the queue's bounds must be at least 1")
        self.max_items, self.max_bytes = max_items, max_bytes
        self.batch_items, self.batch_bytes = batch_items, batch_bytes
        self.dropped = 0               # nothing is dropped here: a chunk that does not fit is refused to the sender
        self.items = 0
        self.bytes = 0
        self._closed = False
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._wake: asyncio.Event | None = None

    def __len__(self) -> int:
        return self.items

    def fits(self, items: int, size: int) -> bool:
        """Whether a chunk of `items` items and `size` bytes would be taken now."""
        return not self._closed and self.items + items <= self.max_items and self.bytes + size <= self.max_bytes

    def put(self, chunk: bytes, items: int) -> bool:
        """Queue the chunk (False, nothing queued, when it does not fit or the queue is closed)."""
        if not self.fits(items, len(chunk)):
            return False
        self._chunks.append((chunk, items))
        self.items += items
        self.bytes += len(chunk)
        if self._wake is not None and self.ready():
            self._wake.set()
        return True

    def ready(self) -> bool:
        """A full batch is waiting."""
        return self.items >= self.batch_items or self.bytes >= self.batch_bytes

    def wake_with(self, event: asyncio.Event | None) -> None:
        """Set `event` when a full batch is waiting (chunks are put on the loop itself); None: stop."""
        self._wake = event

    def take(self) -> Encoded | None:
        """The oldest chunks, up to `batch_bytes` (at least one), as one request; None when empty."""
        chunks = self._chunks
        if not chunks:
            return None
        parts: list[bytes] = []
        size = count = 0
        while chunks and (not parts or size + len(chunks[0][0]) <= self.batch_bytes):
            chunk, items = chunks.popleft()
            parts.append(chunk)
            size += len(chunk)
            count += items
        self.items -= count
        self.bytes -= size
        return Encoded(parts[0] if len(parts) == 1 else b"".join(parts), count)

    def close(self) -> int:
        """Refuse every chunk from now on; discard and return the number of items still queued."""
        self._closed = True
        left = self.items
        self._chunks.clear()
        self.items = self.bytes = 0
        return left
