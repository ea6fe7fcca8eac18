"""Alerting rules: thresholds read from `alerting:`, rules rendered from them and committed fresh,
clean under `promtool check rules`, every alert proven by `promtool test rules` (fires with its
labels and annotations, silent on the near miss), complete, documented in docs/runbooks.md, and
built only from metrics the agent exposes."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.rules import alerts_events
from agent.rules.render import (HEADER, REGENERATE, add_arguments, main_render_rules, render_rules,
                                thresholds_from_file, write_rules)
from agent.rules.ruledef import RUNBOOK_BASE, SEVERITIES
from agent.rules.thresholds import (AuthFailureSpike, EngagementDrop, Probes, Slo, Thresholds, parse_thresholds,
                                    severity)
from agent.config.node import Node

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus" / "rules"
PROMTOOL_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
RUNBOOKS = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# the issue's alerts and the severities each exists at
EXPECTED_ALERTS = {
    ("LoomProbeDown", "critical"), ("LoomProbeHighLatency", "warning"),
    ("LoomTLSCertificateExpiring", "warning"), ("LoomTLSCertificateExpiring", "critical"),
    ("LoomUptimeSLOBurnRate", "warning"), ("LoomUptimeSLOBurnRate", "critical"),
    *((name, s) for name in ("LoomEngagementDrop", "LoomAuthFailureSpike", "LoomMFAAnomaly",
                             "LoomNotificationDeliveryFailures", "LoomPerformanceDegradation",
                             "LoomSignupFunnelDrop") for s in ("warning", "critical")),
    ("LoomAgentDown", "critical"), ("LoomAgentExportDropping", "warning"),
    ("LoomAgentIngestRejections", "warning"), ("LoomAgentStoreFull", "warning"),
    ("LoomAgentConfigReloadFailed", "warning"),
    ("LoomReleaseCrashFreeSessionsLow", "warning"), ("LoomReleaseCrashFreeSessionsLow", "critical"),
    ("LoomCronMissedRun", "warning"), ("LoomCronRunFailed", "warning"),
}


def parse(block: Any) -> tuple[Thresholds, list[str]]:
    errors: list[str] = []
    return parse_thresholds(Node(block, "alerting", errors)), errors


def committed_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


def alerts() -> list[dict[str, Any]]:
    return [r for r in committed_rules() if "alert" in r]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert Path(PROMTOOL).exists(), "promtool is not installed: `bash scripts/test.sh` installs Debian's prometheus"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# ---- thresholds ---------------------------------------------------------------------------------

def test_defaults_are_the_documented_ones() -> None:
    t = Thresholds()
    assert (t.engagement_drop.window_minutes, t.engagement_drop.drop_threshold_percent,
            t.engagement_drop.min_baseline) == (60, 30.0, 20)
    assert (t.auth_failure_spike.window_minutes, t.auth_failure_spike.spike_threshold) == (15, 10)
    assert dataclasses.astuple(t.mfa_anomalies) == (15, 30.0, 10)
    assert dataclasses.astuple(t.notification_failures) == (15, 10.0, 20)
    assert dataclasses.astuple(t.performance_degradation) == (15, 1000.0, 10.0, 20)
    assert dataclasses.astuple(t.funnel_drop) == (60, 30.0, 10)
    assert dataclasses.astuple(t.probes) == (60, 1.0, 300, 14, 3)
    assert t.slo.uptime_objective == 0.999
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.slo.uptime_objective = 0.99  # type: ignore[misc]


@pytest.mark.parametrize("block", [None, {}, {"probes": None}])
def test_an_absent_or_empty_block_gives_the_defaults(block: Any) -> None:
    assert parse(block) == (Thresholds(), [])


def test_a_block_sets_each_detection() -> None:
    thresholds, errors = parse({
        "engagement_drop": {"window_minutes": 30, "drop_threshold_percent": 40, "min_baseline": 5},
        "auth_failure_spike": {"window_minutes": 5, "spike_threshold": 3},
        "performance_degradation": {"slow_request_ms": 2500, "slow_percent": 5.5},
        "probes": {"down_for_seconds": 0, "cert_warning_days": 30, "cert_critical_days": 7},
        "slo": {"uptime_objective": 0.995},
    })
    assert errors == []
    assert thresholds.engagement_drop == EngagementDrop(30, 40, 5)
    assert thresholds.auth_failure_spike == AuthFailureSpike(5, 3)
    assert (thresholds.performance_degradation.slow_request_ms, thresholds.performance_degradation.slow_percent,
            thresholds.performance_degradation.window_minutes) == (2500, 5.5, 15)
    assert thresholds.probes == Probes(down_for_seconds=0, cert_warning_days=30, cert_critical_days=7)
    assert thresholds.slo == Slo(0.995)
    assert thresholds.mfa_anomalies == Thresholds().mfa_anomalies


@pytest.mark.parametrize("block, message", [
    ({"auth_failure_spike": {"spike_threshold": 0}},
     "alerting.auth_failure_spike.spike_threshold: must be at least 1, got 0"),
    ({"engagement_drop": {"drop_threshold_percent": 150}},
     "alerting.engagement_drop.drop_threshold_percent: must be at most 100, got 150"),
    ({"mfa_anomalies": {"window_minutes": "15m"}}, "alerting.mfa_anomalies.window_minutes: must be an integer, got str"),
    ({"funnel_drop": {"min_baseline": True}}, "alerting.funnel_drop.min_baseline: must be an integer, got boolean"),
    ({"engagement_drop": {"windowMinutes": 60}},
     "alerting.engagement_drop.windowMinutes: use window_minutes (the documentation's windowMinutes is spelled "
     "in snake_case here)"),
    ({"probes": {"cert_critical_days": 14}}, "alerting.probes.cert_critical_days: must be less than cert_warning_days (14)"),
    ({"slo": {"uptime_objective": 1}}, "alerting.slo.uptime_objective: must be less than 1 (an objective of 1 "
                                       "leaves no error budget)"),
    ({"slo": {"uptime_objective": 99.9}}, "alerting.slo.uptime_objective: must be at most 1, got 99.9"),
    ({"release_health": {"crash_free_sessions": 1}}, "alerting.release_health.crash_free_sessions: must be less "
                                                     "than 1 (at 1 every crash alerts: there is no crash rate to compare)"),
    ({"cron_monitors": {"missed_grace_seconds": -1}},
     "alerting.cron_monitors.missed_grace_seconds: must be at least 0, got -1"),
    ({"performance_degradation": {"slow_request_ms": 750}},
     "alerting.performance_degradation.slow_request_ms: must be a bucket bound of loom_api_request_duration_seconds "
     "in ms (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000) so that Prometheus can count the slow requests, "
     "got 750"),
    ({"probes": {"down_for": 60}}, "alerting.probes.down_for: unknown key"),
    ({"anomalies": {}}, "alerting.anomalies: unknown key"),
    ({"slo": [0.999]}, "alerting.slo: must be a mapping, got list"),
    (5, "alerting: must be a mapping, got int"),
])
def test_a_bad_value_is_an_error_naming_its_key(block: Any, message: str) -> None:
    thresholds, errors = parse(block)
    assert errors == [message]


def test_every_mistake_is_reported_in_one_pass() -> None:
    _, errors = parse({"auth_failure_spike": {"spike_threshold": -1, "window_minutes": 0}, "slo": {"x": 1}})
    assert errors == ["alerting.auth_failure_spike.window_minutes: must be at least 1, got 0",
                      "alerting.auth_failure_spike.spike_threshold: must be at least 1, got -1",
                      "alerting.slo.x: unknown key"]


def test_severity_is_warning_at_the_threshold_and_critical_at_twice_it() -> None:
    assert severity(9.99, 10) is None
    assert severity(10, 10) == "warning"
    assert severity(19.99, 10) == "warning"
    assert severity(20, 10) == "critical"


# ---- rendering ----------------------------------------------------------------------------------

def test_render_is_deterministic_and_marked_as_generated() -> None:
    first, second = render_rules(Thresholds()), render_rules(Thresholds())
    assert first == second
    assert set(first) == {"loom-probes.yml", "loom-slo.yml", "loom-events.yml", "loom-agent.yml", "loom-sentry.yml"}
    for text in first.values():
        assert text.startswith(HEADER) and "edit agent/rules/ and config.yaml" in HEADER
        assert yaml.safe_load(text)["groups"]


def test_committed_rule_files_equal_a_fresh_render_of_config_yaml() -> None:
    fresh = render_rules(thresholds_from_file(ROOT / "config.yaml"))
    assert sorted(p.name for p in RULES_DIR.glob("*.yml")) == sorted(fresh)
    for name, text in fresh.items():
        committed = (RULES_DIR / name).read_text(encoding="utf-8")
        if committed != text:
            diff = difflib.unified_diff(committed.splitlines(), text.splitlines(), f"{name} (committed)",
                                        f"{name} (rendered)", lineterm="", n=1)
            pytest.fail(f"prometheus/rules/{name} is stale: run `{REGENERATE}`\n" + "\n".join(list(diff)[:40]))


def _rule(files: dict[str, str], name: str, severity_: str) -> dict[str, Any]:
    for text in files.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name and rule["labels"]["severity"] == severity_:
                    return rule
    raise AssertionError(f"no {name} at {severity_}")


def test_the_rules_follow_the_thresholds() -> None:
    files = render_rules(Thresholds(auth_failure_spike=AuthFailureSpike(window_minutes=90, spike_threshold=3),
                                    slo=Slo(0.99), probes=Probes(down_for_seconds=30)))
    assert _rule(files, "LoomAuthFailureSpike", "warning")["expr"] == "job:loom_login_failures:increase1h30m >= 3"
    assert _rule(files, "LoomAuthFailureSpike", "critical")["expr"] == "job:loom_login_failures:increase1h30m >= 6"
    assert "loom_login_attempts_total{result=\"failure\"}[1h30m]" in files["loom-events.yml"]
    assert "target:loom_probes_error_ratio:rate1h / 0.01 > 14.4" in _rule(files, "LoomUptimeSLOBurnRate", "critical")["expr"]
    assert "99% uptime objective" in _rule(files, "LoomUptimeSLOBurnRate", "warning")["annotations"]["description"]
    assert _rule(files, "LoomProbeDown", "critical")["for"] == "30s"


def test_write_rules_and_the_cli_check_then_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("alerting:\n  auth_failure_spike: {spike_threshold: 4}\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_arguments(parser, default_config=str(config))

    args = parser.parse_args(["--check", "--out", str(tmp_path)])
    assert main_render_rules(args) == 1
    assert f"loom-events.yml: stale; run `{REGENERATE}`" in capsys.readouterr().err
    assert main_render_rules(parser.parse_args(["--out", str(tmp_path)])) == 0
    assert "wrote " + str(tmp_path / "loom-probes.yml") in capsys.readouterr().out
    assert "job:loom_login_failures:increase15m >= 4" in (tmp_path / "loom-events.yml").read_text(encoding="utf-8")
    assert main_render_rules(args) == 0
    (tmp_path / "loom-slo.yml").write_text("groups: []\n", encoding="utf-8")
    thresholds = thresholds_from_file(config)
    assert write_rules(tmp_path, thresholds, check=True) == [str(tmp_path / "loom-slo.yml")]
    assert write_rules(tmp_path, thresholds, check=False) == [str(tmp_path / "loom-slo.yml")]
    assert write_rules(tmp_path, thresholds, check=True) == []


def test_the_cli_refuses_a_bad_alerting_block_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    # only the alerting block is read: an unset secret elsewhere does not stop rendering
    config.write_text("events: {api_keys: ['${UNSET_FOR_THIS_TEST}']}\nalerting:\n  slo: {uptime_objective: 2}\n",
                      encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_arguments(parser, default_config=str(config))
    assert main_render_rules(parser.parse_args(["--out", str(tmp_path)])) == 2
    assert "error: alerting.slo.uptime_objective: must be at most 1, got 2" in capsys.readouterr().err
    assert list(tmp_path.glob("*.yml")) == []
    assert main_render_rules(parser.parse_args(["--config", str(tmp_path / "absent.yaml")])) == 2
    assert "absent.yaml: cannot read" in capsys.readouterr().err


# ---- completeness, runbooks, metric names -------------------------------------------------------

def test_the_issues_alerts_exist_at_their_severities() -> None:
    assert {(a["alert"], a["labels"]["severity"]) for a in alerts()} == EXPECTED_ALERTS


def test_every_alert_has_for_severity_summary_description_and_a_runbook_section() -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOKS, re.MULTILINE))
    for a in alerts():
        name = a["alert"]
        assert re.fullmatch(r"(\d+[smhd])+", a["for"]), name
        assert a["labels"]["severity"] in SEVERITIES, name
        annotations = a["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}", name
        assert name in headings, f"docs/runbooks.md has no section `## {name}`"
    assert headings == {a["alert"] for a in alerts()}, "a runbook section names no alert"


def exposed_metrics() -> set[str]:
    """Every probe_* and loom_* name in the metric tables of README.md and docs/event-metrics.md
    (tests/test_readme_true.py and test_docs_fresh.py keep those tables true to the agent)."""
    names = set()
    for doc in (ROOT / "README.md", ROOT / "docs" / "event-metrics.md"):
        for line in doc.read_text(encoding="utf-8").splitlines():
            if line.startswith("| `"):
                names.update(re.findall(r"`((?:probe|loom)_[a-z0-9_]+)`", line.split("|")[1]))
    return names


def series_names(expr: str) -> set[str]:
    """Metric and recorded-series names in a PromQL expression (not functions, labels or values)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    tokens = {m.group(1) for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr)
              if not m.group(2)}                                  # a name before "(" is a function
    return tokens - {"and", "or", "unless", "offset", "bool"}


def test_every_series_in_an_expression_is_exposed_or_recorded() -> None:
    exposed, rules = exposed_metrics(), committed_rules()
    recorded = {r["record"] for r in rules if "record" in r}
    assert len(exposed) > 80
    unknown = []
    for rule in rules:
        for name in series_names(rule["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if name in recorded or name == "up" or name in exposed or base in exposed:
                continue
            unknown.append((rule.get("alert") or rule.get("record"), name))
    assert unknown == []


def test_the_name_check_catches_an_unknown_metric() -> None:
    assert series_names('sum by (job) (rate(loom_nope_total{le="1.0"}[5m])) / up offset 1h') == {"loom_nope_total", "up"}
    assert "loom_nope_total" not in exposed_metrics()


# ---- promtool -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_promtool_check_rules_is_clean() -> None:
    files = sorted(RULES_DIR.glob("*.yml"))
    result = promtool("check", "rules", *map(str, files))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("SUCCESS") == len(files) and "warn" not in output.lower(), output


@pytest.mark.slow
def test_promtool_unit_tests_pass() -> None:
    assert len(PROMTOOL_TESTS) == 5
    result = promtool("test", "rules", *map(str, PROMTOOL_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(PROMTOOL_TESTS)


def promtool_cases() -> list[dict[str, Any]]:
    return [case for path in PROMTOOL_TESTS for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
            for case in test.get("alert_rule_test", [])]


@pytest.mark.slow
def test_every_alert_has_a_promtool_test_that_fires_and_a_near_miss() -> None:
    fired, silent = set(), set()
    for case in promtool_cases():
        if not case.get("exp_alerts"):
            silent.add(case["alertname"])
        for expected in case.get("exp_alerts") or []:
            assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}, case
            fired.add((case["alertname"], expected["exp_labels"]["severity"]))
    assert fired == EXPECTED_ALERTS
    assert silent == {name for name, _ in EXPECTED_ALERTS}


@pytest.mark.slow
def test_the_promtool_tests_catch_a_burst_born_counter_going_unseen(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With plain increase(), a failure counter born at 12 counts 0: the auth spike test must fail."""
    monkeypatch.setattr(alerts_events, "window_increase", lambda selector, window: f"increase({selector}[{window}])")
    (tmp_path / "rules").mkdir()
    for name, text in render_rules(Thresholds()).items():
        (tmp_path / "rules" / name).write_text(text, encoding="utf-8")
    shutil.copytree(ROOT / "prometheus" / "tests", tmp_path / "tests")
    result = promtool("test", "rules", "tests/loom-events.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: LoomAuthFailureSpike, time: 7m" in result.stdout + result.stderr


def test_python_m_agent_render_rules_check_is_fresh() -> None:
    from agent.__main__ import main
    assert main(["render-rules", "--config", str(ROOT / "config.yaml"), "--check"]) == 0
