"""What runs beside the soak's load, in bench/soak.py's process: the /metrics scraper (every second),
the analytics poller (admin token, every few seconds), and the sampler of the agent's RSS, open file
descriptors, threads and CPU from /proc (every few seconds). Each records every observation with its
time, so the report can cut the run into its start, its end and its halves.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench import promtext
from bench.processes import cpu_seconds, rss_bytes

ANALYTICS = ("/api/analytics/dashboard", "/api/monitoring/business-metrics")
GAUGES = ("loom_agent_store_pending_events", "loom_agent_export_queue_size", "loom_agent_event_spans_open",
          "loom_realtime_connections_open", "loom_agent_probes_in_flight")


def wal_bytes(path: str) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except FileNotFoundError:
        return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


@dataclass
class Watch:
    """Observations of one soak, each list of (unix time, ...) tuples in the order they were made."""

    pid: int
    url: str
    token: str
    scrapes: list[tuple[float, float, int]] = field(default_factory=list)        # (t, ms, bytes)
    scrape_errors: Counter[str] = field(default_factory=Counter)
    polls: list[tuple[float, str, float, int]] = field(default_factory=list)     # (t, path, ms, status)
    poll_errors: Counter[str] = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)
    last_metrics: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    wal_path: str = ""              # the SQLite store's -wal file, sampled with the rest

    def sample(self) -> dict:
        """RSS, fds, threads and CPU of the agent now, the size of its -wal file, with the gauges of the
        last scrape."""
        point = {"t": time.time(), "rss_bytes": rss_bytes(self.pid), "fds": open_fds(self.pid),
                 "threads": threads(self.pid), "cpu_seconds": cpu_seconds(self.pid),
                 "wal_bytes": wal_bytes(self.wal_path)}
        for name in GAUGES:
            point[name] = promtext.total(self.last_metrics, name)
        self.samples.append(point)
        return point


async def _every(period: float, stop: asyncio.Event, step) -> None:
    """Call `step()` every `period` seconds (from one start to the next) until `stop` is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        await step()
        next_at += period
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        except asyncio.TimeoutError:
            pass


async def scraper(watch: Watch, session: aiohttp.ClientSession, period: float = 1.0) -> None:
    async def step() -> None:
        began = time.time()
        try:
            async with session.get(watch.url + "/metrics") as response:
                body = await response.text()
                if response.status != 200:
                    watch.scrape_errors[f"http_{response.status}"] += 1
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            watch.scrape_errors[type(exc).__name__] += 1
            return
        watch.scrapes.append((began, (time.time() - began) * 1000, len(body)))
        watch.last_metrics = body

    await _every(period, watch.stop, step)


async def _get(watch: Watch, session: aiohttp.ClientSession, path: str) -> bool:
    """One analytics request, recorded with the polls (an error counted by kind); True when it answered 200."""
    began = time.time()
    try:
        async with session.get(watch.url + path, headers={"Authorization": f"Bearer {watch.token}"}) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        watch.poll_errors[type(exc).__name__] += 1
        return False
    watch.polls.append((began, path, (time.time() - began) * 1000, status))
    if status != 200:
        watch.poll_errors[f"http_{status}"] += 1
    return status == 200


async def poller(watch: Watch, session: aiohttp.ClientSession, period: float = 5.0) -> None:
    """The two analytics endpoints in turn, one request every `period` seconds."""
    turn = [0]

    async def step() -> None:
        path = ANALYTICS[turn[0] % len(ANALYTICS)]
        turn[0] += 1
        await _get(watch, session, path)

    await _every(period, watch.stop, step)


async def reader(watch: Watch, session: aiohttp.ClientSession, path: str) -> None:
    """One analytics request after another, no pause: continuous reads of the store (what starved SQLite's
    checkpoints, issue 17). Recorded with the polls."""
    while not watch.stop.is_set():
        if not await _get(watch, session, path):
            await asyncio.sleep(0.1)         # a refused or failed read: not a busy loop


async def sampler(watch: Watch, period: float = 5.0) -> None:
    async def step() -> None:
        watch.sample()

    await _every(period, watch.stop, step)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (y per unit of x); nan for fewer than two distinct x."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def between(rows: list, start: float, end: float) -> list:
    """The rows (tuples or dicts with a time first / under "t") observed in [start, end)."""
    def at(row) -> float:
        return row["t"] if isinstance(row, dict) else row[0]
    return [row for row in rows if start <= at(row) < end]
