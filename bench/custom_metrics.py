"""Custom metrics benchmark: POST /v1/metrics and StatsD lines over UDP into the agent, each against a
bare parse-only ceiling, on one core, in one run.

    python bench/custom_metrics.py          # about 3 minutes; writes bench/results/custom_metrics.json and
                                            # the "## Custom metrics" section of bench/RESULTS.md
    python bench/custom_metrics.py --quick  # smoke run (short windows); prints the results, writes nothing

Servers on core 0, one after the other; load generators and this process on core 1.
1. HTTP: the ceiling is an aiohttp app on uvloop whose handler only does orjson.loads and counts
   (bench/custom_metrics_load.py http-ceiling); the agent is `python -m agent run` (uvloop, store off,
   /metrics scraped every second as Prometheus would). The same load generator (8 keep-alive
   connections, closed loop, batches of 100 mixed counters, gauges and distributions) drives both;
   metrics are counted from the `accepted` of the answers inside the window.
2. StatsD: the ceiling is a uvloop UDP server that decodes, splits lines, fields and tags, parses the
   value and counts (udp-ceiling); the agent is the same process as in 1 with custom_metrics.statsd on.
   A sender on core 1 writes datagrams as fast as it can (open loop; what a server cannot take the
   kernel drops), once with as many lines as fit 1,432 bytes (DogStatsD clients' buffered mode), once
   with one line per datagram. Lines processed are read from the server at the window's edges
   (the ceiling's count; the agent's loom_agent_statsd_lines_total).
3. The hot path in-process (no I/O): µs per StatsD line and per HTTP metric, against the ceilings' parse.
CPU comes from /proc at the window's edges, with how busy core 0 was with other processes.
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
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import promtext, report  # noqa: E402
from bench.custom_metrics_load import ParseOnly, datagrams, metric_batch  # noqa: E402
from bench.ingest import core_ticks, core_use, quiet_core  # noqa: E402
from bench.processes import Child  # noqa: E402

LOAD = ROOT / "bench" / "custom_metrics_load.py"
RESULTS_JSON = ROOT / "bench" / "results" / "custom_metrics.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTION = "## Custom metrics"
MEASURED_CORE, HELPER_CORE = 0, 1
UDP_MODES = (("batched", 0), ("single", 1))      # lines per datagram (0: as many as fit 1,432 bytes)
MAX_ATTEMPTS, OTHERS_TOLERATED = 2, 0.10   # windows; share of core 0 other processes (other tenants) may take


class Params:
    def __init__(self, quick: bool):
        self.quick = quick
        self.warmup, self.window = (1.0, 4.0) if quick else (3.0, 15.0)
        self.connections = 8
        self.reps = 3 if quick else 7


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def udp_errors() -> dict[str, int]:
    """The kernel's UDP counters (all sockets): RcvbufErrors counts datagrams dropped on a full buffer."""
    with open("/proc/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


async def least_disturbed(measure) -> dict:
    """Run `measure()` again when other processes took more than OTHERS_TOLERATED of core 0 (the machine
    is shared); the least disturbed window is kept, every attempt is listed."""
    attempts = []
    for _ in range(MAX_ATTEMPTS):
        attempts.append(await measure())
        if attempts[-1]["others_on_measured_core"] <= OTHERS_TOLERATED:
            break
    best = min(attempts, key=lambda r: r["others_on_measured_core"])
    best["attempts"] = [{"per_second": r.get("metrics_per_second", r.get("lines_per_second")),
                         "per_cpu_second": r["per_cpu_second"], "others_on_measured_core": r["others_on_measured_core"]}
                        for r in attempts]
    return best


# --- HTTP ----------------------------------------------------------------------------------------

async def drive_http(h, url: str, server: Child, params: Params) -> dict:
    from bench.harness import until

    others_before = await quiet_core(MEASURED_CORE, server)
    start_at = time.time() + 1.0
    load = Child(f"http-load-{len(h.children)}", [sys.executable, str(LOAD), "http-load", "--url", url,
                                                  "--start-at", repr(start_at), "--warmup", repr(params.warmup),
                                                  "--window", repr(params.window), "--connections",
                                                  str(params.connections)], HELPER_CORE, h.tmp, registry=h.children)
    await until(start_at + params.warmup)
    cpu0, t0, ticks0 = server.cpu(), time.time(), core_ticks()
    await until(start_at + params.warmup + params.window)
    cpu1, t1, ticks1 = server.cpu(), time.time(), core_ticks()
    result = await h.result_of(load, timeout=60)
    return {**result, **_cpu_figures(cpu1 - cpu0, t1 - t0, ticks0, ticks1, result["metrics"]),
            "others_on_measured_core_before": others_before}


def _cpu_figures(cpu: float, seconds: float, ticks0: dict, ticks1: dict, items: float) -> dict:
    use = cpu / seconds
    busy = core_use(ticks0, ticks1, MEASURED_CORE)
    return {"server_core_use": use, "per_cpu_second": items / max(cpu, 1e-9),
            "server_cpu_us_per_item": cpu / max(items, 1) * 1e6, "measured_core_busy": busy,
            "others_on_measured_core": max(0.0, busy - use), "helper_core_busy": core_use(ticks0, ticks1, HELPER_CORE)}


async def http_ceiling(h, params: Params) -> dict:
    child = Child("http-ceiling", [sys.executable, str(LOAD), "http-ceiling"], MEASURED_CORE, h.tmp,
                  registry=h.children)
    line = await asyncio.wait_for(asyncio.to_thread(child.readline), 30)
    if not line.startswith("PORT "):
        raise RuntimeError(f"http ceiling did not start: {line!r}\n{child.log()}")
    try:
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        return await least_disturbed(lambda: drive_http(h, url, child, params))
    finally:
        await h.stop(child)


# --- StatsD --------------------------------------------------------------------------------------

async def drive_udp(h, port: int, server: Child, count, params: Params, lines_per_datagram: int) -> dict:
    """Blast `port` from core 1; `count()` returns (lines processed so far, unix time it was read)."""
    from bench.harness import until

    others_before = await quiet_core(MEASURED_CORE, server)
    start_at = time.time() + 1.0
    sender = Child(f"udp-send-{len(h.children)}", [sys.executable, str(LOAD), "udp-send", "--port", str(port),
                                                   "--start-at", repr(start_at), "--warmup", repr(params.warmup),
                                                   "--window", repr(params.window), "--lines-per-datagram",
                                                   str(lines_per_datagram)], HELPER_CORE, h.tmp, registry=h.children)
    await until(start_at + params.warmup)
    kernel0, ticks0, cpu0 = udp_errors(), core_ticks(), server.cpu()
    lines0, t0 = await count()
    await until(start_at + params.warmup + params.window)
    lines1, t1 = await count()
    kernel1, ticks1, cpu1 = udp_errors(), core_ticks(), server.cpu()
    sent = await h.result_of(sender, timeout=60)
    processed = lines1 - lines0
    return {**sent, **_cpu_figures(cpu1 - cpu0, t1 - t0, ticks0, ticks1, processed),
            "lines": processed, "lines_per_second": processed / (t1 - t0),
            "kernel_receive_buffer_drops": kernel1["RcvbufErrors"] - kernel0["RcvbufErrors"],
            "others_on_measured_core_before": others_before}


async def udp_ceiling(h, params: Params) -> dict:
    child = Child("udp-ceiling", [sys.executable, str(LOAD), "udp-ceiling"], MEASURED_CORE, h.tmp,
                  registry=h.children)
    line = await asyncio.wait_for(asyncio.to_thread(child.readline), 30)
    if not line.startswith("PORT "):
        raise RuntimeError(f"udp ceiling did not start: {line!r}\n{child.log()}")
    udp_port, http_port = map(int, line.split()[1:])

    async def count() -> tuple[float, float]:
        status, text = await h.get(f"http://127.0.0.1:{http_port}/count")
        return float(text), time.time()
    try:
        return {mode: await least_disturbed(lambda: drive_udp(h, udp_port, child, count, params, n))
                for mode, n in UDP_MODES}
    finally:
        await h.stop(child)


# --- the agent -----------------------------------------------------------------------------------

async def _scrape_every_second(h, agent, scrapes: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.monotonic()
        scrape = await h.scrape(agent)
        scrapes.append((scrape.received - scrape.sent) * 1000)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


def _lines_by_result(text: str) -> dict[str, float]:
    return {labels.split('"')[1]: value for labels, value in promtext.samples(text, "loom_agent_statsd_lines_total")}


async def run_agent(h, params: Params) -> dict:
    from bench.harness import uses_uvloop

    port = free_udp_port()
    agent = await h.start_agent([], config_overrides={
        "store": {"driver": "none"}, "privacy": {"hmac_key": "bench-" + "k" * 40},
        "custom_metrics": {"statsd": {"enabled": True, "listen": f"127.0.0.1:{port}"}}})
    scrapes: list[float] = []
    stop = asyncio.Event()
    scraper = asyncio.create_task(_scrape_every_second(h, agent, scrapes, stop))

    async def count() -> tuple[float, float]:
        scrape = await h.scrape(agent)
        return sum(_lines_by_result(scrape.text).values()), scrape.received
    try:
        http = await least_disturbed(lambda: drive_http(h, agent.url, agent.child, params))
        udp = {mode: await least_disturbed(lambda: drive_udp(h, port, agent.child, count, params, n))
               for mode, n in UDP_MODES}
        stop.set()
        await scraper
        final = (await h.scrape(agent)).text
        figures = {"statsd_lines_by_result": _lines_by_result(final),
                   "ingest_rejected": promtext.total(final, "loom_agent_ingest_rejected_total"),
                   "label_overflow": promtext.total(final, "loom_agent_label_overflow_total"),
                   "custom_metrics_registered": promtext.total(final, "loom_agent_custom_metrics"),
                   "series": sum(1 for line in final.splitlines() if line.startswith("loom_app_")),
                   "rss_bytes": agent.child.rss(), "uvloop": uses_uvloop(agent.pid), "scrapes": len(scrapes),
                   "scrape_ms_mean": sum(scrapes) / max(len(scrapes), 1), "scrape_ms_max": max(scrapes, default=0.0)}
        return {"http": http, "udp": udp, "figures": figures}
    finally:
        stop.set()
        await h.stop(agent.child)


# --- the hot path in-process ---------------------------------------------------------------------

def hot_path(params: Params) -> dict:
    """µs per StatsD line and per HTTP metric, agent path vs parse-only, best of `reps` runs."""
    from agent.custom_metrics.config import CustomMetricsConfig
    from agent.custom_metrics.registry import CustomMetrics
    from agent.custom_metrics.samples import parse_samples
    from agent.custom_metrics.statsd import StatsdProtocol
    from agent.events.privacy import Privacy
    from agent.events.privacy_config import PrivacyConfig
    from agent.metrics.store import MetricStore

    registry = CustomMetrics(CustomMetricsConfig(), MetricStore(), Privacy(PrivacyConfig(), b"k" * 32))
    agent_udp, ceiling_udp = StatsdProtocol(registry), ParseOnly()
    grams = [gram for gram, _ in datagrams(0)] * 20
    lines = sum(gram.count(b"\n") + 1 for gram in grams)
    bodies = [orjson.dumps({"metrics": metric_batch(seed)}) for seed in range(50)]
    metrics = 100 * len(bodies)
    best: dict[str, float] = {}

    def timed(name: str, fn, n: int) -> None:
        t0 = time.perf_counter()
        fn()
        best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / n * 1e6)

    def agent_http() -> None:
        for body in bodies:
            samples, _, _ = parse_samples(orjson.loads(body), 1000)
            registry.commit(registry.plan(samples))

    for _ in range(params.reps):
        timed("statsd_ceiling", lambda: [ceiling_udp.datagram_received(g, None) for g in grams], lines)
        timed("statsd_agent", lambda: [agent_udp.datagram_received(g, None) for g in grams], lines)
        timed("http_ceiling", lambda: [len(orjson.loads(b)["metrics"]) for b in bodies], metrics)
        timed("http_agent", agent_http, metrics)
        gc.collect()
    accepted = registry.store.get("loom_agent_statsd_lines").series[("accepted",)]
    return {"us": {k: round(v, 3) for k, v in best.items()}, "statsd_lines_per_run": lines,
            "http_metrics_per_run": metrics, "runs": params.reps,
            "statsd_all_accepted": accepted == lines * params.reps}


# --- results -------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def _attempts(d: dict) -> str:
    return ", ".join(f"{x['per_second']:,.0f} ({_pct(x['others_on_measured_core'])})" for x in d["attempts"])


def markdown(r: dict) -> str:
    m, hc, uc, a, hp = r["meta"], r["http_ceiling"], r["udp_ceiling"], r["agent"], r["hot_path"]
    ah, f, us = a["http"], a["figures"], hp["us"]
    lines = [SECTION, "",
             f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
             "(shared, noisy: compare ratios). Servers pinned to core 0, one after the other; load generators on "
             "core 1. JSON: `bench/results/custom_metrics.json`. A window ran again (once) when other processes "
             f"took more than {OTHERS_TOLERATED * 100:.0f} % of core 0; the tables show the least disturbed, and "
             "\"per CPU-second\" is what a server does with a core to itself.", "",
             f"**Summary, one core:** POST /v1/metrics {ah['per_cpu_second']:,.0f} metrics per CPU-second "
             f"({ah['per_cpu_second'] / hc['per_cpu_second'] * 100:.0f} % of the parse-only ceiling's "
             f"{hc['per_cpu_second']:,.0f}); StatsD {a['udp']['batched']['per_cpu_second']:,.0f} lines per CPU-second "
             f"in full datagrams ({a['udp']['batched']['per_cpu_second'] / uc['batched']['per_cpu_second'] * 100:.0f} % "
             f"of the ceiling's {uc['batched']['per_cpu_second']:,.0f}) and {a['udp']['single']['per_cpu_second']:,.0f} "
             f"with one line per datagram ({a['udp']['single']['per_cpu_second'] / uc['single']['per_cpu_second'] * 100:.0f} %).",
             "",
             f"### POST /v1/metrics ({hc['batch']} mixed counters, gauges and distributions per batch, "
             f"{hc['connections']} keep-alive connections, closed loop, {hc['window_seconds']:g} s window)", "",
             "| server | metrics/s | vs ceiling | metrics per CPU-second | batch p50 ms | p99 ms | server core use "
             "| other processes on its core | server CPU µs/metric |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, d in (("ceiling: aiohttp + orjson.loads + counter (uvloop)", hc),
                    ("agent: auth, validation, registry, privacy, MetricStore; /metrics every 1 s", ah)):
        lines.append(f"| {name} | {d['metrics_per_second']:,.0f} | {d['metrics_per_second'] / hc['metrics_per_second']:.3f} "
                     f"| {d['per_cpu_second']:,.0f} | {d['batch_ms_p50']:.2f} | {d['batch_ms_p99']:.2f} "
                     f"| {_pct(d['server_core_use'])} | {_pct(d['others_on_measured_core'])} "
                     f"| {d['server_cpu_us_per_item']:.2f} |")
    lines += ["", f"Failed requests: agent {ah['failed']}, ceiling {hc['failed']}. The load generator's core was "
              f"{_pct(ah['helper_core_busy'])} busy during the agent's window, {_pct(hc['helper_core_busy'])} during the "
              f"ceiling's (a ceiling below 100 % core use is bounded by the generator). Attempts (metrics/s, others on "
              f"core 0): ceiling {_attempts(hc)}; agent {_attempts(ah)}.", "",
              "### StatsD lines over UDP (open loop: the sender on core 1 writes as fast as it can; the kernel "
              f"drops what the server cannot take; {uc['batched']['window_seconds']:g} s windows)", "",
              "| server | datagrams | lines/s processed | vs ceiling | lines per CPU-second | server core use "
              "| lines/s sent | kernel drops (datagrams) | other processes on its core |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, _ in UDP_MODES:
        c, d = uc[mode], a["udp"][mode]
        shape = f"{c['lines_per_datagram']:g} lines, {c['bytes_per_datagram']} bytes"
        for name, x in (("ceiling: uvloop UDP, split + parse + count", c),
                        ("agent: parse, registry, privacy, MetricStore", d)):
            lines.append(f"| {name} | {shape} | {x['lines_per_second']:,.0f} "
                         f"| {x['lines_per_second'] / c['lines_per_second']:.3f} | {x['per_cpu_second']:,.0f} "
                         f"| {_pct(x['server_core_use'])} | {x['sent_lines_per_second']:,.0f} "
                         f"| {x['kernel_receive_buffer_drops']:,} | {_pct(x['others_on_measured_core'])} |")
    lines += ["", "Attempts (lines/s, others on core 0): " + "; ".join(
        f"{who} {mode} {_attempts(x)}" for mode, _ in UDP_MODES for who, x in (("ceiling", uc[mode]),
                                                                             ("agent", a["udp"][mode]))) + ".",
              "", f"Agent at the end: StatsD lines by result {f['statsd_lines_by_result']}; "
              f"{f['ingest_rejected']:.0f} rejected requests; {f['label_overflow']:.0f} label overflows; "
              f"{f['custom_metrics_registered']:.0f} custom metrics, {f['series']} `loom_app_*` samples; RSS "
              f"{f['rss_bytes'] / 2**20:.1f} MiB; uvloop {'mapped' if f['uvloop'] else 'NOT mapped'}; "
              f"{f['scrapes']} scrapes during the load (mean {f['scrape_ms_mean']:.1f} ms, max "
              f"{f['scrape_ms_max']:.1f} ms).", "",
              f"### Hot path in-process (µs, best of {hp['runs']} runs; no I/O)", "",
              "| | parse-only ceiling | agent | agent / ceiling | per second on one core (agent) |",
              "|---|---:|---:|---:|---:|",
              f"| StatsD line (datagrams of ~1,432 bytes; {hp['statsd_lines_per_run']:,} lines a run) "
              f"| {us['statsd_ceiling']:.2f} | {us['statsd_agent']:.2f} | {us['statsd_agent'] / us['statsd_ceiling']:.1f}x "
              f"| {1e6 / us['statsd_agent']:,.0f} |",
              f"| HTTP metric (orjson.loads; then validation, plan, commit; {hp['http_metrics_per_run']:,} a run) "
              f"| {us['http_ceiling']:.2f} | {us['http_agent']:.2f} | {us['http_agent'] / us['http_ceiling']:.1f}x "
              f"| {1e6 / us['http_agent']:,.0f} |"]
    return "\n".join(lines) + "\n"


def meta(args: argparse.Namespace, started: float) -> dict:
    return {"command": "python bench/custom_metrics.py" + (" --quick" if args.quick else ""),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "runtime_seconds": round(time.monotonic() - started, 1), "python": platform.python_version(),
            "nproc": os.cpu_count(), "quick": args.quick}


async def measure(params: Params, tmp: Path) -> dict:
    from bench.harness import Harness

    async with Harness(tmp, "uvloop") as h:
        print("[custom_metrics] HTTP ceiling ...", file=sys.stderr, flush=True)
        http = await http_ceiling(h, params)
        print("[custom_metrics] UDP ceiling ...", file=sys.stderr, flush=True)
        udp = await udp_ceiling(h, params)
        print("[custom_metrics] agent, HTTP then UDP ...", file=sys.stderr, flush=True)
        agent = await run_agent(h, params)
    return {"http_ceiling": http, "udp_ceiling": udp, "agent": agent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; prints, writes nothing")
    args = parser.parse_args()
    os.sched_setaffinity(0, {HELPER_CORE})
    started, params = time.monotonic(), Params(args.quick)
    tmp = Path(tempfile.mkdtemp(prefix="loom-custom-metrics-"))
    results = asyncio.run(measure(params, tmp))      # on failure the temp dir (process logs) is kept
    shutil.rmtree(tmp, ignore_errors=True)
    print("[custom_metrics] hot path in-process ...", file=sys.stderr, flush=True)
    results["hot_path"] = hot_path(params)
    results["meta"] = meta(args, started)
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
