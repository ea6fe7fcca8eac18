"""Every Grafana dashboard is proven: the committed JSON is what agent/dashboards renders, it is
portable (the datasource is a variable, nothing names one Grafana instance), every panel has a
title, a description, a unit and a query; and against a real Prometheus scraping an agent that
probes the demo targets and takes the demo's traffic, every query parses and returns data unless
grafana/dashboards/EXPECTED_EMPTY.yaml says why not, and every metric a dashboard or a rule names
is one the agent exposes."""

from __future__ import annotations

import asyncio
import difflib
import json
import math
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.dashboards.panels import DATASOURCE, DATASOURCE_UID, GRID_WIDTH
from agent.dashboards.render import DASHBOARDS, REGENERATE, render_dashboards
from agent.demo.sender import Sender, Stats
from agent.demo.targets import DemoTargets
from agent.demo.traffic import Traffic
from agent.rules.render import thresholds_from_file
from tests.support.dashboard_checks import (DASHBOARD_DIR, PROMETHEUS_OWN, RULE_FILES, ROOT, applies, dashboards,
                                    expected_empty, expected_empty_queries, exposed_names, metric_names,
                                    panel_queries, panels, query_variables, recorded_names, rule_expressions,
                                    variable_promql)
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import AgentProcess, PrometheusProcess, http_get, wait_until

DOCUMENTED = {"Service Uptime", "Admin Analytics", "Business Metrics", "Onboarding and Funnels", "MFA Health",
              "Notification Analytics", "Realtime Connections", "Web Vitals", "Errors and Releases", "Agent Health",
              "Feature Flags and Experiments", "Services (OpenTelemetry)"}
TRAFFIC_SECONDS = 25
RATE = 150                      # events per second
PROBE_INTERVAL, PROBE_TIMEOUT = 2.0, 1.8
FLAP_PERIOD = 6.0               # the flapping target is down for 2.4 s of every 6
FILES = sorted(DASHBOARDS)
# Grafana's unit ids the dashboards use (packages/grafana-data/src/valueFormats/categories.ts), plus
# its custom `suffix:` units: a typo would show raw numbers
UNITS = {"none", "short", "percentunit", "s", "d", "bytes", "Bps", "cps", "cpm", "ops", "reqps"}

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None and not Path(PrometheusProcess.BINARY).exists(),
    reason="Prometheus is installed by scripts/test.sh")


# --- the committed files -------------------------------------------------------------------------

@pytest.mark.parametrize("name", FILES)
def test_committed_dashboard_equals_a_fresh_render(name: str) -> None:
    path = DASHBOARD_DIR / name
    assert path.is_file(), f"grafana/dashboards/{name} is missing: run `{REGENERATE}`"
    fresh = render_dashboards(thresholds_from_file(ROOT / "config.yaml"))[name]
    committed = path.read_text(encoding="utf-8")
    if committed != fresh:
        diff = difflib.unified_diff(committed.splitlines(), fresh.splitlines(), "committed", "rendered",
                                    lineterm="", n=1)
        pytest.fail(f"grafana/dashboards/{name} is stale: run `{REGENERATE}`\n" + "\n".join(list(diff)[:30]))


def test_every_dashboard_file_is_rendered_and_the_documented_ones_exist() -> None:
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == FILES
    titles = [d["title"] for d in dashboards().values()]
    assert set(titles) == DOCUMENTED and len(titles) == len(set(titles))
    uids = [d["uid"] for d in dashboards().values()]
    assert len(uids) == len(set(uids)) and all(0 < len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize("name", FILES)
def test_every_panel_has_a_title_description_unit_and_query(name: str) -> None:
    dashboard = dashboards()[name]
    assert dashboard["description"] and 36 <= dashboard["schemaVersion"] <= 41
    problems = []
    for panel in panels(dashboard):
        where = f"{dashboard['title']} / {panel.get('title')!r}"
        if not panel.get("title") or not panel.get("description"):
            problems.append(f"{where}: no title or description")
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        if unit not in UNITS and not unit.startswith("suffix:"):
            problems.append(f"{where}: unit {unit!r} is not one of Grafana's")
        if not panel.get("targets") or not all(t.get("expr", "").strip() for t in panel["targets"]):
            problems.append(f"{where}: no query")
    assert not problems, "\n".join(problems)


def _datasources(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


@pytest.mark.parametrize("name", FILES)
def test_nothing_is_tied_to_one_grafana(name: str) -> None:
    """The datasource is the `datasource` variable (default: the provisioned loom-prometheus UID):
    no numeric datasource id, no instance-specific uid, no dashboard id."""
    dashboard = dashboards()[name]
    assert dashboard.get("id") is None
    variable = dashboard["templating"]["list"][0]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    assert variable["current"]["value"] == DATASOURCE_UID
    annotations = [a["datasource"] for a in dashboard["annotations"]["list"]]
    for datasource in _datasources(dashboard["panels"]) :
        assert datasource == DATASOURCE, f"{name}: datasource {datasource!r}"
    for datasource in _datasources(dashboard["templating"]):
        assert datasource == DATASOURCE
    assert all(a == {"type": "grafana", "uid": "-- Grafana --"} for a in annotations)


@pytest.mark.parametrize("name", FILES)
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    dashboard = dashboards()[name]
    cells: dict[tuple[int, int], str] = {}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_uptime_dashboard_has_target_and_service_variables() -> None:
    uptime = next(d for d in dashboards().values() if d["title"] == "Service Uptime")
    names = {v["name"] for v in query_variables(uptime)}
    assert {"target", "service", "instance"} <= names
    for query in panel_queries(uptime):
        if "probe_" in query.expr or "loom_probe" in query.expr:
            assert '$target' in query.expr and '$service' in query.expr, query.panel


def test_every_query_uses_only_defined_variables() -> None:
    for dashboard in dashboards().values():
        assert panel_queries(dashboard)          # substitute() raises on an undefined variable
        for variable in query_variables(dashboard):
            variable_promql(variable, dashboard)


def test_expected_empty_entries_name_real_panels_and_give_reasons() -> None:
    listed = expected_empty()
    known = {(q.dashboard, q.panel, q.ref) for d in dashboards().values() for q in panel_queries(d)}
    variables = {(d["title"], v["name"]) for d in dashboards().values() for v in query_variables(d)}
    for entry in listed["panels"]:
        assert len(entry.get("reason", "")) > 10, entry
        assert any((entry["dashboard"], entry["panel"]) == k[:2] and entry.get("query", k[2]) == k[2] for k in known), \
            f"EXPECTED_EMPTY.yaml names no such panel or query: {entry}"
    for entry in listed["variables"]:
        assert (entry["dashboard"], entry["variable"]) in variables and len(entry["reason"]) > 10, entry
    assert all(len(entry["reason"]) > 5 for entry in listed["pending_metrics"].values())


def test_metric_names_reads_selectors_only() -> None:
    expr = ('sum by (le, target) (rate(loom_probe_duration_seconds_bucket{instance=~"$i",le="1.0"}[5m]))\n'
            '/ ignoring (rating) group_left\nfoo:bar:rate5m offset 1h > 1e3 and on (job) '
            'up{job="x"} or vector(0) * count({__name__=~"loom_app_.+"}) - time()')
    assert metric_names(expr) == {"loom_probe_duration_seconds_bucket", "foo:bar:rate5m", "up"}


# --- against a real Prometheus ---------------------------------------------------------------------

class LoopThread:
    """An asyncio loop in a thread: the demo targets and the traffic run there while the test waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Stack:
    def __init__(self, prometheus: PrometheusProcess, agent: AgentProcess, stats: Stats, api_paths: set[str]):
        self.prometheus, self.agent, self.stats, self.api_paths = prometheus, agent, stats, api_paths
        self.exposition = agent.metrics()

    def query(self, promql: str) -> tuple[str | None, list[dict[str, Any]]]:
        """(error, result) of an instant query now."""
        url = self.prometheus.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, _, body = http_get(url)
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            return f"{status}: {data.get('error', body[:200])}", []
        return None, data["data"]["result"]


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one finite value (a histogram_quantile of nothing is NaN: no data to Grafana either)."""
    for sample in result:
        value = sample.get("value", [0, "NaN"])[1]
        if math.isfinite(float(value)):
            return True
    return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboards")
    loop = LoopThread()
    servers = DemoTargets(tmp, flap_period=FLAP_PERIOD)
    receiver = OtlpReceiver("http/protobuf")
    agent = prometheus = None
    try:
        targets = loop.run(servers.start(), 20)
        agent = AgentProcess(tmp, {
            "targets": [t.config(PROBE_INTERVAL, PROBE_TIMEOUT) for t in targets],
            "telemetry": {"otlp": {"endpoint": receiver.endpoint, "metrics_interval": "2s", "timeout": "2s"}}})
        prometheus = PrometheusProcess(
            tmp, [{"job_name": "loom-agent", "static_configs": [{"targets": [f"127.0.0.1:{agent.port}"]}]}],
            rule_files=[str(path) for path in RULE_FILES])
        sender = Sender(agent.url, Traffic(seed=7), RATE)
        stats = loop.run(sender.run(TRAFFIC_SECONDS), TRAFFIC_SECONDS + 60)
        assert stats.errors == 0 and stats.events > RATE * TRAFFIC_SECONDS / 2, stats.line()
        assert not stats.refused, stats.refused
        # Prometheus has scraped everything sent, and the rules have run on it
        wait_until(lambda: float(prometheus.query("sum(loom_agent_ingest_batch_size_sum)")[0]["value"][1])
                   >= stats.events, 20, what="the last events in Prometheus")
        wait_until(lambda: prometheus.query("count(target:loom_probes_error_ratio:rate5m)"), 10, what="rules")
        paths = set(json.loads(http_get(agent.url + "/openapi.json")[2])["paths"])
        yield Stack(prometheus, agent, stats, paths)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if agent is not None:
            agent.stop()
        receiver.stop()
        loop.run(servers.stop(), 10)
        loop.close()


@pytest.mark.slow
@needs_prometheus
@pytest.mark.parametrize("name", FILES)
def test_every_panel_query_parses_and_returns_data(stack: Stack, name: str) -> None:
    dashboard = dashboards()[name]
    expected = expected_empty_queries(stack.api_paths)
    problems = []
    for query in panel_queries(dashboard):
        where = f"{query.dashboard} / {query.panel!r} [{query.ref}]"
        error, result = stack.query(query.promql)
        entry = expected.get((query.dashboard, query.panel, query.ref))
        if error:
            problems.append(f"{where}: {error}\n    {query.promql}")
        elif entry is None and not has_data(result):
            problems.append(f"{where}: no data (fix the query, or list it in EXPECTED_EMPTY.yaml with the "
                            f"reason)\n    {query.promql}")
        elif entry is not None and entry.get("strict", True) and has_data(result):
            problems.append(f"{where}: listed in EXPECTED_EMPTY.yaml ({entry['reason']}) but has data: "
                            f"remove it there")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@needs_prometheus
def test_every_template_variable_has_values(stack: Stack) -> None:
    expected = {(e["dashboard"], e["variable"]) for e in expected_empty()["variables"] if applies(e, stack.api_paths)}
    problems = []
    for dashboard in dashboards().values():
        for variable in query_variables(dashboard):
            promql, label = variable_promql(variable, dashboard)
            error, result = stack.query(promql)
            values = {sample["metric"].get(label) for sample in result} - {None, ""}
            where = f"{dashboard['title']} / ${variable['name']}"
            if error:
                problems.append(f"{where}: {error}")
            elif bool(values) == ((dashboard["title"], variable["name"]) in expected):
                problems.append(f"{where}: values {sorted(values)} against EXPECTED_EMPTY.yaml")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@needs_prometheus
def test_every_metric_a_dashboard_or_rule_names_is_exposed(stack: Stack) -> None:
    """Names in dashboards and prometheus/rules/ against the agent's real /metrics after the demo."""
    exposed = exposed_names(stack.exposition) | recorded_names() | PROMETHEUS_OWN
    pending = {name: entry for name, entry in expected_empty()["pending_metrics"].items()
               if applies(entry, stack.api_paths)}
    named: dict[str, str] = {}
    for dashboard in dashboards().values():
        for query in panel_queries(dashboard):
            named.update({metric: f"{query.dashboard} / {query.panel}" for metric in metric_names(query.expr)})
        for variable in query_variables(dashboard):
            named.update({m: f"{dashboard['title']} / ${variable['name']}"
                          for m in metric_names(variable_promql(variable, dashboard)[0])})
    for rule, expr in rule_expressions():
        named.update({metric: f"rule {rule}" for metric in metric_names(expr)})
    unknown = {metric: where for metric, where in named.items() if metric not in exposed and metric not in pending}
    assert not unknown, f"named but not exposed by the agent: {unknown}"
    stale = sorted(name for name in pending if name in exposed)
    assert not stale, f"EXPECTED_EMPTY.yaml lists {stale} as pending, but the agent exposes them: remove them"
    assert len(named) > 100
