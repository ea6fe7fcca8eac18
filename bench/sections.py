"""The four measurements, each agent vs blackbox_exporter in the same run (see bench/README.md).

Every function returns a plain dict that goes into bench/results/probes.json as is.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

from bench import promtext
from bench.harness import MEASURED_CORE, Agent, Harness, until
from bench.otlp_sink import OtlpSink
from bench.processes import Child, cpu_usage


@dataclass(frozen=True)
class Params:
    quick: bool = False
    cpu_rate: float = 200.0            # probes/s in section 1
    cpu_interval: float = 2.0          # -> rate * interval agent targets
    cpu_window: float = 20.0           # the agent's and blackbox's windows (4,000 probes each)
    side_window: float = 12.0          # agent variants, the agent's /probe, the reference probers
    warmup: float = 3.0
    sat_targets: int = 4000
    sat_interval: float = 0.25         # asks 16,000 probes/s: well above what one core can do
    sat_concurrency: int = 256
    sat_window: float = 10.0
    lat_rate: float = 20.0
    lat_delay_ms: int = 50
    lat_window: float = 40.0           # 800 probes each: p99 rests on 8 of them
    lag_targets: int = 1000
    lag_interval: float = 10.0
    lag_window: float = 30.0
    lag_scrape_every: float = 15.0     # a Prometheus-like /metrics scrape during the lag window
    variants: bool = True              # also the agent with trace_probes: false and with OTLP export


QUICK = Params(quick=True, cpu_window=3.0, side_window=3.0, warmup=2.5, sat_window=3.0,
               lat_window=3.0, lag_window=6.0, lag_scrape_every=3.0)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _targets(h: Harness, n: int, interval: float, timeout: float, path: str = "/ok") -> list[dict]:
    return [{"name": f"t{i}", "kind": "http", "url": f"{h.target_url}{path}?t={i}",
             "interval": f"{int(interval * 1000)}ms", "timeout": f"{int(timeout * 1000)}ms"} for i in range(n)]


async def _probes_rate(h: Harness, agent: Agent, start: float, end: float) -> dict:
    """The agent's completed probes/s and CPU over the wall-clock window [start, end].

    Probes are counted from loom_probes_total in two scrapes just outside the window (the count is
    snapshotted when a scrape starts, and no probe completes while the loop renders /metrics), so
    the rate is probes / (second scrape sent - first scrape received). CPU is read from /proc at
    the window's edges, so rendering /metrics is not charged to the probes."""
    await until(start - 0.6)
    first = await h.scrape(agent)
    await until(start)
    mark1, target1, stats1 = agent.child.mark(MEASURED_CORE), h.target.cpu(), await h.target_stats()
    await until(end)
    mark2, target2, stats2 = agent.child.mark(MEASURED_CORE), h.target.cpu(), await h.target_stats()
    last = await h.scrape(agent)
    usage = cpu_usage(mark1, mark2)
    probes = promtext.total(last.text, "loom_probes_total") - promtext.total(first.text, "loom_probes_total")
    failures = (promtext.total(last.text, "loom_probes_total", 'result="failure"')
                - promtext.total(first.text, "loom_probes_total", 'result="failure"'))
    missed = (promtext.total(last.text, "loom_agent_probe_slots_missed_total")
              - promtext.total(first.text, "loom_agent_probe_slots_missed_total"))
    rate = probes / (last.sent - first.received)
    seconds = mark2.at - mark1.at
    seen = stats2["by_key"].get("t", 0) - stats1["by_key"].get("t", 0)
    return {
        "window_seconds": round(seconds, 3), "probes": probes, "failed": failures,
        "probes_per_second": round(rate, 2), "target_server_requests_per_second": round(seen / seconds, 2),
        **usage, "cpu_seconds_per_1000": round(usage["cpu_utilisation"] / rate * 1000, 4) if rate else math.nan,
        "slots_missed": missed, "target_server_core_use": round((target2 - target1) / seconds, 4),
        "metrics_scrape_ms": _ms(last.received - last.sent), "metrics_scrape_cpu_seconds": round(last.agent_cpu, 3),
        "metrics_bytes": len(last.text), "rss_bytes": agent.child.rss(),
    }


async def paired(h: Harness, p: Params, agent: Agent, mode: str, window: float) -> tuple[dict, dict]:
    """The running agent and blackbox (driven in `mode` at the same rate) measured over the SAME window,
    both on core 0: whatever else the machine is doing, both see it."""
    await h.settle((agent.child,))
    start_at, warmup = time.time() + 1.5, 2.0
    blackbox = asyncio.create_task(drive(h, h.blackbox, h.blackbox_url, f"{h.target_url}/ok?bb", mode, p,
                                         rate=p.cpu_rate, window=window, start_at=start_at))
    agent_out = await _probes_rate(h, agent, start_at + warmup, start_at + warmup + window)
    return _without_partner(agent_out, await blackbox)


def _without_partner(a: dict, b: dict) -> tuple[dict, dict]:
    """In a shared window each process's `others_on_core` would count its partner: take it out."""
    a_others, b_others = a["others_on_core"], b["others_on_core"]
    a["others_on_core"] = round(max(0.0, a_others - b["cpu_utilisation"]), 4)
    b["others_on_core"] = round(max(0.0, b_others - a["cpu_utilisation"]), 4)
    return a, b


async def agent_with_blackbox(h: Harness, p: Params, modes: list[tuple[str, float]], sink: OtlpSink | None = None,
                              trace_probes: bool = True) -> list[tuple[dict, dict]]:
    """Start an agent probing at p.cpu_rate; one paired() window per (blackbox mode, window length)."""
    n = int(p.cpu_rate * p.cpu_interval)
    agent = await h.start_agent(_targets(h, n, p.cpu_interval, 1.0), otlp_endpoint=sink and sink.url,
                                trace_probes=trace_probes)
    settings = {"targets": n, "interval_seconds": p.cpu_interval, "otlp_export": sink is not None,
                "trace_probes": trace_probes}
    out = []
    try:
        await asyncio.sleep(max(p.warmup, p.cpu_interval + 0.5))
        for mode, window in modes:
            spans_before = sink.span_count if sink else 0
            agent_out, blackbox_out = await paired(h, p, agent, mode, window)
            if sink:
                agent_out["spans_received"] = sink.span_count - spans_before
                sink.spans.clear()
            out.append(({**settings, **agent_out}, blackbox_out))
    finally:
        await h.stop(agent.child)
    return out


async def drive(h: Harness, exporter: Child, exporter_url: str, target: str, mode: str, p: Params, *,
                rate: float = 0.0, window: float | None = None, durations: bool = False,
                start_at: float | None = None) -> dict:
    """Run a load driver against an exporter; the exporter's CPU over exactly the driver's window
    [start_at + warmup, + window]. Without start_at, waits for a quiet core and starts in a second."""
    window = window or p.cpu_window
    warmup = min(2.0, p.warmup)
    if start_at is None:
        await h.settle()
        start_at = time.time() + 1.0
    driver = h.driver(exporter_url, target, mode, start_at, warmup, window, rate=rate, durations=durations)
    await until(start_at + warmup)
    mark1, helper1 = exporter.mark(MEASURED_CORE), driver.cpu() + h.target.cpu()
    await until(start_at + warmup + window)
    mark2, helper2 = exporter.mark(MEASURED_CORE), driver.cpu() + h.target.cpu()
    result = await h.result_of(driver)
    completed = result["completed"]
    usage = cpu_usage(mark1, mark2)
    return {
        "mode": mode, "rate_asked": rate or None, "window_seconds": window, "completed": completed,
        "window_start": start_at + warmup, "window_end": start_at + warmup + window,
        "failed": result["failed"], "late_slots": result["late_slots"], "errors": result["errors"],
        "probes_per_second": round(completed / window, 2),
        **usage, "cpu_seconds_per_1000": round(usage["cpu_seconds"] / completed * 1000, 4) if completed else math.nan,
        "helper_core_utilisation": round((helper2 - helper1) / window, 4),
        "rss_bytes": exporter.rss(),
        **({"durations": result["durations"]} if durations else {}),
    }


async def reference(h: Harness, p: Params, client: str) -> dict:
    await h.settle()
    start_at = time.time() + 1.5
    warmup = min(2.0, p.warmup)
    ref = h.reference(client, f"{h.target_url}/ok?ref", p.cpu_rate, start_at, warmup, p.side_window)
    await until(start_at + warmup)
    mark1 = ref.mark(MEASURED_CORE)
    await until(start_at + warmup + p.side_window)
    mark2 = ref.mark(MEASURED_CORE)
    result = await h.result_of(ref)
    usage = cpu_usage(mark1, mark2)
    completed = result["completed"]
    return {"client": client, "rate_asked": p.cpu_rate, "window_seconds": p.side_window,
            "completed": completed, "failed": result["failed"], **usage,
            "cpu_seconds_per_1000": round(usage["cpu_seconds"] / completed * 1000, 4) if completed else math.nan}


async def cpu_per_probe(h: Harness, p: Params, sink: OtlpSink) -> dict:
    """Section 1: CPU seconds per 1,000 HTTP probes, agent and blackbox at the same rate, same time."""
    out: dict = {"rate": p.cpu_rate}
    (out["agent"], out["blackbox_serial"]), (out["agent_during_burst"], out["blackbox_burst64"]) = \
        await agent_with_blackbox(h, p, [("serial", p.cpu_window), ("burst", p.cpu_window)])
    if p.variants:
        [(out["agent_no_spans"], out["blackbox_burst64_beside_no_spans"])] = \
            await agent_with_blackbox(h, p, [("burst", p.side_window)], trace_probes=False)
        [(out["agent_otlp_export"], out["blackbox_serial_beside_otlp_export"])] = \
            await agent_with_blackbox(h, p, [("serial", p.side_window)], sink=sink)
    idle_agent = await h.start_agent([])
    try:
        out["agent_probe_endpoint_serial"] = await drive(h, idle_agent.child, idle_agent.url, f"{h.target_url}/ok?ap",
                                                         "serial", p, rate=p.cpu_rate, window=p.side_window)
    finally:
        await h.stop(idle_agent.child)
    out["aiohttp_reference"] = await reference(h, p, "aiohttp")
    out["protocol_reference"] = await reference(h, p, "protocol")
    per = {key: value["cpu_seconds_per_1000"] for key, value in out.items() if isinstance(value, dict)}
    out["ratios"] = {
        "agent_vs_blackbox_serial": round(per["agent"] / per["blackbox_serial"], 3),
        "agent_vs_blackbox_burst64": round(per["agent_during_burst"] / per["blackbox_burst64"], 3),
        "agent_vs_aiohttp_reference": round(per["agent"] / per["aiohttp_reference"], 3),
        "agent_vs_protocol_reference": round(per["agent"] / per["protocol_reference"], 3),
        "protocol_reference_vs_blackbox_burst64": round(per["protocol_reference"] / per["blackbox_burst64"], 3),
    }
    if p.variants:
        out["ratios"]["agent_no_spans_vs_blackbox_burst64"] = round(
            per["agent_no_spans"] / per["blackbox_burst64_beside_no_spans"], 3)
        out["ratios"]["agent_otlp_export_vs_blackbox_serial"] = round(
            per["agent_otlp_export"] / per["blackbox_serial_beside_otlp_export"], 3)
    return out


async def saturation(h: Harness, p: Params) -> dict:
    """Section 2: completed probes/s when the exporter's core is the limit."""
    targets = _targets(h, p.sat_targets, p.sat_interval, 0.9 * p.sat_interval)
    agent = await h.start_agent(targets, max_concurrency=p.sat_concurrency)
    try:
        await asyncio.sleep(max(p.warmup, p.sat_interval * 3))
        start = time.time() + 0.7
        agent_out = await _probes_rate(h, agent, start, start + p.sat_window)
    finally:
        await h.stop(agent.child)
    agent_out.update(targets=p.sat_targets, interval_seconds=p.sat_interval, max_concurrency=p.sat_concurrency,
                     asked_probes_per_second=p.sat_targets / p.sat_interval)
    bb = await drive(h, h.blackbox, h.blackbox_url, f"{h.target_url}/ok?sat", "max", p, window=p.sat_window)
    bb["concurrency"] = 64
    for out in (agent_out, bb):      # what a fully used core would do: robust to other tenants on the core
        out["probes_per_cpu_second"] = round(out["probes_per_second"] / out["cpu_utilisation"], 1)
        out["saturated"] = out["cpu_utilisation"] + out["others_on_core"] > 0.95
    return {"agent": agent_out, "blackbox_max64": bb,
            "ratio": round(agent_out["probes_per_second"] / bb["probes_per_second"], 3),
            "ratio_per_cpu_second": round(agent_out["probes_per_cpu_second"] / bb["probes_per_cpu_second"], 3)}


def _error_stats(errors: list[float]) -> dict:
    return {"n": len(errors), "p50_ms": _ms(promtext.percentile(errors, 0.5)),
            "p90_ms": _ms(promtext.percentile(errors, 0.9)), "p99_ms": _ms(promtext.percentile(errors, 0.99)),
            "max_ms": _ms(max(errors)) if errors else math.nan,
            "mean_ms": _ms(sum(errors) / len(errors)) if errors else math.nan}


def _p99_difference_interval(a: list[float], b: list[float], rounds: int = 1000) -> tuple[float, float]:
    """A 90 % bootstrap interval for p99(a) - p99(b): how sure the p99 comparison is."""
    if not a or not b:
        return math.nan, math.nan
    rng = random.Random(7)
    diffs = sorted(promtext.percentile(rng.choices(a, k=len(a)), 0.99)
                   - promtext.percentile(rng.choices(b, k=len(b)), 0.99) for _ in range(rounds))
    return diffs[int(0.05 * rounds)], diffs[int(0.95 * rounds) - 1]


def _latency_summary(pairs: list[tuple[float, float | None]], delay: float) -> dict:
    """pairs: (reported duration, the server's handling time or None when unmatched)."""
    handled = [(d, s) for d, s in pairs if s is not None]
    return {"probes": len(pairs), "matched_to_server_record": len(handled),
            "_errors": [d - s for d, s in handled],          # popped before the results are written
            "error_vs_nominal": _error_stats([d - delay for d, _ in pairs]),
            "error_vs_server_handling": _error_stats([d - s for d, s in handled]),
            "server_handling_minus_nominal": _error_stats([s - delay for _, s in handled])}


def _span_pairs(spans: list, records: list, start: float, end: float) -> tuple[list, int]:
    """(span duration, matching server handling time or None) for spans that started in [start, end];
    a span matches the server record with its `?t=N` query whose arrival lies inside the span."""
    by_query: dict[str, list[tuple[float, float]]] = {}
    for arrival, handling, query in records:
        by_query.setdefault(query, []).append((arrival, handling))
    pairs, failed = [], 0
    for span in spans:
        if not start <= span.start_ns / 1e9 <= end:
            continue
        if not span.attributes.get("loom.probe.success"):
            failed += 1
        query = str(span.attributes.get("url.full", "")).partition("?")[2]
        match = [s for a, s in by_query.get(query, ()) if span.start_ns / 1e9 <= a <= span.end_ns / 1e9]
        pairs.append((span.duration, match[0] if len(match) == 1 else None))
    return pairs, failed


def _reply_pairs(durations: list, records: list) -> list:
    """(probe_duration_seconds of a /probe reply, the server's handling time of that request's `?id=N`)."""
    handling = {query: s for _, s, query in records}
    return [(d, handling.get(f"id={ident}")) for ident, d in durations]


async def _side_by_side(h: Harness, p: Params, sink: OtlpSink) -> tuple[dict, dict]:
    """The agent's own schedule (spans) and blackbox's /probe (replies) over the SAME window, both on
    core 0, so both see the same noise from the machine's other tenants (each adds ~1 % load)."""
    delay = p.lat_delay_ms / 1000
    agent = await h.start_agent(_targets(h, int(p.lat_rate), 1.0, 0.9, f"/delay/{p.lat_delay_ms}"),
                                otlp_endpoint=sink.url)
    try:
        await asyncio.sleep(max(p.warmup, 2.0))
        await h.target_stats(reset=True)
        sink.spans.clear()
        mark1 = agent.child.mark(MEASURED_CORE)
        bb = await drive(h, h.blackbox, h.blackbox_url, f"{h.target_url}/delay/{p.lat_delay_ms}?id={{id}}", "open",
                         p, rate=p.lat_rate, window=p.lat_window, durations=True)
        usage, _ = _without_partner(cpu_usage(mark1, agent.child.mark(MEASURED_CORE)), bb)
    finally:
        await h.stop(agent.child)          # SIGTERM: the agent flushes its last spans
    records = (await h.target_stats(reset=True))["delayed"]
    pairs, failed = _span_pairs(sink.spans, records, bb["window_start"], bb["window_end"] - 1.0)
    agent_out = {"source": "OTLP spans (end - start)", "failed": failed, "otlp_requests": sink.requests,
                 "others_on_core": usage["others_on_core"], **_latency_summary(pairs, delay)}
    bb_out = {"source": "probe_duration_seconds of each /probe reply", "failed": bb["failed"],
              "others_on_core": bb["others_on_core"],
              **_latency_summary(_reply_pairs(bb["durations"], records), delay)}
    return agent_out, bb_out


async def _agent_probe_endpoint(h: Harness, p: Params) -> dict:
    """The agent's /probe endpoint driven like blackbox's (alone on core 0, a shorter window)."""
    idle_agent = await h.start_agent([])
    try:
        await h.target_stats(reset=True)
        out = await drive(h, idle_agent.child, idle_agent.url, f"{h.target_url}/delay/{p.lat_delay_ms}?id={{id}}",
                          "open", p, rate=p.lat_rate, window=p.side_window, durations=True)
    finally:
        await h.stop(idle_agent.child)
    records = (await h.target_stats(reset=True))["delayed"]
    return {"source": "probe_duration_seconds of each /probe reply (run alone)", "failed": out["failed"],
            "others_on_core": out["others_on_core"],
            **_latency_summary(_reply_pairs(out["durations"], records), p.lat_delay_ms / 1000)}


async def latency(h: Harness, p: Params, sink: OtlpSink) -> dict:
    """Section 3: reported duration vs a target that takes a known time."""
    agent, blackbox = await _side_by_side(h, p, sink)
    agent_probe = await _agent_probe_endpoint(h, p)
    key = "error_vs_server_handling"
    low, high = _p99_difference_interval(agent.pop("_errors"), blackbox.pop("_errors"))
    agent_probe.pop("_errors")
    return {"rate": p.lat_rate, "delay_ms": p.lat_delay_ms, "agent": agent, "blackbox": blackbox,
            "agent_probe_endpoint": agent_probe,
            "p99_difference_ms_90pct_interval": [_ms(low), _ms(high)],
            "p99_ratio_vs_server_handling": round(agent[key]["p99_ms"] / blackbox[key]["p99_ms"], 3),
            "p99_ratio_vs_nominal": round(agent["error_vs_nominal"]["p99_ms"]
                                          / blackbox["error_vs_nominal"]["p99_ms"], 3)}


async def scheduling_lag(h: Harness, p: Params) -> dict:
    """Section 4: scheduler lag p99 and RSS with many targets at a long interval."""
    agent = await h.start_agent(_targets(h, p.lag_targets, p.lag_interval, 5.0))
    scrapes_ms = []
    try:
        await asyncio.sleep(p.warmup + 2)
        first = await h.scrape(agent)
        mark1 = agent.child.mark(MEASURED_CORE)
        end = first.received + p.lag_window
        next_scrape = first.received + p.lag_scrape_every
        while next_scrape < end - 1:
            await until(next_scrape)
            scrapes_ms.append(_ms((s := await h.scrape(agent)).received - s.sent))
            next_scrape += p.lag_scrape_every
        await until(end)
        usage = cpu_usage(mark1, agent.child.mark(MEASURED_CORE))
        last = await h.scrape(agent)
        vm_rss = agent.child.rss()
    finally:
        await h.stop(agent.child)
    name = "loom_agent_scheduler_lag_seconds"
    window = promtext.delta(promtext.histogram(last.text, name), promtext.histogram(first.text, name))
    lifetime = promtext.histogram(last.text, name)
    return {
        "targets": p.lag_targets, "interval_seconds": p.lag_interval, "window_seconds": p.lag_window,
        "observations": window.get(math.inf, 0), "scrapes_in_window": len(scrapes_ms) + 1,
        "cpu_utilisation": usage["cpu_utilisation"], "others_on_core": usage["others_on_core"],
        "scrape_ms": [_ms(first.received - first.sent), *scrapes_ms],
        "lag_p50_ms": _ms(promtext.quantile(0.5, window)), "lag_p99_ms": _ms(promtext.quantile(0.99, window)),
        "lag_p999_ms": _ms(promtext.quantile(0.999, window)),
        "lifetime_lag_p99_ms": _ms(promtext.quantile(0.99, lifetime)),
        "lag_buckets_in_window": {("+Inf" if math.isinf(b) else f"{b:g}"): c for b, c in window.items()},
        "rss_bytes_proc": vm_rss,
        "rss_bytes_metric": promtext.total(last.text, "process_resident_memory_bytes"),
    }
