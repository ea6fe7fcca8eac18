"""The soak's verdicts and its "## Soak" section of bench/RESULTS.md (from bench/soak.py's results)."""

from __future__ import annotations

import math

SECTION = "## Soak"
MIB = 2 ** 20
RATE_HELD = 0.99          # accepted events/s at least this share of the asked rate


def verdict(r: dict) -> dict[str, bool]:
    """Each pass/fail criterion of the soak."""
    load, mem, side = r["load"], r["memory"], r["side"]
    return {"no ingest errors": load["errors"] == 0,
            "rate held": load["events_per_second"] >= RATE_HELD * r["rate_events_per_second"],
            "RSS bounded": mem["rss_bounded"], "file descriptors bounded": mem["fds_bounded"],
            "no scrape errors": not side["scrape_errors"], "no analytics errors": not side["poll_errors"],
            **({"WAL bounded": r["wal"]["bounded"]} if "wal" in r else {})}


def _ms(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.1f}"


def _polling(m: dict) -> str:
    if not m["poll_period"]:
        return "the analytics API **not polled** (`--poll-period 0`)"
    return (f"the analytics API (dashboard and business metrics in turn, admin token, 30-day range over the whole "
            f"store) polled every {m['poll_period']:g} s")


def _readers(m: dict) -> str:
    n = m.get("readers", 0)
    if not n:
        return ""
    return (f"; beside it {n} loop{'s' if n > 1 else ''} asking for the 7-day dashboard back to back (continuous "
            "reads of the store)")


def _wal_row(r: dict) -> str:
    w = r.get("wal")
    if not w:
        return "| -wal file over the soak | not recorded in this run |"
    minutes = " ".join(f"{int(v) / MIB:.0f}" for _, v in sorted(w["max_bytes_per_minute"].items(),
                                                                  key=lambda kv: int(kv[0])))
    return (f"| **-wal file over the soak**: largest, at the end (bound {w['bound_mib']} MiB); largest of each "
            f"minute, MiB | **{w['max_bytes'] / MIB:.1f}** / {w['end_bytes'] / MIB:.1f} MiB; {minutes} |")


def _commit_row(r: dict) -> str:
    c = r.get("store_commits")
    if not c:
        return "| group commits (duration) | not recorded in this run |"
    return (f"| group commit duration p50 / p99; commits over 0.1 / 0.5 / 1 s | {_ms(c['p50_seconds'] * 1000)} / "
            f"{_ms(c['p99_seconds'] * 1000)} ms; {c.get('over_0.1s', 0):,.0f} / {c.get('over_0.5s', 0):,.0f} / "
            f"{c.get('over_1s', 0):,.0f} of {c['observations']:,.0f} |")


def _maximum_line(r: dict) -> str:
    m = r["maximum"]
    if not m:
        return f"- rate: {r['rate_events_per_second']:,.0f} events/s, given with `--rate`"
    return (f"- maximum measured first on this agent, under the same conditions: {m['events_per_second']:,.0f} "
            f"events/s (closed loop, 8 connections, {m['window_seconds']:g} s, batch p99 {m['batch_ms_p99']:.1f} ms, "
            f"agent core use {m['server_core_use'] * 100:.0f} %, other processes on its core "
            f"{m['others_on_measured_core'] * 100:.0f} %); the soak asked for "
            f"{r['meta']['fraction']:g} of it: **{r['rate_events_per_second']:,.0f} events/s**")


def markdown(r: dict) -> str:
    m, load, mem, side, a, lag = r["meta"], r["load"], r["memory"], r["side"], r["agent"], r["scheduler_lag"]
    lat = load["latency_ms"]
    checks = verdict(r)
    lines = [SECTION, "",
             f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
             f"(shared), agent at {m['git_commit']}. The agent on core 0 with the durable SQLite store (WAL, "
             f"synchronous=full), OTLP export of spans and metrics, {m['targets']} HTTP probe targets (10 s interval: "
             "50 probes/s) on four loopback servers; /metrics scraped every second and " + _polling(m) + " for the whole "
             "run" + _readers(m) + "; batches of 100 mixed events (bench/ingest_events.py) sent open-loop from core 1, latency counted "
             "from the instant each batch was due. JSON: `bench/results/soak.json`.", "",
             _maximum_line(r),
             "- verdict: " + ", ".join(f"{name} **{'yes' if ok else 'NO'}**" for name, ok in checks.items()), "",
             "| figure | value |", "|---|---:|",
             f"| soak length | {m['minutes']:g} min |",
             f"| events accepted (committed before each 2xx) | {load['events_accepted']:,} "
             f"({load['events_per_second']:,.0f}/s) |",
             f"| ingest latency p50 / p99 / p99.9 / max, ms (per batch of 100) | {_ms(lat['p50'])} / {_ms(lat['p99'])} "
             f"/ {_ms(lat['p999'])} / {_ms(lat['max'])} |",
             f"| ingest errors (non-2xx, timeouts, connection errors) of {load['requests']:,} requests "
             f"| {load['errors']} {load['errors_by_kind'] or ''} |",
             f"| RSS just before / just after the load | {mem['rss_start_bytes'] / MIB:.1f} / {mem['rss_end_bytes'] / MIB:.1f} "
             f"MiB (growth {mem['rss_growth_bytes'] / MIB:+.1f} MiB, max {mem['rss_max_bytes'] / MIB:.1f}) |",
             f"| RSS slope, first half / **last half** (bounded: < {m['bounded_mib_per_minute']:g} MiB/min) "
             f"| {mem['rss_slope_first_half_mib_per_minute']:+.2f} / **{mem['rss_slope_last_half_mib_per_minute']:+.2f}** "
             "MiB/min |",
             f"| open file descriptors before / after the load (max under load, with up to "
             f"{load['connections_most_open']} client connections) | {mem['fds_start']} / {mem['fds_end']} "
             f"({mem['fds_max']}) |",
             f"| event-loop lag seen by the probe scheduler, p50 / p99; schedules over 0.1 / 0.5 / 1 s late "
             f"| {_ms(lag['p50_seconds'] * 1000)} / {_ms(lag['p99_seconds'] * 1000)} ms; "
             f"{lag.get('over_0.1s', 0):,.0f} / {lag.get('over_0.5s', 0):,.0f} / {lag.get('over_1s', 0):,.0f} "
             f"of {lag['observations']:,.0f} |",
             _commit_row(r),
             _wal_row(r),
             f"| threads at start / end | {mem['threads_start']} / {mem['threads_end']} |",
             f"| agent core use over the soak | {mem['cpu_core_use'] * 100:.0f} % |",
             f"| /metrics scrapes, p50 / p99 / max ms, errors | {side['scrapes']:,}: {_ms(side['scrape_ms_p50'])} / "
             f"{_ms(side['scrape_ms_p99'])} / {_ms(side['scrape_ms_max'])}, {sum(side['scrape_errors'].values())} |"]
    for path, v in side["analytics"].items():
        lines.append(f"| `{path}` polls, p50 / p99 / max ms (first → last), non-200 | {v['requests']}: "
                     f"{_ms(v['p50_ms'])} / {_ms(v['p99_ms'])} / {_ms(v['max_ms'])} ({_ms(v['first_ms'])} → "
                     f"{_ms(v['last_ms'])}), {v['non_200']} |")
    lines += [f"| probes run (success / failure), slots missed | {a['probes_success']:,.0f} / {a['probes_failure']:,.0f}"
              f"{' ' + str(a['probe_failures_by_reason']) if a['probe_failures_by_reason'] else ''}, "
              f"{a['probe_slots_missed']:,.0f} |",
              f"| spans exported / dropped / received by the receiver | {a['spans_exported']:,.0f} / "
              f"{a['spans_dropped']:,.0f} / {r['spans_received_by_sink']:,} |",
              f"| store commits ok / not ok; most events waiting for a commit | {a['store_commits_ok']:,.0f} / "
              f"{a['store_commits_not_ok']:,.0f}; {mem['pending_events_max']:,.0f} |",
              f"| requests rejected by the agent; label overflows; export failures | {a['ingest_rejected']:,.0f}; "
              f"{a['label_overflow']:,.0f}; {a['export_failures']:,.0f} |",
              f"| error lines in the agent's log | {r['agent_log']['error_lines']} |",
              f"| database at the end, of which WAL | {r['db_bytes'] / MIB:,.0f} MiB, "
              f"{r['wal_bytes'] / MIB:,.0f} MiB |" if "wal_bytes" in r else
              f"| database at the end (with WAL) | {r['db_bytes'] / MIB:,.0f} MiB |", "",
              "Per minute of the soak (RSS and file descriptors at the minute's last sample):", "",
              "| minute | events/s | p50 ms | p99 ms | errors | RSS MiB | fds |", "|---:|---:|---:|---:|---:|---:|---:|"]
    samples = r["samples"]
    t0 = samples[0]["t"] if samples else 0.0
    for row in load["per_minute"]:
        upto = [s for s in samples if s["t"] - t0 < row["minute"] * 60 + 1]
        at = upto[-1] if upto else {"rss_bytes": math.nan, "fds": "n/a"}
        lines.append(f"| {row['minute']} | {row['events_per_second']:,.0f} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} "
                     f"| {row['errors']} | {at['rss_bytes'] / MIB:.1f} | {at['fds']} |")
    return "\n".join(lines) + "\n"
