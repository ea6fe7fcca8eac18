"""Custom metrics through a real agent process: POST /v1/metrics and StatsD over real UDP into one
registry, /metrics parsed after bad input, a reload applying the new limit, and a real Prometheus
scraping the series under their final names, and a StatsD port in use failing the start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.support.procs import ROOT, AgentProcess, PrometheusProcess, free_port, http_post, wait_until

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

KEY = "0123456789abcdef0123"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_metrics(agent: AgentProcess, body: Any) -> tuple[int, dict]:
    request = urllib.request.Request(agent.url + "/v1/metrics", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def samples(agent: AgentProcess) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parse_text(agent.metrics()) for s in family.samples}


def config(port: int, **custom: Any) -> dict:
    return {"store": {"driver": "none"}, "events": {"api_keys": [KEY]},
            "custom_metrics": {"statsd": {"enabled": True, "listen": f"127.0.0.1:{port}"}, **custom}}


def test_http_and_statsd_feed_one_set_of_series(tmp_path: Path) -> None:
    port = free_udp_port()
    agent = AgentProcess(tmp_path, config(port))
    try:
        assert post_metrics(agent, {"metrics": [
            {"name": "conversions", "type": "counter", "value": 1, "tags": {"type": "trial_signup"}},
            {"name": "checkout.duration", "type": "distribution", "value": 1200, "unit": "millisecond"}]}) == \
            (200, {"accepted": 2})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"conversions:2|c|#type:trial_signup\ncheckout.duration:300|ms\nconversions:1|g\nusers:1|s",
                        ("127.0.0.1", port))
        wait_until(lambda: samples(agent).get(("loom_agent_statsd_lines_total", frozenset({("result", "accepted")})))
                   == 2.0, 10, what="the StatsD lines")
        status, answer = post_metrics(agent, {"name": "conversions", "type": "gauge", "value": 1,
                                              "tags": {"type": "trial_signup"}})
        assert status == 409 and "loom_app_conversions is a counter" in answer["error"]
        found = samples(agent)                 # parses after the bad line and the refused request
        assert found[("loom_app_conversions_total", frozenset({("type", "trial_signup")}))] == 3.0
        assert found[("loom_app_checkout_duration_seconds_count", frozenset())] == 2.0
        assert found[("loom_app_checkout_duration_seconds_sum", frozenset())] == 1.5
        for result, count in (("conflict", 1.0), ("unsupported", 1.0), ("invalid", 0.0)):
            assert found[("loom_agent_statsd_lines_total", frozenset({("result", result)}))] == count
        assert found[("loom_agent_custom_metrics", frozenset())] == 2.0
        assert found[("loom_agent_ingest_rejected_total", frozenset({("api", "metrics"), ("reason", "invalid")}))] == 1.0
    finally:
        assert agent.stop() == 0


def test_a_reload_applies_max_metrics(tmp_path: Path) -> None:
    port = free_udp_port()
    agent = AgentProcess(tmp_path, config(port))
    try:
        assert post_metrics(agent, {"name": "a", "type": "counter"})[0] == 200
        agent.write_config(config(port, max_metrics=1))
        assert http_post(agent.url + "/-/reload")[0] == 200
        status, answer = post_metrics(agent, {"name": "b", "type": "counter"})
        assert status == 409 and "custom_metrics.max_metrics (1)" in answer["error"]
        assert post_metrics(agent, {"name": "a", "type": "counter"})[0] == 200
    finally:
        assert agent.stop() == 0


def test_prometheus_scrapes_the_custom_series(tmp_path: Path) -> None:
    port = free_udp_port()
    agent = AgentProcess(tmp_path, config(port))
    prometheus = None
    try:
        assert post_metrics(agent, [{"name": "upload", "type": "distribution", "value": 3, "unit": "kilobyte"},
                                    {"name": "disk_usage", "type": "gauge", "value": 42, "unit": "percent"}])[0] == 200
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"checkout.completed:1|c|#plan:pro", ("127.0.0.1", port))
        prometheus = PrometheusProcess(tmp_path, [{"job_name": "agent", "static_configs": [
            {"targets": [agent.url.removeprefix("http://")]}]}])
        wait_until(lambda: prometheus.query('loom_app_checkout_completed_total{plan="pro"}'), 30,
                   what="prometheus to scrape the custom counter")
        assert float(prometheus.query("loom_app_disk_usage_ratio")[0]["value"][1]) == 0.42
        assert float(prometheus.query("loom_app_upload_bytes_sum")[0]["value"][1]) == 3000.0
        assert prometheus.query('up{job="agent"}')[0]["value"][1] == "1"
    finally:
        if prometheus is not None:
            prometheus.stop()
        assert agent.stop() == 0


def test_a_statsd_port_in_use_stops_the_agent_at_start_naming_the_key(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{free_port()}",
                                        **config(holder.getsockname()[1])}))
        done = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "statsd: cannot listen on udp" in done.stderr and "(custom_metrics.statsd.listen)" in done.stderr
