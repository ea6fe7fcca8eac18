"""OTLP receiver benchmark: OTLP/HTTP protobuf metrics (1,000 points a request) and spans (512 a request) into
the agent's receiver vs a protobuf-parse-only ceiling, in one run.

    python bench/otlp.py              # about 3 minutes; writes bench/results/otlp.json and the
                                      # "## OTLP receiver" section of bench/RESULTS.md
    python bench/otlp.py --quick      # smoke run (short windows); prints the results, writes nothing
    python bench/otlp.py --report     # the RESULTS.md section again from the JSON
    python bench/otlp.py --profile    # only the agent, under cProfile (its main thread), metrics then spans:
                                      # prints the top functions, keeps bench/out/otlp-agent.prof

Every request is what an SDK's OTLP/HTTP exporter sends (bench/otlp_payloads.py): metrics are 20 instruments
x 50 series (8 cumulative counters, 6 gauges, 6 histograms of 15 bounds) of one service, the same bounded
set of series every time; spans are 512 HTTP server/client spans of ~10 attributes.

1. ceiling: an aiohttp app on uvloop that reads the body and ParseFromString's it (bench/otlp_load.py
   ceiling); 2. the agent: `python -m agent run` with its receiver on 127.0.0.1 (no ingest key), metric points
   converted to Prometheus series (agent/receiver/prom_series.py), spans checked, counted into span metrics
   and forwarded to an OTLP sink in this process (bench/ingest.py's counting sink), /metrics scraped every
   second. Both pinned to core 0 one after the other, driven by the same load generator (bench/otlp_load.py
   load, core 1; N keep-alive connections in a closed loop). CPU from /proc at the window's edges.
3. in-process (no HTTP): ParseFromString and OtlpMetricSeries.consume in µs per point; ParseFromString and
   the receiver's read_spans in µs per span.
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
from bench.processes import Child, free_port  # noqa: E402
from bench.section_cli import SectionBench  # noqa: E402
from bench.sentry import least_disturbed  # noqa: E402

LOAD = ROOT / "bench" / "otlp_load.py"
SECTION = "## OTLP receiver"
TARGETS = {"metrics": 200_000, "spans": 50_000}          # items per second on one core (issue 16 item 7)
PATHS = {"metrics": "/v1/metrics", "spans": "/v1/traces"}
DEFAULT_CONNECTIONS = 4


class Params:
    def __init__(self, quick: bool, connections: int):
        self.quick = quick
        self.warmup, self.window = (1.0, 4.0) if quick else (3.0, 15.0)
        self.connections = connections
        self.reps, self.requests = (2, 10) if quick else (5, 40)


async def run_ceiling(h, params: Params) -> dict:
    child = Child("ceiling", [sys.executable, str(LOAD), "ceiling"], ingest.MEASURED_CORE, h.tmp, registry=h.children)
    line = await asyncio.wait_for(asyncio.to_thread(child.readline), 30)
    if not line.startswith("PORT "):
        raise RuntimeError(f"ceiling server did not start: {line!r}\n{child.log()}")
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    try:
        return {signal: await least_disturbed(h, url + path, child, params, ingest.MAX_ATTEMPTS, load=LOAD)
                for signal, path in PATHS.items()}
    finally:
        await h.stop(child)


def _agent_figures(text: str) -> dict:
    t = promtext.total
    return {"metric_series": t(text, "loom_agent_otlp_metric_series"),
            "metric_points_rejected": t(text, "loom_agent_otlp_metric_points_rejected_total"),
            "received_metric_points": t(text, "loom_agent_otlp_received_metric_points_total"),
            "received_spans": t(text, "loom_agent_otlp_received_spans_total"),
            "refused_requests": t(text, "loom_agent_otlp_refused_requests_total"),
            "spans_exported": t(text, "loom_agent_exported_total", 'signal="traces"'),
            "spans_dropped": t(text, "loom_agent_export_dropped_total", 'signal="traces"')}


async def run_agent(h, params: Params, sink, profile: Path | None = None) -> dict:
    from bench.harness import uses_uvloop

    port = free_port()
    program = ("-m", "cProfile", "-o", str(profile), "-m", "agent") if profile else ("-m", "agent")
    agent = await h.start_agent([], otlp_endpoint=sink.url, program=program, config_overrides={
        "store": {"driver": "none"}, "telemetry": {"otlp": {"metrics_interval": "5s"}},
        "otlp_receiver": {"http": {"enabled": True, "listen": f"127.0.0.1:{port}"}, "ingest_keys": []}})
    url = f"http://127.0.0.1:{port}"
    scrapes: list[float] = []
    stop = asyncio.Event()
    scraper = asyncio.create_task(ingest._scrape_every_second(h, agent, scrapes, stop))
    try:
        attempts = 1 if profile else ingest.MAX_ATTEMPTS
        result = {signal: await least_disturbed(h, url + path, agent.child, params, attempts, load=LOAD)
                  for signal, path in PATHS.items()}
        stop.set()
        await scraper
        await asyncio.sleep(3.0)                      # the span flusher runs every 2 s
        final = await h.scrape(agent)
        result["agent"] = {**_agent_figures(final.text), "spans_received_by_sink": sink.span_count,
                           "cpu_seconds_total": agent.child.cpu(), "rss_bytes": agent.child.rss(),
                           "uvloop": uses_uvloop(agent.pid), "scrapes": len(scrapes),
                           "scrape_ms_mean": sum(scrapes) / max(len(scrapes), 1),
                           "scrape_ms_max": max(scrapes, default=0.0)}
        return result
    finally:
        stop.set()
        await h.stop(agent.child)


def hot_path(params: Params) -> dict:
    """µs per item of each stage in-process, best of `reps` runs over `requests` requests."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from agent.receiver.prom_series import OtlpMetricSeries
    from agent.receiver.spans import read_spans
    from bench.otlp_payloads import POINTS_PER_REQUEST, SPANS_PER_REQUEST, MetricBodies, spans_body

    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)
    metrics = MetricBodies()
    metric_bodies = [metrics.body(i) for i in range(params.requests + 1)]
    span_bodies = [spans_body(i) for i in range(params.requests)]
    best: dict[str, float] = {}

    def keep(name: str, seconds: float, items: int) -> None:
        best[name] = min(best.get(name, float("inf")), seconds / items * 1e6)

    for _ in range(params.reps):
        series = OtlpMetricSeries(max_series=10_000, stale_after=300.0)
        series.consume(ExportMetricsServiceRequest.FromString(metric_bodies[0]))      # the series exist
        t0 = time.perf_counter()
        parsed = [ExportMetricsServiceRequest.FromString(b) for b in metric_bodies[1:]]
        t1 = time.perf_counter()
        for request in parsed:
            series.consume(request)
        t2 = time.perf_counter()
        points = params.requests * POINTS_PER_REQUEST
        keep("metrics_parse", t1 - t0, points)
        keep("metrics_consume", t2 - t1, points)
        t0 = time.perf_counter()
        requests = [ExportTraceServiceRequest.FromString(b) for b in span_bodies]
        t1 = time.perf_counter()
        for request in requests:
            read_spans(request)
        t2 = time.perf_counter()
        spans = params.requests * SPANS_PER_REQUEST
        keep("spans_parse", t1 - t0, spans)
        keep("spans_read", t2 - t1, spans)
        gc.collect()
    return {"us_per_item": {k: round(v, 3) for k, v in best.items()}, "requests_per_run": params.requests,
            "runs": params.reps}


def markdown(r: dict) -> str:
    m, c, hp = r["meta"], r["ceiling"], r["hot_path"]
    us = hp["us_per_item"]
    a = r["agent"]
    lines = [SECTION, "",
             f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
             f"(shared, noisy: compare ratios), agent at {m['agent_commit']}. Servers pinned to core 0 (taskset); "
             "load generator, span sink and scraper on core 1. JSON: `bench/results/otlp.json`.", ""]
    for signal, what in (("metrics", "metric points (1,000 a request: 8 counters, 6 gauges, 6 histograms x 50 "
                                     "series of one service)"),
                         ("spans", "spans (512 a request, ~10 attributes each)")):
        d, base = r[signal], c[signal]
        lines += [f"### OTLP/HTTP protobuf {what}, POST {PATHS[signal]} ({d['connections']} keep-alive connections, "
                  f"closed loop, {d['window_seconds']:g} s window, {d['body_bytes']:,} bytes a request)", "",
                  f"| server | {signal}/s | vs ceiling | per CPU-second | CPU µs per item | request p50 ms | p99 ms "
                  "| server core use | other processes on its core |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        agent_name = "agent: the OTLP receiver" + (", points to Prometheus series" if signal == "metrics"
                                                   else ", span checks, span metrics, forwarded to a sink")
        for name, row in (("ceiling: aiohttp reads the body, ParseFromString (uvloop)", base), (agent_name, d)):
            ratio = row["events_per_second"] / base["events_per_second"]
            lines.append(f"| {name} | {row['events_per_second']:,.0f} | {ratio:.3f} "
                         f"| {row['events_per_core_second']:,.0f} | {row['server_cpu_us_per_event']:.2f} "
                         f"| {row['batch_ms_p50']:.2f} | {row['batch_ms_p99']:.2f} "
                         f"| {row['server_core_use'] * 100:.0f} % "
                         f"| {row['others_on_measured_core'] * 100:.0f} % |")
        met = d["events_per_second"] >= TARGETS[signal]
        lines += ["", f"Target >= {TARGETS[signal]:,} {signal}/s on one core: **{'met' if met else 'not met'}** "
                  f"({d['events_per_second']:,.0f}/s, {d['events_per_core_second']:,.0f} per CPU-second of the agent; "
                  f"agent/ceiling = {d['events_per_second'] / base['events_per_second']:.3f}). Failed requests: agent "
                  f"{d['failed']}, ceiling {base['failed']}. Agent windows run: "
                  + "; ".join(f"{x['events_per_second']:,.0f}/s with {x['others_on_measured_core'] * 100:.0f} % of "
                              "core 0 taken by other processes" for x in d["attempts"]) + ".", ""]
    lines += [f"At the end: {a['metric_series']:,.0f} converted series, {a['metric_points_rejected']:,.0f} points "
              f"rejected, {a['spans_received_by_sink']:,} spans at the sink ({a['spans_dropped']:,.0f} dropped), "
              f"agent RSS {a['rss_bytes'] / 2**20:.1f} MiB, uvloop {'mapped' if a['uvloop'] else 'NOT mapped'}, "
              f"/metrics scrape {a['scrape_ms_mean']:.1f} ms mean, {a['scrape_ms_max']:.1f} ms max.", "",
              f"### In-process (µs per item, best of {hp['runs']} runs of {hp['requests_per_run']} requests; no HTTP)",
              "", "| metrics: ParseFromString | OtlpMetricSeries.consume | total | points/s on one core "
              "| spans: ParseFromString | read_spans | total | spans/s on one core |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {us['metrics_parse']:.3f} | {us['metrics_consume']:.3f} "
              f"| {us['metrics_parse'] + us['metrics_consume']:.3f} "
              f"| {1e6 / (us['metrics_parse'] + us['metrics_consume']):,.0f} "
              f"| {us['spans_parse']:.3f} | {us['spans_read']:.3f} | {us['spans_parse'] + us['spans_read']:.3f} "
              f"| {1e6 / (us['spans_parse'] + us['spans_read']):,.0f} |"]
    for note in r.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


async def measure(params: Params, tmp: Path) -> dict:
    from bench.harness import Harness

    sink = ingest._counting_sink()
    await sink.start()
    try:
        async with Harness(tmp, "uvloop") as h:
            print("[otlp] ceiling: metrics, spans ...", file=sys.stderr, flush=True)
            ceiling = await run_ceiling(h, params)
            print("[otlp] agent: metrics, spans ...", file=sys.stderr, flush=True)
            agent = await run_agent(h, params, sink)
    finally:
        await sink.stop()
    return {"ceiling": ceiling, "metrics": agent["metrics"], "spans": agent["spans"], "agent": agent["agent"]}


async def profile_agent(params: Params, tmp: Path, out: Path) -> dict:
    from bench.harness import Harness

    sink = ingest._counting_sink()
    await sink.start()
    try:
        async with Harness(tmp, "uvloop") as h:
            return await run_agent(h, params, sink, profile=out)
    finally:
        await sink.stop()


# from `python bench/otlp.py --profile` (cProfile on the agent's main thread under this load, 2026-12-04;
# cProfile roughly doubles Python-heavy code, the shares hold)
NOTES = [
    "**Run to run**: the same code measured 161,933 points/s (0.112 of its ceiling) in a full run at 18:27 with "
    "2 % of core 0 taken by others, and 227,867/s (0.133) in this one at 18:55 with nothing else running on the "
    "machine (a `--quick` run minutes before: 257,500/s). The 2-core machine's cores are likely SMT siblings: load "
    "on the other core slows the measured one without showing on it, so read the ratio, and repeat a run that "
    "lands near the 200,000 target.",
    "**Where a metric point's time goes** (`python bench/otlp.py --profile`): OtlpMetricSeries.consume is "
    "~55 % of the agent's request handling in the metrics window, the HTTP edge, ParseFromString (0.5-0.8 µs a "
    "point) and the /metrics scrapes (every second, ~13-30 ms for these 1,000 series) the rest. Inside consume, "
    "the histogram points (30 % of the points) take 59 %: reading each from its own serialisation "
    "(agent/receiver/histogram_wire.py walks ~13 fields: times, count, sum, packed counts and bounds, 4 "
    "attributes, min, max) ~4 µs a point, against ~10 µs through protobuf's objects; the number points 37 %: "
    "their key is the point serialised once past its 9-byte times and value (1.0 µs against 2.9 µs for each "
    "KeyValue serialised), then a dict lookup and the value update, ~1.7 µs a gauge point in all.",
    "**Tried, not kept**: ending a histogram point's attributes where its flags/min/max tail begins (their "
    "sizes read from the message) instead of walking each attribute: the walk went from 3.2 to 2.4 µs, the "
    "three presence reads cost 0.8 µs. **Next**, by yield: bucket counts kept as the packed bytes until a "
    "scrape or a delta needs them (the array and the sum check are ~0.6 µs a histogram point), and the "
    "/metrics render done once per scrape interval rather than per scrape when two scrapers ask.",
]


BENCH = SectionBench(
    name="otlp", doc=__doc__ or "", section=SECTION, default_connections=DEFAULT_CONNECTIONS, params=Params,
    measure=measure, profile=profile_agent,
    profile_summary=lambda r: (f"{r['metrics']['events_per_second']:,.0f} points/s, "
                               f"{r['metrics']['server_cpu_us_per_event']:.2f} CPU µs a point; "
                               f"{r['spans']['events_per_second']:,.0f} spans/s, "
                               f"{r['spans']['server_cpu_us_per_event']:.2f} CPU µs a span"),
    hot_path=hot_path, markdown=markdown,
    verdict=lambda r: {f"{signal}_target_met": r[signal]["events_per_second"] >= target
                       for signal, target in TARGETS.items()}, notes=NOTES)

if __name__ == "__main__":
    sys.exit(BENCH.main())
