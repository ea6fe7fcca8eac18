"""SQLite's rollups folded in bulk (agent/store/rollup_fold.py, migration 19), against a backfill of the same
events (which recounts every rollup from the events table):

1. a group commit leaves its rollups unfolded until FOLD_EVENTS events or FOLD_SECONDS; a read of a rollup
   table folds them first, so every read sees every committed event;
2. a process killed with events committed and not folded loses nothing: the next open folds them (a real
   child process, ended by os._exit right after its commits);
3. erasing the newest events lowers the watermark, so the ids SQLite gives the next events are folded;
4. within settled_once() (one analytics request) a store folds for the first rollup read only;
5. an idle store folds its last commits; a process sharing the file reads the other's unfolded events;
6. a full store (store.max_size_mb) opens, answers reads, and recovers through retention, which does not
   fold first: the fold waits for room, and nothing acknowledged is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.events.model import Event
from agent.metrics.store import MetricStore
from agent.store import rollup_fold
from agent.store.base import Store
from agent.store.config import RetentionConfig, StoreConfig
from agent.store.errors import StoreFull
from agent.store.gdpr import erase_user
from agent.store.open import open_store
from agent.store.retention import run_cleanup_once
from agent.store.rows import event_rows
from agent.store.sqlite import SqliteStore
from agent.store.writer import GroupCommitWriter
from tests.support.store_fixtures import Run
from tests.test_rollups import T0, D, _rebackfill, events, load, snapshot

pytest_plugins = ["tests.support.store_fixtures"]
ROOT = Path(__file__).resolve().parent.parent


def raw(path: str, sql: str) -> list[tuple[int, ...]]:
    """A read beside the store, on its own connection: what is committed, without the store's fold."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def counted(path: str) -> int:
    (n,), = raw(path, "SELECT coalesce(sum(events), 0) FROM rollup_counts_day")
    return int(n)


def assert_a_backfill_gives_the_same(config: StoreConfig, store: Store, run: Run) -> None:
    """Every rollup table equals what migration 8's backfill makes of the events (the store is closed)."""
    folded = run(snapshot(store))
    reopened = run(_rebackfill(config, store))
    try:
        assert run(snapshot(reopened)) == folded
    finally:
        run(reopened.close())


def test_rollups_wait_for_the_fold_and_every_read_folds_first(tmp_path: Path, run: Run,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_fold, "FOLD_EVENTS", 250)
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 3600.0)
    config = StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))
    store = run(open_store(config))
    assert isinstance(store, SqliteStore)
    batch = events(240, seed=11)            # + 2 role events
    run(load(store, batch[:100], size=100))
    run(load(store, batch[100:200], size=100))
    assert counted(config.path) == 0                    # 200 committed, under FOLD_EVENTS: not folded yet
    run(load(store, batch[200:], size=100))             # 242 in all, still under 250
    assert counted(config.path) == 0
    (n,), = run(store.fetch("SELECT sum(events) FROM rollup_counts_day"))
    assert n == len(batch)                              # the read folded first
    assert counted(config.path) == len(batch)
    assert raw(config.path, "SELECT events FROM rollup_folded") == raw(config.path, "SELECT max(id) FROM events")
    more = events(300, seed=12)                         # its two role events are the first batch's again
    run(load(store, more, size=100))                    # the third group passes 250: folded in its commit
    assert counted(config.path) == len(batch) + 300 and store._unfolded == 0
    assert_a_backfill_gives_the_same(config, store, run)


def test_rollups_fold_in_a_commit_a_second_after_the_first_unfolded_one(tmp_path: Path, run: Run,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 0.2)
    store = run(open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))))
    assert isinstance(store, SqliteStore)
    try:
        run(load(store, events(50, seed=13), size=60))      # one commit, nothing was waiting
        assert counted(store.path) == 0
        time.sleep(0.3)                                     # the loop does not run: only the commit can fold
        run(load(store, events(50, seed=14), size=60))      # older than FOLD_SECONDS: both folded in it
        assert counted(store.path) == 102                   # (its role events were the first load's)
    finally:
        run(store.close())


def test_an_idle_store_folds_its_last_commits(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 0.2)
    store = run(open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))))
    assert isinstance(store, SqliteStore)
    try:
        run(load(store, events(50, seed=13), size=60))
        assert counted(store.path) == 0
        run(asyncio.sleep(0.5))                             # no commit, no read: the timer folds
        assert counted(store.path) == 52 and store._unfolded == 0
    finally:
        run(store.close())


def test_a_store_shared_with_another_process_reads_its_unfolded_events(tmp_path: Path, run: Run) -> None:
    path = str(tmp_path / "store.db")
    reader, writer = SqliteStore(path), SqliteStore(path)   # two processes share nothing but the file
    run(reader.open())
    run(writer.open())
    try:
        run(load(writer, events(300, seed=3), size=100))
        assert counted(path) == 0 and writer._unfolded == 302 and reader._unfolded == 0
        (n,), = run(reader.fetch("SELECT sum(events) FROM rollup_counts_day"))
        assert n == 302                                     # the reader folded them itself
    finally:
        run(writer.close())
        run(reader.close())


def full_store(tmp_path: Path, run: Run) -> tuple[SqliteStore, list[float]]:
    """A store capped 1 MB above its empty size, filled by events whose rollups need many rows (a category
    and a user each), until a commit is refused: (the store, the times of the events it acknowledged)."""
    path = str(tmp_path / "store.db")
    empty = SqliteStore(path)
    run(empty.open())
    run(empty.close())
    store = SqliteStore(path, max_size_mb=os.path.getsize(path) / 2**20 + 1.0)
    run(store.open())
    rng = random.Random(1)
    acked: list[float] = []
    with pytest.raises(StoreFull):
        for k in range(1000):
            batch = [Event("goal_created", "engagement", ts, ts, {"category": f"c{rng.randrange(10**6)}",
                                                                   "pad": "x" * 200},
                           event_id=f"e{k}_{i}", user_id=f"u{rng.randrange(10**6)}")
                     for i, ts in enumerate(T0 + rng.random() * 80 * D for _ in range(50))]
            run(store.write_events([event_rows(e) for e in batch]))
            acked += [e.timestamp for e in batch]
    return store, acked


def test_a_full_store_recovers_with_retention_and_loses_nothing(tmp_path: Path, run: Run,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 3600.0)      # every acknowledged event unfolded
    store, acked = full_store(tmp_path, run)
    try:
        assert acked and run(store.fetch("SELECT count(*) FROM events")) == [(len(acked),)]
        # a rollup read answers (the fold waits for room: logged, counted), retention frees room: it does
        # not fold first
        run(store.fetch("SELECT count(*) FROM rollup_counts_day"))
        assert store.fold_failures > 0
        now = T0 + 120 * D
        deleted = run(run_cleanup_once(store, RetentionConfig(), now=now))     # analytics: 90 days
        assert deleted["analytics"] > 0
        run(store.write_events([event_rows(Event("goal_created", "engagement", T0 + 81 * D, T0 + 81 * D,
                                                 {"category": "late"}, event_id="late", user_id="u"))]))
        (left,), = run(store.fetch("SELECT count(*) FROM events"))
        assert left == sum(ts >= now - 90 * D for ts in acked) + 1
    finally:
        run(store.close())
    # more room: the next open folds every event left, exactly once
    roomy = SqliteStore(store.path)
    run(roomy.open())
    try:
        assert counted(roomy.path) == left
        assert raw(roomy.path, "SELECT events FROM rollup_folded") == raw(roomy.path, "SELECT max(id) FROM events")
    finally:
        run(roomy.close())


def test_a_full_store_opens(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 3600.0)
    store, acked = full_store(tmp_path, run)
    run(store.close())                                      # its fold is refused too: the events stay unfolded
    assert counted(store.path) == 0
    reopened = SqliteStore(store.path, max_size_mb=store.max_size_mb)
    run(reopened.open())                                    # its fold at open is refused: logged, not fatal
    try:
        assert reopened.fold_failures == 1
        assert run(reopened.fetch("SELECT count(*) FROM events")) == [(len(acked),)]
    finally:
        run(reopened.close())


CHILD = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from tests.test_rollups import events, load
from agent.store import rollup_fold
from agent.store.sqlite import SqliteStore

rollup_fold.FOLD_SECONDS = 3600.0    # however slow this machine: no fold by time

async def main():
    store = SqliteStore({path!r})
    await store.open()
    await load(store, events(300, seed=15), size=60)
    print(store._unfolded, flush=True)
    os._exit(0)         # no close: the process dies with its events committed and not folded

asyncio.run(main())
"""


def test_a_killed_process_unfolded_events_are_folded_at_the_next_open(tmp_path: Path, run: Run) -> None:
    path = str(tmp_path / "store.db")
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD.format(root=str(ROOT), path=path))],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert int(child.stdout) == 302                     # every event committed, none folded
    assert counted(path) == 0 and raw(path, "SELECT count(*) FROM events") == [(302,)]
    config = StoreConfig(driver="sqlite", path=path)
    store = run(open_store(config))
    assert store is not None
    assert counted(path) == 302                         # folded when it opened
    assert_a_backfill_gives_the_same(config, store, run)


def test_erasing_the_newest_events_lowers_the_watermark(sqlite_store: SqliteStore, run: Run) -> None:
    now = 1_750_000_000.0

    def event(user: str, n: int) -> Event:
        return Event("feature_used", "engagement", now + n, now + n, {"feature": "chat"}, user_id=user,
                     event_id=f"{user}_{n}")

    run(sqlite_store.write_events([event_rows(event("keep", 1)), event_rows(event("gone", 2)),
                                   event_rows(event("gone", 3))]))
    run(erase_user(sqlite_store, ["gone"]))             # the two highest ids
    (top,), = run(sqlite_store.fetch("SELECT max(id) FROM events"))
    assert run(sqlite_store.fetch("SELECT events FROM rollup_folded")) == [(top,)]
    run(sqlite_store.write_events([event_rows(event("next", 4))]))    # takes an erased event's id
    (n,), = run(sqlite_store.fetch("SELECT sum(events) FROM rollup_counts_day WHERE name = 'feature_used'"))
    assert n == 2


def test_one_request_folds_for_its_first_rollup_read_only(sqlite_store: SqliteStore, run: Run,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settles = []
    real = SqliteStore._settle

    def counting(self: SqliteStore) -> None:
        settles.append(self._unfolded)
        real(self)

    monkeypatch.setattr(SqliteStore, "_settle", counting)

    async def request(seeds: range) -> None:
        with rollup_fold.settled_once():
            for seed in seeds:
                await load(sqlite_store, events(20, seed=seed), size=22)     # ingest meanwhile
                await sqlite_store.fetch("SELECT count(*) FROM rollup_counts_hour")

    run(request(range(20, 23)))
    assert settles == [22]                              # the first read only
    assert sqlite_store._unfolded == 40                 # the other two loads' (their role events are repeats)
    run(load(sqlite_store, events(20, seed=40), size=22))
    run(sqlite_store.fetch("SELECT count(*) FROM events"))        # not a rollup: no fold
    assert len(settles) == 1
    run(sqlite_store.fetch("SELECT count(*) FROM rollup_counts_hour"))   # outside a request: every read
    assert settles == [22, 60] and sqlite_store._unfolded == 0


def test_a_refused_fold_shows_in_the_metrics(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """loom_agent_store_fold_failures_total (LoomAgentStoreFull): the folds a full store refused, at a read or
    in a commit, counted at the next group commit; 0 from the start (so increase() sees the first one)."""
    monkeypatch.setattr(rollup_fold, "FOLD_SECONDS", 3600.0)
    store, acked = full_store(tmp_path, run)
    metrics = MetricStore()

    async def main() -> None:
        writer = GroupCommitWriter(store, metrics=metrics)
        writer.start()
        family = metrics.get("loom_agent_store_fold_failures")
        assert family is not None and family.series == {(): 0.0}
        before = store.fold_failures
        await store.fetch("SELECT count(*) FROM rollup_counts_day")      # the fold waits for room
        assert store.fold_failures == before + 1
        await run_cleanup_once(store, RetentionConfig(), now=T0 + 120 * D)  # room for one more event
        await writer.submit([event_rows(Event("goal_created", "engagement", T0 + 81 * D, T0 + 81 * D,
                                              {"category": "late"}, event_id="late", user_id="u"))])
        assert family.series == {(): float(store.fold_failures)}
        await writer.stop()

    try:
        run(main())
    finally:
        run(store.close())
