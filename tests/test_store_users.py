"""SQLite store: the users rows the group commit keeps (first seen, last seen, role) over several commits in
any time order, and a row deleted since (erasure, retention) written again by the user's next event: what any
shortcut of the users upsert (e.g. remembering which rows exist) must keep."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.events.model import Event
from agent.store.rows import EventRows, event_rows
from agent.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


def _rows(user: str, ts: float, role: str | None = None) -> EventRows:
    if role is not None:
        return event_rows(Event("onboarding_personalization", "onboarding", ts, ts, {"role": role}, user_id=user))
    return event_rows(Event("cta_click", "marketing", ts, ts, {"cta_id": "a"}, user_id=user))


def _run(path: Path, steps: list[tuple[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """Each step: ("write", [EventRows]) or ("execute", sql); the users table after each."""
    async def go() -> list[list[tuple[Any, ...]]]:
        store = SqliteStore(str(path))
        await store.open()
        try:
            out = []
            for kind, arg in steps:
                if kind == "write":
                    await store.write_events(arg)
                else:
                    await store.execute([(arg, ())])
                out.append(await store.fetch("SELECT user_id, first_seen, last_seen, role FROM users ORDER BY user_id"))
            return out
        finally:
            await store.close()
    return asyncio.run(go())


def test_users_rows_move_with_each_commit(tmp_path: Path) -> None:
    after = _run(tmp_path / "events.db", [
        ("write", [_rows("u1", T0 + 10), _rows("u2", T0 + 20)]),
        ("write", [_rows("u1", T0 + 50), _rows("u2", T0 + 5, "coach"), _rows("u3", T0 + 30)]),
        ("write", [_rows("u1", T0 + 40), _rows("u2", T0 + 60), _rows("u1", T0 + 1, "client"), _rows("u3", T0 + 35),
                   _rows("u3", T0 + 70), _rows("u3", T0 + 20)]),
    ])
    assert after[0] == [("u1", T0 + 10, T0 + 10, None), ("u2", T0 + 20, T0 + 20, None)]
    assert after[1] == [("u1", T0 + 10, T0 + 50, None), ("u2", T0 + 5, T0 + 20, "coach"),
                        ("u3", T0 + 30, T0 + 30, None)]
    assert after[2] == [("u1", T0 + 1, T0 + 50, "client"), ("u2", T0 + 5, T0 + 60, "coach"),
                        ("u3", T0 + 20, T0 + 70, None)]


def test_a_deleted_users_row_comes_back_with_the_next_event(tmp_path: Path) -> None:
    after = _run(tmp_path / "events.db", [
        ("write", [_rows("u1", T0 + 10), _rows("u2", T0 + 20)]),
        ("execute", "DELETE FROM users WHERE user_id = 'u1'"),
        ("write", [_rows("u1", T0 + 30), _rows("u2", T0 + 40)]),
        ("execute", "DELETE FROM users"),
        ("write", [_rows("u2", T0 + 50, "coach")]),
    ])
    assert after[1] == [("u2", T0 + 20, T0 + 20, None)]
    assert after[2] == [("u1", T0 + 30, T0 + 30, None), ("u2", T0 + 20, T0 + 40, None)]
    assert after[4] == [("u2", T0 + 50, T0 + 50, "coach")]
