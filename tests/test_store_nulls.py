"""SQLite store: a None in any row the group commit writes is stored as NULL (agent/store/sqlite.py binds
None through an adapter that gives None back, for speed): in the events, the audit tables and users."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.events.model import Event
from agent.store.rows import EVENT_COLUMNS, event_rows
from agent.store.sqlite import SqliteStore


def test_none_is_stored_as_null(tmp_path: Path) -> None:
    events = [Event("cta_click", "marketing", 1_700_000_000.0, 1_700_000_000.0, {}, user_id="u1"),
              Event("cta_click", "marketing", 1_700_000_001.0, 1_700_000_001.0, {}, anonymous_id="a1"),
              Event("mfa_enrolled", "mfa", 1_700_000_002.0, 1_700_000_002.0, {}, user_id="u2")]
    batch = [event_rows(event) for event in events]
    nones = {(i, column) for i, rows in enumerate(batch) for column, value in zip(EVENT_COLUMNS, rows.event)
             if value is None}
    assert len(nones) > 15

    async def run() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[tuple[str, ...]]]:
        store = SqliteStore(str(tmp_path / "events.db"))
        await store.open()
        try:
            assert await store.write_events(batch) == frozenset()       # no event id: none repeats
            stored = await store.fetch(f"SELECT {', '.join(f'typeof({c})' for c in EVENT_COLUMNS)} "
                                       "FROM events ORDER BY ts")
            audit = await store.fetch("SELECT typeof(method), typeof(result), typeof(ip) FROM mfa_audit_logs")
            users = await store.fetch("SELECT typeof(role) FROM users ORDER BY user_id")
            return stored, audit, users
        finally:
            await store.close()

    stored, audit, users = asyncio.run(run())
    assert {(i, column) for i, row in enumerate(stored) for column, kind in zip(EVENT_COLUMNS, row)
            if kind == "null"} == nones
    assert audit == [("null", "null", "null")]
    assert users == [("null",), ("null",)]
