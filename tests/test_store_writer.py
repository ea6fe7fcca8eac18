"""Group commit on both databases: submissions that arrive while a commit runs share the next one, each
gets its own duplicate positions (also across submissions of one group), a failed commit fails its whole
group, the pending bound answers StoreBusy, stop() drains. Commits are counted by wrapping the store and
made to overlap with a gate the test opens: no sleeps, no timing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from agent.metrics.store import MetricStore
from agent.store.errors import StoreBusy, StoreFull, StoreUnavailable
from agent.store.rows import EventRows
from agent.store.writer import GroupCommitWriter
from tests.support.store_fixtures import example_rows

pytest_plugins = ["tests.support.store_fixtures"]


class GatedStore:
    """The real store, with every write_events call recorded and the first `gated` calls held until
    the test opens `gate` (so the test decides what queues up behind a running commit)."""

    def __init__(self, store: Any, gated: int = 1):
        self.store = store
        self.calls: list[int] = []          # batch size of each write_events call
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.gated = gated
        self.fail_with: Exception | None = None

    @property
    def fold_failures(self) -> int:
        return int(self.store.fold_failures)

    async def write_events(self, batch: Sequence[EventRows]) -> frozenset[int]:
        self.calls.append(len(batch))
        if len(self.calls) <= self.gated:
            self.entered.set()
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return await self.store.write_events(batch)


def rows(*ids: str | None) -> list[EventRows]:
    return [example_rows("login_attempt", event_id=i) for i in ids]


async def stored_ids(store: Any) -> list[str | None]:
    """Client event ids of the stored events, in insertion order."""
    return [r[0] for r in await store.fetch("SELECT event_id FROM events ORDER BY id")]


def test_submissions_during_a_commit_share_the_next_one(store, run) -> None:
    async def main() -> None:
        gated = GatedStore(store)
        writer = GroupCommitWriter(gated)
        writer.start()
        first = asyncio.create_task(writer.submit(rows("first")))
        await gated.entered.wait()                  # commit 1 is running (held at the gate)
        rest = [asyncio.create_task(writer.submit(rows(f"e{i}a", f"e{i}b"))) for i in range(49)]
        await asyncio.sleep(0)                      # let every submission queue
        assert writer.pending == 1 + 98
        gated.gate.set()
        assert await first == frozenset()
        assert await asyncio.gather(*rest) == [frozenset()] * 49
        assert gated.calls == [1, 98]               # 50 requests, 2 transactions
        assert writer.pending == 0 and writer.commits == 2
        assert len(await stored_ids(store)) == 99
        await writer.stop()

    run(main())


def test_duplicates_across_submissions_of_one_group(store, run) -> None:
    async def main() -> None:
        run_before = GroupCommitWriter(store)
        run_before.start()
        assert await run_before.submit(rows("old")) == frozenset()
        await run_before.stop()

        gated = GatedStore(store)
        writer = GroupCommitWriter(gated)
        writer.start()
        blocker = asyncio.create_task(writer.submit(rows("blocker")))
        await gated.entered.wait()
        a = asyncio.create_task(writer.submit(rows("x", "y", "old")))
        b = asyncio.create_task(writer.submit(rows("y", "z", None)))
        c = asyncio.create_task(writer.submit(rows("z", "x", "w", "x")))
        await asyncio.sleep(0)
        gated.gate.set()
        assert await blocker == frozenset()
        assert (await a, await b, await c) == ({2}, {0}, {0, 1, 3})
        assert gated.calls == [1, 10]               # a, b and c were one group
        assert sorted(filter(None, await stored_ids(store))) == ["blocker", "old", "w", "x", "y", "z"]
        assert (await store.fetch("SELECT count(*) FROM events WHERE event_id IS NULL")) == [(1,)]
        await writer.stop()

    run(main())


def test_a_failed_commit_fails_its_whole_group_and_the_next_group_commits(store, run) -> None:
    metrics = MetricStore()

    async def main() -> None:
        gated = GatedStore(store)
        writer = GroupCommitWriter(gated, metrics=metrics)
        writer.start()
        gated.fail_with = StoreFull("disk full")
        first = asyncio.create_task(writer.submit(rows("a")))
        await gated.entered.wait()
        second = asyncio.create_task(writer.submit(rows("b")))
        third = asyncio.create_task(writer.submit(rows("c")))
        await asyncio.sleep(0)
        gated.gate.set()
        with pytest.raises(StoreFull):
            await first
        # the second group (b and c, queued behind the first) fails the same way: the disk is still full
        for task in (second, third):
            with pytest.raises(StoreFull):
                await task
        assert gated.calls == [1, 2] and writer.pending == 0
        gated.fail_with = None                      # the disk has room again
        assert await writer.submit(rows("a", "b")) == frozenset()
        assert await stored_ids(store) == ["a", "b"]
        await writer.stop()

    run(main())
    assert metrics.get("loom_agent_store_commits").series == {("full",): 2, ("ok",): 1}
    events = metrics.get("loom_agent_store_commit_events").series[()]
    assert sum(events[:-1]) == 3 and events[-1] == 1 + 2 + 2         # 3 commits of 1, 2 and 2 events
    assert metrics.get("loom_agent_store_commit_seconds").series[()][-1] > 0
    assert metrics.get("loom_agent_store_pending_events").series[()] == 0


def test_beyond_max_pending_events_submissions_are_refused_at_once(store, run) -> None:
    async def main() -> None:
        gated = GatedStore(store)
        writer = GroupCommitWriter(gated, max_pending_events=10)
        writer.start()
        held = asyncio.create_task(writer.submit(rows(*(f"h{i}" for i in range(6)))))
        await gated.entered.wait()
        with pytest.raises(StoreBusy) as info:
            await writer.submit(rows(*(f"x{i}" for i in range(5))))
        assert info.value.retry_after == 1
        fits = asyncio.create_task(writer.submit(rows(*(f"f{i}" for i in range(4)))))
        await asyncio.sleep(0)
        assert writer.pending == 10
        gated.gate.set()
        await held
        await fits
        assert writer.pending == 0
        # alone, a batch larger than the bound is still taken (or it could never be stored)
        assert await writer.submit(rows(*(f"big{i}" for i in range(25)))) == frozenset()
        assert len(await stored_ids(store)) == 35
        await writer.stop()

    run(main())


def test_stop_commits_what_was_submitted_then_refuses(store, run) -> None:
    async def main() -> None:
        gated = GatedStore(store)
        writer = GroupCommitWriter(gated)
        writer.start()
        tasks = [asyncio.create_task(writer.submit(rows(f"s{i}"))) for i in range(5)]
        await gated.entered.wait()
        stopping = asyncio.create_task(writer.stop())
        await asyncio.sleep(0)
        gated.gate.set()
        await stopping
        assert await asyncio.gather(*tasks) == [frozenset()] * 5
        assert len(await stored_ids(store)) == 5
        with pytest.raises(StoreUnavailable):
            await writer.submit(rows("late"))

    run(main())


def test_a_cancelled_submission_is_still_committed_and_the_writer_goes_on(store, run) -> None:
    async def main() -> None:
        gated = GatedStore(store)
        writer = GroupCommitWriter(gated)
        writer.start()
        gone = asyncio.create_task(writer.submit(rows("gone")))
        await gated.entered.wait()
        gone.cancel()                               # the client disconnected mid-commit
        gated.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await writer.submit(rows("gone", "next")) == {0}   # its retry is a duplicate
        assert await stored_ids(store) == ["gone", "next"]
        await writer.stop()

    run(main())


def test_stop_gives_up_on_a_hung_commit_without_acknowledging(store, run) -> None:
    async def main() -> None:
        gated = GatedStore(store)                   # the gate never opens: a commit that hangs
        writer = GroupCommitWriter(gated)
        writer.start()
        hung = asyncio.create_task(writer.submit(rows("hung")))
        await gated.entered.wait()
        queued = asyncio.create_task(writer.submit(rows("queued")))
        await asyncio.sleep(0)
        await writer.stop(timeout=0.05)
        for task in (hung, queued):
            with pytest.raises(StoreUnavailable):
                await task
        assert await stored_ids(store) == []

    run(main())
