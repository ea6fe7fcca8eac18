"""The agent as a real process: signals, reload, exposition formats and /probe behaviour."""

from __future__ import annotations

import contextlib
import gzip
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.procs import AgentProcess, free_port, http_get, http_post, loopback_http_server, wait_until

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")


@contextmanager
def hanging_server() -> Iterator[int]:
    """Accepts connections and never answers; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


def target(name: str, url: str, **extra) -> dict:
    return {"name": name, "kind": "http", "url": url, "interval": "1s", "timeout": "500ms", **extra}


def series(metrics: str, name: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


@pytest.fixture
def web() -> Iterator[str]:
    with loopback_http_server() as url:
        yield url


def test_sigterm_exits_zero_within_5s_with_a_probe_in_flight(tmp_path: Path) -> None:
    with hanging_server() as port:
        agent = AgentProcess(tmp_path, {"targets": [
            {"name": "hang", "kind": "http", "url": f"http://127.0.0.1:{port}/", "interval": "10s", "timeout": "8s"}]})
        wait_until(lambda: "probes_in_flight 1.0" in agent.metrics(), 15, what="a probe in flight")
        began = time.monotonic()
        code = agent.stop(signal.SIGTERM)
        assert code == 0, agent.log()
        assert time.monotonic() - began < 5


def test_sigint_exits_zero(tmp_path: Path, web: str) -> None:
    agent = AgentProcess(tmp_path, {"targets": [target("web", web + "/")]})
    assert agent.stop(signal.SIGINT) == 0


def test_sighup_reload_swaps_targets_and_removed_series_disappear(tmp_path: Path, web: str) -> None:
    agent = AgentProcess(tmp_path, {"targets": [target("old", web + "/"), target("kept", web + "/")]})
    try:
        wait_until(lambda: len(series(agent.metrics(), "probe_success")) == 2, 10, what="both targets probed")
        agent.write_config({"targets": [target("kept", web + "/"), target("new", web + "/")]})
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: 'target="new"' in "\n".join(series(agent.metrics(), "probe_success")), 10,
                   what="new target probed after SIGHUP")
        metrics = agent.metrics()
        assert 'target="old"' not in metrics
        assert 'target="kept"' in metrics
        assert "loom_agent_config_last_reload_successful 1.0" in metrics
    finally:
        assert agent.stop() == 0


def test_bad_reload_keeps_the_running_config(tmp_path: Path, web: str) -> None:
    agent = AgentProcess(tmp_path, {"targets": [target("web", web + "/")]})
    try:
        wait_until(lambda: series(agent.metrics(), "probe_success"), 10, what="first probe")
        before = float(series(agent.metrics(), "loom_agent_config_last_reload_success_timestamp_seconds")[0].split()[-1])
        agent.config_path.write_text("targets:\n  - {name: web, kind: http, url: 'ftp://nope'}\n")
        status, body = http_post(agent.url + "/-/reload")
        assert status == 400
        assert b"targets[0].url: must start with http:// or https://" in body
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "invalid" in agent.log() or "reload failed" in agent.log(), 5, what="reload error logged")
        metrics = agent.metrics()
        assert "loom_agent_config_last_reload_successful 0.0" in metrics
        after = float(series(metrics, "loom_agent_config_last_reload_success_timestamp_seconds")[0].split()[-1])
        assert after == before            # the last *successful* load is still the first one
        count = lambda: float(next(line for line in series(agent.metrics(), "loom_probes_total")  # noqa: E731
                                   if 'result="success"' in line).split()[-1])
        first = count()
        wait_until(lambda: count() > first, 5, what="the old config still probing")
    finally:
        assert agent.stop() == 0


def test_post_reload_success(tmp_path: Path, web: str) -> None:
    agent = AgentProcess(tmp_path, {"targets": [target("web", web + "/")]})
    try:
        agent.write_config({"targets": [target("web", web + "/"), target("two", web + "/")]})
        status, body = http_post(agent.url + "/-/reload")
        assert status == 200 and b'"targets": 2' in body
    finally:
        agent.stop()


def test_openmetrics_and_gzip_negotiation(tmp_path: Path, web: str) -> None:
    agent = AgentProcess(tmp_path, {"targets": [target("web", web + "/")]})
    try:
        wait_until(lambda: series(agent.metrics(), "probe_success"), 10, what="first probe")
        status, headers, body = http_get(agent.url + "/metrics", {
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert headers.get("Content-Encoding") == "gzip"
        text = gzip.decompress(body).decode()
        assert text.rstrip().endswith("# EOF")
        assert "# TYPE loom_probes counter" in text
        plain = agent.metrics()
        assert "# EOF" not in plain and "# TYPE loom_probes_total counter" in plain
    finally:
        agent.stop()


def test_probe_endpoint_like_blackbox(tmp_path: Path, web: str) -> None:
    config = {"modules": {"with_secret": {"kind": "http", "bearer_token": "hunter2-secret",
                                          "headers": {"X-Api-Key": "header-secret-value"}}}, "targets": []}
    agent = AgentProcess(tmp_path, config)
    try:
        ok = http_get(agent.url + "/probe?" + urllib.parse.urlencode({"target": web + "/", "module": "http_2xx"}))
        assert ok[0] == 200 and "probe_success 1.0" in ok[2].decode()
        dead = http_get(agent.url + f"/probe?target=127.0.0.1:{free_port()}&module=tcp_connect")
        assert "probe_success 0.0" in dead[2].decode()
        assert http_get(agent.url + "/probe?module=http_2xx")[0] == 400
        missing = http_get(agent.url + "/probe?target=x&module=nope")
        assert missing[0] == 400 and b"Unknown module" in missing[2]
        assert http_get(agent.url + "/probe?target=nohostport&module=tcp_connect")[0] == 400
        creds = http_get(agent.url + "/probe?target=http://user:hunter2@127.0.0.1:1/&module=http_2xx")
        assert creds[0] == 400 and b"credentials" in creds[2] and b"hunter2" not in creds[2]
        debug = http_get(agent.url + "/probe?" + urllib.parse.urlencode(
            {"target": web + "/", "module": "with_secret", "debug": "true"}))[2].decode()
        assert "Logs for the probe" in debug and "Metrics that would have been returned" in debug
        assert "hunter2-secret" not in debug and "header-secret-value" not in debug and "<secret>" in debug
    finally:
        agent.stop()


def test_probe_honours_scrape_timeout_header(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {"targets": []})
    try:
        with hanging_server() as port:
            began = time.monotonic()
            status, _, body = http_get(agent.url + f"/probe?target=http://127.0.0.1:{port}/&module=http_2xx",
                                       {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
            took = time.monotonic() - began
        assert status == 200 and "probe_success 0.0" in body.decode()
        assert 0.8 < took < 1.6            # 1.5 s less blackbox's 0.5 s margin, not the module's 5 s
        bad = http_get(agent.url + "/probe?target=127.0.0.1:1&module=tcp_connect",
                       {"X-Prometheus-Scrape-Timeout-Seconds": "soon"})
        assert bad[0] == 400
    finally:
        agent.stop()


def test_health_endpoints(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {"targets": []})
    try:
        assert http_get(agent.url + "/-/healthy")[0] == 200
        assert http_get(agent.url + "/-/ready")[0] == 200
        assert http_get(agent.url + "/")[0] == 200
    finally:
        agent.stop()


def test_sigterm_within_5s_with_a_probe_request_in_flight_and_the_collector_hung(tmp_path: Path) -> None:
    """The worst case: a /probe request held by a silent target, scheduled probes in flight, and an
    OTLP collector that accepts connections and never answers."""
    with hanging_server() as port:
        hung = f"127.0.0.1:{port}"
        agent = AgentProcess(tmp_path, {
            "telemetry": {"otlp": {"endpoint": f"http://{hung}", "timeout": "10s"}},
            "targets": [{"name": "hang", "kind": "http", "url": f"http://{hung}/", "interval": "10s",
                         "timeout": "8s"}]})
        wait_until(lambda: "probes_in_flight 1.0" in agent.metrics(), 15, what="a probe in flight")
        def probe_request() -> None:
            with contextlib.suppress(OSError):        # the agent goes away under it: expected
                http_get(agent.url + f"/probe?target=http://{hung}/", timeout=15)

        request = threading.Thread(target=probe_request, daemon=True)
        request.start()
        time.sleep(0.3)
        began = time.monotonic()
        code = agent.stop(signal.SIGTERM)
        took = time.monotonic() - began
        assert code == 0, agent.log()
        assert took < 5, f"exit took {took:.2f} s"
