"""Sentry benchmark: one-error-event envelopes POSTed to the agent's /api/1/envelope/ vs a parse-only ceiling,
in one run.

    python bench/sentry.py              # about 2 minutes; writes bench/results/sentry.json and the
                                        # "## Sentry envelopes" section of bench/RESULTS.md
    python bench/sentry.py --quick      # smoke run (short windows); prints the results, writes nothing
    python bench/sentry.py --report     # the RESULTS.md section again from the JSON
    python bench/sentry.py --profile    # only the agent, under cProfile (its main thread): prints the top
                                        # functions, keeps bench/out/sentry-agent.prof; RESULTS.md untouched

Every request is what sentry-python 2.76 sends for one exception (bench/sentry_events.py: the real SDK's
envelope of a 30-frame stack trace with source lines, local variables, breadcrumbs and the modules list,
about 32 KB, gzip about 5 KB), a new event id each time, 8 distinct stack traces (8 issues).

1. ceiling: an aiohttp app on uvloop that reads the body (aiohttp undoes the gzip), splits the envelope
   and answers {"id": ...} (bench/sentry_load.py ceiling); 2. the same and orjson.loads of the event;
   3. the agent: `python -m agent run` with the durable store (SQLite, WAL, synchronous=full: every 200
   after its event is committed) and a `sentry:` project, /metrics scraped every second. All pinned to
   core 0 one after the other (taskset), driven by the same load generator (bench/sentry_load.py load,
   core 1; N keep-alive connections in a closed loop, one envelope per request as SDKs send them).
   CPU from /proc at the window's edges, and how busy core 0 was with anything else.
4. the per-event path in-process (no HTTP, no store): gzip decompress, envelope split, orjson.loads of the
   event, parse_sentry_event, in µs per event.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import ingest, promtext  # noqa: E402
from bench.processes import Child  # noqa: E402
from bench.section_cli import SectionBench  # noqa: E402
from bench.sentry_load import KEY  # noqa: E402

LOAD = ROOT / "bench" / "sentry_load.py"
SECTION = "## Sentry envelopes"
TARGET_EVENTS_PER_SECOND = 5_000
STORE = {"driver": "sqlite", "path": "events.db", "synchronous": "full"}


class Params:
    def __init__(self, quick: bool, connections: int):
        self.quick = quick
        self.warmup, self.window = (1.0, 4.0) if quick else (3.0, 20.0)
        self.connections = connections
        self.reps, self.events = (2, 300) if quick else (7, 2_000)


async def run_ceiling(h, params: Params, parse_event: bool) -> dict:
    child = Child("ceiling" + ("-parse" if parse_event else ""),
                  [sys.executable, str(LOAD), "ceiling", *(["--parse-event"] if parse_event else [])],
                  ingest.MEASURED_CORE, h.tmp, registry=h.children)
    line = await asyncio.wait_for(asyncio.to_thread(child.readline), 30)
    if not line.startswith("PORT "):
        raise RuntimeError(f"ceiling server did not start: {line!r}\n{child.log()}")
    try:
        return await least_disturbed(h, f"http://127.0.0.1:{int(line.split()[1])}", child, params, ingest.MAX_ATTEMPTS)
    finally:
        await h.stop(child)


async def least_disturbed(h, url: str, child: Child, params: Params, attempts: int, load: Path = LOAD) -> dict:
    """Windows until one has other processes on core 0 below ingest.OTHERS_TOLERATED (at most `attempts`): the
    least disturbed, with every window's figures in `attempts` (bench/posthog.py drives its own `load`)."""
    runs = []
    for _ in range(attempts):
        runs.append(await ingest.drive(h, url, child, params, time.time(), load=load))
        if runs[-1]["others_on_measured_core"] <= ingest.OTHERS_TOLERATED:
            break
    result = min(runs, key=lambda r: r["others_on_measured_core"])
    result["attempts"] = [{k: r[k] for k in ("events_per_second", "events_per_core_second",
                                             "others_on_measured_core")} for r in runs]
    return result


def _agent_figures(text: str) -> dict:
    t = promtext.total
    return {"errors_total_metric": t(text, "loom_errors_total"),
            "sentry_events_accepted": t(text, "loom_agent_sentry_items_total", 'type="event",outcome="accepted"'),
            "sentry_items_rejected": t(text, "loom_agent_sentry_items_total", 'outcome="rejected"'),
            "ingest_rejected": t(text, "loom_agent_ingest_rejected_total")}


async def run_agent(h, params: Params, profile: Path | None = None) -> dict:
    from bench.harness import uses_uvloop

    program = ("-m", "cProfile", "-o", str(profile), "-m", "agent") if profile else ("-m", "agent")
    agent = await h.start_agent([], program=program, config_overrides={
        "store": STORE, "privacy": {"hmac_key": "bench-" + "k" * 40}, "retention": {"interval": 0},
        "sentry": {"projects": [{"id": 1, "keys": [KEY]}]}})
    scrapes: list[float] = []
    stop = asyncio.Event()
    scraper = asyncio.create_task(ingest._scrape_every_second(h, agent, scrapes, stop))
    try:
        result = await least_disturbed(h, agent.url, agent.child, params, 1 if profile else ingest.MAX_ATTEMPTS)
        stop.set()
        await scraper
        final = await h.scrape(agent)
        result.update(_agent_figures(final.text), cpu_seconds_total=agent.child.cpu(), rss_bytes=agent.child.rss(),
                      uvloop=uses_uvloop(agent.pid), scrapes=len(scrapes),
                      scrape_ms_mean=sum(scrapes) / max(len(scrapes), 1), scrape_ms_max=max(scrapes, default=0.0),
                      stored_errors=_stored_errors(h.tmp))
        return result
    finally:
        stop.set()
        await h.stop(agent.child)


def _stored_errors(tmp: Path) -> int | None:
    """Rows in the agent's error table (read after the run, while the agent is still up: WAL allows it)."""
    import sqlite3

    path = tmp / STORE["path"]
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = next((t for t in tables if t in ("errors", "error_events")), None)
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if table else None


# --- the per-event path in-process -----------------------------------------------------------------

def hot_path(params: Params) -> dict:
    """µs per event of each stage, best of `reps` runs over fresh bodies."""
    from agent.error_tracking.config import ErrorsConfig
    from agent.events.limits import Limits
    from agent.sentry.envelope import parse_envelope, parse_item_json
    from agent.sentry.events import parse_sentry_event
    from bench.sentry_events import Bodies

    bodies = Bodies()
    config, limits, now = ErrorsConfig(), Limits(), time.time()
    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)
    best: dict[str, float] = {}
    for rep in range(params.reps):
        # stage by stage within each event, nothing kept between events: the garbage collector sees what
        # it sees in the agent (a list of 2,000 parsed events alive would make it walk them over and over)
        spent = dict.fromkeys(("gzip_decompress", "parse_envelope", "parse_item_json", "parse_sentry_event"), 0.0)
        for i in range(params.events):
            body = bodies.body(rep * params.events + i)
            t0 = time.perf_counter()
            raw = gzip.decompress(body)
            t1 = time.perf_counter()
            envelope = parse_envelope(raw)
            t2 = time.perf_counter()
            payload = parse_item_json(envelope.items[0])
            t3 = time.perf_counter()
            parse_sentry_event(payload, now=now, config=config, limits=limits,
                               event_id=envelope.header["event_id"], index=0)
            t4 = time.perf_counter()
            spent["gzip_decompress"] += t1 - t0
            spent["parse_envelope"] += t2 - t1
            spent["parse_item_json"] += t3 - t2
            spent["parse_sentry_event"] += t4 - t3
        for name, seconds in spent.items():
            best[name] = min(best.get(name, float("inf")), seconds / params.events * 1e6)
        gc.collect()
    best["total"] = sum(best.values())
    return {"us_per_event": {k: round(v, 2) for k, v in best.items()}, "events_per_run": params.events,
            "runs": params.reps}


# --- results ----------------------------------------------------------------------------------------

ROWS = (("ceiling", "ceiling: aiohttp reads the body (gzip undone) + envelope split + answer (uvloop)"),
        ("ceiling_parse", "ceiling + orjson.loads of the event"),
        ("agent", "agent, durable store: auth, event mapping, privacy, grouping, SQLite commit (WAL, "
                  "synchronous=full) before each 200, loom_errors_total, /metrics every 1 s"))


def markdown(r: dict) -> str:
    m, c, a, hp = r["meta"], r["ceiling"], r["agent"], r["hot_path"]
    us = hp["us_per_event"]
    met = a["events_per_second"] >= TARGET_EVENTS_PER_SECOND
    lines = [SECTION, "",
             f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
             f"(shared, noisy: compare ratios), agent at {m['agent_commit']}. Servers pinned to core 0 (taskset); "
             "load generator and scraper on core 1. JSON: `bench/results/sentry.json`.", "",
             f"### One error event per envelope, POST /api/1/envelope/ ({a['connections']} keep-alive connections, "
             f"closed loop, {a['window_seconds']:g} s window; the real sentry-python 2.76 envelope of a 30-frame "
             f"stack trace with source lines and local variables, {a['body_bytes']:,} bytes, gzip "
             f"{a['body_gzip_bytes']:,})", "",
             "| server | events/s | vs ceiling | events per CPU-second | CPU µs per event | request p50 ms | p99 ms "
             "| server core use | other processes on its core | generator core use |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, name in ROWS:
        d = r[key]
        ratio = d["events_per_second"] / c["events_per_second"]
        lines.append(f"| {name} | {d['events_per_second']:,.0f} | {ratio:.3f} "
                     f"| {d['events_per_core_second']:,.0f} | {d['server_cpu_us_per_event']:.0f} "
                     f"| {d['batch_ms_p50']:.2f} | {d['batch_ms_p99']:.2f} | {d['server_core_use'] * 100:.0f} % "
                     f"| {d['others_on_measured_core'] * 100:.0f} % | {d['generator_core_use'] * 100:.0f} % |")
    lines += ["", f"Target >= {TARGET_EVENTS_PER_SECOND:,} error events/s on one core with the durable store: "
              f"**{'met' if met else 'not met'}** ({a['events_per_second']:,.0f} events/s; "
              f"{a['events_per_core_second']:,.0f} per CPU-second of the agent, i.e. with its core to itself; "
              f"{a['server_cpu_us_per_event'] / 1e6:.6f} CPU s per event; ceiling/agent = "
              f"{c['events_per_second'] / a['events_per_second']:.1f}x). Failed requests: agent {a['failed']}, "
              f"ceiling {c['failed']}; items rejected {a['sentry_items_rejected']:.0f}. Agent windows run: "
              + "; ".join(f"{x['events_per_second']:,.0f} events/s with {x['others_on_measured_core'] * 100:.0f} % "
                          "of core 0 taken by other processes" for x in a["attempts"])
              + " (the table shows the least disturbed).", "",
              f"Every 200 was sent after its event was committed: {a['sentry_events_accepted']:,.0f} events accepted "
              f"(loom_agent_sentry_items_total), {a['stored_errors'] or 0:,} error rows in the store at the end, each "
              "envelope in a transaction of its own (agent/error_tracking/sink.py write_errors -> Store.execute: "
              "the errors do not go through the group-commit writer of /v1/events); "
              f"agent RSS {a['rss_bytes'] / 2**20:.1f} MiB, uvloop "
              f"{'mapped' if a['uvloop'] else 'NOT mapped'}; {a['scrapes']} scrapes during the load (mean "
              f"{a['scrape_ms_mean']:.1f} ms).", "",
              f"### Per-event path in-process (µs per event, best of {hp['runs']} runs of {hp['events_per_run']:,} "
              "events; the mapping alone: no HTTP, no privacy, no store)", "",
              "| gzip decompress | parse_envelope | parse_item_json (orjson.loads) | parse_sentry_event | total "
              "| events/s on one core |", "|---:|---:|---:|---:|---:|---:|",
              f"| {us['gzip_decompress']:.1f} | {us['parse_envelope']:.1f} | {us['parse_item_json']:.1f} "
              f"| {us['parse_sentry_event']:.1f} | {us['total']:.1f} "
              f"| {1e6 / us['total']:,.0f} |"]
    for note in r.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


async def measure(params: Params, tmp: Path) -> dict:
    from bench.harness import Harness

    async with Harness(tmp, "uvloop") as h:
        print("[sentry] ceiling ...", file=sys.stderr, flush=True)
        ceiling = await run_ceiling(h, params, parse_event=False)
        print("[sentry] ceiling + event parse ...", file=sys.stderr, flush=True)
        ceiling_parse = await run_ceiling(h, params, parse_event=True)
        print("[sentry] agent, durable SQLite store ...", file=sys.stderr, flush=True)
        agent = await run_agent(h, params)
    return {"ceiling": ceiling, "ceiling_parse": ceiling_parse, "agent": agent}


async def profile_agent(params: Params, tmp: Path, out: Path) -> dict:
    from bench.harness import Harness

    async with Harness(tmp, "uvloop") as h:
        return await run_agent(h, params, profile=out)


DEFAULT_CONNECTIONS = 32


# from `python bench/sentry.py --profile` (cProfile on the agent's main thread under this load, 2026-12-04,
# the code of this run: cProfile roughly doubles the time of Python-heavy code, the shares hold)
NOTES = [
    "**Where the time goes** (`python bench/sentry.py --profile`: cProfile on the agent's main thread under this "
    "load, on the code of this run; shares of the request handling time): **frame validation 25 %**: "
    "validate.parse_frame 30 times per event (the key check _fields 6 %, _context_lines 6 %, the frame's "
    "variables walked by check_generic); **privacy 29 %**: Privacy.scrub over the local variables of the 10 "
    "frames nearest the raise, the breadcrumbs, tags and extra (16 %), and each frame's file, function and ~11 "
    "source lines through the remembered Privacy.repeated_text (_scrub_frame, 11 %); the SQLite write (row "
    "building, sample_json, the insert) 8 %; the exception span (record_exception_span) 7 %; the body read with "
    "gzip, orjson.loads, the envelope split, auth, fingerprint and aiohttp the rest.",
    "**What moved it** (commit 33cf4ca, 335 -> 482 events/s, 2,926 -> 2,031 CPU µs per event): an issue's "
    "source lines, file and function names scrubbed once and remembered (they come back with every occurrence); "
    "local variables kept for the 10 frames nearest the raise instead of all 30; field paths built only for an "
    "error. **Why 5,000/s is out of reach here**: the parse-only ceiling itself is 6-7k events/s on one core "
    "(aiohttp and gzip take ~150 µs per event), so 5,000/s asks the agent for about 0.75x of a server that does "
    "nothing with the event, i.e. ~50 µs for validating 30 frames, scrubbing ~250 values and committing; the "
    "mapping alone (second table, no HTTP, privacy or store) is ~400 µs in CPython. Next steps, in order of "
    "yield: a frame cache per issue (an issue's frames arrive identical but for their variables: validate and "
    "scrub them once), errors through the group-commit writer of /v1/events (one transaction per group instead "
    "of per envelope), and the exception span built lazily at export.",
]


BENCH = SectionBench(
    name="sentry", doc=__doc__ or "", section=SECTION, default_connections=DEFAULT_CONNECTIONS, params=Params,
    measure=measure, profile=profile_agent,
    profile_summary=lambda r: f"{r['events_per_second']:,.0f} events/s, {r['server_cpu_us_per_event']:.0f} CPU µs "
                              "per event",
    hot_path=hot_path, markdown=markdown,
    verdict=lambda r: {"target_met": r["agent"]["events_per_second"] >= TARGET_EVENTS_PER_SECOND}, notes=NOTES)

if __name__ == "__main__":
    sys.exit(BENCH.main())
