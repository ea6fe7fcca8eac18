"""Probe results -> exposition: blackbox names, counters, histogram, removed targets disappear."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.metrics.probe import ProbeMetrics, result_gauges


def target(name: str, kind: str = "http", **labels: str) -> ProbeTarget:
    return ProbeTarget(name=name, kind=kind, url="http://127.0.0.1/" if kind == "http" else None,
                       address=None if kind == "http" else "127.0.0.1:1", interval=15, timeout=5, retries=0,
                       labels=labels, options=None)


def samples(metrics: ProbeMetrics) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


OK = ProbeResult(True, 0.042, phases={"resolve": 0.001, "connect": 0.002, "processing": 0.03, "transfer": 0.009},
                 status_code=200, content_length=2, body_length=2, http_version=1.1, redirects=0)
DOWN = ProbeResult(False, 0.5, Reason.TIMEOUT, "timeout during connect", phases={"resolve": 0.001})


def test_http_result_gauges_use_blackbox_names() -> None:
    gauges = {(name, tuple(sorted(labels.items()))): value for name, labels, value in result_gauges("http", OK)}
    assert gauges[("probe_success", ())] == 1
    assert gauges[("probe_duration_seconds", ())] == 0.042
    assert gauges[("probe_http_status_code", ())] == 200
    assert gauges[("probe_http_duration_seconds", (("phase", "tls"),))] == 0.0    # every phase, as blackbox
    assert gauges[("probe_http_duration_seconds", (("phase", "processing"),))] == 0.03
    assert gauges[("probe_dns_lookup_time_seconds", ())] == 0.001
    assert gauges[("probe_http_ssl", ())] == 0


def test_tls_and_regex_gauges() -> None:
    tls = ProbeResult(True, 0.01, tls_version="TLS 1.3", cert_expiry=1.9e9)
    names = {(n, tuple(l.items())): v for n, l, v in result_gauges("tls", tls)}
    assert names[("probe_tls_version_info", (("version", "TLS 1.3"),))] == 1
    assert names[("probe_ssl_earliest_cert_expiry", ())] == 1.9e9
    body = ProbeResult(False, 0.01, Reason.BODY, "no match", status_code=200)
    assert ("probe_failed_due_to_regex", {}, 1.0) in result_gauges("http", body)


def test_counters_histogram_and_labels() -> None:
    metrics = ProbeMetrics()
    api, db = target("api", service="auth"), target("db", kind="tcp")
    metrics.set_targets([api, db])
    metrics.record(api, OK)
    metrics.record(api, OK)
    metrics.record(api, DOWN, attempts=3)
    s = samples(metrics)
    base = {("target", "api"), ("service", "auth")}
    assert s[("loom_probes_total", frozenset(base | {("result", "success")}))] == 2
    assert s[("loom_probes_total", frozenset(base | {("result", "failure")}))] == 1
    assert s[("loom_probe_failures_total", frozenset(base | {("reason", "timeout")}))] == 1
    assert s[("loom_probe_retries_total", frozenset(base))] == 2
    assert s[("loom_probe_duration_seconds_bucket", frozenset(base | {("le", "0.05")}))] == 2
    assert s[("loom_probe_duration_seconds_bucket", frozenset(base | {("le", "+Inf")}))] == 3
    assert s[("loom_probe_duration_seconds_count", frozenset(base))] == 3
    assert s[("probe_success", frozenset(base))] == 0        # the last result
    # a target never probed yet has counters but no last-result gauges
    assert ("probe_success", frozenset({("target", "db")})) not in s
    assert s[("loom_probes_total", frozenset({("target", "db"), ("result", "success")}))] == 0


def test_removed_and_changed_targets() -> None:
    metrics = ProbeMetrics()
    api, db = target("api"), target("db", kind="tcp")
    metrics.set_targets([api, db])
    metrics.record(api, OK)
    metrics.record(db, DOWN)
    metrics.set_targets([api])                     # db removed by a reload
    assert not any(("target", "db") in labels for _, labels in samples(metrics))
    relabelled = target("api", service="new")
    metrics.set_targets([relabelled])              # changed target: fresh state, new labels
    metrics.record(api, OK)                        # a late result of the old target is ignored
    s = samples(metrics)
    assert ("probe_success", frozenset({("target", "api"), ("service", "new")})) not in s
    assert s[("loom_probes_total", frozenset({("target", "api"), ("service", "new"), ("result", "success")}))] == 0


def _parsed(text: str, openmetrics: bool) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
    families = om_families(text) if openmetrics else text_string_to_metric_families(text)
    return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}


def test_fast_render_equals_the_collector_in_both_formats() -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    metrics = ProbeMetrics()
    api, db = target("api", service='au"th\\x'), target("db", kind="tcp")
    metrics.set_targets([api, db])
    metrics.record(api, OK)
    metrics.record(api, DOWN, attempts=2)
    metrics.record(db, ProbeResult(True, 0.003, tls_version="TLS 1.3", cert_expiry=1.9e9))
    registry = CollectorRegistry()
    registry.register(metrics)
    assert _parsed(metrics.render(False), False) == _parsed(generate_latest(registry).decode(), False)
    fast_om = metrics.render(True) + "# EOF\n"
    assert _parsed(fast_om, True) == _parsed(om_latest(registry).decode(), True)
    # a new result replaces the cached gauge lines
    metrics.record(api, OK)
    assert ("probe_success", frozenset({("target", "api"), ("service", 'au"th\\x')})) in _parsed(metrics.render(False), False)
    assert _parsed(metrics.render(False), False)[("probe_success", frozenset({("target", "api"), ("service", 'au"th\\x')}))] == 1.0


def test_blackbox_registers_some_gauges_on_every_probe() -> None:
    """A refused http probe: blackbox's up-front gauges are there at 0 (status, lengths, version, redirects,
    ip protocol and hash, lookup time); a resolved address reports its family and FNV-1a hash."""
    from agent.collectors.base import TlsLeaf
    from agent.collectors.ipproto import ip_hash

    refused = ProbeResult(False, 0.01, Reason.CONNECT, "connect refused")
    gauges = {(n, tuple(sorted(l.items()))): v for n, l, v in result_gauges("http", refused)}
    for name in ("probe_http_status_code", "probe_http_content_length", "probe_http_uncompressed_body_length",
                 "probe_http_version", "probe_http_redirects", "probe_ip_protocol", "probe_ip_addr_hash",
                 "probe_dns_lookup_time_seconds"):
        assert gauges[(name, ())] == 0, name
    assert ("probe_http_last_modified_timestamp_seconds", ()) not in gauges
    leaf = TlsLeaf("ab" * 32, "CN=server", "CN=ca", "localhost", 1.9e9)
    ok = ProbeResult(True, 0.01, ip_protocol=4, ip_address="127.0.0.1", last_modified=1.7e9, tls_version="TLS 1.3",
                     tls_leaf=leaf, status_code=200)
    gauges = {(n, tuple(sorted(l.items()))): v for n, l, v in result_gauges("http", ok)}
    assert gauges[("probe_ip_protocol", ())] == 4
    assert gauges[("probe_ip_addr_hash", ())] == ip_hash("127.0.0.1")
    assert gauges[("probe_http_last_modified_timestamp_seconds", ())] == 1.7e9
    assert gauges[("probe_ssl_last_chain_expiry_timestamp_seconds", ())] == 1.9e9
    info = (("fingerprint_sha256", "ab" * 32), ("issuer", "CN=ca"), ("subject", "CN=server"),
            ("subjectalternative", "localhost"))
    assert gauges[("probe_ssl_last_chain_info", info)] == 1
    dns = {(n, tuple(l.items())): v for n, l, v in result_gauges("dns", refused)}
    assert dns[("probe_dns_query_succeeded", ())] == 0 and dns[("probe_dns_answer_rrs", ())] == 0
    assert {p for (n, labels), _ in dns.items() if n == "probe_dns_duration_seconds" for _, p in labels} == {
        "resolve", "connect", "request"}
