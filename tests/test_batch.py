"""agent/store/batch.py's user_activity: each user's earliest and latest event time and last stated role,
whatever the order of the batch (the reference below is the plain version it replaced)."""

from __future__ import annotations

import random
from typing import Any

from agent.store.batch import TS, USER_ID, user_activity
from agent.store.rows import EVENT_COLUMNS, EventRows


def _rows(user: str | None, ts: float, role: str | None = None) -> EventRows:
    event: list[Any] = [None] * len(EVENT_COLUMNS)
    event[USER_ID], event[TS] = user, ts
    return EventRows(tuple(event), (), role)


def reference(batch: list[EventRows]) -> dict[str, tuple[float, float, Any]]:
    users: dict[str, list[Any]] = {}
    for rows in batch:
        user = rows.event[USER_ID]
        if user is None:
            continue
        entry = users.setdefault(user, [rows.event[TS], rows.event[TS], rows.role])
        entry[0], entry[1] = min(entry[0], rows.event[TS]), max(entry[1], rows.event[TS])
        if rows.role is not None:
            entry[2] = rows.role
    return {user: (first, last, role) for user, (first, last, role) in users.items()}


def test_first_last_and_role_in_any_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        batch = [_rows(rng.choice(["a", "b", "c", None]), rng.choice([1.0, 2.0, 3.5, 10.0, 0.5]),
                       rng.choice([None, None, "coach", "client"])) for _ in range(rng.randrange(1, 30))]
        got = user_activity(batch)
        assert len(got) == len({user for user, *_ in got})          # one row per user
        assert {user: (first, last, role) for user, first, last, role in got} == reference(batch)


def test_an_earlier_event_after_a_later_one() -> None:
    got = user_activity([_rows("u", 5.0), _rows("u", 9.0), _rows("u", 1.0), _rows("u", 7.0, "coach"), _rows("u", 3.0)])
    assert got == [("u", 1.0, 9.0, "coach")]
