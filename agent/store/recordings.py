"""Session recordings in the store: `recording_sessions` (one row per session: its user, times and
counts) and `recording_chunks` (its rrweb events, one zlib-compressed JSON array per session, window and
request, in arrival order). Written once with `?` placeholders for both drivers.

A chunk is what one request brought for one (session, window): the events in the order the SDK sent
them. Reading a session decompresses its chunks in insertion order (`id`), then orders the events by
their rrweb timestamp, a stable sort: events of one window keep their order, windows interleave by time.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agent.store.base import Store

CODEC = "zlib"
COMPRESS_LEVEL = 6

SESSION_COLUMNS = ("session_id", "user_id", "start_ts", "end_ts", "received_at", "ts", "snapshots", "raw_bytes",
                   "stored_bytes", "chunks")

INSERT_CHUNK = ("INSERT INTO recording_chunks (session_id, window_id, user_id, first_ts, last_ts, ts, snapshots, "
                "raw_bytes, codec, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _smaller(column: str) -> str:
    return (f"{column} = CASE WHEN excluded.{column} < recording_sessions.{column} THEN excluded.{column} "
            f"ELSE recording_sessions.{column} END")


def _larger(column: str) -> str:
    return (f"{column} = CASE WHEN excluded.{column} > recording_sessions.{column} THEN excluded.{column} "
            f"ELSE recording_sessions.{column} END")


# the session's user is the latest one a chunk names (an anonymous visitor who logs in mid-session)
UPSERT_SESSION = (
    "INSERT INTO recording_sessions (session_id, user_id, start_ts, end_ts, received_at, ts, snapshots, raw_bytes, "
    "stored_bytes, chunks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (session_id) DO UPDATE SET "
    "user_id = COALESCE(excluded.user_id, recording_sessions.user_id), "
    f"{_smaller('start_ts')}, {_larger('end_ts')}, {_larger('ts')}, "
    "snapshots = recording_sessions.snapshots + excluded.snapshots, "
    "raw_bytes = recording_sessions.raw_bytes + excluded.raw_bytes, "
    "stored_bytes = recording_sessions.stored_bytes + excluded.stored_bytes, "
    "chunks = recording_sessions.chunks + 1")


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One chunk, ready to write: the events already encoded and compressed."""
    session_id: str
    window_id: str | None
    user_id: str | None
    first_ts: float          # unix seconds, of its first and last rrweb event
    last_ts: float
    snapshots: int
    raw_bytes: int           # the JSON of its events, uncompressed
    data: bytes              # zlib of that JSON

    @classmethod
    def of(cls, session_id: str, window_id: str | None, user_id: str | None, events: Sequence[Any],
           first_ts: float, last_ts: float) -> ChunkRow:
        raw = orjson.dumps(events)
        return cls(session_id, window_id, user_id, first_ts, last_ts, len(events), len(raw),
                   zlib.compress(raw, COMPRESS_LEVEL))


def write_statements(chunks: Sequence[ChunkRow], received_at: float) -> list[tuple[str, Sequence[Any]]]:
    """The statements storing `chunks` (received at `received_at`, the retention time), for ONE
    `store.execute` transaction: each chunk, then its session's row."""
    statements: list[tuple[str, Sequence[Any]]] = []
    for chunk in chunks:
        statements.append((INSERT_CHUNK, (chunk.session_id, chunk.window_id, chunk.user_id, chunk.first_ts,
                                          chunk.last_ts, received_at, chunk.snapshots, chunk.raw_bytes, CODEC,
                                          chunk.data)))
        statements.append((UPSERT_SESSION, (chunk.session_id, chunk.user_id, chunk.first_ts, chunk.last_ts,
                                            received_at, received_at, chunk.snapshots, chunk.raw_bytes,
                                            len(chunk.data))))
    return statements


async def write_chunks(store: Store, chunks: Sequence[ChunkRow], received_at: float) -> None:
    """Store the chunks and their sessions' totals in one transaction (StoreError: nothing stored)."""
    if chunks:
        await store.execute(write_statements(chunks, received_at))


async def session_sizes(store: Store, session_ids: Sequence[str]) -> dict[str, int]:
    """The raw bytes stored so far of each session of `session_ids` that exists."""
    if not session_ids:
        return {}
    marks = ", ".join("?" for _ in session_ids)
    rows = await store.fetch(f"SELECT session_id, raw_bytes FROM recording_sessions WHERE session_id IN ({marks})",
                             list(session_ids))
    return {row[0]: int(row[1]) for row in rows}


def session_dict(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(SESSION_COLUMNS, row))


async def list_sessions(store: Store, start: float, end: float, limit: int,
                        after: tuple[float, str] | None = None) -> list[dict[str, Any]]:
    """Sessions that started in [start, end), latest first, at most `limit`; `after`: the (start_ts,
    session_id) of the last one of the previous page."""
    where = "start_ts >= ? AND start_ts < ?"
    params: list[Any] = [start, end]
    if after is not None:
        where += " AND (start_ts < ? OR (start_ts = ? AND session_id < ?))"
        params += [after[0], after[0], after[1]]
    rows = await store.fetch(f"SELECT {', '.join(SESSION_COLUMNS)} FROM recording_sessions WHERE {where} "
                             "ORDER BY start_ts DESC, session_id DESC LIMIT ?", [*params, limit])
    return [session_dict(row) for row in rows]


async def get_session(store: Store, session_id: str) -> dict[str, Any] | None:
    rows = await store.fetch(f"SELECT {', '.join(SESSION_COLUMNS)} FROM recording_sessions WHERE session_id = ?",
                             (session_id,))
    return session_dict(rows[0]) if rows else None


def decode_chunk(codec: str, data: Any) -> list[Any]:
    if codec != CODEC:
        raise ValueError(f"unknown recording codec {codec!r}")
    events = orjson.loads(zlib.decompress(bytes(data)))
    return events if isinstance(events, list) else []


async def session_chunks(store: Store, session_id: str) -> list[tuple[Any, ...]]:
    """The session's chunks, (window_id, codec, data), in arrival order; `decode_events` reads them."""
    return await store.fetch("SELECT window_id, codec, data FROM recording_chunks WHERE session_id = ? ORDER BY id",
                             (session_id,))


async def session_events(store: Store, session_id: str,
                         window_id: str | None = None) -> tuple[list[Any], list[str | None]]:
    """The session's rrweb events in order (of `window_id` only, when given) and the session's window
    ids in order of their first chunk."""
    return decode_events(await session_chunks(store, session_id), window_id)


def decode_events(rows: Sequence[tuple[Any, ...]],
                  window_id: str | None = None) -> tuple[list[Any], list[str | None]]:
    """`session_chunks`' rows -> (the rrweb events in order, of `window_id` only when given; the window ids
    in order of their first chunk). CPU-bound for a large session: a caller may run it in a thread."""
    windows: dict[str | None, None] = {}
    events: list[Any] = []
    for window, codec, data in rows:
        windows.setdefault(window, None)
        if window_id is None or window == window_id:
            events.extend(decode_chunk(codec, data))
    events.sort(key=_timestamp)
    return events, list(windows)


def _timestamp(event: Any) -> float:
    stamp = event.get("timestamp") if isinstance(event, dict) else None
    return float(stamp) if isinstance(stamp, (int, float)) else 0.0


# --- GDPR: a user's recordings -----------------------------------------------------------------------

def erase_chunks_statement(ids: Sequence[str]) -> tuple[str, list[Any]]:
    """The chunks of the user's sessions (whoever a chunk names) and the chunks naming the user; run
    before the sessions' rows go (schema.USER_TABLES erases those)."""
    marks = ", ".join("?" for _ in ids)
    return (f"DELETE FROM recording_chunks WHERE user_id IN ({marks}) OR session_id IN "
            f"(SELECT session_id FROM recording_sessions WHERE user_id IN ({marks}))", [*ids, *ids])


async def user_session_events(store: Store, session_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each session's rrweb events, for the export."""
    return {session_id: (await session_events(store, session_id))[0] for session_id in session_ids}
