"""bench/results/probes.json -> the targets verdicts and bench/RESULTS.md."""

from __future__ import annotations

import math
from pathlib import Path

MIB = 1024 * 1024


def evaluate(results: dict) -> list[dict]:
    """The issue's targets, each with the measured value and whether it is met."""
    checks = []
    cpu = results.get("cpu")
    if cpu:
        serial, burst = cpu["ratios"]["agent_vs_blackbox_serial"], cpu["ratios"]["agent_vs_blackbox_burst64"]
        checks.append({"target": "agent CPU per 1,000 probes <= 0.5x blackbox's (judged against both blackbox runs)",
                       "value": f"{serial:.2f}x (vs serial), {burst:.2f}x (vs bursts of 64)",
                       "met": max(serial, burst) <= 0.5})
    lat = results.get("latency")
    if lat:
        a, b = lat["agent"]["error_vs_server_handling"]["p99_ms"], lat["blackbox"]["error_vs_server_handling"]["p99_ms"]
        an, bn = lat["agent"]["error_vs_nominal"]["p99_ms"], lat["blackbox"]["error_vs_nominal"]["p99_ms"]
        low, high = lat.get("p99_difference_ms_90pct_interval", [None, None])
        if lat["agent"]["probes"]:
            checks.append({"target": "agent p99 latency error <= blackbox's "
                                     "(duration minus the server's handling time)",
                           "value": f"{a:.3f} vs {b:.3f} ms (90 % bootstrap interval of the difference: "
                                    f"{_f(low)} to {_f(high)} ms); minus a nominal 50 ms: {an:.3f} vs {bn:.3f} ms",
                           "met": True if a <= b else ("tie" if not _missing(low) and low <= 0 else False)})
        else:
            checks.append({"target": "agent p99 latency error <= blackbox's",
                           "value": "not measured: the agent exported no probe spans", "met": None})
    lag = results.get("lag")
    if lag:
        checks.append({"target": "scheduler lag p99 < 50 ms (1,000 targets, 10 s)",
                       "value": f"{lag['lag_p99_ms']:.2f} ms", "met": lag["lag_p99_ms"] < 50})
        checks.append({"target": "RSS < 150 MiB after the lag run",
                       "value": f"{lag['rss_bytes_proc'] / MIB:.1f} MiB", "met": lag["rss_bytes_proc"] < 150 * MIB})
    return checks


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if _missing(value) else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if _missing(value) else f"{value * 100:.1f} %"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if _missing(a) or _missing(b) or not b else f"{a / b:.2f}x"


def _cpu_rows(cpu: dict) -> list[str]:
    per = {key: value["cpu_seconds_per_1000"] for key, value in cpu.items()
           if isinstance(value, dict) and "cpu_seconds_per_1000" in value}
    rate = f"{cpu['rate']:g}/s"
    pairs = [("agent", "blackbox_serial", f"CPU s per 1,000 probes @ {rate}, blackbox driven serially", True),
             ("agent_during_burst", "blackbox_burst64", f"CPU s per 1,000 probes @ {rate}, blackbox driven in "
                                                        "bursts of 64", True),
             ("agent_no_spans", "blackbox_burst64_beside_no_spans", "same, agent with `trace_probes: false` "
                                                                    "(vs bursts of 64)", False),
             ("agent_otlp_export", "blackbox_serial_beside_otlp_export", "same, agent exporting every span "
                                                                         "over OTLP (vs serial)", False)]
    rows = []
    for agent, blackbox, label, bold in pairs:
        if agent in per and blackbox in per:
            ratio = _ratio(per[agent], per[blackbox])
            rows.append(f"| 1 | {label} | {_f(per[agent])} | {_f(per[blackbox])} | "
                        f"{'**' + ratio + '**' if bold else ratio} |")
    if "agent_probe_endpoint_serial" in per:
        rows.append(f"| 1 | agent's own /probe endpoint driven serially (run alone; vs the serial run) "
                    f"| {_f(per['agent_probe_endpoint_serial'])} | {_f(per['blackbox_serial'])} "
                    f"| {_ratio(per['agent_probe_endpoint_serial'], per['blackbox_serial'])} |")
    if "aiohttp_reference" in per:
        rows.append(f"| 1 | reference: bare aiohttp ClientSession GET loop (run alone) "
                    f"| {_f(per['aiohttp_reference'])} (aiohttp) | | agent / aiohttp "
                    f"{_ratio(per['agent'], per['aiohttp_reference'])} |")
    if "protocol_reference" in per:
        rows.append(f"| 1 | floor: bare asyncio Protocol prober, nothing else (run alone) "
                    f"| {_f(per['protocol_reference'])} (floor) | {_f(per['blackbox_burst64'])} "
                    f"| floor / blackbox bursts {_ratio(per['protocol_reference'], per['blackbox_burst64'])}; "
                    f"agent / floor {_ratio(per['agent'], per['protocol_reference'])} |")
    return rows


def table(results: dict) -> list[str]:
    rows = ["| # | Measure | Agent | blackbox_exporter | Agent / blackbox |", "|---|---|---:|---:|---:|"]
    cpu = results.get("cpu")
    if cpu:
        rows += _cpu_rows(cpu)
    sat = results.get("saturation")
    if sat:
        a, b = sat["agent"], sat["blackbox_max64"]
        rows.append(f"| 2 | probes/s at saturation (one core) | {_f(a['probes_per_second'], 0)} "
                    f"| {_f(b['probes_per_second'], 0)} "
                    f"| **{_ratio(a['probes_per_second'], b['probes_per_second'])}** |")
        if "probes_per_cpu_second" in a:
            rows.append(f"| 2 | same, per CPU second actually used | {_f(a['probes_per_cpu_second'], 0)} "
                        f"| {_f(b['probes_per_cpu_second'], 0)} "
                        f"| {_ratio(a['probes_per_cpu_second'], b['probes_per_cpu_second'])} |")
    lat = results.get("latency")
    if lat:
        for key, label in (("error_vs_server_handling", "minus server handling time"),
                           ("error_vs_nominal", f"minus {lat['delay_ms']} ms")):
            for q in ("p50", "p99"):
                a, b = lat["agent"][key][f"{q}_ms"], lat["blackbox"][key][f"{q}_ms"]
                rows.append(f"| 3 | latency error {q}, ms ({label}) | {_f(a)} | {_f(b)} | {_ratio(a, b)} |")
        if "agent_probe_endpoint" in lat:
            a = lat["agent_probe_endpoint"]["error_vs_server_handling"]["p99_ms"]
            b = lat["blackbox"]["error_vs_server_handling"]["p99_ms"]
            rows.append(f"| 3 | same p99 (minus server handling), agent's /probe endpoint | {_f(a)} | {_f(b)} "
                        f"| {_ratio(a, b)} |")
    lag = results.get("lag")
    if lag:
        rows.append(f"| 4 | scheduler lag p99, ms ({lag['targets']} targets @ {lag['interval_seconds']:g}s) "
                    f"| {_f(lag['lag_p99_ms'], 2)} | | |")
        rows.append(f"| 4 | RSS after the lag run, MiB | {_f(lag['rss_bytes_proc'] / MIB, 1)} | | |")
    return rows


def _section_details(results: dict) -> list[str]:
    out = []
    cpu = results.get("cpu")
    if cpu:
        a = cpu["agent"]
        out += ["", "#### 1. CPU per 1,000 probes", "",
                "Each agent window ran at the same time as the blackbox window on the same line of the "
                "table; the /probe and reference runs ran alone.", "",
                f"- agent: {a['targets']} targets @ {a['interval_seconds']:g}s; its /metrics scrape took "
                f"{a['metrics_scrape_ms']:.1f} ms, {a['metrics_scrape_cpu_seconds']:.3f} CPU s, "
                f"{a['metrics_bytes'] / 1024:.0f} KiB (not part of the per-probe figures); "
                f"RSS {a['rss_bytes'] / MIB:.1f} MiB", "",
                "| window | probes/s | failed | CPU s / 1,000 | core use | kernel share | core 0 busy with others |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for key, d in cpu.items():
            if not isinstance(d, dict) or "cpu_seconds_per_1000" not in d:
                continue
            rate = d.get("probes_per_second", d.get("completed", 0) / d["window_seconds"])
            extra = f" ({d['spans_received']} spans received)" if "spans_received" in d else ""
            out.append(f"| {key}{extra} | {rate:.1f} | {d['failed']:g} | {_f(d['cpu_seconds_per_1000'])} "
                       f"| {_pct(d.get('cpu_utilisation'))} | {_pct(d.get('system_share'))} "
                       f"| {_pct(d.get('others_on_core'))} |")
    sat = results.get("saturation")
    if sat:
        a, b = sat["agent"], sat["blackbox_max64"]
        out += ["", "#### 2. Saturation", "",
                f"- agent: {a['targets']} targets @ {a['interval_seconds']:g}s "
                f"(asks {a['asked_probes_per_second']:g}/s), "
                f"max_concurrency {a['max_concurrency']}: {a['probes_per_second']:.0f} probes/s "
                f"({a['target_server_requests_per_second']:.0f}/s at the target server), {a['failed']:g} failed, "
                f"{a['slots_missed']:g} slots skipped, core use {a['cpu_utilisation'] * 100:.0f} %, "
                f"{a['cpu_seconds_per_1000']:.3f} CPU s per 1,000"
                f"{'' if a.get('saturated', True) else ' (**NOT saturated**: raise the asked rate)'}; "
                "the target server used "
                f"{a.get('target_server_core_use', math.nan) * 100:.0f} % of the other core",
                f"- blackbox: 64 closed-loop connections: {b['probes_per_second']:.0f} probes/s, {b['failed']} failed, "
                f"core use {b['cpu_utilisation'] * 100:.0f} %, {b['cpu_seconds_per_1000']:.3f} CPU s per 1,000; "
                f"driver + target server used {b['helper_core_utilisation'] * 100:.0f} % of the other core"]
    lat = results.get("latency")
    if lat:
        out += ["", "#### 3. Latency error", ""]
        for who in ("agent", "blackbox", "agent_probe_endpoint"):
            if who not in lat:
                continue
            d = lat[who]
            e, s = d["error_vs_server_handling"], d["server_handling_minus_nominal"]
            out.append(f"- {who} ({d['source']}): {d['probes']} probes "
                       f"({d['matched_to_server_record']} matched to the server's "
                       f"record), {d['failed']} failed; error vs handling p50 {e['p50_ms']:.3f} / p90 {e['p90_ms']:.3f}"
                       f" / p99 {e['p99_ms']:.3f} / max {e['max_ms']:.3f} ms; server overslept 50 ms by "
                       f"p50 {s['p50_ms']:.3f} / p99 {s['p99_ms']:.3f} ms")
    lag = results.get("lag")
    if lag:
        out += ["", "#### 4. Scheduling lag and memory", "",
                f"- {lag['observations']:g} lag observations in {lag['window_seconds']:g}s, "
                f"{lag['scrapes_in_window']} /metrics scrapes in the window "
                f"({', '.join(f'{s:.0f}' for s in lag['scrape_ms'])} ms each)",
                f"- lag p50 {lag['lag_p50_ms']:.3f} ms, p99 {lag['lag_p99_ms']:.3f} ms, "
                f"p99.9 {lag['lag_p999_ms']:.3f} ms "
                f"(window); p99 {lag['lifetime_lag_p99_ms']:.3f} ms over the whole run including start-up",
                f"- window buckets (le: count): {lag['lag_buckets_in_window']}",
                f"- RSS {lag['rss_bytes_proc'] / MIB:.1f} MiB (/proc VmRSS), "
                f"{lag['rss_bytes_metric'] / MIB:.1f} MiB (process_resident_memory_bytes)"]
    return out


def _windows(results: dict) -> list[tuple[str, dict]]:
    """Every measurement window that has CPU figures, with a readable name."""
    out = []
    for section in ("cpu", "saturation", "latency", "lag"):
        data = results.get(section, {})
        if "others_on_core" in data:
            out.append((section, data))
        for key, value in data.items():
            if isinstance(value, dict) and "others_on_core" in value:
                out.append((f"{section}.{key}", value))
    return out


def contamination(results: dict) -> list[str]:
    """One line on how busy the measured core was with other work during the windows."""
    windows = _windows(results)
    if not windows:
        return []
    worst_name, worst = max(windows, key=lambda item: item[1]["others_on_core"])
    listing = ", ".join(f"{name} {w['others_on_core'] * 100:.0f} %" for name, w in windows)
    line = (f"- core 0 busy with anything but the measured process (other tenants, interrupts) during the "
            f"windows: {listing}")
    if worst["others_on_core"] > 0.10:
        line += f". **Noisy**: {worst_name} shared its core; treat its figure with care."
    return [line]


SECTION = "## Probes"


def markdown(results: dict) -> str:
    """The "## Probes" section of bench/RESULTS.md (other benchmarks own the other sections)."""
    meta = results["meta"]
    lines = [SECTION, "",
             "Generated by `bench/probes.py` from `bench/results/probes.json`; bench/README.md says what each",
             "figure means. The machine is shared and noisy: compare the ratios, not the absolute figures.", "",
             f"- command: `{meta['command']}`", f"- date: {meta['date']}",
             f"- total runtime: {meta['runtime_seconds']:.0f} s",
             f"- machine: {meta['nproc']} cores ({meta['cpu_model']}), kernel {meta['kernel']}",
             f"- Python {meta['python']}, aiohttp {meta['aiohttp']}, event loop: {meta['event_loop']}",
             f"- blackbox_exporter {meta['blackbox_version']} (Debian package; GOMAXPROCS=1 through the CPU pin)",
             f"- agent {meta['agent_version']} at {meta['git_commit']} when the run started ({meta['git_state']})",
             f"- mode: {'QUICK (smoke run; figures are not meaningful)' if meta['quick'] else 'full'}",
             f"- load average (1 min) before / after the run: {meta['loadavg_before']} / {meta['loadavg_after']}; "
             f"waited {meta.get('settle_waited_seconds', 0):g} s in all for core 0 to go quiet before measurements",
             *contamination(results),
             "", "### Figures", "", *table(results), "", "### Targets", "",
             "| Target | Measured | Met |", "|---|---|---|"]
    verdict = {True: "yes", False: "**no**", None: "not measured",
               "tie": "no in this run, but within noise: the interval of the difference includes 0"}
    lines += [f"| {c['target']} | {c['value']} | {verdict[c['met']]} |" for c in results["targets"]]
    lines += ["", "### Details", *_section_details(results), ""]
    return "\n".join(lines)


def write_results_md(path: Path, results: dict) -> None:
    if not path.exists():
        path.write_text("# Benchmark results\n\nEach section is written by its own benchmark under bench/.\n")
    replace_section(path, SECTION, markdown(results))


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section of markdown file `path` that starts at the line `heading` (up to the next
    line starting with "## ") with `text`, or append it; other sections are left as they are.
    Re-reads the file right before writing, as other benchmarks write their own sections."""
    lines = path.read_text().splitlines() if path.exists() else []
    body = text.rstrip("\n").splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = body + ([""] if end < len(lines) else [])
    else:
        lines += ([""] if lines and lines[-1] else []) + body
    path.write_text("\n".join(lines) + "\n")
