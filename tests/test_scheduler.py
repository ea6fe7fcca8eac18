"""The scheduler with scripted collectors: intervals, jitter, concurrency, retries, isolation.

Every test runs on a virtual-time event loop: timers fire in order, but when nothing is ready the loop
jumps to the next timer instead of waiting, so a second of schedule takes milliseconds and the counts
below do not depend on the machine's load. The scheduler reads that loop's time through its Clock.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.collectors.scheduler import Scheduler, probe_once

T = TypeVar("T")
EPOCH = 1_700_000_000.0           # the virtual clock's unix time at loop time 0


class _JumpingSelector(selectors.DefaultSelector):
    """Polls for I/O without waiting; a wait for the next timer becomes a jump of the virtual clock."""

    def __init__(self, jump: Callable[[float], None]) -> None:
        super().__init__()
        self._jump = jump

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:               # no timer at all: only I/O (the loop's self-pipe) can wake it
            return super().select(None)
        self._jump(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time() only moves when every task waits on a timer."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_JumpingSelector(self._jump))

    def time(self) -> float:
        return self._now

    def _jump(self, seconds: float) -> None:
        self._now += seconds


class VirtualClock:
    """The scheduler's Clock on the virtual loop: its time, and a unix time that moves with it."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def time(self) -> float:
        return EPOCH + asyncio.get_running_loop().time()


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())


def now() -> float:
    return asyncio.get_running_loop().time()


def target(name: str, interval: float = 0.2, timeout: float = 0.1, retries: int = 0, kind: str = "fake") -> ProbeTarget:
    return ProbeTarget(name=name, kind=kind, url=None, address=None, interval=interval, timeout=timeout,
                       retries=retries, labels={}, options=None)


class Scripted:
    """A collector whose behaviour per target is a coroutine function (target, deadline) -> result."""

    kind = "fake"

    def __init__(self, behaviours):
        self.behaviours = behaviours
        self.calls: list[tuple[str, float]] = []

    async def probe(self, t: ProbeTarget, deadline: float) -> ProbeResult:
        self.calls.append((t.name, now()))
        return await self.behaviours[t.name](t, deadline)

    async def close(self) -> None:
        pass


async def ok(t, deadline):
    return ProbeResult(True, 0.001)


async def hang(t, deadline):
    await asyncio.sleep(3600)


async def boom(t, deadline):
    raise RuntimeError("collector bug")


def run_for(seconds: float, collector, targets, **kwargs):
    records = []

    async def main():
        scheduler = Scheduler({"fake": collector}, lambda t, r, a, s: records.append((t.name, r, a)),
                              max_concurrency=kwargs.pop("max_concurrency", 10), clock=VirtualClock(), **kwargs)
        scheduler.update(targets)
        await asyncio.sleep(seconds)
        await scheduler.stop(grace=0.5)

    run_virtual(main)
    return records


def test_each_target_runs_on_its_interval():
    records = run_for(1.05, Scripted({"a": ok, "b": ok}), [target("a", 0.2), target("b", 0.5)])
    counts = {n: sum(1 for r in records if r[0] == n) for n in "ab"}
    assert 4 <= counts["a"] <= 6, counts
    assert 2 <= counts["b"] <= 3, counts


def test_a_hanging_target_does_not_delay_another():
    collector = Scripted({"slow": hang, "fast": ok})
    records = run_for(1.05, collector, [target("slow", 0.5, 0.3), target("fast", 0.2, 0.1)])
    fast = [r for r in records if r[0] == "fast"]
    slow = [r for r in records if r[0] == "slow"]
    assert len(fast) >= 4
    assert slow and all(r[1].reason is Reason.TIMEOUT for r in slow)


def test_collector_exception_is_counted_not_fatal():
    internal = []
    records = run_for(0.5, Scripted({"bug": boom, "ok": ok}), [target("bug", 0.1, 0.05), target("ok", 0.1, 0.05)],
                      on_internal_error=lambda t: internal.append(t.name))
    assert any(r[0] == "ok" and r[1].success for r in records)
    bug = [r for r in records if r[0] == "bug"]
    assert bug and all(r[1].reason is Reason.INTERNAL and "collector bug" in r[1].detail for r in bug)
    assert internal.count("bug") == len(bug)


def test_retries_until_success_and_reports_attempts():
    attempts = {"n": 0}

    async def flaky(t, deadline):
        attempts["n"] += 1
        if attempts["n"] % 3:
            return ProbeResult(False, 0.001, Reason.CONNECT, "refused")
        return ProbeResult(True, 0.001)

    records = run_for(0.35, Scripted({"f": flaky}), [target("f", 0.3, 0.05, retries=2)])
    assert records[0][1].success and records[0][2] == 3


def test_retries_exhausted_reports_failure():
    async def down(t, deadline):
        return ProbeResult(False, 0.001, Reason.CONNECT, "refused")

    records = run_for(0.35, Scripted({"d": down}), [target("d", 0.3, 0.05, retries=1)])
    assert not records[0][1].success and records[0][2] == 2


def test_concurrency_bound_is_respected():
    running = {"now": 0, "max": 0}

    async def busy(t, deadline):
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(0.05)
        running["now"] -= 1
        return ProbeResult(True, 0.05)

    names = [f"t{i}" for i in range(20)]
    run_for(0.6, Scripted({n: busy for n in names}), [target(n, 0.25, 0.2) for n in names], max_concurrency=3)
    assert running["max"] == 3


def test_first_runs_are_jittered_across_the_interval():
    collector = Scripted({f"t{i}": ok for i in range(40)})
    run_for(0.95, collector, [target(f"t{i}", 1.0, 0.5) for i in range(40)])
    starts = sorted(t for _, t in collector.calls)
    assert starts[-1] - starts[0] > 0.5        # spread, not a burst at start-up


def test_update_removes_and_adds_targets():
    collector = Scripted({"a": ok, "b": ok})
    records = []

    async def main():
        s = Scheduler({"fake": collector}, lambda t, r, a, st: records.append(t.name), max_concurrency=4,
                      clock=VirtualClock())
        s.update([target("a", 0.1, 0.05)])
        await asyncio.sleep(0.35)
        s.update([target("b", 0.1, 0.05)])
        records.clear()
        await asyncio.sleep(0.35)
        await s.stop(0.5)

    run_virtual(main)
    assert "b" in records and "a" not in records


def test_stop_lets_in_flight_probe_finish():
    records = []

    async def slowish(t, deadline):
        await asyncio.sleep(0.3)
        return ProbeResult(True, 0.3)

    async def main():
        s = Scheduler({"fake": Scripted({"s": slowish})}, lambda t, r, a, st: records.append(r), max_concurrency=1,
                      clock=VirtualClock())
        s.update([target("s", interval=0.05, timeout=1.0)])   # first slot within 50 ms
        await asyncio.sleep(0.1)                              # the probe is in flight now
        began = now()
        await s.stop(grace=2.0)
        return now() - began

    waited = run_virtual(main)
    assert len(records) == 1 and records[0].success
    assert 0.1 < waited < 1.0


def test_probe_once_enforces_deadline_on_a_misbehaving_collector():
    async def main():
        began = now()
        result = await probe_once(Scripted({"h": hang}), target("h", 1, 0.2), 0.2)
        return result, now() - began

    result, took = run_virtual(main)
    assert result.reason is Reason.TIMEOUT and took < 1.5


def test_slot_grid_makes_due_probes_share_a_wakeup():
    """With a 100 ms grid, 30 targets jittered over 1 s start on at most 12 grid points (not ~30)."""
    collector = Scripted({f"t{i}": ok for i in range(30)})
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        s = Scheduler({"fake": collector}, lambda t, r, a, st: None, max_concurrency=64, slot_grid=0.1,
                      on_lag=lambda lag: seen.append(loop.time() - lag), clock=VirtualClock())
        s.update([target(f"t{i}", 1.0, 0.5) for i in range(30)])
        await asyncio.sleep(1.15)          # every first slot is on the grid within 1.1 s
        await s.stop(0.5)

    run_virtual(main)
    # (loop.time() - lag) is the slot, up to the microseconds between two clock reads
    assert len(collector.calls) >= 30 and len({name for name, _ in collector.calls}) == 30
    assert all(abs(t / 0.1 - round(t / 0.1)) < 0.01 for t in seen)      # every start on the grid
    assert len({round(t / 0.1) for t in seen}) <= 12


def test_a_record_starts_at_the_clock_time_of_its_slot():
    starts: list[float] = []

    async def main() -> None:
        s = Scheduler({"fake": Scripted({"a": ok})}, lambda t, r, a, st: starts.append(st), max_concurrency=1,
                      clock=VirtualClock())
        s.update([target("a", 0.2, 0.1)])
        await asyncio.sleep(1.0)
        await s.stop(0.5)

    run_virtual(main)
    assert len(starts) == 5
    # one interval apart (to the precision of a float near 1.7e9)
    assert all(abs(b - a - 0.2) < 1e-6 for a, b in itertools.pairwise(starts))
    assert all(EPOCH <= t < EPOCH + 1.0 for t in starts)
