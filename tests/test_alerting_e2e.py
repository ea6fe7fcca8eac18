"""End to end, every component real: a probed loopback service, the agent, Debian's Prometheus
evaluating the rules rendered from agent/rules/, Debian's Alertmanager running the shipped
alertmanager.yml (its secret files and webhook addresses pointed at the test, timings shortened), and a
receiver in the test standing in for Slack, the e-mail webhook and the generic webhook.

The service goes down -> LoomProbeDown reaches the receivers with the target's labels; a burst of
failed logins -> LoomAuthFailureSpike (critical, its warning inhibited); the service comes back
-> the resolved notification for LoomProbeDown arrives. Sentry items sent to the agent: a cron monitor
that checks in once on a `* * * * *` schedule and then not again -> LoomCronMissedRun after the next
minute; one whose run errors -> LoomCronRunFailed; a release whose sessions crash -> the crash-free
recording rules and LoomReleaseCrashFreeSessionsLow (critical, its warning inhibited).
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agent.rules.render import render_rules
from agent.rules.thresholds import CronMonitors, Thresholds
from tests.support.alerting_procs import (ALERTMANAGER, AlertmanagerProcess, SwitchableTarget, WebhookReceiver,
                                          installed, post_json, receiver_secrets, render_shipped_config,
                                          with_short_timings)
from tests.support.event_examples import envelope
from tests.support.procs import AgentProcess, PrometheusProcess, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not (installed(ALERTMANAGER) and installed(PrometheusProcess.BINARY)),
                       reason="prometheus and prometheus-alertmanager are installed by scripts/test.sh"),
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


def start_stack(tmp_path: Path, receiver: WebhookReceiver, agent_config: dict[str, Any], thresholds: Thresholds,
                fast: set[str], processes: list[Any]) -> tuple[AgentProcess, AlertmanagerProcess, PrometheusProcess]:
    """The agent, the shipped Alertmanager sending to `receiver`, and Prometheus scraping the agent with the
    rules of `thresholds` (`fast` alerts with a 1s `for`); each appended to `processes` as it starts."""
    agent = AgentProcess(tmp_path, agent_config)
    processes.append(agent)
    manager = AlertmanagerProcess(tmp_path, with_short_timings(
        render_shipped_config(tmp_path, receiver_secrets(receiver.url)), resolve_timeout="5s"))
    processes.append(manager)
    write_fast_rules(tmp_path / "rules", thresholds, fast)
    prometheus = PrometheusProcess(
        tmp_path, [{"job_name": "loom-agent", "static_configs": [{"targets": [f"127.0.0.1:{agent.port}"]}]}],
        rule_files=[str(tmp_path / "rules" / "*.yml")], alertmanagers=[manager.address])
    processes.append(prometheus)
    return agent, manager, prometheus


def notifications(receiver: WebhookReceiver, path: str, alertname: str, status: str) -> list[dict[str, Any]]:
    """The alerts named `alertname` in state `status` that reached the receiver at `path`."""
    return [a for a in receiver.alerts(path) if a["labels"]["alertname"] == alertname and a["status"] == status]


def test_probe_down_auth_spike_and_recovery_reach_the_receivers(tmp_path: Path) -> None:
    target = SwitchableTarget()
    receiver = WebhookReceiver()
    processes: list[Any] = []
    try:
        agent, manager, prometheus = start_stack(tmp_path, receiver, {
            "targets": [{"name": "web", "kind": "http", "url": target.url, "interval": "1s", "timeout": "500ms",
                         "labels": {"service": "web"}}],
            "events": {"api_keys": [INGEST_KEY]}}, Thresholds(), {"LoomProbeDown", "LoomAuthFailureSpike"}, processes)

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


SENTRY_KEY = "e2e0123456789abcdef0123456789abcd"
RELEASE = "shop@4.2.0"


def send_sentry(agent: AgentProcess, *items: tuple[str, dict[str, Any]]) -> None:
    """One envelope to the agent's Sentry endpoint, as an SDK with the DSN http://KEY@agent/1 sends it."""
    lines = [orjson.dumps({"sent_at": "2026-01-01T00:00:00Z"})]
    for kind, payload in items:
        data = orjson.dumps(payload)
        lines += [orjson.dumps({"type": kind, "length": len(data)}), data]
    request = urllib.request.Request(agent.url + "/api/1/envelope/", data=b"\n".join(lines) + b"\n", method="POST",
                                     headers={"X-Sentry-Auth": f"Sentry sentry_key={SENTRY_KEY}, sentry_version=7",
                                              "Content-Type": "application/x-sentry-envelope"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200, resp.status


def test_a_missed_cron_run_a_failed_one_and_a_crash_free_drop_reach_the_receivers(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    processes: list[Any] = []
    try:
        # no grace: a monitor due at the next minute is missed as soon as that minute passes
        thresholds = Thresholds(cron_monitors=CronMonitors(missed_grace_seconds=0))
        agent, manager, prometheus = start_stack(
            tmp_path, receiver, {"targets": [], "sentry": {"projects": [{"id": 1, "keys": [SENTRY_KEY]}]}},
            thresholds, {"LoomReleaseCrashFreeSessionsLow"}, processes)
        wait_until(lambda: prometheus.query('up{job="loom-agent"} == 1'), 20, what="Prometheus scraping the agent")

        every_minute = {"schedule": {"type": "crontab", "value": "* * * * *"}, "checkin_margin": 0}
        send_sentry(
            agent,
            ("check_in", {"check_in_id": uuid.uuid4().hex, "monitor_slug": "nightly-export", "status": "ok",
                          "duration": 2.0, "monitor_config": every_minute}),
            ("check_in", {"check_in_id": uuid.uuid4().hex, "monitor_slug": "billing-sync", "status": "error",
                          "duration": 0.5, "monitor_config": every_minute}),
            # 60 sessions of the release: 40 healthy, 20 crashed -> 67% crash-free, below 96%: critical
            ("sessions", {"attrs": {"release": RELEASE, "environment": "production"},
                          "aggregates": [{"started": "2026-01-01T00:00:00Z", "exited": 40, "crashed": 20}]}))

        # the crash-free drop: critical to the webhooks (its warning inhibited)
        crash = wait_until(lambda: notifications(receiver, "/webhook", "LoomReleaseCrashFreeSessionsLow", "firing"),
                           40, what=f"LoomReleaseCrashFreeSessionsLow at the webhook; got {receiver.posts}")
        assert {k: v for k, v in crash[0]["labels"].items() if k != "instance"} == {
            "alertname": "LoomReleaseCrashFreeSessionsLow", "severity": "critical", "job": "loom-agent",
            "release": RELEASE, "environment": "production"}
        assert crash[0]["annotations"]["summary"] == f"Release {RELEASE} (production) is 66.67% crash-free"
        wait_until(lambda: notifications(receiver, "/email", "LoomReleaseCrashFreeSessionsLow", "firing"), 10,
                   what="the crash-free drop at the e-mail webhook")
        assert prometheus.query(f'release:loom_sessions_started:increase1h{{release="{RELEASE}"}} == 60')

        # the failed run: at once, warning (Slack and the generic webhook)
        failed = wait_until(lambda: notifications(receiver, "/webhook", "LoomCronRunFailed", "firing"), 30,
                            what=f"LoomCronRunFailed at the webhook; got {receiver.posts}")
        assert failed[0]["labels"]["monitor"] == "billing-sync" and failed[0]["labels"]["severity"] == "warning"

        # the missed run: nightly-export was due at the next minute and never checked in again
        missed = wait_until(lambda: [a for a in notifications(receiver, "/webhook", "LoomCronMissedRun", "firing")
                                     if a["labels"]["monitor"] == "nightly-export"], 100,
                            what=f"LoomCronMissedRun at the webhook; got {receiver.posts}")
        assert {k: v for k, v in missed[0]["labels"].items()} == {
            "alertname": "LoomCronMissedRun", "severity": "warning", "job": "loom-agent", "monitor": "nightly-export"}
        assert missed[0]["annotations"]["runbook_url"] == f"{RUNBOOKS}#loomcronmissedrun"
        assert not [a for a in receiver.alerts() if a["labels"]["alertname"] == "LoomReleaseCrashFreeSessionsLow"
                    and a["labels"]["severity"] == "warning"]
    finally:
        for process in reversed(processes):
            process.stop()
        receiver.stop()
