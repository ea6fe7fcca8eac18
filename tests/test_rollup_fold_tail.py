"""The fold's tail (agent/store/rollup_fold.py, Tail): the writer keeps the facts of the events it committed
since the last fold and the fold aggregates them instead of reading the events back, only while they are
exactly the events above the watermark. Each test compares the rollups with a backfill of the events:

1. group commits then a fold take the tail (the aggregate is given the kept facts, not rows read back);
2. another connection's commit to the file (a process sharing it deletes an event of the tail, as its
   retention would, without folding) makes the fold read the events back: the deleted event is not counted;
3. a statement of the store itself on the events (retention, rollups_current=False: no fold first) drops the
   tail the same way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.store import rollup_fold, rollups
from agent.store.config import StoreConfig
from agent.store.open import open_store
from agent.store.sqlite import SqliteStore
from tests.support.store_fixtures import Run
from tests.test_rollup_fold import assert_a_backfill_gives_the_same, counted
from tests.test_rollups import events, load

pytest_plugins = ["tests.support.store_fixtures"]


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each aggregate of events was given: 'tail' (the kept facts) or 'read' (rows read back)."""
    seen: list[str] = []
    real = rollups.aggregate

    def spy(facts: Any, sign: int = 1) -> Any:
        seen.append("tail" if isinstance(facts, list) else "read")
        return real(facts, sign)

    monkeypatch.setattr(rollups, "aggregate", spy)
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
    assert folds == ["read"] and counted(config.path) == 301
    run(load(store, events(100, seed=25), size=100))        # kept again from the watermark on
    run(store.settle())
    assert folds == ["read", "tail"]
    assert_a_backfill_gives_the_same(config, store, run)
