"""docs/alerting.md is rendered from the rule source: the committed page equals a fresh render, every
alert of render_rules is on it with its severity, `for`, threshold and config key, the numbers move
with the thresholds, its links resolve, and its Routing section says what Alertmanager really does
(the route walk is checked against `amtool config routes test`)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.rules.alerting_doc import (DETECTOR_ALERTS, DETECTOR_INTERVAL_SECONDS, REGENERATE,
                                      render_alerting_doc)
from agent.rules.detectors import DETECTORS
from agent.rules.render import (add_arguments, default_docs_path, docs_path, main_render_rules, render_rules,
                                thresholds_from_file, write_rules)
from agent.rules.routing_doc import (Matcher, build_routes, load_alertmanager, matchers_of, parse_matcher,
                                     routes_for)
from agent.rules.thresholds import (AuthFailureSpike, EngagementDrop, FunnelDrop, MfaAnomalies,
                                    NotificationFailures, PerformanceDegradation, Probes, Slo, Thresholds)
from tests.support.alerting_procs import AMTOOL, amtool, installed, render_shipped_config

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "alerting.md"
SHIPPED = load_alertmanager()


def rule_alerts(thresholds: Thresholds) -> list[dict[str, Any]]:
    return [rule for text in render_rules(thresholds).values() for group in yaml.safe_load(text)["groups"]
            for rule in group["rules"] if "alert" in rule]


def cells(line: str) -> list[str]:
    """A markdown table row's cells, `\\|` inside a cell kept as `|`."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def alert_row(doc: str, name: str, severity: str) -> list[str]:
    """(alert, severity, fires when, for, change it with) of the one row of `name` at `severity`."""
    rows = [cells(line) for line in doc.splitlines() if line.startswith(f"| [{name}](runbooks.md#")]
    found = [row for row in rows if row[1] == severity]
    assert len(found) == 1, f"{name} ({severity}): {len(found)} rows in the alert tables"
    return found[0]


def has_number(text: str, value: float) -> bool:
    """`value` as a whole token (30 is not found in 300 or 0.30)."""
    shown = f"{value:g}" if not float(value).is_integer() else str(int(value))
    return re.search(rf"(?<![\d.]){re.escape(shown)}(?!\d|\.\d)", text) is not None


# ---- fresh -----------------------------------------------------------------------------------------

def test_the_committed_page_equals_a_fresh_render_of_config_yaml() -> None:
    assert DOC.is_file(), f"docs/alerting.md is missing: run `{REGENERATE}`"
    committed = DOC.read_text(encoding="utf-8")
    fresh = render_alerting_doc(thresholds_from_file(ROOT / "config.yaml"))
    if committed != fresh:
        diff = difflib.unified_diff(committed.splitlines(), fresh.splitlines(), "docs/alerting.md (committed)",
                                    "docs/alerting.md (rendered)", lineterm="", n=1)
        pytest.fail(f"docs/alerting.md is stale: run `{REGENERATE}`\n" + "\n".join(list(diff)[:40]))


def test_the_render_is_deterministic() -> None:
    assert render_alerting_doc(Thresholds()) == render_alerting_doc(Thresholds())


# ---- every alert, with its severity, for, threshold and key ----------------------------------------

def test_every_alert_of_the_rules_has_its_row_with_for_threshold_and_config_key() -> None:
    doc = render_alerting_doc(Thresholds())
    alerts = rule_alerts(Thresholds())
    assert len(alerts) == 27          # 18 alert names, 9 of them at two severities
    for rule in alerts:
        name, severity = rule["alert"], rule["labels"]["severity"]
        _, _, when, for_, key = alert_row(doc, name, severity)
        assert for_ == rule["for"], f"{name} ({severity}): `for` {for_} on the page, {rule['for']} in the rule"
        # every non-zero number the rule compares against is on the row, as itself or as a percentage
        for constant in re.findall(r"(?:>=|<=|==|>|<)\s*(\d+(?:\.\d+)?)", rule["expr"]):
            value = float(constant)
            if value:
                assert has_number(when, value) or f"{value * 100:g}%" in when, (name, severity, constant, when)
        assert key.startswith("`alerting.") or key.startswith("not configurable"), (name, key)
    rows = [line for line in doc.splitlines() if re.match(r"\| \[Loom\w+\]\(runbooks\.md#", line)]
    assert len(rows) == len(alerts)                     # no row for an alert that does not exist


def test_the_threshold_check_above_catches_a_wrong_number() -> None:
    assert has_number("10 or more login attempts failed", 10)
    assert not has_number("100 or more login attempts failed", 10)
    assert not has_number("0.10% of probes", 10) and not has_number("1.0 s", 1.5)


def test_every_config_key_named_on_the_page_exists() -> None:
    doc = render_alerting_doc(Thresholds())
    blocks = {f.name: {g.name for g in dataclasses.fields(f.default_factory())}  # type: ignore[misc]
              for f in dataclasses.fields(Thresholds)}
    keys = re.findall(r"`alerting\.(\w+)(?:\.(\w+))?`( \(also [^)]*\))?", doc)
    assert len(keys) > 20
    for block, field, also in keys:
        assert block in blocks, block
        for name in ([field] if field else []) + re.findall(r"`(\w+)`", also):
            assert name in blocks[block], f"alerting.{block}.{name} is not a config key"


UNUSUAL = Thresholds(
    engagement_drop=EngagementDrop(window_minutes=25, drop_threshold_percent=35, min_baseline=17),
    auth_failure_spike=AuthFailureSpike(window_minutes=40, spike_threshold=7),
    mfa_anomalies=MfaAnomalies(window_minutes=20, failure_rate_percent=45.5, min_attempts=13),
    notification_failures=NotificationFailures(window_minutes=50, failure_rate_percent=12.5, min_attempts=23),
    performance_degradation=PerformanceDegradation(window_minutes=35, slow_request_ms=2500, slow_percent=15,
                                                   min_requests=33),
    funnel_drop=FunnelDrop(window_minutes=90, drop_threshold_percent=60, min_baseline=11),
    probes=Probes(down_for_seconds=45, latency_threshold_seconds=2.5, latency_for_seconds=600,
                  cert_warning_days=21, cert_critical_days=5),
    slo=Slo(uptime_objective=0.995),
)
# (alert, severity) -> what its row must say with UNUSUAL: (`for`, [texts in "fires when"])
EXPECTED = {
    ("LoomEngagementDrop", "warning"): ("10m", ["25m", "35%", "at least 17"]),
    ("LoomEngagementDrop", "critical"): ("10m", ["25m", "70%", "at least 17"]),
    ("LoomAuthFailureSpike", "warning"): ("1m", ["7 or more", "40m"]),
    ("LoomAuthFailureSpike", "critical"): ("1m", ["14 or more", "40m"]),
    ("LoomMFAAnomaly", "warning"): ("5m", ["45.5%", "20m", "at least 13"]),
    ("LoomMFAAnomaly", "critical"): ("5m", ["91%", "20m", "at least 13"]),
    ("LoomNotificationDeliveryFailures", "warning"): ("5m", ["12.5%", "50m", "at least 23"]),
    ("LoomNotificationDeliveryFailures", "critical"): ("5m", ["25%", "50m", "at least 23"]),
    ("LoomPerformanceDegradation", "warning"): ("5m", ["15%", "2500 ms", "35m", "at least 33"]),
    ("LoomPerformanceDegradation", "critical"): ("5m", ["30%", "2500 ms", "35m", "at least 33"]),
    ("LoomSignupFunnelDrop", "warning"): ("10m", ["60%", "1h30m", "at least 11"]),
    # twice a 60% drop cannot happen: the page says so instead of promising a critical level
    ("LoomSignupFunnelDrop", "critical"): ("10m", ["never", "120%", "50 or below"]),
    ("LoomProbeDown", "critical"): ("45s", ["probe_success"]),
    ("LoomProbeHighLatency", "warning"): ("10m", ["2.5 s"]),
    ("LoomTLSCertificateExpiring", "warning"): ("15m", ["21 days"]),
    ("LoomTLSCertificateExpiring", "critical"): ("15m", ["5 days"]),
    ("LoomUptimeSLOBurnRate", "critical"): ("2m", ["7.2%", "1h and 5m", "3%", "6h and 30m", "99.5%", "0.5%"]),
    ("LoomUptimeSLOBurnRate", "warning"): ("15m", ["1.5%", "1d and 2h", "0.5%", "3d and 6h", "99.5%"]),
}


def test_the_page_follows_the_thresholds() -> None:
    doc = render_alerting_doc(UNUSUAL)
    for (name, severity), (for_, texts) in EXPECTED.items():
        _, _, when, shown_for, _ = alert_row(doc, name, severity)
        assert shown_for == for_, (name, severity)
        for text in texts:
            assert text in when, f"{name} ({severity}): {text!r} not in {when!r}"
    assert "spike_threshold: 7}" in doc                         # the example of "Changing a threshold"
    assert "60% or more" not in alert_row(doc, "LoomSignupFunnelDrop", "critical")[2]


def test_the_detectors_table_names_every_detector_and_an_existing_alert() -> None:
    prometheus_only = {"probes", "slo", "release_health", "cron_monitors"}      # blocks no detector reads
    assert set(DETECTOR_ALERTS) == set(DETECTORS) == {f.name for f in dataclasses.fields(Thresholds)} - prometheus_only
    names = {rule["alert"] for rule in rule_alerts(Thresholds())}
    assert {alert for _, alert in DETECTOR_ALERTS.values()} <= names
    from agent.rules.anomaly_metrics import EVALUATION_INTERVAL_SECONDS
    assert DETECTOR_INTERVAL_SECONDS == EVALUATION_INTERVAL_SECONDS


# ---- links ------------------------------------------------------------------------------------------

def github_anchors(markdown: str) -> set[str]:
    """GitHub's anchor of each heading: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


def test_every_link_resolves_runbook_sections_included() -> None:
    doc = DOC.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", doc)
    assert sum(link.startswith("runbooks.md#") for link in links) >= 20
    for link in links:
        assert "://" not in link, link
        target, _, anchor = link.partition("#")
        path = (DOC.parent / target) if target else DOC
        assert path.exists(), f"{link}: {path} does not exist"
        if anchor:
            assert anchor in github_anchors(path.read_text(encoding="utf-8")), f"{link}: no such section"


def test_the_anchor_check_catches_a_missing_runbook_section() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    assert "loomprobedown" in github_anchors(runbooks)
    assert "loomprobedownn" not in github_anchors(runbooks)


# ---- routing ----------------------------------------------------------------------------------------

def test_the_routing_section_names_the_shipped_receivers_routes_and_inhibitions() -> None:
    doc = DOC.read_text(encoding="utf-8")
    routing = doc[doc.index("## Routing"):doc.index("## Changing a threshold")]
    receivers = {r["name"] for r in SHIPPED["receivers"]}
    assert set(re.findall(r"^\| `([\w-]+)` \|", routing, flags=re.MULTILINE)) == receivers
    named = set(re.findall(r"\| `(loom-[\w-]+)` \|", routing))
    assert named <= receivers
    pending, matchers = [SHIPPED["route"]], set()
    while pending:
        route = pending.pop()
        matchers |= {str(m) for m in matchers_of(route)}
        pending.extend(route.get("routes", []))
    for rule in SHIPPED["inhibit_rules"]:
        matchers |= {str(m) for side in ("source_", "target_") for m in matchers_of(rule, side)}
    shown = set(re.findall(r'`(\w+(?:=~|!~|!=|=)"[^"]*")`', routing.replace("\\|", "|")))
    assert shown == matchers


def test_the_routing_section_follows_the_alertmanager_config() -> None:
    config = copy.deepcopy(SHIPPED)
    config["route"]["routes"].insert(0, {"matchers": ['alertname="LoomAgentDown"'], "receiver": "ops-pager",
                                         "repeat_interval": "15m"})
    config["receivers"].append({"name": "ops-pager", "webhook_configs": [{"url_file": "/run/secrets/PAGER"}]})
    config["inhibit_rules"] = []
    routing = render_alerting_doc(Thresholds(), alertmanager=config).split("## Routing")[1]
    assert '| `alertname="LoomAgentDown"` | `ops-pager` | 30s / 5m / 15m | LoomAgentDown (critical) |' in routing
    assert "| `ops-pager` | webhook (URL from file `/run/secrets/PAGER`) |" in routing
    assert ("| `loom-webhook` | webhook (address in the file, bearer token from file "
            "`/etc/alertmanager/secrets/ALERT_WEBHOOK_TOKEN`) |") in routing
    assert "LoomProbeHighLatency" not in routing.split("### Inhibitions")[1]


def test_matchers_follow_alertmanager_semantics() -> None:
    assert parse_matcher('service=~"auth|mfa"') == Matcher("service", "=~", "auth|mfa")
    assert parse_matcher("severity = critical") == Matcher("severity", "=", "critical")
    assert parse_matcher('a!="x \\"y\\""').value == 'x "y"'
    assert parse_matcher('service=~"auth|mfa"').matches({"service": "mfa"})
    assert not parse_matcher('service=~"auth|mfa"').matches({"service": "authentication"})   # anchored
    assert parse_matcher('service!~"auth"').matches({})                 # an absent label is ""
    assert parse_matcher('team=""').matches({}) and not parse_matcher('team!=""').matches({})
    assert matchers_of({"match": {"a": "1"}, "match_re": {"b": "x.*"}}) == [Matcher("a", "=", "1"),
                                                                            Matcher("b", "=~", "x.*")]
    with pytest.raises(ValueError):
        parse_matcher("not a matcher")


def test_the_walk_stops_at_the_first_match_unless_continue() -> None:
    config = {"route": {"receiver": "root", "routes": [
        {"matchers": ['team="a"'], "receiver": "first", "continue": True},
        {"matchers": ['team=~"a|b"'], "receiver": "second"},
        {"matchers": ['team="a"'], "receiver": "third"}]}}
    root = build_routes(config)
    assert [r.receiver for r in routes_for(root, {"team": "a"})] == ["first", "second"]
    assert [r.receiver for r in routes_for(root, {"team": "b"})] == ["second"]
    assert [r.receiver for r in routes_for(root, {"team": "c"})] == ["root"]


@pytest.mark.slow
@pytest.mark.skipif(not installed(AMTOOL), reason="prometheus-alertmanager is installed by scripts/test.sh")
def test_the_route_walk_agrees_with_amtool_for_every_alert(tmp_path: Path) -> None:
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text(render_shipped_config(tmp_path, {"SLACK_WEBHOOK_URL": "https://slack.invalid/x",
                                                         "ALERT_EMAIL_WEBHOOK": "https://mail.invalid/x",
                                                         "ALERT_WEBHOOK_URL": "https://hook.invalid/x"}))
    root = build_routes(SHIPPED)
    cases = [{"alertname": r["alert"], **r["labels"]} for r in rule_alerts(Thresholds())]
    cases += [{"alertname": "LoomProbeDown", "severity": "critical", "target": "login", "service": service}
              for service in ("auth", "mfa", "web")]
    cases += [{"alertname": "NotOurs"}, {"alertname": "Odd", "severity": "info", "service": "auth"},
              {"alertname": "Near", "severity": "warning", "service": "authentication"}]
    for labels in cases:
        result = amtool("config", "routes", "test", f"--config.file={rendered}",
                        *(f"{k}={v}" for k, v in labels.items()))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.split() == [r.receiver for r in routes_for(root, labels)], labels


# ---- the CLI writes and checks the page with the rules ---------------------------------------------

def parser_for(config: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser, default_config=str(config))
    return parser


def test_render_rules_writes_and_checks_the_page(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("alerting:\n  auth_failure_spike: {spike_threshold: 4}\n", encoding="utf-8")
    page = tmp_path / "docs" / "alerting.md"
    page.parent.mkdir()
    parser = parser_for(config)
    check = parser.parse_args(["--check", "--out", str(tmp_path), "--docs-out", str(page)])
    assert main_render_rules(check) == 1
    assert f"{page}: stale; run `{REGENERATE}`" in capsys.readouterr().err
    assert main_render_rules(parser.parse_args(["--out", str(tmp_path), "--docs-out", str(page)])) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    assert "| 4 or more login attempts failed" in page.read_text(encoding="utf-8").replace("warning | ", "")
    assert main_render_rules(check) == 0
    page.write_text("edited by hand\n", encoding="utf-8")
    assert write_rules(tmp_path, thresholds_from_file(config), check=True, docs=page) == [str(page)]
    assert main_render_rules(check) == 1


def test_the_page_goes_to_the_checkout_unless_the_rules_go_elsewhere(tmp_path: Path) -> None:
    parser = parser_for(tmp_path / "config.yaml")
    assert default_docs_path() == DOC
    assert docs_path(parser.parse_args([])) == DOC
    # a render into a scratch directory (other thresholds, say) must not rewrite the committed page
    assert docs_path(parser.parse_args(["--out", str(tmp_path)])) is None
    assert docs_path(parser.parse_args(["--out", str(tmp_path), "--docs-out", str(tmp_path / "a.md")])) == \
        tmp_path / "a.md"


def test_a_docs_out_in_a_missing_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = parser_for(ROOT / "config.yaml")
    missing = tmp_path / "nope" / "alerting.md"
    assert main_render_rules(parser.parse_args(["--out", str(tmp_path), "--docs-out", str(missing)])) == 2
    assert f"error: {missing.parent}: no such directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
