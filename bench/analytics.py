"""Latency of GET /api/analytics/dashboard and GET /api/monitoring/business-metrics at two store sizes on
SQLite, answered from the rollups (issue 17: 30-day p99 under 150 ms at 10 million events, and the p99 at
10M over the p99 at 1M under 1.5: the cost does not grow with the stored events).

    python bench/analytics.py                          # 1M and 10M events, 100 requests per endpoint and range
    python bench/analytics.py --events 1000000 5000000 # other sizes (smallest first)
    python bench/analytics.py --quick                  # 100k events, 10 requests: a smoke run, no JSON
    python bench/analytics.py --events N --db PATH     # fill (or reuse) the database at PATH
    python bench/analytics.py --postgres               # the same on PostgreSQL (bench/pg_cache.py)

Each filled store is cached as bench/out/analytics-<events>.db (+ .json: when its events end) and reused
by the next run: filling 10M events takes a quarter of an hour on this machine. A store filled by an older
agent is migrated when opened, which backfills its rollups (open_seconds in the results).
The store is filled through SqliteStore.write_events (batches of 20,000: the rows the ingest path writes,
agent/store/rows.py) with 90 days of events ending now: 20,000 users (Zipf-like activity: user k has
weight 1/k^1.1) and 200 coaches, every event category (mostly api_request, page_load, web_vitals,
notifications, realtime, resources), anonymous landing pages and signup steps, and five probe targets
probed every 15 s (rollups for every minute of the 90 days, 648,000 rows). Then the aiohttp app (the
analytics routes on the real store) serves on 127.0.0.1 over TCP and one client asks each endpoint in turn
for 30 days and for 7 days ending when the events end, measuring each full HTTP round trip. Results:
printed, and written to bench/results/analytics.json and the Analytics API section of bench/RESULTS.md.

With --postgres: Debian's PostgreSQL 15 started as a plain process for the run, its data directory kept in
bench/out/pg-analytics-<events>/ and filled once by COPY from the cached SQLite store of the same size (its
events and rollups: bench/pg_cache.py; 10M in minutes instead of a quarter of an hour), stopped by its PID
at the end; results in bench/results/analytics-postgres.json and the "Analytics API on PostgreSQL" section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
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
from bench import report  # noqa: E402
from agent.api import analytics  # noqa: E402
from agent.api.auth import AdminTokens  # noqa: E402
from agent.api.keys import ADMIN_TOKENS, BUSINESS_RATE_LIMITER, EVENT_STORE  # noqa: E402
from agent.api.ratelimit import RateLimiter  # noqa: E402
from agent.store.base import Store, StoreSlot  # noqa: E402
from agent.events.catalog import CATALOG  # noqa: E402
from agent.events.model import Event  # noqa: E402
from agent.store import person_bits, rollup_fold, rollups, signup_bits  # noqa: E402
from agent.store.probe_rollups import ProbeRollups  # noqa: E402
from agent.store.rows import event_rows  # noqa: E402
from agent.store.sqlite import SqliteStore  # noqa: E402

RESULTS_JSON = Path(__file__).resolve().parent / "results" / "analytics.json"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Analytics API"
TOKEN = "bench-admin-token-0123456789"
DAY = 86400.0
USERS, COACHES, ANONYMOUS = 20_000, 200, 50_000
TARGETS = ("realtime-notifications", "mfa-flows", "payment-callbacks", "database", "authentication")
BATCH = 20_000
ENDPOINTS = ("/api/analytics/dashboard", "/api/monitoring/business-metrics")
RANGES = {"30d": "30d", "7d": "7d"}
OUT = Path(__file__).resolve().parent / "out"
TARGET_P99_MS, TARGET_RATIO = 150, 1.5

ROUTES = ("/api/sessions/:id", "/api/sessions", "/api/goals/:id", "/api/tasks", "/api/resources/:id",
          "/api/notifications", "/api/auth/session")
PAGES = ("/", "/pricing", "/dashboard", "/sessions", "/resources", "/goals")
GOALS = ("career", "health", "fitness", "finance", "relationships", "learning")
VITALS = {"LCP": (2500, 4000), "INP": (200, 500), "FID": (100, 300), "CLS": (0.1, 0.25), "TTFB": (800, 1800),
          "FCP": (1800, 3000)}
SIGNUP = ("email", "verify", "profile", "plan")
ONBOARDING = ("welcome", "profile_setup", "goals", "calendar_sync", "first_session")


def _rating(value: float, bounds: tuple[float, float]) -> str:
    return "good" if value <= bounds[0] else "needs-improvement" if value <= bounds[1] else "poor"


def _vital(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(tuple(VITALS))
    good = VITALS[name][0]
    value = round(rng.lognormvariate(0, 0.6) * good * 0.7, 3 if name == "CLS" else 0)
    return {"name": name, "value": value, "rating": _rating(value, VITALS[name])}


def _session(rng: random.Random, coach: str) -> dict[str, Any]:
    return {"coach_id": coach, "session_type": rng.choice(("coaching", "discovery", "follow_up")),
            "duration_minutes": rng.choice((30.0, 45.0, 60.0))}


# event name -> (weight, properties(rng, coach)); every catalog category appears
MIX: dict[str, tuple[float, Any]] = {
    "api_request": (200, lambda r, c: {"route": r.choice(ROUTES), "method": "GET",
                                       "status": 503 if r.random() < 0.01 else r.choice((200, 200, 201, 404)),
                                       "duration_ms": round(r.lognormvariate(4, 0.7), 1)}),
    "page_load": (90, lambda r, c: {"page": r.choice(PAGES), "load_time_ms": round(r.lognormvariate(7.3, 0.4))}),
    "web_vitals": (90, lambda r, c: _vital(r)),
    "notification_delivered": (40, lambda r, c: {"notification_id": "n", "channel": "push",
                                                 "delivery_latency_ms": r.randrange(50, 900)}),
    "notification_clicked": (15, lambda r, c: {"notification_id": "n", "channel": "push"}),
    "realtime_message": (50, lambda r, c: {"connection_id": "c", "bytes": r.randrange(100, 4000)}),
    "connection_established": (15, lambda r, c: {"connection_id": "c", "transport": "websocket"}),
    "resource_viewed": (70, lambda r, c: {"resource_id": f"r_{r.randrange(5000)}", "resource_type": "pdf",
                                          "view_duration_seconds": r.randrange(5, 600)}),
    "resource_engagement_score": (15, lambda r, c: {"resource_id": "r", "score": round(r.uniform(10, 100), 1)}),
    "resource_downloaded": (10, lambda r, c: {"resource_id": "r", "bytes": r.randrange(10_000, 5_000_000)}),
    "feature_used": (40, lambda r, c: {"feature": r.choice(("goal_tracking", "calendar", "chat"))}),
    "login_attempt": (30, lambda r, c: {"result": "failure" if r.random() < 0.08 else "success"}),
    "logout": (20, lambda r, c: {"session_duration_seconds": r.randrange(60, 7200)}),
    "mfa_verification": (8, lambda r, c: {"method": "totp", "result": "success"}),
    "mfa_enrolled": (2, lambda r, c: {"method": "totp"}),
    "mfa_disabled": (0.5, lambda r, c: {"method": "totp"}),
    "security_event": (2, lambda r, c: {"type": "suspicious_login", "severity": "medium"}),
    "session_booked": (12, lambda r, c: _session(r, c)),
    "session_completed": (10, lambda r, c: _session(r, c)),
    "session_cancelled": (2, lambda r, c: _session(r, c)),
    "session_rated": (6, lambda r, c: {**_session(r, c), "rating": r.choice((3, 4, 4, 5, 5))}),
    "goal_created": (6, lambda r, c: {"goal_category": r.choice(GOALS)}),
    "goal_completed": (3, lambda r, c: {"goal_category": r.choice(GOALS), "days_to_complete": r.randrange(1, 90)}),
    "task_created": (20, lambda r, c: {"task_id": "t", "priority": "medium"}),
    "task_completed": (14, lambda r, c: {"task_id": "t", "days_to_complete": r.randrange(0, 14)}),
    "file_uploaded": (8, lambda r, c: {"bytes": r.randrange(1000, 20_000_000), "file_type": "pdf"}),
    "file_downloaded": (10, lambda r, c: {"bytes": r.randrange(1000, 20_000_000), "file_type": "image"}),
    "file_shared": (3, lambda r, c: {"file_type": "document", "share_method": "link"}),
    "landing_page_view": (40, lambda r, c: {"page": r.choice(PAGES), "source": "google", "medium": "cpc"}),
    "signup_step": (20, lambda r, c: dict(zip(("step", "step_number"), r.choice(
        [(s, float(i + 1)) for i, s in enumerate(SIGNUP)][:r.randrange(1, 5)])))),
    "onboarding_step_started": (10, lambda r, c: _onboarding(r)),
    "onboarding_step_completed": (8, lambda r, c: _onboarding(r)),
    "onboarding_abandoned": (1, lambda r, c: _onboarding(r)),
    "onboarding_personalization": (1, lambda r, c: {"role": "client"}),
    "payment_succeeded": (3, lambda r, c: {"amount": 49.0, "plan": "premium"}),
    "subscription_started": (1, lambda r, c: {"plan": "premium", "amount": 49.0}),
}
ANONYMOUS_EVENTS = {"landing_page_view", "signup_step"}
COACH_EVENTS = {"session_booked", "session_completed", "session_cancelled", "session_rated"}


def _onboarding(rng: random.Random) -> dict[str, Any]:
    i = rng.randrange(len(ONBOARDING))
    return {"step": ONBOARDING[i], "step_number": i + 1, "flow_id": f"f_{rng.randrange(10**6)}"}


def generate(total: int, end: float, seed: int = 7, start: int = 0, count: int | None = None) -> list[Event]:
    """Events `start` to `start + count` of the `total` over the 90 days before `end` (unsorted, as late batches
    arrive; the same events whichever slices they are generated in), the coaches' roles with the first slice."""
    count = total - start if count is None else count
    rng = random.Random(seed * 1_000_003 + start)
    names = list(MIX)
    picks = rng.choices(names, weights=[MIX[n][0] for n in names], k=count)
    users = rng.choices(range(USERS), weights=_USER_WEIGHTS, k=count)
    coaches = [f"coach_{i}" for i in range(COACHES)]
    events = []
    for name, user in zip(picks, users):
        coach = coaches[user % COACHES]
        props = MIX[name][1](rng, coach)
        ts = end - rng.random() * 90 * DAY
        who = {"anonymous_id": f"anon_{rng.randrange(ANONYMOUS)}"} if name in ANONYMOUS_EVENTS else \
              {"user_id": coach if name in ("task_created",) and rng.random() < 0.3 else f"user_{user}"}
        events.append(Event(name, CATALOG[name].category, ts, ts, props, **who))
    if start == 0:
        for i, coach in enumerate(coaches):      # each coach says so once
            events.append(Event("onboarding_personalization", "onboarding", end - 89 * DAY + i, end - 89 * DAY,
                                {"role": "coach"}, user_id=coach))
    return events


_USER_WEIGHTS = [1 / (k + 1) ** 1.1 for k in range(USERS)]


async def fill(store: SqliteStore, total: int, end: float) -> dict[str, float]:
    """`total` events through write_events (the ingest path's rows, rollups maintained in the same commits),
    generated BATCH at a time so that 10 million never sit in memory at once; then the probe rollups."""
    started = time.perf_counter()
    generating = 0.0
    for start in range(0, total, BATCH):
        t = time.perf_counter()
        rows = [event_rows(e) for e in generate(total, end, start=start, count=min(BATCH, total - start))]
        generating += time.perf_counter() - t
        await store.write_events(rows)
        if start and start % 1_000_000 == 0:
            print(f"  {start:,} events written, {time.perf_counter() - started:.0f} s", flush=True)
    written = time.perf_counter()
    rollups = ProbeRollups(max_pending=10**7)
    rng = random.Random(3)
    first_minute = int((end - 90 * DAY) // 60)
    for minute in range(first_minute, int(end // 60) + 1):
        for target in TARGETS:
            for k in range(4):
                rollups.observe(target, rng.random() > 0.002, rng.lognormvariate(-3, 0.5), minute * 60 + 15 * k)
        if minute % 1440 == 0:
            await rollups.flush(store)
    await rollups.flush(store)
    return {"generate_seconds": generating, "write_seconds": written - started - generating,
            "rollups_seconds": time.perf_counter() - written}


async def measure(store: Store, requests: int, end: float) -> dict[str, Any]:
    app = web.Application()
    app[ADMIN_TOKENS] = AdminTokens((TOKEN,))
    app[EVENT_STORE] = StoreSlot(store)
    app[BUSINESS_RATE_LIMITER] = RateLimiter(10**6)
    analytics.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            for label, length in RANGES.items():
                for endpoint in ENDPOINTS:
                    # the range ends when the events do (a cached store keeps its end), at no bucket edge
                    url = f"http://127.0.0.1:{port}{endpoint}?range={length}&to={end:.3f}"
                    async with session.get(url) as warm:         # the first request warms the page cache
                        assert warm.status == 200, await warm.text()
                    times = []
                    for _ in range(requests):
                        t = time.perf_counter()
                        async with session.get(url) as response:
                            await response.read()
                            assert response.status == 200
                        times.append((time.perf_counter() - t) * 1000)
                    times.sort()
                    results[f"{endpoint} {label}"] = {
                        "requests": requests, "p50_ms": round(nearest_rank(times, 50), 1),
                        "p99_ms": round(nearest_rank(times, 99), 1), "max_ms": round(times[-1], 1),
                        "mean_ms": round(statistics.fmean(times), 1)}
    finally:
        await runner.cleanup()
    return results


EVENT_COPY = ("name, category, {ts}, {received}, user_id, anonymous_id, session_id, label, outcome, value, "
              "retention_class, properties, context, release")
WINDOW = 90 * DAY
SHIFT = WINDOW * 0.6180339887          # each copy's events move by this much, wrapped into the 90 days


def _shifted(column: str, k: int, end: float, table: str = "events") -> str:
    """`column` of `table` moved k * SHIFT back in time, wrapped into the user's own window: from their
    first event in the base store (users.first_seen) to `end`, so that every user's first event stays
    where it was (SQL). Wrapped into the whole 90 days, the copies of a user who first came in the last
    weeks landed in the first ones too: at 10M every user's first login was in the first weeks and the
    insights' first-time retention cohorts (bench/insights.py) were empty. Anonymous rows: the 90 days."""
    window = (f"max(coalesce({end!r} - (SELECT u.first_seen FROM users u WHERE u.user_id = {table}.user_id), "
              f"{WINDOW!r}), 60.0)")
    back = f"({end!r} - {column} + {k * SHIFT!r})"
    return f"({end!r} - ({back} - {window} * floor({back} / {window})))"


async def replicate(base: Path, path: Path, factor: int) -> dict[str, float]:
    """The fast fill: `factor` copies of the cached `base` store's events (the first as it is, the others
    moved in time by multiples of SHIFT within each user's window of the 90 days, `_shifted`: the same
    users, each `factor` times as active, first seen when they were, the same mix), written by SQL; then the
    rollups built from them by migration 8's backfill."""
    started = time.perf_counter()
    meta = json.loads(base.with_name(base.name + ".json").read_text())
    end = meta["end"]
    shutil.copyfile(base, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    (top,), = conn.execute("SELECT max(id) FROM events").fetchall()
    (funnel_top,), = conn.execute("SELECT max(id) FROM onboarding_funnel").fetchall()
    for k in range(1, factor):
        conn.execute("BEGIN")
        columns = EVENT_COPY.format(ts="ts", received="received_at")
        values = EVENT_COPY.format(ts=_shifted("ts", k, end), received=_shifted("received_at", k, end))
        conn.execute(f"INSERT INTO events ({columns}) SELECT {values} FROM events WHERE id <= ?", (top,))
        funnel = "user_id, flow_id, step, step_number, status, time_spent_seconds"
        conn.execute(f"INSERT INTO onboarding_funnel ({funnel}, ts) "
                     f"SELECT {funnel}, {_shifted('ts', k, end, 'onboarding_funnel')} "
                     "FROM onboarding_funnel WHERE id <= ?", (funnel_top,))
        conn.execute("COMMIT")
        print(f"  copy {k} of {factor - 1}: {time.perf_counter() - started:.0f} s", flush=True)
    conn.execute("UPDATE users SET "
                 "first_seen = coalesce((SELECT min(ts) FROM events e WHERE e.user_id = users.user_id), first_seen), "
                 "last_seen = coalesce((SELECT max(ts) FROM events e WHERE e.user_id = users.user_id), last_seen)")
    for table in rollups.TABLES:         # rebuilt by the migrations' backfills when the store opens
        conn.execute(f"DROP TABLE {table}")
    for version in rollups.MIGRATIONS:
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
    # the copies were never folded: migration 8's backfill counts them, migration 19 then starts the fold's
    # watermark above them (left as it was, the open would fold the copies a second time)
    conn.execute("DROP TABLE IF EXISTS rollup_folded")
    conn.execute("DELETE FROM schema_migrations WHERE version = ?", (rollup_fold.MIGRATION,))
    # the person and signup bitmaps too (migrations 12 and 18: the base's bits would hold the base's persons
    # only); migration 12 builds every labelled name's bitmaps, page_load's among them (what 13 adds)
    for table in (*BITMAP_TABLES, *signup_bits.TABLES):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for version in (person_bits.MIGRATION, signup_bits.MIGRATION):
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
    conn.close()
    copied = time.perf_counter()
    store = SqliteStore(str(path), synchronous="normal")
    await store.open()
    await store.close()
    return {"copy_seconds": copied - started, "backfill_seconds": time.perf_counter() - copied, "end": end}


BITMAP_TABLES = ("person_index", "person_bits_hour", "person_bits_day", "person_bits_extra")


def cached_path(events: int) -> Path:
    return OUT / f"analytics-{events}.db"


async def _replicated(path: Path, meta: Path, events: int, base: int | None) -> None:
    """With `base` (--fast-fill), a size not cached yet is made by `replicate` from the cached store of `base`
    events (events // base copies)."""
    if base and events > base and not meta.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        timings = await replicate(cached_path(base), path, events // base)
        meta.write_text(json.dumps({"end": timings.pop("end"), "events": events, "fill": timings,
                                    "replicated_from": base}))


async def one_size(events: int, requests: int, db: str | None, base: int | None = None) -> dict[str, Any]:
    """Fill (or reuse) a store of `events` events and measure both endpoints over it. With `base`, a size
    not cached yet is made by `replicate` from the cached store of `base` events (events // base copies)."""
    path = Path(db) if db else cached_path(events)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = path.with_name(path.name + ".json")
    await _replicated(path, meta, events, base)
    reuse = path.exists() and meta.exists()
    if path.exists() and not reuse:         # a fill that did not finish
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    store = SqliteStore(str(path), synchronous="normal")
    started = time.perf_counter()
    await store.open()              # on a store filled before migration 8, this is the rollups' backfill
    opened = time.perf_counter() - started
    try:
        if reuse:
            end, timings = json.loads(meta.read_text())["end"], {"open_seconds": opened}
            timings.update(json.loads(meta.read_text()).get("fill", {}))
        else:
            end = time.time()
            timings = await fill(store, events, end)
            meta.write_text(json.dumps({"end": end, "events": events, "fill": timings}))
        count = (await store.fetch("SELECT count(*) FROM events"))[0][0]
        latency = await measure(store, requests, end)
    finally:
        await store.close()
    return {"events": count, "fill": timings, "latency": latency, "reused": reuse, "db": str(path),
            "bytes": path.stat().st_size}


async def on_postgres(events: int, requests: int, db: str | None, base: int | None = None) -> dict[str, Any]:
    """The same over a PostgreSQL filled (once) from the SQLite store of `events` events, made first as
    one_size would make it (`base`: by --fast-fill's replication) when it is not cached."""
    from bench.pg_cache import filled_postgres

    path = Path(db) if db else cached_path(events)
    meta = path.with_name(path.name + ".json")
    await _replicated(path, meta, events, base)
    async with filled_postgres(events, path) as (store, end, timings):
        count = (await store.fetch("SELECT count(*) FROM events"))[0][0]
        version = (await store.fetch("SHOW server_version"))[0][0]
        latency = await measure(store, requests, end)
    return {"events": count, "fill": timings, "latency": latency, "reused": timings["reused"],
            "db": f"PostgreSQL {version}", "bytes": None}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for n in args.events:
        size = on_postgres if args.postgres else one_size
        runs.append(await size(n, args.requests, args.db, args.events[0] if args.fast_fill else None))
    ratios = {}
    if len(runs) > 1:
        small, large = runs[0]["latency"], runs[-1]["latency"]
        ratios = {name: round(large[name]["p99_ms"] / small[name]["p99_ms"], 2) for name in small}
    largest = runs[-1]["latency"]
    met = all(v["p99_ms"] < TARGET_P99_MS for name, v in largest.items() if "30d" in name) and \
        all(r < TARGET_RATIO for r in ratios.values())
    return {"runs": runs, "p99_ratio_largest_vs_smallest": ratios, "target_p99_ms": TARGET_P99_MS,
            "target_ratio": TARGET_RATIO, "met": met,
            "database": runs[-1]["db"] if args.postgres else f"SQLite {sqlite3.sqlite_version}",
            "sqlite": sqlite3.sqlite_version, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def print_table(results: dict[str, Any]) -> None:
    for run in results["runs"]:
        print(f"{run['events']:,} events on {results['database']} ({'reused' if run['reused'] else 'filled'})")
        for name, value in run["fill"].items():
            if isinstance(value, float):
                print(f"  {name}: {value:.1f}")
        print(f"{'request':62} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, v in run["latency"].items():
            print(f"{name:62} {v['p50_ms']:8.1f} {v['p99_ms']:8.1f} {v['max_ms']:8.1f}")
    for name, ratio in results["p99_ratio_largest_vs_smallest"].items():
        print(f"p99 ratio {name}: {ratio}")
    print(f"targets (30d p99 < {TARGET_P99_MS} ms at the largest size, ratios < {TARGET_RATIO}):",
          "met" if results["met"] else "NOT met")


def markdown(results: dict[str, Any], command: str, section: str = SECTION) -> str:
    runs = results["runs"]
    sizes = " and ".join(f"{r['events']:,}" for r in runs)
    lines = [section, "",
             f"`{command}` — {results['when']}, {sizes} events on {results['database']} (90 days, 20,000 "
             f"users with Zipf-like activity, every category; a 30-day range holds about a third), Python "
             f"{results['python']}, {results['cpus']} cores (shared). Both endpoints answer from the rollups "
             "(docs/analytics.md); each through a real HTTP server, requests one after another after one warm-up, "
             "ranges ending when the events do (at no bucket edge). JSON: `bench/results/analytics.json`.", "",
             "| events | request | p50 ms | p99 ms | max ms |", "|---:|---|---:|---:|---:|"]
    for run in runs:
        for name, v in run["latency"].items():
            lines.append(f"| {run['events']:,} | `{name}` | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['max_ms']:.1f} |")
    if results["p99_ratio_largest_vs_smallest"]:
        lines += ["", f"p99 at {runs[-1]['events']:,} over p99 at {runs[0]['events']:,} events (target < "
                  f"{results['target_ratio']}):", ""]
        lines += [f"- `{name}`: {ratio}" for name, ratio in results["p99_ratio_largest_vs_smallest"].items()]
    fills = [f"{r['events']:,} events: " + (
             f"{r['fill']['copy_seconds']:.0f} s copying the SQLite store's tables (events and rollups) by COPY, "
             f"once (bench/pg_cache.py)" if "tables" in r["fill"] else
             f"{r['fill']['copy_seconds']:.0f} s copying the smallest store's events by SQL (`--fast-fill`), "
             f"{r['fill']['backfill_seconds']:.0f} s for migration 8's backfill of their rollups"
             if "copy_seconds" in r["fill"] else
             f"{r['fill'].get('write_seconds', 0):.0f} s through `write_events` (rollups maintained in the same "
             f"commits), {r['fill'].get('generate_seconds', 0):.0f} s generating")
             for r in runs if r["fill"].get("copy_seconds") or r["fill"].get("write_seconds")]
    if fills:
        lines += ["", "Filling (cached in bench/out/ between runs): " + "; ".join(fills) + "."]
    largest = runs[-1]["latency"]
    within = [f"{name} {v['p99_ms']:.1f} ms" for name, v in largest.items() if "30d" in name]
    fast = all(v["p99_ms"] < results["target_p99_ms"] for name, v in largest.items() if "30d" in name)
    flat = all(r < results["target_ratio"] for r in results["p99_ratio_largest_vs_smallest"].values())
    lines += ["", f"Targets: 30-day p99 under {results['target_p99_ms']} ms at the largest size: "
              f"**{'met' if fast else 'not met'}** ({', '.join(within)}); a p99 ratio under {results['target_ratio']}: "
              f"**{'met' if flat else 'not met'}**. Before the rollups (issue 17's table): dashboard 124 / 431 ms and "
              "business-metrics 294 / 1,243 ms p99 at 1M / 5M events."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k events, 10 requests; writes no JSON")
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="store sizes, smallest first (the ratio is largest over smallest)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--db", help="database file to fill (or reuse) instead of bench/out/analytics-<events>.db; "
                                     "one size only")
    parser.add_argument("--fast-fill", action="store_true",
                        help="make the larger sizes from copies of the smallest's events (SQL) and build their "
                             "rollups by migration 8's backfill, instead of generating and ingesting them")
    parser.add_argument("--postgres", action="store_true",
                        help="measure a PostgreSQL filled (once, kept in bench/out/) from the SQLite stores")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.events, parsed.requests = [100_000], 10
    outcome = asyncio.run(main(parsed))
    print_table(outcome)
    if not parsed.quick:
        written = RESULTS_JSON.with_name("analytics-postgres.json") if parsed.postgres else RESULTS_JSON
        section = SECTION + " on PostgreSQL" if parsed.postgres else SECTION
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(json.dumps(outcome, indent=1) + "\n")
        report.replace_section(RESULTS_MD, section, markdown(outcome, "python bench/analytics.py "
                                                             + " ".join(sys.argv[1:]), section))
        print(f"written: {written} and the {section!r} section of {RESULTS_MD}")
