"""Exposition benchmark: agent.metrics.exposition.render vs prometheus_client.generate_latest, in one run.

    python bench/exposition.py          # about 2-3 minutes; writes bench/results/exposition.json and
                                        # the "## Exposition" section of bench/RESULTS.md
    python bench/exposition.py --quick  # smoke run (10k series, short windows); prints the JSON only

Sections: render (10k and 100k labelled counter series, text / OpenMetrics / gzip, against
generate_latest with and without _created), rss (per 10k series, each in a fresh process),
ingest (events/s into a 100k-series store while it is scraped every second: no scrapes,
inline render, render in a thread), prometheus (a real Prometheus scraping our render and a
generate_latest server, 100k series each, every 5 s; its own scrape_duration_seconds).
Servers run pinned to core 0; this process (the load driver) runs on core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, generate_latest  # noqa: E402
from prometheus_client import metrics as client_metrics  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om  # noqa: E402

from agent.api.keys import METRICS, RUNTIME  # noqa: E402
from agent.api.exposition import exposition_response  # noqa: E402
from agent.app.root import build_app  # noqa: E402
from agent.config.load import load_config  # noqa: E402
from agent.metrics.exposition import render  # noqa: E402
from agent.metrics.store import MetricStore  # noqa: E402
from bench.processes import Child, rss_bytes  # noqa: E402
from tests.support.event_examples import all_examples, envelope  # noqa: E402
from tests.support.procs import PrometheusProcess, wait_until  # noqa: E402

RESULTS_JSON = ROOT / "bench" / "results" / "exposition.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTION = "## Exposition"
SERVER_CORE, DRIVER_CORE = 0, 1
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")     # what Prometheus 2.42 sends
NAME, HELP, LABELS = "loom_bench_events", "Synthetic series, by category and name.", ("category", "event")
BATCH = 1000
MODES = {None: "no scrapes", "/metrics": "inline (the agent's /metrics)", "/metrics-thread": "asyncio.to_thread"}


def key(i: int) -> tuple[str, str]:
    return f"category_{i % 20:02d}", f"event_name_{i:07d}"


def build_store(n: int) -> MetricStore:
    store = MetricStore()
    counter = store.counter(NAME, HELP, LABELS, series_limit=n + 1)
    for i in range(n):
        counter.inc(key(i), float(i % 1000))
    return store


def build_registry(n: int) -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry(auto_describe=False)
    counter = Counter(NAME, HELP, LABELS, registry=registry)
    for i in range(n):
        counter.labels(*key(i)).inc(i % 1000)
    return registry, counter


def best_of(fn: Callable[[], bytes], repeat: int) -> tuple[float, bytes]:
    best, out = float("inf"), b""
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def timed(fn: Callable[[], bytes], repeat: int) -> dict:
    seconds, out = best_of(fn, repeat)
    return {"ms": seconds * 1e3, "bytes": len(out)}


def with_created(enabled: bool, fn: Callable[[], bytes]) -> Callable[[], bytes]:
    def run() -> bytes:
        (client_metrics.enable_created_metrics if enabled else client_metrics.disable_created_metrics)()
        try:
            return fn()
        finally:
            client_metrics.enable_created_metrics()
    return run


def render_section(n: int, repeat: int, client_repeat: int) -> dict:
    store, (registry, _) = build_store(n), build_registry(n)
    start = time.perf_counter()
    render(store, None, openmetrics=False)                           # builds the prefix cache
    first_ms = (time.perf_counter() - start) * 1e3
    text, om = render(store, None, openmetrics=False), render(store, None, openmetrics=True)
    ours = {"text": timed(lambda: render(store, None, openmetrics=False), repeat),
            "openmetrics": timed(lambda: render(store, None, openmetrics=True), repeat),
            "first_render_text_ms": first_ms}
    for level in (1, 6):
        for fmt, body in (("text", text), ("openmetrics", om)):
            ours[f"gzip{level}_{fmt}"] = timed(lambda: zlib.compress(body, level, wbits=31), repeat)
    ours["text_plus_gzip1_ms"] = ours["text"]["ms"] + ours["gzip1_text"]["ms"]
    ours["openmetrics_plus_gzip1_ms"] = ours["openmetrics"]["ms"] + ours["gzip1_openmetrics"]["ms"]
    client = {}
    for created in (True, False):
        suffix = "" if created else "_no_created"
        client["text" + suffix] = timed(with_created(created, lambda: generate_latest(registry)), client_repeat)
        client["openmetrics" + suffix] = timed(with_created(created, lambda: generate_latest_om(registry)),
                                               client_repeat)
    ratios = {f"{theirs}_vs_our_{mine}": client[theirs]["ms"] / ours[mine]["ms"]
              for theirs, mine in (("text", "text"), ("text_no_created", "text"),
                                   ("openmetrics", "openmetrics"), ("openmetrics_no_created", "openmetrics"))}
    return {"series": n, "ours": ours, "prometheus_client": client, "speedup": ratios}


def rss_child(kind: str, n: int) -> None:
    """Run in a fresh process: RSS before and after building (and for the store, after rendering)."""
    gc.collect()
    out = {"before": rss_bytes(os.getpid())}
    held = build_store(n) if kind == "store" else build_registry(n)
    gc.collect()
    out["built"] = rss_bytes(os.getpid())
    if kind == "store":
        render(held, None, openmetrics=False)
        gc.collect()
        out["rendered"] = rss_bytes(os.getpid())
        cache = held.get(NAME).render_cache
        out["cache_bytes"] = (sys.getsizeof(cache.keys) + sys.getsizeof(cache.prefixes)
                              + sum(map(sys.getsizeof, cache.prefixes)))
    print(json.dumps(out))


def rss_section(n: int) -> dict:
    def child(kind: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "bench.exposition", "rss-child", kind, str(n)],
                                cwd=ROOT, capture_output=True, check=True, timeout=120)
        return json.loads(result.stdout)
    store, client = child("store"), child("client")
    per = n / 10_000
    return {"series": n,
            "store_bytes_per_10k": (store["built"] - store["before"]) / per,
            "store_with_prefix_cache_bytes_per_10k": (store["rendered"] - store["before"]) / per,
            "prefix_cache_bytes_per_10k_exact": store["cache_bytes"] / per,
            "prometheus_client_bytes_per_10k": (client["built"] - client["before"]) / per}


# ---- servers (child processes, pinned to SERVER_CORE) -----------------------------------------

async def mutate(bump: Callable[[int], None], n: int) -> None:
    """Keep values moving between scrapes, as a live agent's would."""
    while True:
        for _ in range(100):
            bump(random.randrange(n))
        await asyncio.sleep(0.1)


async def serve_agent(n: int) -> None:
    """The real agent app (agent.app.root.build_app: /metrics, /v1/events/batch, the event pipeline), with
    `n` extra synthetic counter series in its MetricStore, plus bench-only routes: /metrics-thread
    (the same exposition_response in asyncio.to_thread) and /bench-stats (scrape times, loop lag)."""
    config_path = Path(tempfile.mkstemp(prefix="bench-agent-", suffix=".yaml")[1])
    config_path.write_text("listen: 127.0.0.1:9464\ntargets: []\n")      # listen is unused: port 0 below
    app = build_app(load_config(str(config_path)))
    config_path.unlink()
    store, runtime = app[METRICS], app[RUNTIME]
    counter = store.counter(NAME, HELP, LABELS, series_limit=n + 1)
    for i in range(n):
        counter.inc(key(i), float(i % 1000))
    stats = {"max_lag_ms": 0.0, "scrape_ms": []}

    async def metrics_thread(request: web.Request) -> web.Response:
        return await asyncio.to_thread(exposition_response, request, runtime.registry, store)

    @web.middleware
    async def timing(request: web.Request, handler):
        start = time.perf_counter()
        response = await handler(request)
        if request.path.startswith("/metrics"):
            stats["scrape_ms"].append((time.perf_counter() - start) * 1e3)
        return response

    async def get_stats(request: web.Request) -> web.Response:
        body = web.json_response(stats)
        stats.update(max_lag_ms=0.0, scrape_ms=[])
        return body

    async def lag_probe() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.002)
            stats["max_lag_ms"] = max(stats["max_lag_ms"], (time.perf_counter() - start - 0.002) * 1e3)

    app.middlewares.append(timing)
    app.router.add_get("/metrics-thread", metrics_thread)
    app.router.add_get("/bench-stats", get_stats)
    tasks = [asyncio.create_task(lag_probe()), asyncio.create_task(mutate(lambda i: counter.inc(key(i)), n))]
    await run_app(app)
    del tasks


async def serve_client(n: int) -> None:
    """The previous /metrics: prometheus_client's encoders on a registry, aiohttp's gzip."""
    registry, counter = build_registry(n)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encoder(registry), headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    task = asyncio.create_task(mutate(lambda i: counter.labels(*key(i)).inc(), n))
    await run_app(app)
    del task


async def run_app(app: web.Application) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()          # until SIGTERM


def start_server(kind: str, n: int, tmp: Path, children: list[Child], core: int = SERVER_CORE) -> str:
    """Start a bench server child; its address (the child is the last of `children`)."""
    child = Child(f"{kind}-{n}", [sys.executable, "-m", "bench.exposition", kind, str(n)], core, tmp,
                  registry=children)
    port = child.readline().strip()
    if not port.isdigit():
        raise RuntimeError(f"{kind} did not start:\n{child.log()}")
    return f"127.0.0.1:{port}"


# ---- ingest while scraping --------------------------------------------------------------------

async def drive(address: str, mode: str | None, window: float, scrape_every: float,
                cpu: Callable[[], float]) -> dict:
    """Closed-loop ingest (8 connections, 1,000-event batches of the catalog's example events into
    /v1/events/batch) while /metrics (or /metrics-thread) is scraped every `scrape_every` seconds."""
    examples = all_examples()
    batch = orjson.dumps({"events": [envelope(*examples[i % len(examples)]) for i in range(BATCH)]})
    latencies: list[float] = []
    events: list[int] = []
    scrapes: list[float] = []
    deadline = time.perf_counter() + window
    async with aiohttp.ClientSession(f"http://{address}") as session:
        await (await session.get("/bench-stats")).read()

        async def post_loop() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.post("/v1/events/batch", data=batch,
                                        headers={"Content-Type": "application/json"}) as response:
                    reply = await response.json()
                if "accepted" not in reply:
                    raise RuntimeError(f"/v1/events/batch answered {response.status}: {reply}")
                accepted = reply["accepted"]
                latencies.append(time.perf_counter() - start)
                events.append(accepted)

        async def scrape_loop() -> None:
            while mode is not None and time.perf_counter() + scrape_every < deadline:
                await asyncio.sleep(scrape_every)
                start = time.perf_counter()
                headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
                async with session.get(mode, headers=headers) as response:
                    await response.read()
                scrapes.append(time.perf_counter() - start)

        started, cpu_started = time.perf_counter(), cpu()
        await asyncio.gather(scrape_loop(), *(post_loop() for _ in range(8)))
        elapsed, cpu_used = time.perf_counter() - started, cpu() - cpu_started
        stats = await (await session.get("/bench-stats")).json()
    latencies.sort()
    return {"mode": MODES[mode], "events_per_second": sum(events) / elapsed,
            "events_per_cpu_second": sum(events) / cpu_used, "server_cpu_utilisation": cpu_used / elapsed,
            "batch_latency_p50_ms": latencies[len(latencies) // 2] * 1e3,
            "batch_latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
            "batch_latency_max_ms": latencies[-1] * 1e3, "scrapes": len(scrapes),
            "scrape_ms_client_mean": sum(scrapes) / len(scrapes) * 1e3 if scrapes else None,
            "scrape_ms_server": stats["scrape_ms"], "event_loop_max_lag_ms": stats["max_lag_ms"]}


def ingest_section(n: int, window: float, rounds: int, tmp: Path, children: list[Child]) -> dict:
    address = start_server("serve-agent", n, tmp, children)
    cpu = children[-1].cpu

    async def run() -> list[dict]:
        await drive(address, "/metrics", 2.0, 0.5, cpu)                   # warm-up: caches, connections
        return [await drive(address, mode, window, 1.0, cpu) for _ in range(rounds) for mode in MODES]
    runs = merge_rounds(asyncio.run(run()))
    for field in ("events_per_second", "events_per_cpu_second"):
        for r in runs:
            r[field + "_vs_no_scrapes"] = r[field] / runs[0][field]
    return {"series": n, "window_seconds": window, "rounds": rounds, "scrape_every_seconds": 1.0, "runs": runs}


def merge_rounds(runs: list[dict]) -> list[dict]:
    """One row per mode: medians over the rounds (max for the maxima; the machine is shared, so a round
    can be hit by someone else's load), the events/s range, server scrape times concatenated."""
    merged: dict[str, dict] = {}
    for run in runs:
        row = merged.setdefault(run["mode"], {"mode": run["mode"], "rounds": []})
        row["rounds"].append(run)
    for row in merged.values():
        rounds = row["rounds"]
        for field in ("events_per_second", "events_per_cpu_second", "server_cpu_utilisation",
                      "batch_latency_p50_ms", "batch_latency_p99_ms"):
            row[field] = statistics.median(r[field] for r in rounds)
        row["events_per_second_range"] = [min(r["events_per_second"] for r in rounds),
                                          max(r["events_per_second"] for r in rounds)]
        for field in ("batch_latency_max_ms", "event_loop_max_lag_ms"):
            row[field] = max(r[field] for r in rounds)
        row["scrape_ms_server"] = [ms for r in rounds for ms in r["scrape_ms_server"]]
    return list(merged.values())


# ---- a real Prometheus --------------------------------------------------------------------------

def prometheus_section(n: int, tmp: Path, children: list[Child], steady: int) -> dict:
    """Each server alone (one after the other) scraped by a fresh Prometheus every 5 s."""
    out: dict = {"series": n, "scrape_interval_seconds": 5, "prometheus_version": prometheus_version()}
    for job, kind in (("render", "serve-agent"), ("generate_latest", "serve-client")):
        address = start_server(kind, n, tmp, children)
        try:
            out[job] = scrape_durations(tmp / job, job, address, steady)
        finally:
            for child in children:
                child.stop()
            children.clear()
    out["steady_mean_ratio_generate_latest_vs_render"] = (out["generate_latest"]["steady_mean"]
                                                          / out["render"]["steady_mean"])
    return out


def scrape_durations(tmp: Path, job: str, address: str, steady: int) -> dict:
    """Prometheus's own scrape_duration_seconds for every scrape: the first one (it creates every
    series in its head; ours also builds its prefix cache) and the `steady` ones after it."""
    tmp.mkdir()
    os.sched_setaffinity(0, {SERVER_CORE, DRIVER_CORE})                        # Prometheus inherits: unpinned
    try:
        prometheus = PrometheusProcess(tmp, [{"job_name": job, "static_configs": [{"targets": [address]}]}],
                                       interval="5s")
    finally:
        os.sched_setaffinity(0, {DRIVER_CORE})
    try:
        def durations() -> list[float]:
            result = prometheus.query(f'scrape_duration_seconds{{job="{job}"}}[10m]')
            return [float(v) for _, v in result[0]["values"]] if result else []
        wait_until(lambda: len(durations()) > steady, 15 + 5 * (steady + 1) + 20, interval=1.0,
                   what=f"{steady + 1} scrapes of {job}")
        values = durations()
        samples = prometheus.query(f'scrape_samples_scraped{{job="{job}"}}')[0]["value"][1]
        up = prometheus.query(f'up{{job="{job}"}}')[0]["value"][1]
    finally:
        prometheus.stop()
    rest = values[1:]
    return {"durations": values, "first": values[0], "steady_mean": sum(rest) / len(rest), "steady_max": max(rest),
            "samples_scraped": float(samples), "up": float(up)}


def prometheus_version() -> str:
    result = subprocess.run([PrometheusProcess.BINARY, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0]


# ---- report -------------------------------------------------------------------------------------

def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [SECTION, "",
             f"`{meta['command']}` — {meta['date']}, {meta['runtime_seconds']:.0f} s, Python {meta['python']}, "
             f"{meta['nproc']} cores (shared, noisy: compare ratios). Servers pinned to core {SERVER_CORE}, "
             f"driver on core {DRIVER_CORE}. JSON: `bench/results/exposition.json`.", "",
             "### Render (labelled counter series, 2 labels; best of several runs)", "",
             "| series | ours text ms | ours OpenMetrics ms | generate_latest text ms (no _created) "
             "| generate_latest OM ms (no _created) | speedup text | speedup OM |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["render"]:
        o, c, s = r["ours"], r["prometheus_client"], r["speedup"]
        lines.append(f"| {r['series']:,} | {o['text']['ms']:.1f} | {o['openmetrics']['ms']:.1f} "
                     f"| {c['text']['ms']:.0f} ({c['text_no_created']['ms']:.0f}) "
                     f"| {c['openmetrics']['ms']:.0f} ({c['openmetrics_no_created']['ms']:.0f}) "
                     f"| **{s['text_vs_our_text']:.0f}x** ({s['text_no_created_vs_our_text']:.0f}x) "
                     f"| **{s['openmetrics_vs_our_openmetrics']:.0f}x** ({s['openmetrics_no_created_vs_our_openmetrics']:.0f}x) |")
    big = results["render"][-1]["ours"]
    lines += ["", f"At {results['render'][-1]['series']:,} series: first render (builds the prefix cache) "
              f"{big['first_render_text_ms']:.0f} ms; body {big['text']['bytes'] / 1e6:.1f} MB. "
              f"gzip level 1: {big['gzip1_text']['ms']:.1f} ms -> {big['gzip1_text']['bytes'] / 1e3:.0f} kB; "
              f"level 6: {big['gzip6_text']['ms']:.1f} ms -> {big['gzip6_text']['bytes'] / 1e3:.0f} kB "
              f"(level 1 chosen: {big['gzip6_text']['ms'] / big['gzip1_text']['ms']:.1f}x faster, "
              f"{big['gzip1_text']['bytes'] / big['gzip6_text']['bytes']:.1f}x larger, bytes on loopback are cheap). "
              f"Render + gzip, i.e. the event loop is blocked for: text {big['text_plus_gzip1_ms']:.0f} ms, "
              f"OpenMetrics {big['openmetrics_plus_gzip1_ms']:.0f} ms.", ""]
    rss = results.get("rss")
    if rss:
        lines += [f"RSS per 10k series (fresh process each, {rss['series']:,} series): store "
                  f"{rss['store_bytes_per_10k'] / 2**20:.2f} MiB, store + prefix cache "
                  f"{rss['store_with_prefix_cache_bytes_per_10k'] / 2**20:.2f} MiB after one render (the prefix "
                  f"cache itself is {rss['prefix_cache_bytes_per_10k_exact'] / 2**20:.2f} MiB by getsizeof; the rest is "
                  f"the allocator keeping the render's freed buffers), prometheus_client "
                  f"{rss['prometheus_client_bytes_per_10k'] / 2**20:.2f} MiB.", ""]
    ing = results.get("ingest")
    if ing:
        lines += [f"### Ingest while scraping ({ing['series']:,} series, 1,000-event batches, 8 connections, "
                  f"a gzip OpenMetrics scrape every {ing['scrape_every_seconds']:g} s; {ing['rounds']} rounds of "
                  f"{ing['window_seconds']:g} s per mode, interleaved)", "",
                  "| scrape mode | events/s (median) | range over rounds | vs no scrapes | events per server CPU-s "
                  "| vs no scrapes | server core use | batch p99 ms | loop max lag ms | scrape ms (server, median) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ing["runs"]:
            ms = r["scrape_ms_server"]
            median = f"{statistics.median(ms):.0f}" if ms else "-"
            low, high = r["events_per_second_range"]
            lines.append(f"| {r['mode']} | {r['events_per_second']:,.0f} | {low:,.0f}-{high:,.0f} "
                         f"| {r['events_per_second_vs_no_scrapes']:.3f} | {r['events_per_cpu_second']:,.0f} "
                         f"| {r['events_per_cpu_second_vs_no_scrapes']:.3f} | {r['server_cpu_utilisation'] * 100:.0f} % "
                         f"| {r['batch_latency_p99_ms']:.1f} | {r['event_loop_max_lag_ms']:.1f} | {median} |")
        _, inline, thread = ing["runs"]
        inline_ms, thread_ms = statistics.median(inline["scrape_ms_server"]), statistics.median(thread["scrape_ms_server"])
        lines += ["", "Events per server CPU-second is the figure other processes on the shared core disturb least "
                  "(wall-clock events/s swings with them: see the range). "
                  f"In a thread the scrape itself takes {thread_ms / inline_ms:.1f}x longer (the render holds the GIL; "
                  "loop and thread take turns on one core) and events per CPU-second move by "
                  f"{thread['events_per_cpu_second_vs_no_scrapes'] - inline['events_per_cpu_second_vs_no_scrapes']:+.3f} "
                  "of the no-scrape figure against inline. /metrics renders inline: one "
                  f"~{inline_ms:.0f} ms stall per scrape, {inline_ms / 150:.2f} % of the loop at a 15 s scrape interval."]
        lines.append("")
    prom = results.get("prometheus")
    if prom:
        r, g = prom["render"], prom["generate_latest"]
        lines += [f"### A real Prometheus ({prom['prometheus_version']}), {prom['series']:,} series, "
                  f"scrape every {prom['scrape_interval_seconds']} s, each server alone", "",
                  "Its own `scrape_duration_seconds` (HTTP + its parsing + appending to its TSDB head). The first "
                  "scrape creates every series in Prometheus's head (and builds our prefix cache); the rest is the "
                  "steady state.", "",
                  "| server | first scrape s | steady mean s | steady max s | samples | up |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, d in (("ours: the agent's /metrics", r), ("generate_latest + aiohttp gzip", g)):
            lines.append(f"| {name} | {d['first']:.3f} | **{d['steady_mean']:.3f}** | {d['steady_max']:.3f} "
                         f"| {d['samples_scraped']:,.0f} | {d['up']:.0f} |")
        lines += ["", f"Target < 0.5 s: {'met' if r['steady_max'] < 0.5 else '**not met**'} in the steady state "
                  f"(max {r['steady_max']:.3f} s; first scrape {r['first']:.3f} s); generate_latest / ours = "
                  f"{prom['steady_mean_ratio_generate_latest_vs_render']:.1f}x.", ""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace our section of RESULTS.md (from its heading to the next '## ' heading) or append it."""
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    lines = old.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join([*lines[:start], *text.rstrip("\n").splitlines(), *([""] if end < len(lines) else []),
                         *lines[end:]]) + "\n"
    else:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + text.rstrip("\n") + "\n"
    RESULTS_MD.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {DRIVER_CORE})
    started = time.time()
    sizes = (10_000,) if args.quick else (10_000, 100_000)
    results: dict = {"meta": {"command": "python bench/exposition.py" + (" --quick" if args.quick else ""),
                              "date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "python": sys.version.split()[0], "nproc": os.cpu_count(), "quick": args.quick}}
    results["render"] = [render_section(n, 7 if n <= 10_000 else 5, 3 if n <= 10_000 else 2) for n in sizes]
    print("render done", flush=True)
    results["rss"] = rss_section(sizes[-1])
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="bench-exposition-") as tmp:
        try:
            results["ingest"] = ingest_section(sizes[-1], 2.0 if args.quick else 4.0, 1 if args.quick else 4,
                                               Path(tmp), children)
            print("ingest done", flush=True)
            for child in children:
                child.stop()
            children.clear()
            results["prometheus"] = prometheus_section(sizes[-1], Path(tmp), children, 1 if args.quick else 3)
        finally:
            for child in children:
                child.stop()
    results["meta"]["runtime_seconds"] = time.time() - started
    if args.quick:
        print(json.dumps(results, indent=1))
        return
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
    write_section(markdown(results))
    print(markdown(results))


def serve_main(kind: str, n: int) -> None:
    import uvloop
    uvloop.run(serve_agent(n) if kind == "serve-agent" else serve_client(n))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "rss-child":
        rss_child(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] in ("serve-agent", "serve-client"):
        serve_main(sys.argv[1], int(sys.argv[2]))
    else:
        main()
