"""PostHog benchmark: posthog-js-shaped batches POSTed to the agent's /e/ with the durable store vs a
parse-only ceiling, in one run.

    python bench/posthog.py              # about 2 minutes; writes bench/results/posthog.json and the
                                         # "## PostHog batches" section of bench/RESULTS.md
    python bench/posthog.py --quick      # smoke run (short windows); prints the results, writes nothing
    python bench/posthog.py --report     # the RESULTS.md section again from the JSON
    python bench/posthog.py --profile    # only the agent, under cProfile (its main thread): prints the top
                                         # functions, keeps bench/out/posthog-agent.prof; RESULTS.md untouched

Every request is what posthog-js 1.449 sends with request batching (bench/posthog_events.py): a JSON array of
50 events of ~40 properties ($pageview, $autocapture, $pageleave, a custom event), new uuids each time, gzip,
as text/plain to /e/ without ?compression= (the agent finds the gzip by its magic bytes), `?_=` the send time
(clock-skew correction on), an `Origin` in posthog.allowed_origins (CORS on).

1. ceiling: an aiohttp app on uvloop that reads the body, gunzips it and orjson.loads the events, answers
   {"status": 1} (bench/posthog_load.py ceiling); 2. the agent: `python -m agent run` with the durable store
   (SQLite, WAL, synchronous=full: every 200 after its events are committed, through the group-commit
   writer), /metrics scraped every second. Both pinned to core 0 one after the other (taskset), driven by
   the same load generator (bench/posthog_load.py load, core 1; N keep-alive connections in a closed loop).
   CPU from /proc at the window's edges, and how busy core 0 was with anything else.
3. the per-event path in-process (no HTTP): gunzip, orjson.loads, skew correction, read_posthog, privacy and
   event_rows in µs per event, and the durable store's write of the same events alone (SQLite, WAL,
   synchronous=full, groups of 400 events as the load above forms them), in CPU µs per event.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import ingest, promtext  # noqa: E402
from bench.posthog_events import KEY  # noqa: E402
from bench.processes import Child  # noqa: E402
from bench.section_cli import SectionBench  # noqa: E402
from bench.sentry import least_disturbed  # noqa: E402

LOAD = ROOT / "bench" / "posthog_load.py"
SECTION = "## PostHog batches"
TARGET_EVENTS_PER_SECOND = 20_000
STORE = {"driver": "sqlite", "path": "events.db", "synchronous": "full"}
DEFAULT_CONNECTIONS = 8


class Params:
    def __init__(self, quick: bool, connections: int):
        self.quick = quick
        self.warmup, self.window = (1.0, 4.0) if quick else (3.0, 20.0)
        self.connections = connections
        self.reps, self.batches = (2, 20) if quick else (7, 100)


async def run_ceiling(h, params: Params) -> dict:
    child = Child("ceiling", [sys.executable, str(LOAD), "ceiling"], ingest.MEASURED_CORE, h.tmp, registry=h.children)
    line = await asyncio.wait_for(asyncio.to_thread(child.readline), 30)
    if not line.startswith("PORT "):
        raise RuntimeError(f"ceiling server did not start: {line!r}\n{child.log()}")
    try:
        return await least_disturbed(h, f"http://127.0.0.1:{int(line.split()[1])}", child, params,
                                     ingest.MAX_ATTEMPTS, load=LOAD)
    finally:
        await h.stop(child)


def _stored_events(tmp: Path) -> int | None:
    import sqlite3

    path = tmp / STORE["path"]
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM events").fetchone()[0]


async def run_agent(h, params: Params, profile: Path | None = None) -> dict:
    from bench.harness import uses_uvloop

    program = ("-m", "cProfile", "-o", str(profile), "-m", "agent") if profile else ("-m", "agent")
    agent = await h.start_agent([], program=program, config_overrides={
        "store": STORE, "privacy": {"hmac_key": "bench-" + "k" * 40}, "retention": {"interval": 0},
        "events": {"api_keys": [KEY]}, "posthog": {"allowed_origins": ["https://app.example.com"]}})
    scrapes: list[float] = []
    stop = asyncio.Event()
    scraper = asyncio.create_task(ingest._scrape_every_second(h, agent, scrapes, stop))
    try:
        result = await least_disturbed(h, agent.url, agent.child, params, 1 if profile else ingest.MAX_ATTEMPTS,
                                       load=LOAD)
        stop.set()
        await scraper
        final = await h.scrape(agent)
        t = promtext.total
        result.update(ingest_rejected=t(final.text, "loom_agent_ingest_rejected_total"),
                      cpu_seconds_total=agent.child.cpu(), rss_bytes=agent.child.rss(), uvloop=uses_uvloop(agent.pid),
                      scrapes=len(scrapes), scrape_ms_mean=sum(scrapes) / max(len(scrapes), 1),
                      stored_events=_stored_events(h.tmp))
        return result
    finally:
        stop.set()
        await h.stop(agent.child)


def hot_path(params: Params) -> dict:
    """µs per event of each stage the agent runs on a batch, best of `reps` runs over fresh batches, and
    the durable store's write alone (`store_write`)."""
    import orjson

    from agent.api.posthog_wire import decode_posthog_body
    from agent.events.limits import Limits
    from agent.events.posthog import read_posthog
    from agent.events.privacy import Privacy
    from agent.events.privacy_config import PrivacyConfig
    from agent.posthog.skew import correct
    from agent.store.rows import event_rows
    from bench.posthog_events import EVENTS_PER_BATCH, Batches

    batches = Batches()
    limits = Limits()
    privacy = Privacy(PrivacyConfig(), b"bench-" + b"k" * 40)
    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)
    best: dict[str, float] = {}
    stages = ("gunzip", "orjson_loads", "skew_correction", "read_posthog", "privacy", "event_rows")
    rows: list = []
    for rep in range(params.reps):
        spent = dict.fromkeys(stages, 0.0)
        bodies = [batches.body(rep * params.batches + i) for i in range(params.batches)]
        rows = []
        for body in bodies:
            now = time.time()
            t0 = time.perf_counter()
            raw = decode_posthog_body(body, {}, "text/plain", 10 * 1024 * 1024)
            t1 = time.perf_counter()
            items = orjson.loads(raw)
            t2 = time.perf_counter()
            correct(items, now - 0.5, now, limits.max_future_skew)
            t3 = time.perf_counter()
            read = read_posthog(items, now=now, limits=limits)
            t4 = time.perf_counter()
            kept = privacy.apply(read.events)[0]
            t5 = time.perf_counter()
            rows.append([event_rows(event) for event in kept])
            t6 = time.perf_counter()
            for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
                spent[name] += seconds
        events = params.batches * EVENTS_PER_BATCH
        for name, seconds in spent.items():
            best[name] = min(best.get(name, float("inf")), seconds / events * 1e6)
        gc.collect()
    best["total"] = sum(best.values())
    best["store_write"] = asyncio.run(_store_write(rows, params.reps))
    return {"us_per_event": {k: round(v, 2) for k, v in best.items()}, "events_per_run": params.batches * 50,
            "runs": params.reps, "store_group_events": STORE_GROUP * EVENTS_PER_BATCH}


STORE_GROUP = 8         # batches a group commit takes under the load above (8 connections)


async def _store_write(batches: list, reps: int) -> float:
    """CPU µs per event of SqliteStore.write_events alone (WAL, synchronous=full; the events, their users
    and the rollups, as the agent's group commit writes them), groups of STORE_GROUP batches; the
    process's CPU, its writer thread included; best of `reps` passes over a fresh store each."""
    import resource
    import tempfile

    from agent.store.sqlite import SqliteStore

    def cpu() -> float:
        used = resource.getrusage(resource.RUSAGE_SELF)
        return used.ru_utime + used.ru_stime

    groups = [[row for batch in batches[i:i + STORE_GROUP] for row in batch]
              for i in range(0, len(batches), STORE_GROUP)]
    best = float("inf")
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(str(Path(tmp) / "events.db"), synchronous="full")
            await store.open()
            try:
                await store.write_events(groups[0])         # warm: the first commit creates the pages
                events = sum(len(group) for group in groups[1:])
                start = cpu()
                for group in groups[1:]:
                    await store.write_events(group)
                best = min(best, (cpu() - start) / events * 1e6)
            finally:
                await store.close()
    return best


def markdown(r: dict) -> str:
    m, c, a, hp = r["meta"], r["ceiling"], r["agent"], r["hot_path"]
    us = hp["us_per_event"]
    met = a["events_per_second"] >= TARGET_EVENTS_PER_SECOND
    lines = [SECTION, "",
             f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
             f"(shared, noisy: compare ratios), agent at {m['agent_commit']}. Servers pinned to core 0 (taskset); "
             "load generator and scraper on core 1. JSON: `bench/results/posthog.json`.", "",
             f"### posthog-js batches of 50 events, POST /e/ ({a['connections']} keep-alive connections, closed loop, "
             f"{a['window_seconds']:g} s window; ~40 properties an event, {a['body_bytes']:,} bytes a batch, gzip "
             f"{a['body_gzip_bytes']:,}, text/plain without ?compression=)", "",
             "| server | events/s | vs ceiling | events per CPU-second | CPU µs per event | request p50 ms | p99 ms "
             "| server core use | other processes on its core |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, name in (("ceiling", "ceiling: aiohttp reads the body, gunzip, orjson.loads, answer (uvloop)"),
                      ("agent", "agent, durable store: CORS, gunzip by magic bytes, skew correction, validation, "
                                "privacy, SQLite group commit (WAL, synchronous=full) before each 200, metrics, "
                                "/metrics every 1 s")):
        d = r[key]
        ratio = d["events_per_second"] / c["events_per_second"]
        lines.append(f"| {name} | {d['events_per_second']:,.0f} | {ratio:.3f} "
                     f"| {d['events_per_core_second']:,.0f} | {d['server_cpu_us_per_event']:.1f} "
                     f"| {d['batch_ms_p50']:.2f} | {d['batch_ms_p99']:.2f} | {d['server_core_use'] * 100:.0f} % "
                     f"| {d['others_on_measured_core'] * 100:.0f} % |")
    lines += ["", f"Target >= {TARGET_EVENTS_PER_SECOND:,} events/s on one core into the durable store: "
              f"**{'met' if met else 'not met'}** ({a['events_per_second']:,.0f} events/s; "
              f"{a['events_per_core_second']:,.0f} per CPU-second of the agent; agent/ceiling = "
              f"{a['events_per_second'] / c['events_per_second']:.3f}). Failed requests: agent {a['failed']}, "
              f"ceiling {c['failed']}; rejected {a['ingest_rejected']:.0f}; {a['stored_events'] or 0:,} events in the "
              f"store at the end; agent RSS {a['rss_bytes'] / 2**20:.1f} MiB, uvloop "
              f"{'mapped' if a['uvloop'] else 'NOT mapped'}. Agent windows run: "
              + "; ".join(f"{x['events_per_second']:,.0f} events/s with {x['others_on_measured_core'] * 100:.0f} % "
                          "of core 0 taken by other processes" for x in a["attempts"]) + ".", "",
              f"### Per-event path in-process (µs per event, best of {hp['runs']} runs of {hp['events_per_run']:,} "
              "events; no HTTP)", "",
              "| gunzip | orjson.loads | skew correction | read_posthog (mapping, validation, persons) | privacy "
              "| event_rows | total | store write alone (SQLite group commit of "
              f"{hp.get('store_group_events', 400)} events, CPU) | total with the store | events/s on one core |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {us['gunzip']:.2f} | {us['orjson_loads']:.2f} | {us['skew_correction']:.2f} "
              f"| {us['read_posthog']:.2f} | {us['privacy']:.2f} | {us['event_rows']:.2f} | {us['total']:.2f} "
              f"| {us['store_write']:.2f} | {us['total'] + us['store_write']:.2f} "
              f"| {1e6 / (us['total'] + us['store_write']):,.0f} |"]
    for note in r.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


async def measure(params: Params, tmp: Path) -> dict:
    from bench.harness import Harness

    async with Harness(tmp, "uvloop") as h:
        print("[posthog] ceiling ...", file=sys.stderr, flush=True)
        ceiling = await run_ceiling(h, params)
        print("[posthog] agent, durable SQLite store ...", file=sys.stderr, flush=True)
        agent = await run_agent(h, params)
    return {"ceiling": ceiling, "agent": agent}


async def profile_agent(params: Params, tmp: Path, out: Path) -> dict:
    from bench.harness import Harness

    async with Harness(tmp, "uvloop") as h:
        return await run_agent(h, params, profile=out)


# from this benchmark's in-process table and an in-process run of the agent's app (2026-12-04, late evening)
NOTES = [
    "**Where the time goes** (62.5 and 72.1 CPU µs an event in the agent's row in two runs at 22:48 and 23:19, 15,140 and 13,338 events/s; the in-process table splits the "
    "batch work): the Python work on a batch ~28 µs (read_posthog ~16: the PostHog mapping, validation and "
    "persons; privacy ~6; event_rows ~1.8; gunzip, orjson.loads and the skew correction ~4.5); the durable "
    "store's write alone ~11 µs (a ~1 KB events row with its 3 indexes, the users, the person bitmaps, the "
    "WAL commit with its fsync, and the rollups folded in bulk about once a second); the ~24 µs left are the "
    "request around them: aiohttp and the middlewares, the hand-off to the group-commit writer's thread and "
    "back, EventMetrics.apply (~3 µs), the response, /metrics every second.",
    "**What moved it** (13,145 events/s and 73 CPU µs an event at the previous run; 7,610 and 128 before): "
    "SQLite's rollups folded in bulk behind a watermark instead of in every group commit (migration 19, "
    "agent/store/rollup_fold.py: the store's write alone 18.0 -> 10.9 µs an event), a faster event_rows and "
    "the None binding adapter of the SQLite store; before that, Privacy._dict planning each key set once and "
    "agent/events/posthog_props.py planning a key set's keys once. Same output (tests/test_rows.py, "
    "tests/test_rollup_fold.py, tests/test_privacy.py).",
    "**Why 20,000/s is not met**: 20,000 events/s on one core is 50 µs of CPU an event for everything. The "
    "store's write alone takes ~11 µs of it and the HTTP ceiling ~4.5 µs, which leaves ~35 µs for the "
    "mapping, validation, privacy, rows, metrics and the request, which take ~47 µs in CPython even with every "
    "per-key decision made once per key set. The in-process path with the store (no HTTP) is above the target "
    "(the last column), the request around it is not. What would reach it is outside this issue: the "
    "per-event mapping in native code (a compiled extension of our own). The per-user index pages are out "
    "of the commits since migration 21 (events_by_user folded in bulk: WAL frames a commit 338 -> 149 on the "
    "ingest bench's mix).",
]


BENCH = SectionBench(
    name="posthog", doc=__doc__ or "", section=SECTION, default_connections=DEFAULT_CONNECTIONS, params=Params,
    measure=measure, profile=profile_agent,
    profile_summary=lambda r: f"{r['events_per_second']:,.0f} events/s, {r['server_cpu_us_per_event']:.0f} CPU µs "
                              "per event",
    hot_path=hot_path, markdown=markdown,
    verdict=lambda r: {"target_met": r["agent"]["events_per_second"] >= TARGET_EVENTS_PER_SECOND}, notes=NOTES)

if __name__ == "__main__":
    sys.exit(BENCH.main())
