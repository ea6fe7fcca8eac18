"""Ingest benchmark: POST /v1/events/batch into the agent vs a bare aiohttp + orjson ceiling, in one run.

    python bench/ingest.py          # about 1 minute; writes bench/results/ingest.json and the
                                    # "## Ingest" section of bench/RESULTS.md
    python bench/ingest.py --quick  # smoke run (short windows); prints the results, writes nothing

1. ceiling: an aiohttp app on uvloop whose handler only does orjson.loads of the body and bumps a
   counter (bench/ingest_load.py ceiling); 2. agent: `python -m agent run` with metrics, spans and
   OTLP/HTTP export to a receiver in this process that counts and discards spans (metrics_interval
   5 s), /metrics scraped every second. Both pinned to core 0, one after the other, driven by the
   same load generator (bench/ingest_load.py load, core 1) with the same batches of 100 mixed events
   (bench/ingest_events.py). Accepted events are counted from the responses inside the window; CPU
   from /proc at the window's edges, and how busy core 0 was (other processes share the machine).
3. the hot path in-process (no HTTP): orjson.loads, parse_batch, EventMetrics.apply,
   EventSpans.handle and the OTLP encoding of the spans they end, in µs per event.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import promtext, report  # noqa: E402
from bench.ingest_events import bodies, fill  # noqa: E402
from bench.processes import Child  # noqa: E402

LOAD = ROOT / "bench" / "ingest_load.py"
RESULTS_JSON = ROOT / "bench" / "results" / "ingest.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTION = "## Ingest"
MEASURED_CORE, HELPER_CORE = 0, 1
TARGET_EVENTS_PER_SECOND = 50_000
MAX_ATTEMPTS, OTHERS_TOLERATED = 2, 0.10   # agent windows; share of core 0 other processes may take
# from a separate profiling session (py-spy on the agent under this load; prototypes timed in-process)
NOTES = [
    "**Where the time went** (py-spy on the agent under this load, 2026-11-24, before the changes below): "
    "spans were about half of its CPU: the SDK's OTLP span encoder in the export thread 26 % (~56 µs per span; "
    "a connection span carries 11 span events), EventSpans.handle 24 % (SDK Span, add_event, "
    "BoundedAttributes ~13 %); parse_batch 20 %; EventMetrics.apply 5 %; HTTP, /metrics, OTLP metrics and the "
    "rest ~20 %; garbage collection grew from 4 % to 12 % as the span trackers filled. 45,160 events/s then.",
    "**Done since** (each timed in-process on this mix): agent/otlp/span_encoding.py writes the protobuf "
    "directly (3.8x faster on this mix, byte-identical output; A/B in one tree 54-56k -> 68-71k events/s); "
    "`gc.set_threshold(10_000, 20, 10)` in the running agent (GC 12 % -> 3 %); the JSON nesting pre-check "
    "skipped on orjson >= 3.9.15 (-0.28 µs); unrolled label-key builders in agent/events/mapping.py "
    "(EventMetrics.apply 1.65 -> 1.25 µs). **Next**: event spans built as ReadableSpan without the SDK's Span "
    "and BoundedAttributes (-1.0 µs per event for connection spans).",
    "**The durable store's share** (issue 17: durable at least 50 % of store off; 33 % two sessions ago, "
    "55.8 against 18.9 CPU µs an event): SQLite's rollups are folded in bulk about once a second instead of in "
    "every group commit (migration 19, agent/store/rollup_fold.py: the group commit's CPU 24.7 -> 17.5 µs an "
    "event in-process at groups of 400), event_rows 3.3 -> 2.5 µs, None bound through an adapter (-1 µs); "
    "since 2026-12-05 the fold aggregates the facts the writer kept of what it committed instead of reading "
    "~20,000 events back (rollup_fold.Tail: the fold 3.4 -> 2.1 µs) and the person and signup bitmaps are "
    "written in the fold too (1.6 -> 0.5 µs); since 2026-12-05 (session 9) the per-user index is a table "
    "folded in bulk too (migration 21, agent/store/user_index.py: events_by_user instead of events_user_ts, "
    "which wrote one leaf page per distinct user into every commit): WAL frames a commit of 400 events "
    "338 -> 149, the group commit 15.5 -> 11.2 CPU µs an event in-process, the writer thread under this load "
    "~19.5 -> ~16 µs (per-thread CPU, two A/B runs each). Where the durable run's extra CPU goes now: the "
    "event loop ~2-5 µs an event more than store off (event_rows ~2 runs there, the hand-off to the writer, "
    "and the fixed per-second work (/metrics, exports) spread over fewer events); the writer thread ~16 µs. "
    "In-process (~11.5 µs): the fdatasync of each commit ~4 (this machine's virtual disk costs ~6-8 CPU µs "
    "a 4 KiB page written back: 0.9-1.3 ms for a commit's ~150 frames, measured alone), the INSERT and its "
    "indexes ~3, the fold ~2.5, the users upsert ~0.5. Half the frames left are events_name_dims's leaves (74 "
    "a commit: one per event name, and their splits; dropping the index saves ~1.3 µs in-process), 24 the "
    "events' rows. Tried and dropped (measured): multi-row INSERTs (fewer GIL hand-offs: no change, ~2,000 "
    "context switches a second only), other page sizes (1, 2, 8 KiB) and checkpoint intervals, a users memo, "
    "800-event groups (-2.3 µs but the fsync stops overlapping the parsing), the GIL switch interval. The "
    "ratio moves by +-5 points between full runs on this shared machine, mostly with the store-off figure "
    "(43,500-52,000 events/s today): six full runs of this code on 2026-12-05 gave 44, 49, 45, 43, 52 and "
    "52 % (median 47 %; the table shows the last), one run of the code before migration 21 47 %. What would "
    "add the missing points: events_name_dims out of the group commit the same way (a by-name table folded "
    "in bulk), which every raw analytics read would go through.",
]


# --- the run, in this process (core 1) ------------------------------------------------------------

class Params:
    def __init__(self, quick: bool):
        self.quick = quick
        self.warmup, self.window = (1.0, 4.0) if quick else (3.0, 20.0)
        self.connections = 8
        self.reps, self.batches = (2, 40) if quick else (9, 100)


def _counting_sink():
    """bench/otlp_sink.py's receiver, counting spans instead of keeping them (a 20 s run sends ~10^5)."""
    import gzip

    from aiohttp import web
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    from bench.otlp_sink import OtlpSink

    class CountingSink(OtlpSink):
        span_count = 0

        async def _traces(self, request: web.Request) -> web.Response:
            body = await request.read()
            if request.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            message = trace_service_pb2.ExportTraceServiceRequest()
            message.ParseFromString(body)
            self.span_count += sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
            self.requests += 1
            return web.Response(body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
                                content_type="application/x-protobuf")

    return CountingSink()


def core_ticks() -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks of each CPU from /proc/stat (busy: all but idle and iowait)."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(f) for f in fields]
                out[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def core_use(before: dict, after: dict, core: int) -> float:
    busy, total = (after[core][i] - before[core][i] for i in (0, 1))
    return busy / total if total else float("nan")


async def quiet_core(core: int, server: Child, longest: float = 45.0, busy_below: float = 0.15) -> float:
    """Wait (at most `longest` s) until other processes leave `core` mostly idle for a second: other
    benchmarks on this shared machine pin their servers to core 0 too. Returns their last share."""
    deadline = time.monotonic() + longest
    while True:
        ticks0, cpu0 = core_ticks(), server.cpu()
        await asyncio.sleep(1.0)
        others = core_use(ticks0, core_ticks(), core) - (server.cpu() - cpu0)
        if others < busy_below or time.monotonic() > deadline:
            return max(0.0, others)


async def drive(h, url: str, server: Child, params: Params, base: float, load: Path = LOAD) -> dict:
    """Run the load generator `load` (its `load` role) against `url`; the server's CPU is read at the
    window's edges."""
    from bench.harness import until

    others_before = await quiet_core(MEASURED_CORE, server)
    start_at = time.time() + 1.0
    load_child = Child(f"load-{len(h.children)}", [sys.executable, str(load), "load", "--url", url,
                                                   "--start-at", repr(start_at), "--warmup", repr(params.warmup),
                                                   "--window", repr(params.window), "--connections",
                                                   str(params.connections), "--base", repr(base)],
                       HELPER_CORE, h.tmp, registry=h.children)
    await until(start_at + params.warmup)
    cpu0, t0, ticks0 = server.cpu(), time.time(), core_ticks()
    await until(start_at + params.warmup + params.window)
    cpu1, t1, ticks1 = server.cpu(), time.time(), core_ticks()
    result = await h.result_of(load_child, timeout=60)
    result["server_core_use"] = (cpu1 - cpu0) / (t1 - t0)
    result["events_per_core_second"] = result["events"] / max(cpu1 - cpu0, 1e-9)
    result["measured_core_busy"] = core_use(ticks0, ticks1, MEASURED_CORE)     # the server and anyone else
    result["others_on_measured_core"] = max(0.0, result["measured_core_busy"] - result["server_core_use"])
    result["helper_core_busy"] = core_use(ticks0, ticks1, HELPER_CORE)
    result["others_on_measured_core_before"] = others_before
    result["server_cpu_us_per_event"] = (cpu1 - cpu0) / max(result["events"], 1) * 1e6
    return result


async def run_ceiling(h, params: Params, base: float) -> dict:
    child = Child("ceiling", [sys.executable, str(LOAD), "ceiling"], MEASURED_CORE, h.tmp,
                  registry=h.children)
    line = await asyncio.wait_for(asyncio.to_thread(child.readline), 30)
    if not line.startswith("PORT "):
        raise RuntimeError(f"ceiling server did not start: {line!r}\n{child.log()}")
    try:
        return await drive(h, f"http://127.0.0.1:{int(line.split()[1])}", child, params, base)
    finally:
        await h.stop(child)


async def _scrape_every_second(h, agent, scrapes: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.monotonic()
        scrape = await h.scrape(agent)
        scrapes.append((scrape.received - scrape.sent) * 1000)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


def _agent_figures(text: str) -> dict:
    t = promtext.total
    return {"events_total_metric": t(text, "loom_events_total"),
            "spans_exported": t(text, "loom_agent_exported_total", 'signal="traces"'),
            "spans_dropped": t(text, "loom_agent_export_dropped_total", 'signal="traces"'),
            "metric_points_exported": t(text, "loom_agent_exported_total", 'signal="metrics"'),
            "metric_points_dropped": t(text, "loom_agent_export_dropped_total", 'signal="metrics"'),
            "export_failures": t(text, "loom_agent_export_failures_total"),
            "ingest_rejected": t(text, "loom_agent_ingest_rejected_total"),
            "label_overflow": t(text, "loom_agent_label_overflow_total"),
            "store_commits": t(text, "loom_agent_store_commits_total"),
            "store_events_per_commit": t(text, "loom_agent_store_commit_events_sum")
            / max(t(text, "loom_agent_store_commit_events_count"), 1),
            "series": sum(1 for line in text.splitlines() if line and not line.startswith("#"))}


STORES = {
    # the durable store: SQLite in the run's temp dir, WAL, synchronous=full, group commit
    "sqlite": {"driver": "sqlite", "path": "events.db", "synchronous": "full"},
    "none": {"driver": "none"},
}


async def run_agent(h, params: Params, sink, base: float, store: str) -> dict:
    from bench.harness import uses_uvloop

    agent = await h.start_agent([], otlp_endpoint=sink.url,
                                config_overrides={"telemetry": {"otlp": {"metrics_interval": "5s"}},
                                                  "store": STORES[store],
                                                  "privacy": {"hmac_key": "bench-" + "k" * 40}})
    scrapes: list[float] = []
    stop = asyncio.Event()
    scraper = asyncio.create_task(_scrape_every_second(h, agent, scrapes, stop))
    try:
        attempts = []
        for _ in range(MAX_ATTEMPTS):          # again when other processes took much of the core
            attempts.append(await drive(h, agent.url, agent.child, params, base))
            if attempts[-1]["others_on_measured_core"] <= OTHERS_TOLERATED:
                break
        result = min(attempts, key=lambda r: r["others_on_measured_core"])
        result["attempts"] = [{k: r[k] for k in ("events_per_second", "events_per_core_second",
                                                 "others_on_measured_core")} for r in attempts]
        stop.set()
        await scraper
        await asyncio.sleep(3.0)                      # the span flusher runs every 2 s
        final = await h.scrape(agent)
        result.update(_agent_figures(final.text), spans_received_by_sink=sink.span_count,
                      sink_trace_requests=sink.requests, sink_metric_requests=sink.metric_requests,
                      cpu_seconds_total=agent.child.cpu(), rss_bytes=agent.child.rss(),
                      uvloop=uses_uvloop(agent.pid), scrapes=len(scrapes),
                      scrape_ms_mean=sum(scrapes) / max(len(scrapes), 1), scrape_ms_max=max(scrapes, default=0.0))
        return result
    finally:
        stop.set()
        await h.stop(agent.child)


# --- the hot path in-process ----------------------------------------------------------------------

def hot_path(params: Params) -> dict:
    """µs per event of each stage, best of `reps` runs over fresh batches (new ids every run)."""
    from agent.otlp.span_encoding import encode_spans
    from opentelemetry.sdk.trace import TracerProvider

    from agent.events.config import EventsConfig
    from agent.events.mapping import EventMetrics
    from agent.events.spans import EventSpans
    from agent.events.validate import parse_batch
    from agent.metrics.store import MetricStore
    from agent.otlp.traces import SpanQueue

    now = time.time()
    raw = bodies(now - 120)
    metrics = EventMetrics(MetricStore(), EventsConfig())
    provider = TracerProvider()
    queue = SpanQueue(max_size=10**8, batch_size=10**8)
    provider.add_span_processor(queue)
    spans = EventSpans(provider.get_tracer("bench"))
    best: dict[str, float] = {}
    span_count = 0
    for rep in range(params.reps):
        material = [fill(raw[i % len(raw)], rep * 10_000 + i // len(raw)) for i in range(params.batches)]
        n = 100 * len(material)
        t0 = time.perf_counter()
        objs = [orjson.loads(b) for b in material]
        t1 = time.perf_counter()
        batches = [parse_batch(o, now=now) for o in objs]
        t2 = time.perf_counter()
        apply = metrics.apply
        for events in batches:
            for event in events:
                apply(event)
        t3 = time.perf_counter()
        handle = spans.handle
        for events in batches:
            for event in events:
                handle(event)
        t4 = time.perf_counter()
        ended = queue.take(len(queue))
        for i in range(0, len(ended), 512):
            encode_spans(ended[i:i + 512])
        t5 = time.perf_counter()
        span_count = len(ended)
        stages = {"orjson_loads": t1 - t0, "parse_batch": t2 - t1, "metrics_apply": t3 - t2,
                  "spans_handle": t4 - t3, "otlp_encode": t5 - t4}
        for name, seconds in stages.items():
            best[name] = min(best.get(name, float("inf")), seconds / n * 1e6)
        del objs, batches, ended
        gc.collect()
    best["pipeline_total"] = sum(v for k, v in best.items())
    return {"us_per_event": {k: round(v, 3) for k, v in best.items()}, "events_per_run": 100 * params.batches,
            "runs": params.reps, "spans_per_100_events": round(span_count / params.batches, 2),
            "events_per_second_one_core_estimate": round(1e6 / best["pipeline_total"])}


# --- results ----------------------------------------------------------------------------------------

def markdown(r: dict) -> str:
    m, c, a, hp, dur = r["meta"], r["ceiling"], r["agent"], r["hot_path"], r["durable"]
    us = hp["us_per_event"]
    met = a["events_per_second"] >= TARGET_EVENTS_PER_SECOND
    lines = [SECTION, "",
             f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
             "(shared, noisy: compare ratios). Servers pinned to core 0; load generator, OTLP receiver and scraper "
             "on core 1. JSON: `bench/results/ingest.json`.", "",
             f"### Batch ingest, POST /v1/events/batch (100 mixed events per batch, {c['connections']} keep-alive "
             f"connections, closed loop, {c['window_seconds']:g} s window)", "",
             "| server | events/s | vs ceiling | events per CPU-second | batch p50 ms | p99 ms | server core use "
             "| other processes on its core | server CPU µs/event | generator core use |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, d in (("ceiling: aiohttp + orjson.loads + counter (uvloop)", c),
                    ("agent, store off: privacy + metrics + spans + OTLP export, /metrics every 1 s", a),
                    ("agent, durable store: the same + SQLite group commit (WAL, synchronous=full) before each 2xx",
                     dur)):
        lines.append(f"| {name} | {d['events_per_second']:,.0f} | {d['events_per_second'] / c['events_per_second']:.3f} "
                     f"| {d['events_per_core_second']:,.0f} | {d['batch_ms_p50']:.2f} | {d['batch_ms_p99']:.2f} "
                     f"| {d['server_core_use'] * 100:.0f} % | {d['others_on_measured_core'] * 100:.0f} % "
                     f"| {d['server_cpu_us_per_event']:.2f} | {d['generator_core_use'] * 100:.0f} % |")
    lines += ["", f"Target >= {TARGET_EVENTS_PER_SECOND:,} events/s: **{'met' if met else 'not met'}** "
              f"({a['events_per_second']:,.0f}; ceiling/agent = {c['events_per_second'] / a['events_per_second']:.1f}x; "
              f"{a['events_per_core_second']:,.0f} events per CPU-second of the agent, i.e. what it would take with "
              "its core to itself). "
              f"Failed requests: agent {a['failed']}, ceiling {c['failed']}. The load generator's core (shared with the "
              f"OTLP receiver, the scraper and other processes) was {a['helper_core_busy'] * 100:.0f} % busy during the "
              f"agent's window, {c['helper_core_busy'] * 100:.0f} % during the ceiling's. Agent windows run: "
              + "; ".join(f"{x['events_per_second']:,.0f} events/s with {x['others_on_measured_core'] * 100:.0f} % of "
                          "core 0 taken by other processes" for x in a["attempts"])
              + " (the table shows the least disturbed).", "",
              f"**Durable store vs store off: {dur['events_per_second'] / a['events_per_second'] * 100:.0f} %** of the "
              f"throughput ({dur['events_per_second']:,.0f} vs {a['events_per_second']:,.0f} events/s, same run, same "
              f"core; target >= 50 %: **{'met' if dur['events_per_second'] >= 0.5 * a['events_per_second'] else 'not met'}**). "
              f"Every 2xx of the durable run was sent after its events were committed; group commits: "
              f"{dur.get('store_commits', 0):,.0f}, {dur.get('store_events_per_commit', 0):,.1f} events each on average; "
              f"failed requests {dur['failed']}.", "",
              f"Agent at the end of the run: {a['cpu_seconds_total']:.1f} CPU s since start, RSS "
              f"{a['rss_bytes'] / 2**20:.1f} MiB, {a['series']:,} /metrics samples, uvloop "
              f"{'mapped' if a['uvloop'] else 'NOT mapped'}; {a['scrapes']} scrapes during the load "
              f"(mean {a['scrape_ms_mean']:.1f} ms, max {a['scrape_ms_max']:.1f} ms). Spans: "
              f"{a['spans_exported']:,.0f} exported (loom_agent_exported_total), {a['spans_dropped']:,.0f} dropped "
              f"(loom_agent_export_dropped_total), {a['spans_received_by_sink']:,} received by the OTLP receiver in "
              f"{a['sink_trace_requests']} requests; metric points exported {a['metric_points_exported']:,.0f}, "
              f"dropped {a['metric_points_dropped']:,.0f}; {a['export_failures']:.0f} export failures, "
              f"{a['ingest_rejected']:.0f} rejected requests, {a['label_overflow']:.0f} label overflows.", "",
              f"### Hot path in-process (µs per event, best of {hp['runs']} runs of {hp['events_per_run']:,} events; "
              f"{hp['spans_per_100_events']} spans per 100 events)", "",
              "| orjson.loads | parse_batch | EventMetrics.apply | EventSpans.handle | OTLP encode | total "
              "| total / orjson.loads | events/s on one core (no HTTP) |", "|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {us['orjson_loads']:.2f} | {us['parse_batch']:.2f} | {us['metrics_apply']:.2f} "
              f"| {us['spans_handle']:.2f} | {us['otlp_encode']:.2f} | {us['pipeline_total']:.2f} "
              f"| {us['pipeline_total'] / us['orjson_loads']:.0f}x | {hp['events_per_second_one_core_estimate']:,} |"]
    for note in r.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def meta(args: argparse.Namespace, started: float) -> dict:
    return {"command": "python bench/ingest.py" + (" --quick" if args.quick else ""),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "runtime_seconds": round(time.monotonic() - started, 1), "python": platform.python_version(),
            "nproc": os.cpu_count(), "quick": args.quick}


async def measure(params: Params, tmp: Path) -> dict:
    from bench.harness import Harness

    base = time.time() - 120
    sink = _counting_sink()
    await sink.start()
    try:
        async with Harness(tmp, "uvloop") as h:
            print("[ingest] ceiling ...", file=sys.stderr, flush=True)
            ceiling = await run_ceiling(h, params, base)
            print("[ingest] agent, store off ...", file=sys.stderr, flush=True)
            agent = await run_agent(h, params, sink, base, "none")
            print("[ingest] agent, durable SQLite store ...", file=sys.stderr, flush=True)
            durable = await run_agent(h, params, sink, base, "sqlite")
    finally:
        await sink.stop()
    return {"ceiling": ceiling, "agent": agent, "durable": durable}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; prints, writes nothing")
    args = parser.parse_args()
    os.sched_setaffinity(0, {HELPER_CORE})
    started, params = time.monotonic(), Params(args.quick)
    tmp = Path(tempfile.mkdtemp(prefix="loom-ingest-"))
    results = asyncio.run(measure(params, tmp))      # on failure the temp dir (process logs) is kept
    shutil.rmtree(tmp, ignore_errors=True)
    print("[ingest] hot path in-process ...", file=sys.stderr, flush=True)
    results["hot_path"] = hot_path(params)
    results["meta"] = meta(args, started)
    results["target_met"] = results["agent"]["events_per_second"] >= TARGET_EVENTS_PER_SECOND
    results["durable_ratio"] = results["durable"]["events_per_second"] / results["agent"]["events_per_second"]
    results["notes"] = NOTES
    text = markdown(results)
    print(text)
    if not args.quick:
        RESULTS_JSON.parent.mkdir(exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
        report.replace_section(RESULTS_MD, SECTION, text)
        print(f"wrote {RESULTS_JSON} and the {SECTION!r} section of {RESULTS_MD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
