"""SQLite's events by user (agent/store/user_index.py, migrations 21 and 23): the table events_by_user, folded in bulk
with the rollups, stands in for the index events_user_ts. Each test fails when its part is taken out:

1. the migration backfills the folded events, the open folds the rest, and the index is gone;
2. the group commits leave it alone (nothing per commit), the fold fills it, a read that names it folds first;
3. the triggers keep it equal to the events through an alias merge, an erasure and retention;
4. `ids()` (GDPR, merges) finds the events a fold has not reached yet (a full store refuses the fold);
5. the store's per-user statements (merges, recounts, GDPR) seek it: no scan of the events.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.store import gdpr, rollup_fold, user_index
from agent.store.config import StoreConfig
from agent.store.open import open_store
from agent.store.people import merge_statements
from agent.store.retention import delete_old_events
from agent.store.rollups import recompute_statements
from agent.store.schema import MIGRATIONS
from agent.store.sqlite import SqliteStore
from tests.support.store_fixtures import Run
from tests.test_rollups import T0, USERS, events, load

pytest_plugins = ["tests.support.store_fixtures"]

ENTRIES = "SELECT user_id, ts, id FROM events_by_user"
EXPECTED = "SELECT user_id, ts, id FROM events WHERE user_id IS NOT NULL"


def _rows(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)        # another connection: what is committed, no fold
    try:
        return sorted(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def _opened(path: Path, run: Run, migrations: tuple[Any, ...] = MIGRATIONS) -> SqliteStore:
    store = SqliteStore(str(path), migrations=migrations)
    run(store.open())
    return store


def test_the_migration_backfills_and_the_open_folds_the_rest(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "store.db"
    before = tuple(m for m in MIGRATIONS if m.version < user_index.MIGRATION)
    store = _opened(path, run, before)
    run(load(store, events(400, seed=31), size=100))
    run(store.close())                  # a clean stop folds: all of them below the watermark
    conn = sqlite3.connect(path)        # events committed after the last fold (a crash before it)
    conn.execute("INSERT INTO events (name, category, ts, received_at, user_id, retention_class, properties, "
                 "context) VALUES ('feature_used', 'engagement', ?, ?, 'late_user', 'analytics', '{}', '{}')",
                 (T0 + 5, T0 + 5))
    conn.commit()
    conn.close()
    store = _opened(path, run)
    try:
        assert _rows(str(path), ENTRIES) == _rows(str(path), EXPECTED)
        assert ("late_user",) in {(u,) for u, _, _ in _rows(str(path), ENTRIES)}
        assert _rows(str(path), "SELECT name FROM sqlite_master WHERE name = 'events_user_ts'") == []
    finally:
        run(store.close())


def test_the_fold_fills_it_and_a_read_naming_it_folds_first(tmp_path: Path, run: Run,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_fold, "FOLD_EVENTS", 10_000)         # no fold but the read's
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 3600.0)
    store = run(open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))))
    try:
        assert isinstance(store, SqliteStore)
        run(load(store, events(300, seed=32), size=100))
        assert _rows(store.path, ENTRIES) == []                 # the group commits wrote no entry
        user = USERS[0]
        got = run(store.fetch("SELECT ts, id FROM events_by_user WHERE user_id = ? ORDER BY ts, id", (user,)))
        expected = _rows(store.path, "SELECT ts, id FROM events WHERE user_id = ?", (user,))
        assert got == expected and len(expected) > 5
        assert _rows(store.path, ENTRIES) == _rows(store.path, EXPECTED)
    finally:
        run(store.close())


def test_the_triggers_keep_it_equal_to_the_events(tmp_path: Path, run: Run) -> None:
    store = run(open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))))
    try:
        run(load(store, events(500, seed=33), size=100))
        run(store.settle())
        alias, person = USERS[4], USERS[1]          # a user made one with another: its folded events move
        before = _rows(store.path, "SELECT count(*) FROM events WHERE user_id IN (?, ?)", (alias, person))
        run(store.execute(merge_statements("sqlite", alias, person, T0)))
        assert _rows(store.path, ENTRIES) == _rows(store.path, EXPECTED)
        moved = _rows(store.path, "SELECT count(*) FROM events_by_user WHERE user_id = ?", (person,))
        assert moved == before and _rows(store.path, "SELECT count(*) FROM events_by_user WHERE user_id = ?",
                                         (alias,)) == [(0,)]
        run(gdpr.erase_user(store, [USERS[2]]))
        assert _rows(store.path, "SELECT count(*) FROM events_by_user WHERE user_id = ?", (USERS[2],)) == [(0,)]
        assert _rows(store.path, ENTRIES) == _rows(store.path, EXPECTED)
        names = [row[0] for row in _rows(store.path, "SELECT DISTINCT name FROM events")]
        deleted = run(delete_old_events(store, names, T0 + 86400 * 2, 50))
        assert deleted > 0
        assert _rows(store.path, ENTRIES) == _rows(store.path, EXPECTED)
        assert moved[0][0] > 20
    finally:
        run(store.close())


def test_ids_finds_the_events_above_the_watermark(tmp_path: Path, run: Run) -> None:
    """The GDPR and merge form of a user's events: complete without the fold (a full store refuses it)."""
    store = run(open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))))
    try:
        run(load(store, events(300, seed=34), size=100))       # committed, not folded
        user = USERS[3]
        where, params = user_index.ids("sqlite", "= ?", [user])
        expected = _rows(store.path, "SELECT id FROM events WHERE user_id = ?", (user,))
        assert _rows(store.path, f"SELECT id FROM events WHERE {where}", tuple(params)) == expected
        run(store.settle())                                     # folded: through the table now
        assert _rows(store.path, "SELECT events FROM rollup_folded")[0][0] > 0
        assert _rows(store.path, f"SELECT id FROM events WHERE {where}", tuple(params)) == expected
        assert len(expected) > 5
    finally:
        run(store.close())


def test_the_store_per_user_statements_seek_it(sqlite_store: SqliteStore, run: Run) -> None:
    """EXPLAIN QUERY PLAN of the merges' recounts, the bitmaps' merge, and GDPR's export and erasure: no
    step scans the events (without events_by_user each one read them all)."""
    run(load(sqlite_store, events(300, seed=35), size=100))
    statements = [*merge_statements("sqlite", "anon_1", USERS[1], T0), *recompute_statements(USERS[1], "sqlite")]
    for table, column in (("events", "user_id"), ("onboarding_funnel", "user_id")):
        where, params = gdpr.user_filter("sqlite", table, column, [USERS[1], "anon_2"], True)
        statements += [(f"SELECT * FROM {table} WHERE {where}", params), (f"DELETE FROM {table} WHERE {where}", params)]
    checked = 0
    for sql, params in statements:
        if "events" not in sql.replace("events_by_user", ""):
            continue
        plan = [row[3] for row in run(sqlite_store.fetch("EXPLAIN QUERY PLAN " + sql, params))]
        assert not [step for step in plan if step.startswith(("SCAN events", "SCAN e "))], (sql, plan)
        if "events_by_user" in sql:     # the user's ids, not every event of the names asked for
            assert not [step for step in plan if "events_name_dims" in step], (sql, plan)
        checked += 1
    assert checked >= 15
    assert rollup_fold.reads_folded("SELECT id FROM events_by_user WHERE user_id = ?")


def test_an_older_agent_sharing_the_file_leaves_no_entry_missing(tmp_path: Path, run: Run) -> None:
    """Agent A runs code from before migration 21 (it opened the file first); B opens it and migrates. A's
    folds move the rollups' watermark without writing entries, and A deletes the newest events (lowering
    that watermark only), so their ids come again: B's reads still see every event of a user."""
    path = tmp_path / "store.db"
    old = _opened(path, run, tuple(m for m in MIGRATIONS if m.version < user_index.MIGRATION))
    new = _opened(path, run)
    try:
        run(load(old, events(300, seed=36), size=100))
        run(old.settle())
        run(new.fetch("SELECT count(*) FROM events_by_user"))       # B catches up: its watermark at the top
        (top,), = _rows(str(path), "SELECT max(id) FROM events")
        run(old.execute([("DELETE FROM events WHERE id > ?", (top - 20,))]))
        run(load(old, events(100, seed=37), size=100))             # ids after the highest left: some again
        run(old.settle())
        assert _rows(str(path), "SELECT count(*) FROM events_by_user")[0][0] < \
            _rows(str(path), "SELECT count(*) FROM events WHERE user_id IS NOT NULL")[0][0]
        user = USERS[5]
        got = run(new.fetch("SELECT id FROM events_by_user WHERE user_id = ? ORDER BY id", (user,)))
        assert got == _rows(str(path), "SELECT id FROM events WHERE user_id = ?", (user,)) and len(got) > 5
        assert _rows(str(path), ENTRIES) == _rows(str(path), EXPECTED)
        exported = run(gdpr.export_user(new, [user]))["events"]
        assert len(exported) == len(got)
    finally:
        run(old.close())
        run(new.close())
