"""End to end, every component real: a probed loopback service, the agent, Debian's Prometheus
evaluating the rules rendered from agent/rules/, Debian's Alertmanager running the shipped
alertmanager.yml (secrets rendered to point at the test, timings shortened), and a receiver in the
test standing in for Slack, the e-mail webhook and the generic webhook.

The service goes down -> LoomProbeDown reaches the receivers with the target's labels; a burst of
failed logins -> LoomAuthFailureSpike (critical, its warning inhibited); the service comes back
-> the resolved notification for LoomProbeDown arrives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.rules.render import render_rules
from agent.rules.thresholds import Thresholds
from tests.support.alerting_procs import (ALERTMANAGER, ENVSUBST, AlertmanagerProcess, SwitchableTarget, WebhookReceiver,
                                  installed, post_json, receiver_secrets, render_shipped_config, with_short_timings)
from tests.support.event_examples import envelope
from tests.support.procs import AgentProcess, PrometheusProcess, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not (installed(ALERTMANAGER) and installed(ENVSUBST) and installed(PrometheusProcess.BINARY)),
                       reason="prometheus, prometheus-alertmanager and gettext-base are installed by scripts/test.sh"),
]

INGEST_KEY = "e2e-ingest-key-0123456789"
RUNBOOKS = "https://github.com/loom-agent/loom-agent/blob/main/docs/runbooks.md"
FAILED_LOGIN = {"result": "failure", "method": "password", "failure_reason": "invalid_credentials"}


def write_fast_rules(directory: Path, thresholds: Thresholds, fast: set[str]) -> None:
    """The rule files as `render-rules` writes them, the alerts named in `fast` with their `for`
    cut to 1s and no group evaluates less often than Prometheus' 1s, so those alerts fire within
    seconds. The others keep their `for`, so a start-up blip (the agent not scraped yet) stays quiet."""
    directory.mkdir()
    for name, text in render_rules(thresholds).items():
        document = yaml.safe_load(text)
        for group in document["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if rule.get("alert") in fast:
                    rule["for"] = "1s"
        (directory / name).write_text(yaml.safe_dump(document, sort_keys=False))


def notifications(receiver: WebhookReceiver, path: str, alertname: str, status: str) -> list[dict[str, Any]]:
    """The alerts named `alertname` in state `status` that reached the receiver at `path`."""
    return [a for a in receiver.alerts(path) if a["labels"]["alertname"] == alertname and a["status"] == status]


def test_probe_down_auth_spike_and_recovery_reach_the_receivers(tmp_path: Path) -> None:
    target = SwitchableTarget()
    receiver = WebhookReceiver()
    processes: list[Any] = []
    try:
        agent = AgentProcess(tmp_path, {
            "targets": [{"name": "web", "kind": "http", "url": target.url, "interval": "1s", "timeout": "500ms",
                         "labels": {"service": "web"}}],
            "events": {"api_keys": [INGEST_KEY]}})
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
        assert not notifications(receiver, "/webhook", "LoomProbeDown", "firing")    # not before it is down

        # 1. the service goes down
        target.stop()
        down = wait_until(lambda: notifications(receiver, "/webhook", "LoomProbeDown", "firing"), 30,
                          what=f"LoomProbeDown at the webhook; got {receiver.posts}")
        assert {k: v for k, v in down[0]["labels"].items() if k != "instance"} == {
            "alertname": "LoomProbeDown", "severity": "critical", "target": "web", "service": "web",
            "job": "loom-agent"}
        assert down[0]["annotations"]["runbook_url"] == f"{RUNBOOKS}#loomprobedown"
        assert "web" in down[0]["annotations"]["summary"]
        # critical: the e-mail webhook and Slack have it too
        wait_until(lambda: notifications(receiver, "/email", "LoomProbeDown", "firing"), 10, what="the e-mail")
        wait_until(lambda: any("LoomProbeDown on web" in body["attachments"][0]["title"]
                               for body in receiver.received("/slack")), 10, what="the Slack message")

        # 2. a burst of failed logins: twice the spike threshold, so critical
        spike = Thresholds().auth_failure_spike.spike_threshold
        burst = [envelope("login_attempt", dict(FAILED_LOGIN)) for _ in range(2 * spike + 1)]
        status, body = post_json(agent.url + "/v1/events/batch", burst, {"Authorization": f"Bearer {INGEST_KEY}"})
        assert status == 200, body
        auth = wait_until(lambda: notifications(receiver, "/webhook", "LoomAuthFailureSpike", "firing"), 30,
                          what=f"LoomAuthFailureSpike at the webhook; got {receiver.posts}")
        assert auth[0]["labels"]["severity"] == "critical" and auth[0]["labels"]["job"] == "loom-agent"
        assert auth[0]["annotations"]["runbook_url"] == f"{RUNBOOKS}#loomauthfailurespike"
        assert auth[0]["annotations"]["summary"].startswith(f"{2 * spike + 1} failed logins")
        # its warning fires in Prometheus too, and Alertmanager holds it back (inhibited by the critical)
        wait_until(lambda: [a for a in manager.alerts() if a["labels"]["alertname"] == "LoomAuthFailureSpike"
                            and a["labels"]["severity"] == "warning" and a["status"]["state"] == "suppressed"], 15,
                   what="the warning in Alertmanager, suppressed by its critical")

        # 3. the service comes back
        target.start()
        resolved = wait_until(lambda: notifications(receiver, "/webhook", "LoomProbeDown", "resolved"), 30,
                              what=f"LoomProbeDown resolved at the webhook; got {receiver.posts}")
        assert resolved[0]["labels"]["target"] == "web"
        assert not [a for a in receiver.alerts() if a["labels"]["alertname"] == "LoomAuthFailureSpike"
                    and a["labels"]["severity"] == "warning"]
    finally:
        for process in reversed(processes):
            process.stop()
        receiver.stop()
        target.stop()
