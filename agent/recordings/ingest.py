"""Session recordings from posthog-js (`POST /s/`): privacy, bounds, the store, the `loom_recordings_*`
counters. The parsing is snapshots.py; the tables are agent/store/recordings.py.

Bounds (docs/posthog.md, "Session recordings"):
- a request body: at most MAX_BODY_BYTES as sent and MAX_DECODED_BYTES once its gzip or base64 is undone,
  and posthog-js's compressed fields may inflate to at most MAX_INFLATED_BYTES in all; beyond: 413;
- a session: at most MAX_SESSION_BYTES of rrweb JSON; the snapshots of a session already at its bound are
  dropped, counted as `session_limit`, and the request still answered 200 (posthog-js would only retry).
  Checked before each write: concurrent requests of one session may pass it by one request each.

Who was recorded: the event's distinct id, pseudonymised like every user id (an e-mail becomes its
keyed pseudonym; the session and window ids too, as an event's session id is). A recording of an
opted-out user is not stored (`opted_out`); with Do-Not-Track and `privacy.dnt: drop` neither (`dnt`);
with `privacy.dnt: anonymize` it is stored without its user.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from agent.events.privacy import Privacy
from agent.metrics.store import MetricStore
from agent.recordings.snapshots import Group, Parsed
from agent.store.base import Store
from agent.store.recordings import ChunkRow, session_sizes, write_chunks

MIB = 1024 * 1024
MAX_BODY_BYTES = 16 * MIB
MAX_DECODED_BYTES = 32 * MIB
MAX_INFLATED_BYTES = 64 * MIB
MAX_SESSION_BYTES = 64 * MIB
DROP_REASONS = ("session_limit", "opted_out", "dnt", "not_snapshot")


@dataclass(frozen=True, slots=True)
class Recorded:
    sessions: int           # sessions new to the store
    snapshots: int          # rrweb events stored
    dropped: int            # rrweb events not stored (see DROP_REASONS)


class RecordingMetrics:
    def __init__(self, metrics: MetricStore):
        self.sessions = metrics.counter("loom_recordings_sessions", "Session recordings started (a session's "
                                        "first snapshots stored).")
        self.snapshots = metrics.counter("loom_recordings_snapshots", "rrweb events of session recordings stored.")
        self.bytes = metrics.counter("loom_recordings_bytes", "Bytes of session recordings stored, as rrweb JSON "
                                     "(`raw`) and compressed in the store (`stored`).", ("form",),
                                     unit="bytes", allow={"form": ("raw", "stored")})
        self.dropped = metrics.counter("loom_recordings_dropped_snapshots", "rrweb events of session recordings "
                                       "not stored, by reason.", ("reason",), allow={"reason": DROP_REASONS})


class Recordings:
    """Stores what `parse_snapshots` read, after the privacy rules, within the bounds above."""

    def __init__(self, metrics: MetricStore, privacy: Privacy, max_session_bytes: int = MAX_SESSION_BYTES):
        self.metrics = RecordingMetrics(metrics)
        self.privacy = privacy
        self.max_session_bytes = max_session_bytes

    def scrub(self, text: str) -> str:
        return self.privacy.text(text)

    async def record(self, store: Store, parsed: Parsed, now: float, *, dnt: bool = False,
                     offload: bool = False) -> Recorded:
        """Store the groups (one transaction); raises StoreError (nothing stored). `offload`: encode and
        compress in a worker thread (a large recording), so the event loop keeps answering meanwhile."""
        dropped: Counter[str] = Counter()
        if parsed.other_events:
            dropped["not_snapshot"] += parsed.other_events
        if offload:
            chunks = await asyncio.to_thread(self._chunks, parsed, dnt, dropped)
        else:
            chunks = self._chunks(parsed, dnt, dropped)
        sizes = await session_sizes(store, list(dict.fromkeys(c.session_id for c in chunks)))
        new_sessions = {c.session_id for c in chunks} - set(sizes)
        kept: list[ChunkRow] = []
        for chunk in chunks:
            size = sizes.get(chunk.session_id, 0)
            if size + chunk.raw_bytes > self.max_session_bytes:
                dropped["session_limit"] += chunk.snapshots
                continue
            sizes[chunk.session_id] = size + chunk.raw_bytes
            kept.append(chunk)
        await write_chunks(store, kept, now)
        stored_sessions = len(new_sessions & {c.session_id for c in kept})
        snapshots = sum(c.snapshots for c in kept)
        if stored_sessions:
            self.metrics.sessions.inc((), stored_sessions)
        if kept:
            self.metrics.snapshots.inc((), snapshots)
            self.metrics.bytes.inc(("raw",), sum(c.raw_bytes for c in kept))
            self.metrics.bytes.inc(("stored",), sum(len(c.data) for c in kept))
        for reason, count in dropped.items():
            self.metrics.dropped.inc((reason,), count)
        return Recorded(stored_sessions, snapshots, sum(dropped.values()))

    def _chunks(self, parsed: Parsed, dnt: bool, dropped: Counter[str]) -> list[ChunkRow]:
        chunks: list[ChunkRow] = []
        for group in parsed.groups:
            user = self._user(group, dnt, dropped)
            if user is not False and user is not True:
                window = self.privacy.pseudonymize(group.window_id) if group.window_id is not None else None
                chunks.append(ChunkRow.of(self.privacy.pseudonymize(group.session_id), window, user, group.events,
                                          group.first_ts, group.last_ts))
        return chunks

    def _user(self, group: Group, dnt: bool, dropped: Counter[str]) -> str | bool | None:
        """The stored user id of the group; False: not stored (counted in `dropped`)."""
        user = self.privacy.pseudonymize(group.distinct_id) if group.distinct_id is not None else None
        if user is not None and user in self.privacy.opted_out:
            dropped["opted_out"] += len(group.events)
            return False
        if dnt:
            if self.privacy.config.dnt == "drop":
                dropped["dnt"] += len(group.events)
                return False
            return None
        return user
