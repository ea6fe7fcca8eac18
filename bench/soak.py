"""Soak: the agent under steady load for 10 minutes, with every other duty running; is it still the same
agent at the end (latency, errors, memory, file descriptors)?

    python bench/soak.py                  # 10 minutes (+ about 1 minute of set-up); writes
                                          # bench/results/soak.json and "## Soak" of bench/RESULTS.md
    python bench/soak.py --minutes 2      # shorter; prints, writes nothing (unless --write)
    python bench/soak.py --quick          # smoke run (30 s); prints, writes nothing
    python bench/soak.py --rate 15000     # skip measuring the maximum; events per second
    python bench/soak.py --report         # rewrite "## Soak" of RESULTS.md from bench/results/soak.json

1. `python -m agent run` on core 0 (as bench/ingest.py pins it) with the durable SQLite store (WAL,
   synchronous=full), OTLP/HTTP export of spans and metrics to a receiver in this process, admin token,
   and 500 HTTP probe targets (interval 10 s, timeout 2 s: 50 probes/s) served by four raw-asyncio
   servers (bench/targets.py, `/t/<n>`) on core 1.
2. Beside it from the start (bench/soak_watch.py): /metrics scraped every second, the analytics API
   polled with the admin token every 5 s (dashboard and business metrics in turn, default 30-day range
   over the whole growing store), and the agent's RSS, open file descriptors (/proc/<pid>/fd), threads
   and CPU sampled every 5 s, with the size of the store's -wal file; and --readers loops asking for the
   7-day dashboard back to back (continuous reads: what starved SQLite's checkpoints, issue 17).
3. The maximum: bench/ingest.py's closed-loop driver (8 connections, batches of 100 mixed events) for
   --max-window seconds against this agent, under these same conditions.
4. The soak: bench/soak_load.py, an open-loop generator on core 1, posts batches of 100 at --fraction
   (0.5) of that maximum for --minutes; latency counts from the instant each batch was due.

Reported: ingest p50/p99 latency and errors (overall and per minute), scrape and analytics latencies and
errors, RSS and file descriptors at the start and end of the soak, and the RSS slope over its last half
(bounded: below BOUNDED_MIB_PER_MINUTE), plus what the agent's own metrics say (probes, spans, commits,
rejections) and error lines in its log.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import promtext, report, soak_report  # noqa: E402
from bench.processes import Child  # noqa: E402
from bench.soak_watch import Watch, between, poller, reader, sampler, scraper, slope  # noqa: E402

RESULTS_JSON = ROOT / "bench" / "results" / "soak.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
MEASURED_CORE, HELPER_CORE = 0, 1
TARGETS, TARGET_SERVERS = 500, 4
TOKEN = "soak-admin-token-" + "a" * 24
BOUNDED_MIB_PER_MINUTE = 1.0      # RSS slope over the soak's last half; a leak of ~1 byte per event trips it
FD_GROWTH_TOLERATED = 10
WAL_BOUND_MIB = 128     # agent/store/sqlite.py empties the -wal past 64 MiB; plus one read's worth of commits
READER_PATH = "/api/analytics/dashboard?range=7d"


async def start_target_servers(h) -> list[str]:
    urls = []
    for number in range(TARGET_SERVERS):
        child = Child(f"targets{number}", [sys.executable, str(ROOT / "bench" / "targets.py")], HELPER_CORE, h.tmp,
                      registry=h.children)
        line = await asyncio.wait_for(asyncio.to_thread(child.readline), 20)
        if not line.startswith("PORT "):
            raise RuntimeError(f"target server did not start: {line!r}\n{child.log()}")
        urls.append(f"http://127.0.0.1:{int(line.split()[1])}")
    return urls


def agent_overrides(db: str) -> dict:
    return {"defaults": {"interval": "10s", "timeout": "2s"},
            "telemetry": {"otlp": {"metrics_interval": "15s"}},
            "store": {"driver": "sqlite", "path": db, "synchronous": "full"},
            "privacy": {"hmac_key": "soak-" + "k" * 40},
            "api": {"admin_tokens": [TOKEN]}}


async def measure_max(h, agent, seconds: float) -> dict:
    """bench/ingest.py's closed-loop driver against this agent, as it stands (probes, scrapes, polls on)."""
    from bench.ingest import drive

    params = SimpleNamespace(warmup=2.0, window=seconds, connections=8)
    result = await drive(h, agent.url, agent.child, params, time.time() - 120)
    return {k: result[k] for k in ("events_per_second", "batch_ms_p50", "batch_ms_p99", "failed", "window_seconds",
                                   "server_core_use", "others_on_measured_core")}


async def run_load(h, agent, rate: float, seconds: float) -> tuple[dict, float]:
    start_at = time.time() + 2.0
    child = Child("soak-load", [sys.executable, str(ROOT / "bench" / "soak_load.py"), "--url", agent.url,
                                "--rate", repr(rate), "--start-at", repr(start_at), "--seconds", repr(seconds)],
                  HELPER_CORE, h.tmp, registry=h.children)
    return await h.result_of(child, timeout=seconds + 120), start_at


def agent_figures(text: str) -> dict:
    t = promtext.total
    return {"events_total": t(text, "loom_events_total"),
            "probes_success": t(text, "loom_probes_total", 'result="success"'),
            "probes_failure": t(text, "loom_probes_total", 'result="failure"'),
            "probe_failures_by_reason": {labels.split('reason="')[1].split('"')[0]: value
                                         for labels, value in promtext.samples(text, "loom_probe_failures_total")
                                         if value},
            "probe_slots_missed": t(text, "loom_agent_probe_slots_missed_total"),
            "probe_internal_errors": t(text, "loom_agent_probe_internal_errors_total"),
            "spans_exported": t(text, "loom_agent_exported_total", 'signal="traces"'),
            "spans_dropped": t(text, "loom_agent_export_dropped_total", 'signal="traces"'),
            "metric_points_dropped": t(text, "loom_agent_export_dropped_total", 'signal="metrics"'),
            "export_failures": t(text, "loom_agent_export_failures_total"),
            "ingest_rejected": t(text, "loom_agent_ingest_rejected_total"),
            "store_commits_ok": t(text, "loom_agent_store_commits_total", 'result="ok"'),
            "store_commits_not_ok": t(text, "loom_agent_store_commits_total")
            - t(text, "loom_agent_store_commits_total", 'result="ok"'),
            "label_overflow": t(text, "loom_agent_label_overflow_total"),
            "spans_evicted": t(text, "loom_agent_event_spans_evicted_total"),
            "samples": sum(1 for line in text.splitlines() if line and not line.startswith("#"))}


def log_problems(path: Path) -> dict:
    """Error and warning lines of the agent's log (it runs at --log-level warning), with a few samples."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    bad = [line for line in lines if "ERROR" in line or "Traceback" in line or "CRITICAL" in line]
    warnings = [line for line in lines if "WARNING" in line]
    return {"lines": len(lines), "error_lines": len(bad), "samples": bad[:5], "warning_lines": len(warnings),
            "warning_samples": warnings[:5]}


def memory(watch: Watch, first: dict, last: dict, start: float, end: float) -> dict:
    """RSS and fds just before the load started and just after it ended (its connections closed: the
    same state), the RSS slope over each half of the soak, the extremes under load."""
    inside = between(watch.samples, start, end + 1.0)
    half = start + (end - start) / 2
    mib = 2 ** 20

    def rss_slope(points: list[dict]) -> float:
        return slope([((p["t"] - start) / 60, p["rss_bytes"] / mib) for p in points])

    last_half = rss_slope(between(inside, half, end + 1.0))
    return {"samples": len(inside), "rss_start_bytes": first["rss_bytes"], "rss_end_bytes": last["rss_bytes"],
            "rss_growth_bytes": last["rss_bytes"] - first["rss_bytes"],
            "rss_max_bytes": max(p["rss_bytes"] for p in inside + [last]),
            "rss_slope_first_half_mib_per_minute": round(rss_slope(between(inside, start, half)), 3),
            "rss_slope_last_half_mib_per_minute": round(last_half, 3),
            "rss_bounded": last_half < BOUNDED_MIB_PER_MINUTE,
            "fds_start": first["fds"], "fds_end": last["fds"], "fds_max": max(p["fds"] for p in inside),
            "fds_bounded": last["fds"] - first["fds"] <= FD_GROWTH_TOLERATED,
            "threads_start": first["threads"], "threads_end": last["threads"],
            "cpu_core_use": (last["cpu_seconds"] - first["cpu_seconds"]) / max(last["t"] - first["t"], 1e-9),
            "pending_events_max": max(p["loom_agent_store_pending_events"] for p in inside),
            "export_queue_max": max(p["loom_agent_export_queue_size"] for p in inside),
            "spans_open_max": max(p["loom_agent_event_spans_open"] for p in inside)}


def wal_figures(watch: Watch, start: float, end: float) -> dict:
    """The -wal file's size over the soak: its largest, at the end, and the largest of each minute."""
    inside = between(watch.samples, start, end + 1.0)
    per_minute: dict[int, int] = {}
    for p in inside:
        minute = int((p["t"] - start) // 60) + 1
        per_minute[minute] = max(per_minute.get(minute, 0), p["wal_bytes"])
    largest = max((p["wal_bytes"] for p in inside), default=0)
    return {"max_bytes": largest, "end_bytes": inside[-1]["wal_bytes"] if inside else 0,
            "max_bytes_per_minute": per_minute, "bound_mib": WAL_BOUND_MIB,
            "bounded": largest <= WAL_BOUND_MIB * 2 ** 20}


def histogram_figures(before: str, after: str, name: str) -> dict:
    """Observations of histogram `name` between two scrapes: count, p50 and p99 (interpolated in the
    buckets, as histogram_quantile does), and how many were over 0.1, 0.5 and 1 s."""
    buckets = promtext.delta(promtext.histogram(after, name), promtext.histogram(before, name))
    total = buckets.get(float("inf"), 0.0)
    over = {f"over_{bound:g}s": total - buckets[bound] for bound in (0.1, 0.5, 1.0) if bound in buckets}
    return {"observations": total, "p50_seconds": promtext.quantile(0.5, buckets),
            "p99_seconds": promtext.quantile(0.99, buckets), **over}


def side_figures(watch: Watch, start: float, end: float) -> dict:
    scrapes = between(watch.scrapes, start, end)
    polls = between(watch.polls, start, end)
    out = {"scrapes": len(scrapes), "scrape_errors": dict(watch.scrape_errors),
           "scrape_ms_p50": promtext.percentile([s[1] for s in scrapes], 0.5),
           "scrape_ms_p99": promtext.percentile([s[1] for s in scrapes], 0.99),
           "scrape_ms_max": max((s[1] for s in scrapes), default=float("nan")),
           "scrape_bytes_end": scrapes[-1][2] if scrapes else 0,
           "polls": len(polls), "poll_errors": dict(watch.poll_errors), "analytics": {}}
    for path in sorted({p[1] for p in polls}):
        ms = [p[2] for p in polls if p[1] == path]
        out["analytics"][path] = {"requests": len(ms), "non_200": sum(1 for p in polls if p[1] == path and p[3] != 200),
                                  "p50_ms": promtext.percentile(ms, 0.5), "p99_ms": promtext.percentile(ms, 0.99),
                                  "max_ms": max(ms), "first_ms": ms[0], "last_ms": ms[-1]}
    return out


async def soak(args: argparse.Namespace, tmp: Path) -> dict:
    from bench.harness import Harness
    from bench.ingest import _counting_sink

    sink = _counting_sink()
    await sink.start()
    try:
        async with Harness(tmp, args.event_loop) as h:
            servers = await start_target_servers(h)
            targets = [{"name": f"t{n}", "kind": "http", "url": f"{servers[n % len(servers)]}/t/{n}"}
                       for n in range(TARGETS)]
            print(f"[soak] agent with {TARGETS} targets ...", file=sys.stderr, flush=True)
            agent = await h.start_agent(targets, otlp_endpoint=sink.url, config_overrides=agent_overrides("events.db"))
            watch = Watch(agent.pid, agent.url, TOKEN, wal_path=str(tmp / "events.db-wal"))
            ready = watch.sample()
            side = [asyncio.create_task(scraper(watch, h.session)), asyncio.create_task(sampler(watch))]
            if args.poll_period:
                side.append(asyncio.create_task(poller(watch, h.session, args.poll_period)))
            side += [asyncio.create_task(reader(watch, h.session, READER_PATH)) for _ in range(args.readers)]
            try:
                await asyncio.sleep(args.settle)            # the probe schedule spreads out
                maximum = None
                rate = args.rate
                if not rate:
                    print("[soak] measuring the maximum ...", file=sys.stderr, flush=True)
                    maximum = await measure_max(h, agent, args.max_window)
                    rate = maximum["events_per_second"] * args.fraction
                print(f"[soak] {rate:,.0f} events/s for {args.minutes:g} min ...", file=sys.stderr, flush=True)
                first, metrics_before = watch.sample(), (await h.scrape(agent)).text
                load, start = await run_load(h, agent, rate, args.minutes * 60)
                end = start + args.minutes * 60
                await asyncio.sleep(3.0)            # the generator has exited: its connections are closed
                last = watch.sample()
            finally:
                watch.stop.set()
                await asyncio.gather(*side)
            final = await h.scrape(agent)
            db_bytes = sum(p.stat().st_size for p in tmp.glob("events.db*"))
            wal = tmp / "events.db-wal"
            wal_bytes = wal.stat().st_size if wal.exists() else 0     # long analytics reads delay checkpoints
            await h.stop(agent.child)
            figures = agent_figures(final.text)
            log = log_problems(agent.child.log_path)
    finally:
        await sink.stop()
    return {"rate_events_per_second": rate, "maximum": maximum, "load": load,
            "ready": {"rss_bytes": ready["rss_bytes"], "fds": ready["fds"]},
            "memory": memory(watch, first, last, start, end), "side": side_figures(watch, start, end),
            "agent": figures,
            # the event loop's lateness as the probe scheduler sees it: a blocked loop shows up here
            "scheduler_lag": histogram_figures(metrics_before, final.text, "loom_agent_scheduler_lag_seconds"),
            # how long each group commit took: what an ingest request waits for beyond the loop
            "store_commits": histogram_figures(metrics_before, final.text, "loom_agent_store_commit_seconds"),
            "spans_received_by_sink": sink.span_count, "agent_log": log, "db_bytes": db_bytes, "wal_bytes": wal_bytes,
            "wal": wal_figures(watch, start, end),
            "samples": [{k: round(v, 3) if isinstance(v, float) else v for k, v in p.items()}
                        for p in between(watch.samples, start, end + 1.0)]}


def _git(*argv: str) -> str:
    """Output of a read-only git command ("" when git is missing or fails)."""
    try:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def meta(args: argparse.Namespace, started: float) -> dict:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = _git("status", "--porcelain", "--", "agent").splitlines()
    if changed:
        commit += f" + uncommitted changes to {len(changed)} file(s) of agent/"
    command = "python bench/soak.py" + ("" if args.minutes == 10 else f" --minutes {args.minutes:g}") + \
        (f" --rate {args.rate:g}" if args.rate else "") + \
        (f" --poll-period {args.poll_period:g}" if args.poll_period != 5.0 else "") + \
        (f" --readers {args.readers}" if args.readers != 1 else "")
    return {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "runtime_seconds": round(time.monotonic() - started, 1), "python": platform.python_version(),
            "nproc": os.cpu_count(), "git_commit": commit, "minutes": args.minutes, "fraction": args.fraction,
            "targets": TARGETS, "poll_period": args.poll_period, "readers": args.readers, "loadavg_after": open("/proc/loadavg").read().split()[0],
            "bounded_mib_per_minute": BOUNDED_MIB_PER_MINUTE, "fd_growth_tolerated": FD_GROWTH_TOLERATED}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; default: --fraction of the measured max")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--max-window", type=float, default=8.0, help="seconds of the maximum's measurement")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds between the agent's start and the load")
    parser.add_argument("--poll-period", type=float, default=5.0,
                        help="seconds between analytics requests (0: no polling, to see what it costs)")
    parser.add_argument("--readers", type=int, default=1,
                        help=f"loops asking for {READER_PATH} back to back, beside the polling (0: none)")
    parser.add_argument("--write", action="store_true", help="write the results even for a run under 10 minutes")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="smoke run (30 s soak, 4 s maximum); writes nothing")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the agent's loop (asyncio: with PYTHONASYNCIODEBUG=1 it logs callbacks over 100 ms)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database) and say where")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the \"## Soak\" section of RESULTS.md from bench/results/soak.json")
    args = parser.parse_args()
    if args.report:
        results = json.loads(RESULTS_JSON.read_text())
        report.replace_section(RESULTS_MD, soak_report.SECTION, soak_report.markdown(results))
        return 0
    if args.quick:
        args.minutes, args.max_window, args.settle, args.no_write = 0.5, 4.0, 3.0, True
    os.sched_setaffinity(0, {HELPER_CORE})
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="loom-soak-"))
    results = asyncio.run(soak(args, tmp))       # on failure the temp dir (process logs) is kept
    results["meta"] = meta(args, started)
    results["verdict"] = soak_report.verdict(results)
    write = not args.no_write and (args.minutes >= 10 or args.write)
    if write:                                    # the JSON first: --report can redo the markdown from it
        RESULTS_JSON.parent.mkdir(exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
    if args.keep:
        print(f"[soak] kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    text = soak_report.markdown(results)
    print(text)
    if write:
        report.replace_section(RESULTS_MD, soak_report.SECTION, text)
        print(f"wrote {RESULTS_JSON} and the {soak_report.SECTION!r} section of {RESULTS_MD}", file=sys.stderr)
    # a smoke run is too short for the RSS verdict (the caches are still filling): it only has to run
    return 0 if args.quick or all(results["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
