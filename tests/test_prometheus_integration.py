"""A real Prometheus scrapes the agent: probe results reach PromQL, both self-scheduled and /probe-style."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.procs import AgentProcess, PrometheusProcess, free_port, loopback_http_server, wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None and not Path(PrometheusProcess.BINARY).exists(),
                                 reason="Prometheus is installed by scripts/test.sh")]


def values_by(results: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in results}


def test_prometheus_sees_up_and_down_targets_both_ways(tmp_path: Path) -> None:
    dead_port = free_port()            # nothing listens here
    with loopback_http_server() as healthy_url:
        dead_url = f"http://127.0.0.1:{dead_port}/"
        agent = AgentProcess(tmp_path, {"targets": [
            {"name": "healthy", "kind": "http", "url": healthy_url + "/", "interval": "1s", "timeout": "500ms",
             "labels": {"service": "demo"}},
            {"name": "dead", "kind": "http", "url": dead_url, "interval": "1s", "timeout": "500ms"},
        ]})
        agent_address = f"127.0.0.1:{agent.port}"
        prometheus = PrometheusProcess(tmp_path, [
            {"job_name": "loom-agent", "static_configs": [{"targets": [agent_address]}]},
            {"job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
             "static_configs": [{"targets": [healthy_url + "/", dead_url]}],
             "relabel_configs": [
                 {"source_labels": ["__address__"], "target_label": "__param_target"},
                 {"source_labels": ["__param_target"], "target_label": "instance"},
                 {"target_label": "__address__", "replacement": agent_address}]},
        ])
        try:
            own = wait_until(lambda: (lambda r: r if len(r) == 2 else None)(
                values_by(prometheus.query('probe_success{job="loom-agent"}'), "target")), 30,
                what="probe_success of both targets in Prometheus")
            assert own == {"healthy": 1.0, "dead": 0.0}
            blackbox = wait_until(lambda: (lambda r: r if len(r) == 2 else None)(
                values_by(prometheus.query('probe_success{job="blackbox"}'), "instance")), 30,
                what="probe_success from the /probe job")
            assert blackbox == {healthy_url + "/": 1.0, dead_url: 0.0}

            # static labels travel with the series; failures carry their reason
            assert prometheus.query('probe_success{job="loom-agent",service="demo"}')[0]["metric"]["target"] == "healthy"
            reasons = wait_until(lambda: prometheus.query('loom_probe_failures_total{target="dead"}'), 15,
                                 what="failure counter")
            assert reasons[0]["metric"]["reason"] == "connect"
            # the histogram and counters support uptime and latency queries over any window
            wait_until(lambda: prometheus.query('sum by (target) (increase(loom_probes_total{result="success"}[1m])) > 0'),
                       20, what="success counter increasing")
            quantile = prometheus.query(
                'histogram_quantile(0.99, sum by (le) (rate(loom_probe_duration_seconds_bucket{target="healthy"}[1m])))')
            assert quantile and 0 < float(quantile[0]["value"][1]) < 0.5
            assert {t["health"] for t in prometheus.targets()} == {"up"}
        finally:
            prometheus.stop()
            assert agent.stop() == 0
