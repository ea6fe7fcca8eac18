"""The shipped Alertmanager config (prometheus/alertmanager.yml): no secret in it (Slack's URL and the
webhooks' bearer tokens are files Alertmanager reads), amtool-clean exactly as shipped, every route
where it should be, and, against a running Alertmanager, the right integrations per severity (each
webhook with its token from its file) and the inhibitions. Also the shipped prometheus.yml, which
points Prometheus at the rules and that Alertmanager."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.alerting_procs import (ALERTMANAGER, AMTOOL, SECRETS_DIR, SHIPPED_ADDRESSES, SHIPPED_CONFIG,
                                          SLACK_SECRET, TEST_TOKENS, TOKENS, AlertmanagerProcess, WebhookReceiver,
                                          amtool, installed, receiver_secrets, render_shipped_config,
                                          with_short_timings)
from tests.support.procs import ROOT, wait_until

pytestmark = pytest.mark.skipif(not (installed(AMTOOL) and installed(ALERTMANAGER)),
                                reason="prometheus-alertmanager is installed by scripts/test.sh")

# (labels of an alert, the receiver it must reach): one case per route of the tree, and more
ROUTE_CASES: list[tuple[dict[str, str], str]] = [
    ({"alertname": "LoomProbeDown", "severity": "critical", "target": "web", "service": "web"}, "loom-critical"),
    ({"alertname": "LoomAgentDown", "severity": "critical"}, "loom-critical"),
    ({"alertname": "LoomAuthFailureSpike", "severity": "critical", "service": "auth"}, "loom-security-critical"),
    ({"alertname": "LoomProbeDown", "severity": "critical", "target": "mfa-api", "service": "mfa"},
     "loom-security-critical"),
    ({"alertname": "LoomProbeHighLatency", "severity": "warning", "target": "web", "service": "web"},
     "loom-warning"),
    ({"alertname": "LoomEngagementDrop", "severity": "warning"}, "loom-warning"),
    ({"alertname": "LoomMFAAnomaly", "severity": "warning", "service": "mfa"}, "loom-security-warning"),
    ({"alertname": "LoomAuthFailureSpike", "severity": "warning", "service": "auth"}, "loom-security-warning"),
    ({"alertname": "SomethingInformational", "severity": "info", "service": "auth"}, "loom-webhook"),
    ({"alertname": "NotOurs"}, "loom-webhook"),                                    # the default route
    ({"alertname": "Odd", "severity": "page"}, "loom-webhook"),                    # unknown severity
    ({"alertname": "Near", "severity": "warning", "service": "authentication"}, "loom-warning"),  # anchored regex
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config pointed at made-up URLs (its paths moved to a temp dir), as a file amtool can read."""
    tmp = tmp_path_factory.mktemp("alertmanager-config")
    path = tmp / "alertmanager.yml"
    path.write_text(render_shipped_config(tmp, {
        SLACK_SECRET: "https://hooks.slack.com/services/T000/B000/XXXX",
        "ALERT_EMAIL_WEBHOOK": "https://mail.example.com/webhook?token=a&b=c",
        "ALERT_WEBHOOK_URL": "https://alerts.example.com/webhook"}))
    return path


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_shipped_config_commits_no_secret_only_where_each_comes_from() -> None:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    assert "slack_api_url" not in config.get("global", {})
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack
            assert slack["api_url_file"] == f"{SECRETS_DIR}/{SLACK_SECRET}", receiver["name"]
        for webhook in receiver.get("webhook_configs", []):
            # an address with no secret in it (a `.invalid` host to replace), the secret a bearer token in a file
            name = {url: name for name, url in SHIPPED_ADDRESSES.items()}[webhook["url"]]
            token_file = f"{SECRETS_DIR}/{TOKENS[name]}"
            assert webhook["http_config"] == {"authorization": {"credentials_file": token_file}}, receiver["name"]
        urls = [s for s in _strings(receiver) if "://" in s and s not in SHIPPED_ADDRESSES.values()]
        assert urls == [], f"{receiver['name']} commits a URL: {urls}"
    assert "${" not in "\n".join(line.split("#")[0] for line in SHIPPED_CONFIG.read_text().splitlines())


@pytest.mark.slow
def test_amtool_check_config_passes_on_the_file_exactly_as_shipped() -> None:
    """No render step: the file Alertmanager runs is the committed one, byte for byte."""
    result = amtool("check-config", str(SHIPPED_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    for found in ("SUCCESS", "2 inhibit rules", "5 receivers", "1 templates"):
        assert found in result.stdout, result.stdout


@pytest.mark.slow
def test_amtool_check_config_is_clean_once_pointed_at_a_test(rendered: Path) -> None:
    text = rendered.read_text()
    assert "https://mail.example.com/webhook?token=a&b=c" in text
    result = amtool("check-config", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    for found in ("SUCCESS", "2 inhibit rules", "5 receivers", "1 templates"):
        assert found in result.stdout, result.stdout


@pytest.mark.slow
def test_amtool_check_config_catches_a_broken_template(tmp_path: Path, rendered: Path) -> None:
    """The check above parses prometheus/alertmanager/*.tmpl: a broken template fails it."""
    (tmp_path / "broken.tmpl").write_text('{{ define "loom.slack.title" }}{{ .Status \n')
    copy = tmp_path / "alertmanager.yml"
    config = yaml.safe_load(rendered.read_text())
    config["templates"] = [str(tmp_path / "*.tmpl")]
    copy.write_text(yaml.safe_dump(config))
    result = amtool("check-config", str(copy))
    assert result.returncode != 0 and "unclosed action" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("labels, receiver", ROUTE_CASES,
                         ids=[" ".join(f"{k}={v}" for k, v in labels.items()) for labels, _ in ROUTE_CASES])
def test_amtool_routes(rendered: Path, labels: dict[str, str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={rendered}", f"--verify.receivers={receiver}",
                    *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


@pytest.mark.slow
def test_a_wrong_route_expectation_fails(rendered: Path) -> None:
    """--verify.receivers is what the cases above rely on: it does fail on a mismatch."""
    result = amtool("config", "routes", "test", f"--config.file={rendered}", "--verify.receivers=loom-warning",
                    "severity=critical")
    assert result.returncode != 0


def test_every_route_of_the_tree_has_a_case() -> None:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    receivers, pending = set(), [config["route"]]
    while pending:
        route = pending.pop()
        receivers.add(route["receiver"])
        pending.extend(route.get("routes", []))
    assert receivers == {receiver for _, receiver in ROUTE_CASES}
    assert receivers == {r["name"] for r in config["receivers"]}                   # no receiver unused


# the security receivers' alerts among the rules: their rules label them with the service
SECURITY_ALERTS = {"LoomAuthFailureSpike": "auth", "LoomMFAAnomaly": "mfa"}


def _committed_alert_rules() -> list[dict[str, Any]]:
    return [rule for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.mark.slow
def test_every_committed_alert_routes_by_its_severity_and_security_alerts_to_security(rendered: Path) -> None:
    """The rules and the routing tree agree: each alert's own labels (those the rule sets; a probe
    alert adds its target's labels on top) reach the receiver its severity promises."""
    rules = _committed_alert_rules()
    assert {rule["alert"] for rule in rules} >= set(SECURITY_ALERTS)
    for rule in rules:
        labels = {"alertname": rule["alert"], **rule["labels"]}
        severity = labels["severity"]
        security = "security-" if rule["alert"] in SECURITY_ALERTS else ""
        expected = "loom-webhook" if severity == "info" else f"loom-{security}{severity}"
        result = amtool("config", "routes", "test", f"--config.file={rendered}", f"--verify.receivers={expected}",
                        *(f"{k}={v}" for k, v in labels.items()))
        assert result.returncode == 0, (f"{rule['alert']} {labels} routes to {result.stdout.strip()}, not {expected}"
                                        + (f" (its rule needs the label service={SECURITY_ALERTS[rule['alert']]})"
                                           if security else ""))


# ---- against a running Alertmanager -----------------------------------------------------------

def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus would post it, with annotations like our rules' and an hour to live."""
    ends = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    return {"labels": {"alertname": name, "severity": severity, **labels}, "endsAt": ends,
            "annotations": {"summary": f"{name} summary", "description": f"{name} description",
                            "runbook_url": f"https://example.invalid/runbooks.md#{name.lower()}"}}


def _names(alerts: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    return {(a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("target", "")) for a in alerts}


@pytest.fixture
def live(tmp_path: Path):
    """A receiver standing in for Slack, the e-mail webhook and the generic webhook, and an
    Alertmanager running the shipped config (timings shortened) that sends to it."""
    with WebhookReceiver() as receiver:
        config = with_short_timings(render_shipped_config(tmp_path, receiver_secrets(receiver.url)))
        manager = AlertmanagerProcess(tmp_path, config)
        try:
            yield manager, receiver
        finally:
            manager.stop()


@pytest.mark.slow
def test_each_severity_reaches_its_integrations(live) -> None:
    manager, receiver = live
    manager.post_alerts([
        _alert("LoomProbeDown", "critical", target="web", service="web"),
        _alert("LoomAuthFailureSpike", "critical", service="auth"),
        _alert("LoomProbeHighLatency", "warning", target="api", service="api"),
        _alert("LoomSomethingToNote", "info"),
    ])
    everything = {("LoomProbeDown", "critical", "web"), ("LoomAuthFailureSpike", "critical", ""),
                  ("LoomProbeHighLatency", "warning", "api"), ("LoomSomethingToNote", "info", "")}
    wait_until(lambda: _names(receiver.alerts("/webhook")) == everything, 20,
               what=f"every alert at the generic webhook; got {receiver.posts}")
    wait_until(lambda: len(receiver.received("/slack")) == 3 and len(receiver.received("/email")) == 2, 10,
               what=f"Slack and e-mail notifications; got {receiver.posts}")
    time.sleep(1.5)                     # one group_interval: anything misrouted would have come by now
    assert _names(receiver.alerts("/email")) == {("LoomProbeDown", "critical", "web"),
                                                 ("LoomAuthFailureSpike", "critical", "")}
    slack = {body["attachments"][0]["title"]: body for body in receiver.received("/slack")}
    assert set(slack) == {"[FIRING:1] LoomProbeDown on web (critical)",
                          ":lock: [FIRING:1] LoomAuthFailureSpike (critical)",
                          "[FIRING:1] LoomProbeHighLatency on api (warning)"}, list(slack)
    assert slack[":lock: [FIRING:1] LoomAuthFailureSpike (critical)"]["channel"] == "#loom-security"
    down = slack["[FIRING:1] LoomProbeDown on web (critical)"]
    assert down["channel"] == "#loom-alerts"
    text = down["attachments"][0]["text"]
    assert "*LoomProbeDown summary*" in text and "LoomProbeDown description" in text
    assert "Runbook: https://example.invalid/runbooks.md#loomprobedown" in text and "`target=web`" in text
    assert len(receiver.posts) == 4 + 3 + 2                # one notification per group and integration
    # each webhook authenticates with the token Alertmanager read from its secret file; Slack sends none
    tokens = {path: {auth for p, auth in receiver.authorizations if p == path} for path in ("/email", "/webhook")}
    assert tokens == {"/email": {f"Bearer {TEST_TOKENS['ALERT_EMAIL_WEBHOOK']}"},
                      "/webhook": {f"Bearer {TEST_TOKENS['ALERT_WEBHOOK_URL']}"}}
    assert {auth for p, auth in receiver.authorizations if p == "/slack"} == {None}


@pytest.mark.slow
def test_inhibitions_down_over_latency_and_critical_over_warning(live) -> None:
    manager, receiver = live
    manager.post_alerts([
        _alert("LoomProbeDown", "critical", target="web"),
        _alert("LoomProbeHighLatency", "warning", target="web"),         # inhibited: web is down
        _alert("LoomProbeHighLatency", "warning", target="api"),         # api is up: stays
        _alert("LoomTLSCertificateExpiring", "critical", target="web"),
        _alert("LoomTLSCertificateExpiring", "warning", target="web"),   # inhibited by its critical
        _alert("LoomTLSCertificateExpiring", "warning", target="api"),   # another target: stays
        _alert("LoomAuthFailureSpike", "critical"),
        _alert("LoomAuthFailureSpike", "warning"),                       # inhibited (no target on either)
        _alert("LoomEngagementDrop", "warning"),                         # another alertname: stays
    ])
    inhibited = {("LoomProbeHighLatency", "warning", "web"), ("LoomTLSCertificateExpiring", "warning", "web"),
                 ("LoomAuthFailureSpike", "warning", "")}

    def states() -> dict[tuple[str, ...], dict[str, Any]] | None:
        alerts = manager.alerts()
        by_key = {next(iter(_names([a]))): a for a in alerts}
        settled = len(alerts) == 9 and all(by_key[k]["status"]["state"] == "suppressed" for k in inhibited)
        return by_key if settled else None

    by_key = wait_until(states, 15, what="the inhibitions applied")
    fingerprint = {key: alert["fingerprint"] for key, alert in by_key.items()}
    assert by_key[("LoomProbeHighLatency", "warning", "web")]["status"]["inhibitedBy"] == \
        [fingerprint[("LoomProbeDown", "critical", "web")]]
    assert by_key[("LoomTLSCertificateExpiring", "warning", "web")]["status"]["inhibitedBy"] == \
        [fingerprint[("LoomTLSCertificateExpiring", "critical", "web")]]
    assert by_key[("LoomAuthFailureSpike", "warning", "")]["status"]["inhibitedBy"] == \
        [fingerprint[("LoomAuthFailureSpike", "critical", "")]]
    active = set(by_key) - inhibited
    assert {key for key in active if by_key[key]["status"]["state"] == "active"} == active

    wait_until(lambda: _names(receiver.alerts("/webhook")) == active, 20,
               what=f"the uninhibited alerts at the webhook; got {receiver.posts}")
    time.sleep(1.5)                     # one group_interval more: an inhibited one would have come by now
    assert _names(receiver.alerts()) & inhibited == set()


# ---- the shipped prometheus.yml -----------------------------------------------------------------

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.mark.slow
@pytest.mark.skipif(not installed(PROMTOOL), reason="promtool comes with Debian's prometheus")
def test_the_shipped_prometheus_config_checks_and_wires_agent_rules_and_alertmanager() -> None:
    path = ROOT / "prometheus" / "prometheus.yml"
    result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["loom-agent"]["static_configs"] == [{"targets": ["agent:9464"]}]
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    # the rule files it loads are the committed ones, and promtool checked each of them above
    rule_files = sorted(p for pattern in config["rule_files"] for p in path.parent.glob(pattern))
    assert rule_files and rule_files == sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    assert f"SUCCESS: {len(rule_files)} rule files found" in result.stdout, result.stdout
