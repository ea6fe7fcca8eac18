"""The end-to-end alert flow of tests/test_alerting_e2e.py (agent -> Prometheus with the rendered rules ->
Alertmanager with the shipped config -> receivers) with Prometheus and Alertmanager restarted in the
middle of it, as in a rolling upgrade or a crashed pod. Each keeps its data directory and port.

1. Prometheus is down when the probed service goes down; restarted, it finds the failures in the
   agent's metrics and LoomProbeDown reaches the webhook.
2. Alertmanager is restarted while LoomProbeDown fires, and a burst of failed logins raises
   LoomAuthFailureSpike while it is down: once it is back, Prometheus' resend delivers it.
3. The service comes back: the restarted Alertmanager (which knows LoomProbeDown only from the resend
   and its notification log on disk) sends the resolved notification.

Prometheus resends firing alerts every `--rules.alert.resend-delay` (default 1m; 2s here so the test is
quick): with the default, an alert that fired while Alertmanager was away arrives within a minute of
its return. Figures are printed (pytest -s) for docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.rules.thresholds import Thresholds
from tests.support.alerting_procs import (ALERTMANAGER, AlertmanagerProcess, SwitchableTarget, WebhookReceiver,
                                  installed, post_json, receiver_secrets, render_shipped_config, with_short_timings)
from tests.support.event_examples import envelope
from tests.support.procs import AgentProcess, PrometheusProcess, wait_until
from tests.test_alerting_e2e import FAILED_LOGIN, INGEST_KEY, notifications, write_fast_rules

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not (installed(ALERTMANAGER) and installed(PrometheusProcess.BINARY)),
                       reason="prometheus and prometheus-alertmanager are installed by scripts/test.sh"),
]

RESEND_DELAY = "2s"


def start_prometheus_again(prometheus: PrometheusProcess) -> None:
    """Start the stopped Prometheus again on the same port, config and data dir, with a short resend delay."""
    prometheus._log = open(prometheus.log_path, "ab")
    prometheus.proc = subprocess.Popen(
        [prometheus.BINARY, f"--config.file={prometheus.dir / 'prometheus.yml'}",
         f"--storage.tsdb.path={prometheus.dir / 'data'}", f"--web.listen-address=127.0.0.1:{prometheus.port}",
         "--web.enable-lifecycle", f"--rules.alert.resend-delay={RESEND_DELAY}"],
        stdout=prometheus._log, stderr=subprocess.STDOUT)
    wait_until(prometheus._ready, 30, what="prometheus ready again")


def start_alertmanager_again(manager: AlertmanagerProcess) -> None:
    """Start the stopped Alertmanager again on the same port, config and storage (notification log)."""
    manager._log = open(manager.log_path, "ab")
    manager.proc = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={manager.config_path}", f"--storage.path={manager.dir / 'data'}",
         f"--web.listen-address=127.0.0.1:{manager.port}", "--cluster.listen-address=", "--log.level=debug"],
        stdout=manager._log, stderr=subprocess.STDOUT)
    wait_until(manager._ready, 20, what="alertmanager ready again")


def critical(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("severity") == "critical"]


def firing_in_prometheus(prometheus: PrometheusProcess, alertname: str) -> list[dict[str, Any]]:
    return prometheus.query(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')


def test_alerts_arrive_across_prometheus_and_alertmanager_restarts(tmp_path: Path) -> None:
    target = SwitchableTarget()
    receiver = WebhookReceiver()
    processes: list[Any] = []
    try:
        agent = AgentProcess(tmp_path, {
            "targets": [{"name": "web", "kind": "http", "url": target.url, "interval": "1s", "timeout": "500ms",
                         "labels": {"service": "web"}}],
            "events": {"api_keys": [INGEST_KEY]}, "store": {"driver": "none"}})
        processes.append(agent)
        manager = AlertmanagerProcess(tmp_path, with_short_timings(
            render_shipped_config(tmp_path, receiver_secrets(receiver.url)), resolve_timeout="5s"))
        processes.append(manager)
        write_fast_rules(tmp_path / "rules", Thresholds(), fast={"LoomProbeDown", "LoomAuthFailureSpike"})
        prometheus = PrometheusProcess(
            tmp_path, [{"job_name": "loom-agent", "static_configs": [{"targets": [f"127.0.0.1:{agent.port}"]}]}],
            rule_files=[str(tmp_path / "rules" / "*.yml")], alertmanagers=[manager.address])
        processes.append(prometheus)
        wait_until(lambda: prometheus.query('probe_success{job="loom-agent",target="web"} == 1'), 20,
                   what="Prometheus seeing the target up")

        # 1. the service goes down while Prometheus is away
        prometheus.stop()                              # SIGTERM, by PID
        stopped = time.monotonic()
        target.stop()
        time.sleep(2)                                  # failures pile up in the agent meanwhile
        start_prometheus_again(prometheus)
        back = time.monotonic()
        away = back - stopped
        down = wait_until(lambda: notifications(receiver, "/webhook", "LoomProbeDown", "firing"), 30,
                          what=f"LoomProbeDown after the Prometheus restart; got {receiver.posts}")
        probe_down_after = time.monotonic() - back
        assert down[0]["labels"]["target"] == "web" and down[0]["labels"]["severity"] == "critical"

        # 2. Alertmanager restarted while LoomProbeDown fires; an auth spike fires while it is down
        manager.stop()
        spike = Thresholds().auth_failure_spike.spike_threshold
        burst = [envelope("login_attempt", dict(FAILED_LOGIN)) for _ in range(2 * spike + 1)]
        status, body = post_json(agent.url + "/v1/events/batch", burst, {"Authorization": f"Bearer {INGEST_KEY}"})
        assert status == 200, body
        wait_until(lambda: firing_in_prometheus(prometheus, "LoomAuthFailureSpike"), 30,
                   what="LoomAuthFailureSpike firing in Prometheus while Alertmanager is down")
        assert not notifications(receiver, "/webhook", "LoomAuthFailureSpike", "firing")
        start_alertmanager_again(manager)
        manager_back = time.monotonic()
        wait_until(lambda: critical(notifications(receiver, "/webhook", "LoomAuthFailureSpike", "firing")), 30,
                   what=f"the critical LoomAuthFailureSpike after Alertmanager came back; got {receiver.posts}")
        spike_after = time.monotonic() - manager_back
        # its warning is inhibited by the critical, but only once Alertmanager holds both: after a restart the
        # resent warning can slip out first (a test's 1 s group_wait; the shipped 30 s gives the critical time)
        warnings_leaked = len(notifications(receiver, "/webhook", "LoomAuthFailureSpike", "firing")) - len(
            critical(notifications(receiver, "/webhook", "LoomAuthFailureSpike", "firing")))
        # the restarted Alertmanager holds LoomProbeDown again (resent by Prometheus)
        wait_until(lambda: [a for a in manager.alerts() if a["labels"]["alertname"] == "LoomProbeDown"], 30,
                   what="LoomProbeDown in the restarted Alertmanager")

        # 3. the service comes back: the resolved notification still arrives
        target.start()
        recovered = time.monotonic()
        resolved = wait_until(lambda: notifications(receiver, "/webhook", "LoomProbeDown", "resolved"), 30,
                              what=f"LoomProbeDown resolved after the restarts; got {receiver.posts}")
        resolved_after = time.monotonic() - recovered
        assert resolved[0]["labels"]["target"] == "web"
        duplicates = len(notifications(receiver, "/webhook", "LoomProbeDown", "firing")) - 1
        print(f"\nFIGURE alerting.restarts: Prometheus away {away:.1f}s, LoomProbeDown at the webhook "
              f"{probe_down_after:.1f}s after its restart; LoomAuthFailureSpike (fired while Alertmanager was "
              f"down) {spike_after:.1f}s after Alertmanager's restart (resend-delay {RESEND_DELAY}); resolved "
              f"{resolved_after:.1f}s after the service came back; {duplicates} repeated LoomProbeDown "
              f"notifications; {warnings_leaked} LoomAuthFailureSpike warning notifications past inhibition")
    finally:
        for process in reversed(processes):
            process.stop()
        receiver.stop()
        target.stop()
