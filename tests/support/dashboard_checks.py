"""Reading the committed Grafana dashboards for the tests: their panels and queries with Grafana's
variables substituted, the metric names a PromQL expression reads, and EXPECTED_EMPTY.yaml."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
EXPECTED_EMPTY = DASHBOARD_DIR / "EXPECTED_EMPTY.yaml"

# Grafana's built-in variables as the test runs them: windows of [1m] hold several 1 s scrapes, a
# range of 1h covers the whole (shorter) run
BUILTINS = {"$__rate_interval": "1m", "$__range_s": "3600", "$__range": "1h", "$__interval": "15s"}
# series Prometheus makes itself, not the agent
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped",
                  "scrape_samples_post_metric_relabeling", "scrape_series_added"}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str        # title
    panel: str            # title
    ref: str              # refId
    expr: str             # as committed
    promql: str           # with every variable substituted


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON, for every committed dashboard."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows only group them), rows' nested panels included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def query_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """Grafana's interpolation with every query variable at All (`.*`). Raises ValueError naming a
    variable left over (one the dashboard does not define)."""
    text = expr
    for name, value in BUILTINS.items():
        text = text.replace(name, value)
    for variable in query_variables(dashboard):
        name = variable["name"]
        text = text.replace("${" + name + "}", ".*")
        text = re.sub(r"\$" + re.escape(name) + r"\b", ".*", text)
    leftover = re.search(r"\$\{?\w+", text)
    if leftover:
        raise ValueError(f"undefined variable {leftover.group()} in {expr!r}")
    return text


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(dashboard["title"], panel["title"], target["refId"], target["expr"],
                       substitute(target["expr"], dashboard))
            for panel in panels(dashboard) for target in panel.get("targets", [])]


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def variable_promql(variable: dict[str, Any], dashboard: dict[str, Any]) -> tuple[str, str]:
    """`label_values(selector, label)` as the PromQL Grafana effectively runs: (expr, label)."""
    match = _LABEL_VALUES.match(variable["query"].strip())
    if match is None:
        raise ValueError(f"variable {variable['name']}: only label_values(selector, label) is supported")
    return f"group by ({match['label']}) ({substitute(match['selector'], dashboard)})", match["label"]


# --- metric names in PromQL --------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are neither a function or an
    aggregation (followed by `(`), nor a keyword, nor inside a label matcher, a range, a grouping
    clause or a string. A selector by `__name__` regex names no metric."""
    text = _STRING.sub('""', expr)
    text = _BRACKETS.sub("", _BRACES.sub("", text))
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end():].lstrip()
        if before.isdigit() or before == "." or after.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exposed_names(exposition: str) -> set[str]:
    """The names a Prometheus text exposition declares: its samples' names, and every family its
    `# TYPE` lines declare (a labelled counter has no sample before its first increment), with a
    histogram's or summary's _bucket, _sum and _count."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            if kind in ("histogram", "summary"):
                names.update(family + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def rule_expressions() -> list[tuple[str, str]]:
    """(rule name, expr) of every alert and recording rule in prometheus/rules/."""
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out += [(rule.get("record") or rule["alert"], rule["expr"]) for rule in group["rules"]]
    return out


def recorded_names() -> set[str]:
    return {rule["record"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "record" in rule}


# --- EXPECTED_EMPTY.yaml -------------------------------------------------------------------------

def expected_empty() -> dict[str, Any]:
    return yaml.safe_load(EXPECTED_EMPTY.read_text(encoding="utf-8"))


def applies(entry: dict[str, Any], api_paths: set[str]) -> bool:
    """An entry with `while_missing: PATH` holds only while the agent's API lacks PATH."""
    return entry.get("while_missing") not in api_paths


def expected_empty_queries(api_paths: set[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(dashboard, panel, refId) -> its entry, for every entry that applies; a panel entry without
    `query` covers every query of the panel."""
    queries: dict[tuple[str, str], list[str]] = {}
    for dashboard in dashboards().values():
        for query in panel_queries(dashboard):
            queries.setdefault((query.dashboard, query.panel), []).append(query.ref)
    out = {}
    for entry in expected_empty()["panels"]:
        if not applies(entry, api_paths):
            continue
        refs = [entry["query"]] if "query" in entry else queries.get((entry["dashboard"], entry["panel"]), [])
        for ref in refs:
            out[(entry["dashboard"], entry["panel"], ref)] = entry
    return out
