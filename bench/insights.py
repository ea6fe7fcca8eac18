"""Latency of the insights API (POST /api/insights/trends, /funnels, /retention) over the events of
bench/analytics.py (90 days, 20,000 users with Zipf-like activity, 200 coaches, every category, anonymous
landing pages and signup steps), on SQLite: issue 17's targets at 10M events are trends and retention p99
under 300 ms and a 4-step funnel under 2 s.

    python bench/insights.py                      # 1M events, 20 requests per insight
    python bench/insights.py --events 10000000    # 10M
    python bench/insights.py --quick              # 100k events, 5 requests: a smoke run (writes no JSON)
    python bench/insights.py --postgres           # the same on PostgreSQL (a server started for the run)
    python bench/insights.py --events 10000000 --db /tmp/copy.db --only funnel   # some requests; writes nothing

The stores are bench/analytics.py's: bench/out/analytics-<events>.db with its .json (when the events end),
filled by that bench (or by this one, the same way) and reused by both; `--db PATH` names another file.
Every range ends when the events do. With --postgres: Debian's PostgreSQL 15 started as a plain process
(tests/support/pg.py: fsync off, shared_buffers 32MB) on a data directory kept in bench/out/pg-analytics-
<events>/, filled once by COPY from the SQLite store of the same size (bench/pg_cache.py), stopped by PID.

The requests (each through a real HTTP server on 127.0.0.1, one after another after one warm-up):
- trend: the last 30 days of page_load, daily, broken down by page (the event's lifted `label`, read from
  the events), the same series' unique persons broken down by page (persons: anonymous and identified ids
  merged), and api_request broken down by status (answered from the rollups maintained at ingest);
- funnel: login_attempt -> resource_viewed -> session_booked -> session_completed over 30 days, 7-day
  window, ordered, and the same strict (which also looks, for each step event that may continue an
  attempt from the person's previous step event, for another event of the person between the two);
- retention: 8 weeks, cohort by the first login_attempt ever (at 10M every user's first login is in the
  first weeks of the 90 days: the cohorts are empty, the cost is reading every login_attempt), and the
  same recurring (a cohort per week of those who logged in), returning with feature_used.
Results: printed, written to bench/results/insights.json and the "Insights API" section of RESULTS.md
(not with --quick, --only or --no-write).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analytics.stats import nearest_rank  # noqa: E402
from agent.api import insights  # noqa: E402
from agent.api.auth import AdminTokens  # noqa: E402
from agent.api.keys import ADMIN_TOKENS, EVENT_STORE  # noqa: E402
from agent.api.problems import problem_middleware  # noqa: E402
from agent.store.base import Store, StoreSlot  # noqa: E402
from agent.store.sqlite import SqliteStore  # noqa: E402
from bench import report  # noqa: E402
from bench.analytics import fill  # noqa: E402
from bench.pg_cache import filled_postgres  # noqa: E402  (a PostgreSQL kept in bench/out/, filled once)

OUT = Path(__file__).resolve().parent / "out"         # bench/analytics.py's store cache, shared
RESULTS_JSON = Path(__file__).resolve().parent / "results" / "insights.json"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Insights API"
TOKEN = "bench-admin-token-0123456789"
FUNNEL = [{"event": "login_attempt"}, {"event": "resource_viewed"}, {"event": "session_booked"},
          {"event": "session_completed"}]
REQUESTS: dict[str, tuple[str, dict[str, Any], float]] = {       # name -> (path, body, p99 target ms at 10M)
    "trend 30d daily, breakdown by page": (
        "/api/insights/trends", {"series": [{"event": "page_load"}], "breakdown": "page", "range": "30d"}, 300),
    "trend 30d daily, unique persons by page": (
        "/api/insights/trends", {"series": [{"event": "page_load", "math": "unique_persons"}], "breakdown": "page",
                                 "range": "30d"}, 300),
    "trend 30d daily, api_request by status (rollups)": (
        "/api/insights/trends", {"series": [{"event": "api_request"}], "breakdown": "status", "range": "30d"}, 300),
    "funnel 4 steps 30d ordered": ("/api/insights/funnels", {"steps": FUNNEL, "window": "7d", "range": "30d"}, 2000),
    "funnel 4 steps 30d strict": ("/api/insights/funnels", {"steps": FUNNEL, "window": "7d", "order": "strict",
                                                            "range": "30d"}, 2000),
    "retention 8 weeks, first time": ("/api/insights/retention", {"cohort": {"event": "login_attempt"},
                                                                  "returning": {"event": "feature_used"},
                                                                  "period": "week", "periods": 8}, 300),
    "retention 8 weeks, recurring": ("/api/insights/retention", {"cohort": {"event": "login_attempt"},
                                                                 "returning": {"event": "feature_used"},
                                                                 "type": "recurring", "period": "week",
                                                                 "periods": 8}, 300),
}


async def measure(store: Store, requests: int, end: float, only: str = "") -> dict[str, Any]:
    """Each insight of REQUESTS (whose name holds `only`) over the ranges ending at `end`: p50 / p99 / max
    of the HTTP round trip and the process's CPU per request (the SQLite reads run on its threads)."""
    app = web.Application(middlewares=[problem_middleware])
    app[ADMIN_TOKENS] = AdminTokens((TOKEN,))
    app[EVENT_STORE] = StoreSlot(store)
    insights.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"},
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            for name, (path, body, target) in REQUESTS.items():
                if only and only not in name:
                    continue
                url = f"http://127.0.0.1:{port}{path}"
                body = {**body, "to": end}
                async with session.post(url, json=body) as warm:         # warms the page cache
                    if warm.status == 503:                               # past the insights' time limit
                        results[name] = {"requests": 1, "status": 503, "error": (await warm.json())["error"],
                                         "target_p99_ms_at_10m": target}
                        continue
                    assert warm.status == 200, await warm.text()
                    answer = await warm.json()
                times, cpu = [], []
                for _ in range(requests):
                    t, c = time.perf_counter(), time.process_time()
                    async with session.post(url, json=body) as response:
                        await response.read()
                        assert response.status == 200
                    times.append((time.perf_counter() - t) * 1000)
                    cpu.append((time.process_time() - c) * 1000)
                times.sort()
                results[name] = {"requests": requests, "p50_ms": round(nearest_rank(times, 50) or 0, 1),
                                 "p99_ms": round(nearest_rank(times, 99) or 0, 1), "max_ms": round(times[-1], 1),
                                 "mean_ms": round(statistics.fmean(times), 1),
                                 "cpu_ms_mean": round(statistics.fmean(cpu), 1), "target_p99_ms_at_10m": target,
                                 "answer": summary(answer)}
    finally:
        await runner.cleanup()
    return results


def summary(answer: dict[str, Any]) -> Any:
    """A few figures of the answer, to see that the query found something."""
    if "results" in answer:
        return {"series": len(answer["results"]), "total": sum(r["total"] or 0 for r in answer["results"])}
    if "steps" in answer:
        return [s["persons"] for s in answer["steps"]]
    return [c["persons"] for c in answer["cohorts"]]


async def matching(store: Store, end: float) -> dict[str, int]:
    """Events each request reads: the cost figures are per these."""
    out = {}
    for name, events in (("page_load", ("page_load",)), ("funnel steps", tuple(s["event"] for s in FUNNEL))):
        marks = ", ".join("?" * len(events))
        rows = await store.fetch(f"SELECT count(*) FROM events WHERE name IN ({marks}) AND ts >= ? AND ts < ?",
                                 (*events, end - 30 * 86400, end))
        out[name + " (30 days)"] = int(rows[0][0])
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.postgres:
        return await on_postgres(args)
    path = Path(args.db) if args.db else OUT / f"analytics-{args.events}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = path.with_name(path.name + ".json")
    reuse = path.exists() and meta.exists()
    store = SqliteStore(str(path), synchronous="normal")
    await store.open()
    try:
        if reuse:
            end, timings = json.loads(meta.read_text())["end"], {}
        else:
            end = time.time()
            timings = await fill(store, args.events, end)  # type: ignore[arg-type]
            meta.write_text(json.dumps({"end": end, "events": args.events, "fill": timings}))
        out = await run(store, args, end)
    finally:
        await store.close()
    return {**out, "database": f"SQLite {sqlite3.sqlite_version}", "db": str(path), "reused": reuse, "fill": timings}


async def on_postgres(args: argparse.Namespace) -> dict[str, Any]:
    """On the PostgreSQL of bench/pg_cache.py: kept in bench/out/pg-analytics-<events>/, filled once by COPY
    from the SQLite store of the same size (made first if it is not cached)."""
    async with filled_postgres(args.events, Path(args.db) if args.db else None) as (store, end, timings):
        out = await run(store, args, end)
        version = (await store.fetch("SHOW server_version"))[0][0]
    return {**out, "database": f"PostgreSQL {version}", "db": str(OUT / f"pg-analytics-{args.events}"),
            "reused": timings.pop("reused"), "fill": timings}


async def run(store: Store, args: argparse.Namespace, end: float) -> dict[str, Any]:
    count = (await store.fetch("SELECT count(*) FROM events"))[0][0]
    read = await matching(store, end)
    latency = await measure(store, args.requests, end, args.only)
    return {"events": int(count), "matching_events": read, "latency": latency, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['events']:,} events on {results['database']}; events read: {results['matching_events']}")
    print(f"{'request':44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu ms':>8}  answer")
    for name, v in results["latency"].items():
        if "status" in v:
            print(f"{name:44} {v['status']}: {v['error']}")
            continue
        print(f"{name:44} {v['p50_ms']:8.1f} {v['p99_ms']:8.1f} {v['max_ms']:8.1f} {v['cpu_ms_mean']:8.1f}  "
              f"{v['answer']}")


def markdown(runs: dict[str, Any]) -> str:
    lines = [SECTION, "",
             "`python bench/insights.py [--events N] [--postgres]`: bench/analytics.py's events (90 days, 20,000 users "
             "with Zipf-like activity, every category), each request through a real HTTP server one after another "
             "after one warm-up, 30-day ranges (8 weeks for retention) ending when the events end. CPU: the "
             "agent process's (its SQLite threads included; PostgreSQL's own CPU is not in it). The machine's 2 "
             "cores are shared with other work: wall times vary, CPU less. JSON: `bench/results/insights.json`.", ""]
    for results in runs.values():
        lines += [f"{results['events']:,} events on {results['database']}, {results['when']}; events in the 30 "
                  f"days: {results['matching_events']}", "",
                  "| request | p50 ms | p99 ms | max ms | CPU ms (mean) | p99 target at 10M |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, v in results["latency"].items():
            if "status" in v:
                lines.append(f"| {name} | {v['status']}: {v['error']} | | | | {v['target_p99_ms_at_10m']:.0f} ms |")
                continue
            lines.append(f"| {name} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['max_ms']:.1f} "
                         f"| {v['cpu_ms_mean']:.1f} | {v['target_p99_ms_at_10m']:.0f} ms |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k events, 5 requests; writes no JSON")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--db", help="database file to fill (or reuse when it exists)")
    parser.add_argument("--postgres", action="store_true", help="fill and measure a PostgreSQL started for the run")
    parser.add_argument("--only", default="", help="only the requests whose name contains this; writes nothing")
    parser.add_argument("--no-write", action="store_true", help="print only: no JSON, no RESULTS.md")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.events, parsed.requests = 100_000, 5
    outcome = asyncio.run(main(parsed))
    print_table(outcome)
    if not (parsed.quick or parsed.only or parsed.no_write):
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        runs = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
        runs = {k: v for k, v in runs.items() if isinstance(v, dict) and "database" in v}
        runs[f"{'postgres' if parsed.postgres else 'sqlite'}-{outcome['events']}"] = outcome
        RESULTS_JSON.write_text(json.dumps(dict(sorted(runs.items())), indent=1) + "\n")
        report.replace_section(RESULTS_MD, SECTION, markdown(dict(sorted(runs.items()))))
        print(f"written: {RESULTS_JSON} and the {SECTION!r} section of {RESULTS_MD}")
