"""SQLite's WAL under continuous analytics reads during ingest (issue 17, item 6): does it stay bounded?

    python bench/wal.py                       # 60 s, 3 readers of the 7-day dashboard, ingest closed-loop
    python bench/wal.py --seconds 20 --readers 1

`python -m agent run` on core 0 with the durable SQLite store (WAL, synchronous=full); on core 1, this
process drives ingest over the API (bench/ingest_events.py's batches of 100, --connections closed-loop
posters) and --readers loops of GET /api/analytics/dashboard?range=7d (each asks again as soon as it
has its answer), and samples the size of the database's -wal file every 0.25 s.

Why: a checkpoint can copy WAL frames into the database only up to the oldest reader's snapshot, and
the WAL can restart from its beginning only at a moment when no reader is using it; with queries back
to back there is no such moment, so every commit appends and the file grows without end (before the
fix: 601 MiB in about a minute). Prints one JSON document: events ingested, dashboards answered, the
WAL's size over time and its maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Harness  # noqa: E402
from bench.ingest_events import bodies, fill  # noqa: E402
from bench.processes import rss_bytes  # noqa: E402

TOKEN = "wal-admin-token-" + "a" * 24
MIB = 2 ** 20


def wal_size(db: Path) -> int:
    try:
        return os.stat(str(db) + "-wal").st_size
    except FileNotFoundError:
        return 0


async def run(args: argparse.Namespace, tmp: Path) -> dict:
    db = tmp / "events.db"
    overrides = {"store": {"driver": "sqlite", "path": str(db), "synchronous": "full"},
                 "privacy": {"hmac_key": "wal-" + "k" * 40}, "api": {"admin_tokens": [TOKEN]},
                 "telemetry": {"trace_probes": False}}
    if args.ingest_key:
        overrides["api"]["ingest_keys"] = [args.ingest_key]
    async with Harness(tmp, "uvloop") as h:
        agent = await h.start_agent([], config_overrides=overrides)
        prepared = bodies(time.time())
        stop = asyncio.Event()
        counts = {"events": 0, "batches_failed": 0, "dashboards": 0, "dashboards_failed": 0}
        dashboard_ms: list[float] = []
        samples: list[tuple[float, int]] = []
        started = time.monotonic()

        async def poster(number: int, session: aiohttp.ClientSession) -> None:
            cycle = number * 100_000
            while not stop.is_set():
                cycle += 1
                body = fill(prepared[cycle % len(prepared)], cycle)
                async with session.post(agent.url + "/v1/events/batch", data=body,
                                        headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status < 300:
                        counts["events"] += 100
                    else:
                        counts["batches_failed"] += 1
                        await asyncio.sleep(0.05)

        async def reader(session: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                began = time.monotonic()
                async with session.get(agent.url + "/api/analytics/dashboard?range=7d",
                                       headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    await response.read()
                    if response.status == 200:
                        counts["dashboards"] += 1
                        dashboard_ms.append((time.monotonic() - began) * 1000)
                    else:
                        counts["dashboards_failed"] += 1
                        await asyncio.sleep(0.1)

        async def sampler() -> None:
            while not stop.is_set():
                samples.append((round(time.monotonic() - started, 2), wal_size(db)))
                await asyncio.sleep(0.25)

        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [asyncio.create_task(poster(n, session)) for n in range(args.connections)]
            tasks += [asyncio.create_task(reader(session)) for _ in range(args.readers)]
            tasks.append(asyncio.create_task(sampler()))
            await asyncio.sleep(args.seconds)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        rss = rss_bytes(agent.pid)
    dashboard_ms.sort()
    by_ten = {f"{int(t)}s": round(size / MIB, 1) for t, size in samples if int(t * 4) % 40 == 0}
    return {"seconds": args.seconds, "readers": args.readers, "connections": args.connections,
            **counts, "events_per_second": round(counts["events"] / args.seconds),
            "dashboard_ms_p50": dashboard_ms[len(dashboard_ms) // 2] if dashboard_ms else None,
            "dashboard_ms_max": dashboard_ms[-1] if dashboard_ms else None,
            "wal_mib_max": round(max(s for _, s in samples) / MIB, 1),
            "wal_mib_end": round(samples[-1][1] / MIB, 1), "wal_mib_every_10s": by_ten,
            "db_mib_end": round(os.stat(db).st_size / MIB, 1), "agent_rss_mib_end": round(rss / MIB, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--ingest-key", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom-wal-") as tmp:
        print(json.dumps(asyncio.run(run(args, Path(tmp))), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
