"""Probe results -> Prometheus samples.

`result_gauges()` is the blackbox_exporter-compatible view of one result (the same names a
`/probe` scrape returns). `ProbeMetrics` keeps, per configured target, the last result plus
what blackbox lacks: probe counters by result and failure reason, retries, and a latency
histogram, so uptime ratios and quantiles over any window come straight from PromQL.
`collect()` builds fresh metric families on every scrape, so a target removed by a reload
disappears from `/metrics` at once.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from agent.collectors.base import ProbeResult, ProbeTarget, Reason, TlsLeaf
from agent.collectors.grpc import SERVING_STATUSES
from agent.collectors.ipproto import ip_hash
from agent.collectors.kinds import KINDS, PhaseGauge
from agent.metrics.exposition import format_value, header_text, label_text

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_REGEX_REASONS = frozenset({Reason.BODY, Reason.EXPECT, Reason.ANSWER})

# (name, help) of every gauge result_gauges() may produce, in output order
GAUGES: dict[str, str] = {
    "probe_success": "Whether the probe succeeded (1) or failed (0).",
    "probe_duration_seconds": "How long the probe took to complete, in seconds.",
    "probe_dns_lookup_time_seconds": "Time spent resolving the target's host name, in seconds.",
    "probe_ip_protocol": "The IP protocol of the address probed (4 or 6; 0 when none was resolved).",
    "probe_ip_addr_hash": "FNV-1a hash of the address probed (changes when the name resolves elsewhere).",
    "probe_failed_due_to_regex": "Whether the probe failed because a regular expression check failed.",
    "probe_http_duration_seconds": "Duration of the HTTP request by phase, summed over redirects, in seconds.",
    "probe_http_status_code": "Response HTTP status code.",
    "probe_http_content_length": "Length of the HTTP response content (-1 when unknown).",
    "probe_http_uncompressed_body_length": "Length of the HTTP response body as received, in bytes.",
    "probe_http_version": "The version of HTTP of the probe response.",
    "probe_http_redirects": "The number of redirects followed.",
    "probe_http_last_modified_timestamp_seconds": "The response's Last-Modified header, as unix seconds.",
    "probe_http_ssl": "Whether TLS was used for the final request.",
    "probe_ssl_earliest_cert_expiry": "Earliest NotAfter of the certificates the peer sent, as unix seconds.",
    "probe_tls_version_info": "The TLS version the connection used (in the version label).",
    "probe_ssl_last_chain_expiry_timestamp_seconds": "Earliest NotAfter of the verified chain, as unix seconds.",
    "probe_ssl_last_chain_info": "The peer's leaf certificate (fingerprint, subject, issuer, DNS names in labels).",
    "probe_dns_duration_seconds": "Duration of the DNS query by phase, in seconds.",
    "probe_dns_answer_rrs": "Number of entries in the answer section.",
    "probe_dns_authority_rrs": "Number of entries in the authority section.",
    "probe_dns_additional_rrs": "Number of entries in the additional section.",
    "probe_dns_query_succeeded": "Whether the DNS server answered the query (whatever the answer).",
    "probe_dns_serial": "The zone's serial number (SOA queries).",
    "probe_grpc_duration_seconds": "Duration of the gRPC health check by phase, in seconds.",
    "probe_grpc_ssl": "Whether TLS was used for the gRPC connection.",
    "probe_grpc_status_code": "The gRPC status code of the health check (0 OK, 14 UNAVAILABLE, ...).",
    "probe_grpc_healthcheck_response": "The health check's serving status (in the serving_status label).",
    "probe_icmp_duration_seconds": "Duration of the ICMP echo by phase, in seconds.",
    "probe_icmp_reply_hop_limit": "The reply's hop limit (TTL for IPv4).",
    "probe_websocket_round_trip_seconds": "Time from sending the WebSocket message (or ping) to its reply, in seconds.",
}

HELP = {
    "loom_probes": "Probes run, by result (after retries).",
    "loom_probe_failures": "Failed probes, by failure reason.",
    "loom_probe_retries": "Probe attempts retried before the result counted.",
    "loom_probe_duration_seconds": "Probe duration, in seconds.",
    "loom_probe_last_run_timestamp_seconds": "When the target's last probe ended, as unix seconds.",
}

Sample = tuple[str, Mapping[str, str], float]   # (gauge name, extra labels, value)


def result_gauges(kind: str, result: ProbeResult) -> list[Sample]:
    """The blackbox-compatible gauges of one probe result."""
    # blackbox registers the lookup time, protocol and address hash before resolving (prober/utils.go):
    # they are there, 0 until known, on every probe
    out: list[Sample] = [("probe_success", {}, 1.0 if result.success else 0.0),
                         *(("probe_success", {"ip": ip}, 1.0 if ok else 0.0) for ip, ok in result.addresses),
                         ("probe_duration_seconds", {}, result.duration_seconds),
                         ("probe_dns_lookup_time_seconds", {}, result.phases.get("resolve", 0.0)),
                         ("probe_ip_protocol", {}, float(result.ip_protocol or 0)),
                         ("probe_ip_addr_hash", {}, float(ip_hash(result.ip_address)) if result.ip_address else 0.0)]
    facts = KINDS[kind]
    if facts.regex_gauge:
        out.append(("probe_failed_due_to_regex", {}, 1.0 if result.reason in _REGEX_REASONS else 0.0))
    if facts.phase_gauge is not None:
        out.extend(_phase_samples(facts.phase_gauge, result))
    if facts.ssl_gauge:         # http: blackbox registers these up front, 0 when no response came
        out += [("probe_http_status_code", {}, float(result.status_code or 0)),
                ("probe_http_content_length", {}, float(result.content_length or 0)),
                ("probe_http_uncompressed_body_length", {}, float(result.body_length or 0)),
                ("probe_http_version", {}, float(result.http_version or 0)),
                ("probe_http_redirects", {}, float(result.redirects or 0)),
                ("probe_http_ssl", {}, 1.0 if result.tls_version else 0.0)]
        _optional(out, "probe_http_last_modified_timestamp_seconds", result.last_modified)
    _optional(out, "probe_ssl_earliest_cert_expiry", result.cert_expiry)
    if result.tls_version:
        out.append(("probe_tls_version_info", {"version": result.tls_version}, 1.0))
    if result.tls_leaf is not None:
        out.extend(_leaf_samples(result.tls_leaf, chain_expiry=not facts.grpc_gauges))
    if facts.dns_gauges:        # dns: blackbox registers these up front, 0 when no reply came
        out += [("probe_dns_answer_rrs", {}, float(result.dns_answer_rrs or 0)),
                ("probe_dns_authority_rrs", {}, float(result.dns_authority_rrs or 0)),
                ("probe_dns_additional_rrs", {}, float(result.dns_additional_rrs or 0)),
                ("probe_dns_query_succeeded", {}, 0.0 if result.dns_rcode is None else 1.0)]
        _optional(out, "probe_dns_serial", result.dns_serial)
    _optional(out, "probe_websocket_round_trip_seconds", result.round_trip_seconds)
    if facts.grpc_gauges:
        out.extend(_grpc_samples(result))
    _optional(out, "probe_icmp_reply_hop_limit", result.icmp_hop_limit)
    return out


def _leaf_samples(leaf: TlsLeaf, chain_expiry: bool) -> list[Sample]:
    """blackbox's leaf certificate series (one per target: its labels are bounded by the targets), and the
    verified chain's expiry (blackbox's grpc prober has no such gauge)."""
    out: list[Sample] = [("probe_ssl_last_chain_info", {"fingerprint_sha256": leaf.fingerprint_sha256,
                                                        "subject": leaf.subject, "issuer": leaf.issuer,
                                                        "subjectalternative": leaf.dns_names}, 1.0)]
    if chain_expiry:
        out.append(("probe_ssl_last_chain_expiry_timestamp_seconds", {}, leaf.chain_expiry))
    return out


def _grpc_samples(result: ProbeResult) -> list[Sample]:
    """blackbox's gRPC gauges, registered on every probe: the status code (0 before a call), whether TLS
    was used, the certificate expiry (0 without TLS), and once a call was made every serving status, the
    answered one at 1 (all 0 when the call failed)."""
    out: list[Sample] = [("probe_grpc_ssl", {}, 1.0 if result.tls_version else 0.0),
                         ("probe_grpc_status_code", {}, float(result.grpc_status_code or 0))]
    if result.cert_expiry is None:
        out.append(("probe_ssl_earliest_cert_expiry", {}, 0.0))
    if result.grpc_status_code is not None:
        out.extend(("probe_grpc_healthcheck_response", {"serving_status": status},
                    1.0 if status == result.grpc_serving_status else 0.0) for status in SERVING_STATUSES)
    return out


def _phase_samples(gauge: PhaseGauge, result: ProbeResult) -> list[Sample]:
    """A kind's per-phase gauge: every phase it always carries (0 when skipped), or those measured."""
    if gauge.every_phase:
        return [(gauge.name, {"phase": p}, result.phases.get(p, 0.0)) for p in gauge.every_phase]
    return [(gauge.name, {"phase": p}, v) for p, v in result.phases.items()]


def _optional(out: list[Sample], name: str, value: float | None) -> None:
    if value is not None:
        out.append((name, {}, float(value)))


def gauge_families(samples: Iterable[tuple[Mapping[str, str], Sample]]) -> list[Metric]:
    """Group (base labels, sample) pairs into one GaugeMetricFamily per name."""
    families: dict[str, GaugeMetricFamily] = {}
    for base, (name, extra, value) in samples:
        family = families.get(name)
        if family is None:
            family = families[name] = GaugeMetricFamily(name, GAUGES[name])
        family.add_sample(name, {**base, **extra}, value)
    return [families[n] for n in GAUGES if n in families]


@dataclass(slots=True)
class _TargetState:
    target: ProbeTarget
    labels: dict[str, str]
    label_text: str = ""                      # 'target="a",service="x"', escaped once
    gauge_lines: list[tuple[str, str]] = field(default_factory=list)   # (family, line) of `last`
    gauge_lines_of: ProbeResult | None = None
    last: ProbeResult | None = None
    last_time: float = 0.0
    results: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    reasons: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0


class ProbeMetrics:
    """Per-target probe state, exposed as a prometheus_client collector."""

    def __init__(self) -> None:
        self._targets: dict[str, _TargetState] = {}

    def set_targets(self, targets: Iterable[ProbeTarget]) -> None:
        """Keep state for these targets only; a changed target (labels, kind, ...) starts afresh."""
        new: dict[str, _TargetState] = {}
        for target in targets:
            old = self._targets.get(target.name)
            if old is not None and old.target == target:
                new[target.name] = old
            else:
                labels = {"target": target.name, **target.labels}
                new[target.name] = _TargetState(target, labels, label_text(list(labels), labels.values()))
        self._targets = new

    def record(self, target: ProbeTarget, result: ProbeResult, attempts: int = 1) -> None:
        state = self._targets.get(target.name)
        if state is None or state.target is not target:
            return          # the target was removed or replaced by a reload while probing
        state.last, state.last_time = result, time.time()
        state.results["success" if result.success else "failure"] += 1
        if result.reason is not None:
            state.reasons[result.reason.value] = state.reasons.get(result.reason.value, 0) + 1
        state.retries += attempts - 1
        state.buckets[bisect.bisect_left(DURATION_BUCKETS, result.duration_seconds)] += 1
        state.duration_sum += result.duration_seconds

    def last_results(self) -> dict[str, tuple[ProbeTarget, ProbeResult | None, float]]:
        return {name: (s.target, s.last, s.last_time) for name, s in self._targets.items()}

    def collect(self) -> Iterator[Metric]:
        states = list(self._targets.values())
        yield from gauge_families((s.labels, sample) for s in states if s.last is not None
                                  for sample in result_gauges(s.target.kind, s.last))
        yield from self._counters(states)
        yield self._histogram(states)
        last_run = GaugeMetricFamily("loom_probe_last_run_timestamp_seconds",
                                     HELP["loom_probe_last_run_timestamp_seconds"])
        for s in states:
            if s.last is not None:
                last_run.add_sample(last_run.name, s.labels, s.last_time)
        yield last_run

    def render(self, openmetrics: bool) -> str:
        """Exposition text of every family above, without prometheus_client's per-sample cost (a scrape
        of 1,000 targets took ~450 ms through it, blocking the probes' event loop)."""
        states = list(self._targets.values())
        gauges: dict[str, list[str]] = {}
        for s in states:
            if s.last is None:
                continue
            if s.gauge_lines_of is not s.last:
                s.gauge_lines = _gauge_lines(s, s.last)
                s.gauge_lines_of = s.last
            for family, line in s.gauge_lines:
                gauges.setdefault(family, []).append(line)
        out: list[str] = []
        for name, help in GAUGES.items():
            if name in gauges:
                _append_family(out, name, "gauge", help, gauges[name], openmetrics)
        probes, failures, retries, buckets, last_run = [], [], [], [], []
        bounds = [*(floatToGoString(b) for b in DURATION_BUCKETS), "+Inf"]
        for s in states:
            labels = s.label_text
            probes += [f'\nloom_probes_total{{{labels},result="{r}"}} {c}' for r, c in s.results.items()]
            failures += [f'\nloom_probe_failures_total{{{labels},reason="{r}"}} {c}' for r, c in s.reasons.items()]
            retries.append(f"\nloom_probe_retries_total{{{labels}}} {s.retries}")
            running = 0
            for bound, count in zip(bounds, s.buckets):
                running += count
                buckets.append(f'\nloom_probe_duration_seconds_bucket{{{labels},le="{bound}"}} {running}')
            buckets.append(f"\nloom_probe_duration_seconds_count{{{labels}}} {running}")
            buckets.append(f"\nloom_probe_duration_seconds_sum{{{labels}}} {s.duration_sum!r}")
            if s.last is not None:
                last_run.append(f"\nloom_probe_last_run_timestamp_seconds{{{labels}}} {s.last_time!r}")
        _append_family(out, "loom_probes", "counter", HELP["loom_probes"], probes, openmetrics)
        _append_family(out, "loom_probe_failures", "counter", HELP["loom_probe_failures"], failures, openmetrics)
        _append_family(out, "loom_probe_retries", "counter", HELP["loom_probe_retries"], retries, openmetrics)
        _append_family(out, "loom_probe_duration_seconds", "histogram", HELP["loom_probe_duration_seconds"],
                       buckets, openmetrics)
        _append_family(out, "loom_probe_last_run_timestamp_seconds", "gauge",
                       HELP["loom_probe_last_run_timestamp_seconds"], last_run, openmetrics)
        return "".join(out)

    def _counters(self, states: list[_TargetState]) -> Iterator[Metric]:
        probes = CounterMetricFamily("loom_probes", HELP["loom_probes"])
        failures = CounterMetricFamily("loom_probe_failures", HELP["loom_probe_failures"])
        retries = CounterMetricFamily("loom_probe_retries", HELP["loom_probe_retries"])
        for s in states:
            for result, count in s.results.items():
                probes.add_sample("loom_probes_total", {**s.labels, "result": result}, count)
            for reason, count in s.reasons.items():
                failures.add_sample("loom_probe_failures_total", {**s.labels, "reason": reason}, count)
            retries.add_sample("loom_probe_retries_total", s.labels, s.retries)
        return iter((probes, failures, retries))

    def _histogram(self, states: list[_TargetState]) -> Metric:
        family = HistogramMetricFamily("loom_probe_duration_seconds", HELP["loom_probe_duration_seconds"])
        bounds = [*(floatToGoString(b) for b in DURATION_BUCKETS), "+Inf"]
        for s in states:
            cumulative, running = [], 0
            for bound, count in zip(bounds, s.buckets):
                running += count
                cumulative.append((bound, running))
            _add_histogram(family, s.labels, cumulative, s.duration_sum)
        return family


def _gauge_lines(state: _TargetState, last: ProbeResult) -> list[tuple[str, str]]:
    lines = []
    for name, extra, value in result_gauges(state.target.kind, last):
        labels = state.label_text if not extra else f"{state.label_text},{_extra_text(tuple(extra.items()))}"
        lines.append((name, f"\n{name}{{{labels}}} {format_value(value)}"))
    return lines


@lru_cache(maxsize=4096)
def _extra_text(items: tuple[tuple[str, str], ...]) -> str:
    """A gauge's own labels, escaped once: phases and versions repeat on every target, and a leaf
    certificate's four labels on every probe of it (escaping them was a third of a fresh render)."""
    return label_text([k for k, _ in items], [v for _, v in items])


def _append_family(out: list[str], name: str, kind: str, help: str, lines: list[str], openmetrics: bool) -> None:
    if lines:
        out.append(header_text(name, kind, help, "", openmetrics))
        out.extend(lines)
        out.append("\n")


def _add_histogram(family: HistogramMetricFamily, labels: Mapping[str, str],
                   buckets: list[tuple[str, int]], total: float) -> None:
    for bound, count in buckets:
        family.add_sample(f"{family.name}_bucket", {**labels, "le": bound}, count)
    family.add_sample(f"{family.name}_count", dict(labels), buckets[-1][1])
    family.add_sample(f"{family.name}_sum", dict(labels), total)
