"""The fold's tail (agent/store/rollup_fold.py, Tail): the writer keeps the facts of the events it committed
since the last fold and the fold aggregates them instead of reading the events back, only while they are
exactly the events above the watermark. Each test compares the rollups with a backfill of the events:

1. group commits then a fold take the tail (the aggregate is given the kept facts, not rows read back);
2. another connection's commit to the file (a process sharing it deletes an event of the tail, as its
   retention would, without folding) makes the fold read the events back: the deleted event is not counted;
3. a statement of the store itself on the events (retention, rollups_current=False: no fold first) drops the
   tail the same way;
4. the person and signup bitmaps are written in the fold too: a read of a bitmap table folds first.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pyroaring import BitMap

from agent.store import rollup_fold
from agent.store.config import StoreConfig
from agent.store.open import open_store
from agent.store.sqlite import SqliteStore
from tests.support.store_fixtures import Run
from tests.test_rollup_fold import assert_a_backfill_gives_the_same, counted
from tests.test_rollups import events, load

pytest_plugins = ["tests.support.store_fixtures"]


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each fold that found facts kept: 'tail' when it took them, 'read' when it read the events back."""
    seen: list[str] = []
    real = rollup_fold.Tail.holds

    def spy(self: rollup_fold.Tail, conn: Any, watermark: int) -> bool:
        holds = real(self, conn, watermark)
        if self.facts:
            seen.append("tail" if holds else "read")
        return holds

    monkeypatch.setattr(rollup_fold.Tail, "holds", spy)
    monkeypatch.setattr(rollup_fold, "FOLD_EVENTS", 10_000)
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 3600.0)
    return seen


def opened(tmp_path: Path, run: Run) -> tuple[StoreConfig, SqliteStore]:
    config = StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))
    store = run(open_store(config))
    assert isinstance(store, SqliteStore)
    return config, store


def middle_id(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (low, high), = conn.execute("SELECT min(id), max(id) FROM events").fetchall()
        return (low + high) // 2
    finally:
        conn.close()


def test_a_fold_takes_the_tail_and_equals_a_backfill(tmp_path: Path, run: Run, folds: list[str]) -> None:
    config, store = opened(tmp_path, run)
    run(load(store, events(300, seed=21), size=100))
    assert counted(config.path) == 0 and folds == []
    run(store.settle())
    assert folds == ["tail"] and counted(config.path) == 302
    run(load(store, events(200, seed=22), size=50))         # the next tail starts at the new watermark
    run(store.settle())
    assert folds == ["tail", "tail"]
    assert_a_backfill_gives_the_same(config, store, run)


def test_another_connection_commit_makes_the_fold_read_back(tmp_path: Path, run: Run, folds: list[str]) -> None:
    config, store = opened(tmp_path, run)
    run(load(store, events(300, seed=23), size=100))
    other = sqlite3.connect(config.path)        # another process sharing the file: its retention, say
    try:
        other.execute("DELETE FROM events WHERE id = ?", (middle_id(config.path),))
        other.commit()
    finally:
        other.close()
    run(store.settle())
    assert folds == ["read"] and counted(config.path) == 301
    assert_a_backfill_gives_the_same(config, store, run)


def test_a_statement_on_the_events_drops_the_tail(tmp_path: Path, run: Run, folds: list[str]) -> None:
    config, store = opened(tmp_path, run)
    run(load(store, events(300, seed=24), size=100))
    run(store.execute([("DELETE FROM events WHERE id = ?", (middle_id(config.path),))], rollups_current=False))
    run(store.settle())
    assert folds == [] and counted(config.path) == 301      # no tail left: read back
    run(load(store, events(100, seed=25), size=100))        # kept again from the watermark on
    run(store.settle())
    assert folds == ["tail"]
    assert_a_backfill_gives_the_same(config, store, run)


def test_the_bitmaps_are_written_in_the_fold_and_a_read_of_them_folds_first(tmp_path: Path, run: Run,
                                                                             folds: list[str]) -> None:
    """SQLite writes the person and signup bitmaps in the fold, not in each group commit: a read of a bitmap
    table (not only of a rollup table) folds first, and sees every committed event's person."""
    config, store = opened(tmp_path, run)
    batch = events(300, seed=26)
    run(load(store, batch, size=100))
    conn = sqlite3.connect(config.path)
    try:
        assert conn.execute("SELECT count(*) FROM person_bits_hour").fetchall() == [(0,)]     # not folded yet
        active = {(int(ts // 3600), user) for ts, user in
                  conn.execute("SELECT ts, user_id FROM events WHERE user_id IS NOT NULL").fetchall()}
    finally:
        conn.close()
    rows = run(store.fetch("SELECT bucket, bits FROM person_bits_hour WHERE name = '' AND label = ''"))
    index = dict(run(store.fetch("SELECT idx, person FROM person_index")))
    assert {(bucket, index[i]) for bucket, bits in rows for i in BitMap.deserialize(bits)} == active
    assert folds == ["tail"] and len(active) > 10
