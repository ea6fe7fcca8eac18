"""PostgreSQL at scale (issue 17, item 5): the figures of docs/scaling.md.

    python bench/pg_scale.py                     # both parts; prints one JSON document
    python bench/pg_scale.py --rows 1000000 --seconds 30

1. Retention, partition drop against row deletes: --rows events of one month 200 days old in a
   partitioned store (migration 9) and the same in a store migrated only up to 8 (one table); the time
   of `run_cleanup_once` (the agent's retention run) on each, and what it leaves.
2. Ingest with one agent, then two agents, against one PostgreSQL: `python -m agent run` processes with
   store.driver postgres, each fed by 4 closed-loop connections posting bench/ingest_events.py's batches
   of 100 for --seconds; events/s acknowledged (every 2xx is committed), and the CPU each process used.
   PostgreSQL (Debian's 15, started as a plain process in a temp dir: tests/support/pg.py, fsync on)
   and everything else share this machine's cores: the figure is what one machine gives, not a cluster.
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
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.store.config import RetentionConfig  # noqa: E402
from agent.store.partitions import ensure  # noqa: E402
from agent.store.postgres import PostgresStore  # noqa: E402
from agent.store.retention import run_cleanup_once  # noqa: E402
from agent.store.schema import MIGRATIONS  # noqa: E402
from bench.harness import Harness  # noqa: E402
from bench.ingest_events import bodies, fill  # noqa: E402
from bench.processes import Child, cpu_seconds, free_port  # noqa: E402
from tests.support import pg  # noqa: E402

DAY = 86400.0
FILL = """INSERT INTO events (event_id, name, category, ts, received_at, user_id, retention_class, properties, context)
    SELECT 'old' || g, 'feature_used', 'engagement', $1 + g * $2, $1 + g * $2, 'u' || (g % 5000), 'analytics',
           '{"feature": "booking"}', '{}' FROM generate_series(1, $3) AS g"""
FILL_IDS = "INSERT INTO event_ids (event_id, ts) SELECT 'old' || g, $1 + g * $2 FROM generate_series(1, $3) AS g"


async def retention_case(dsn: str, rows: int, partitioned: bool) -> dict:
    migrations = MIGRATIONS if partitioned else tuple(m for m in MIGRATIONS if m.version < 9)
    store = PostgresStore(dsn, pool_size=2, migrations=migrations, query_timeout=600.0, write_timeout=600.0)
    await store.open()
    now = time.time()
    start, step = now - 200 * DAY, 20 * DAY / rows          # 20 days of one month, 200 days ago
    try:
        if partitioned:     # the months a store running since then has (the agent creates them ahead)
            await ensure(store.fetch, store.execute, now, since=start)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(FILL, start, step, rows)
            if partitioned:
                await conn.execute(FILL_IDS, start, step, rows)
            await conn.execute("VACUUM ANALYZE")
            size = await conn.fetchval("SELECT pg_total_relation_size('events') + "
                                       "coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                       "WHERE inhparent = 'events'::regclass), 0)")
        finally:
            await conn.close()
        began = time.perf_counter()
        deleted = await run_cleanup_once(store, RetentionConfig(batch_size=5000), now)
        seconds = time.perf_counter() - began
        left = (await store.fetch("SELECT count(*) FROM events"))[0][0]
    finally:
        await store.close()
    return {"partitioned": partitioned, "rows": rows, "table_mib": round(float(size) / 2 ** 20, 1),
            "cleanup_seconds": round(seconds, 3), "analytics_rows_deleted": deleted["analytics"], "rows_left": left}


async def ingest_case(server: pg.PostgresServer, tmp: Path, agents: int, seconds: float) -> dict:
    database = server.create_database()
    prepared = bodies(time.time())
    async with Harness(tmp, "uvloop") as h:
        urls, children = [], []
        for n in range(agents):
            port = free_port()
            config = {"listen": f"127.0.0.1:{port}", "targets": [], "telemetry": {"trace_probes": False},
                      "store": {"driver": "postgres", "dsn": server.dsn(database), "pool_size": 4},
                      "privacy": {"hmac_key": "scale-" + "k" * 40}}
            path = tmp / f"scale{agents}_{n}.yaml"
            path.write_text(json.dumps(config))
            child = Child(f"scale{agents}_{n}", [sys.executable, "-m", "agent", "--log-level", "warning", "run",
                                                 "--config", str(path)], "0,1", tmp, registry=h.children,
                          capture=False)
            await h.wait_http(child, f"http://127.0.0.1:{port}/-/ready", 90)
            urls.append(f"http://127.0.0.1:{port}")
            children.append(child)
        stop = asyncio.Event()
        acked = [0]
        failed = [0]

        async def poster(url: str, number: int, session: aiohttp.ClientSession) -> None:
            cycle = number * 1_000_000
            while not stop.is_set():
                cycle += 1
                async with session.post(url + "/v1/events/batch", data=fill(prepared[cycle % len(prepared)], cycle),
                                        headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status < 300:
                        acked[0] += 100
                    else:
                        failed[0] += 1
                        await asyncio.sleep(0.05)

        postgres_pids = [server.proc.pid] if server.proc else []
        cpu0 = [c.cpu() for c in children]
        pg0 = sum(cpu_seconds(p) for p in postgres_pids + pg_children(postgres_pids))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            tasks = [asyncio.create_task(poster(urls[i % agents], i, session)) for i in range(4 * agents)]
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        cpu1 = [c.cpu() for c in children]
        pg1 = sum(cpu_seconds(p) for p in postgres_pids + pg_children(postgres_pids))
    stored = server.psql("SELECT count(*) FROM events", database).strip()
    server.drop_database(database)
    return {"agents": agents, "seconds": seconds, "events_acknowledged": acked[0], "batches_refused": failed[0],
            "events_per_second": round(acked[0] / seconds), "events_stored": int(stored),
            "agent_core_use": [round((b - a) / seconds, 2) for a, b in zip(cpu0, cpu1)],
            "postgres_core_use_lower_bound": round((pg1 - pg0) / seconds, 2)}


def pg_children(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            out += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pass
    return out


async def main_async(args: argparse.Namespace, tmp: Path) -> dict:
    server = pg.PostgresServer()
    pg._TEST_SETTINGS = tuple(s for s in pg._TEST_SETTINGS if not s.startswith(("fsync", "synchronous_commit",
                                                                                   "full_page_writes")))
    server.start()
    try:
        out: dict = {"postgres": "15 (Debian), fsync on, shared_buffers 32MB", "nproc": os.cpu_count()}
        if not args.skip_retention:
            out["retention"] = []
            for partitioned in (True, False):
                database = server.create_database()
                out["retention"].append(await retention_case(server.dsn(database), args.rows, partitioned))
                server.drop_database(database)
        if not args.skip_ingest:
            out["ingest"] = [await ingest_case(server, tmp, n, args.seconds) for n in (1, 2)]
        return out
    finally:
        server.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip-retention", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom-pgscale-") as tmp:
        print(json.dumps(asyncio.run(main_async(args, Path(tmp))), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
