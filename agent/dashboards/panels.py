"""Grafana panels and dashboards as small Python values, rendered to the dashboard JSON model (schema 39).

Why Python and not hand-edited JSON: about 150 panels share one datasource variable, one layout
rule and the alerting thresholds of config.yaml; written once here, every panel gets a title, a
description, a unit and `${datasource}` by construction (the constructors require them), and
tests/test_dashboards.py runs every query of the rendered JSON against a real Prometheus.

Nothing here knows a metric; the dashboard modules (uptime.py, product.py, ...) do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE_UID = "loom-prometheus"          # the provisioned datasource (grafana/provisioning/)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
GRID_WIDTH = 24

Steps = list[tuple[str, float | None]]      # (color, from value); the first is the base (None)


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target. `instant` for stats and tables that show the value now; `fmt` is Grafana's
    format (time_series, table, heatmap)."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"


def q(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series") -> Query:
    return Query(expr, legend, instant, fmt)


@dataclass(slots=True)
class Panel:
    type: str
    title: str
    description: str
    unit: str
    queries: list[Query]
    width: int = 8
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)     # merged into fieldConfig.defaults
    overrides: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.title or not self.description or not self.unit or not self.queries:
            raise ValueError(f"panel {self.title!r}: title, description, unit and a query are required")

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        targets = []
        for index, query in enumerate(self.queries):
            target: dict[str, Any] = {"datasource": DATASOURCE, "refId": chr(ord("A") + index), "expr": query.expr,
                                      "legendFormat": query.legend or "__auto", "range": not query.instant,
                                      "instant": query.instant, "format": query.fmt, "editorMode": "code"}
            targets.append(target)
        defaults = {"unit": self.unit, "color": {"mode": "palette-classic"}, "mappings": [],
                    "thresholds": thresholds([("green", None)])}
        defaults.update(self.defaults)
        panel = {"id": panel_id, "type": self.type, "title": self.title, "description": self.description,
                 "datasource": DATASOURCE, "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
                 "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
                 "options": self.options, "targets": targets}
        if self.transformations:
            panel["transformations"] = self.transformations
        return panel


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: list[Panel]


def thresholds(steps: Steps) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def _reduce(calc: str = "lastNotNull") -> dict[str, Any]:
    return {"calcs": [calc], "fields": "", "values": False}


def _legend(placement: str = "bottom") -> dict[str, Any]:
    return {"displayMode": "list", "placement": placement, "showLegend": True, "calcs": []}


# --- panel constructors ---------------------------------------------------------------------------

def timeseries(title: str, description: str, unit: str, *queries: Query, width: int = 12, height: int = 8,
               stack: bool = False, bars: bool = False, threshold_line: Steps | None = None,
               minimum: float | None = None, maximum: float | None = None,
               no_value: str | None = None) -> Panel:
    """A graph. `threshold_line` draws the alerting threshold dashed on the graph."""
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 60 if bars else 10,
              "showPoints": "never", "spanNulls": False, "axisSoftMin": 0,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"},
              "thresholdsStyle": {"mode": "dashed" if threshold_line else "off"}}
    defaults: dict[str, Any] = {"custom": custom}
    if threshold_line:
        defaults["thresholds"] = thresholds(threshold_line)
    _bounds(defaults, minimum, maximum, no_value)
    return Panel("timeseries", title, description, unit, list(queries), width, height,
                 {"legend": _legend(), "tooltip": {"mode": "multi", "sort": "desc"}}, defaults)


def stat(title: str, description: str, unit: str, *queries: Query, width: int = 6, height: int = 5,
         steps: Steps | None = None, mappings: list[dict[str, Any]] | None = None, graph: bool = True,
         decimals: int | None = None, text: str = "auto", no_value: str | None = None,
         calc: str = "lastNotNull") -> Panel:
    """One big number per series; colored by `steps` when given."""
    defaults: dict[str, Any] = {"color": {"mode": "thresholds"}, "thresholds": thresholds(steps or [("blue", None)])}
    if mappings:
        defaults["mappings"] = mappings
    if decimals is not None:
        defaults["decimals"] = decimals
    _bounds(defaults, None, None, no_value)
    options = {"reduceOptions": _reduce(calc), "colorMode": "value", "graphMode": "area" if graph else "none",
               "justifyMode": "auto", "orientation": "auto", "textMode": text, "wideLayout": True}
    return Panel("stat", title, description, unit, list(queries), width, height, options, defaults)


def gauge(title: str, description: str, unit: str, *queries: Query, steps: Steps, minimum: float = 0,
          maximum: float = 1, width: int = 6, height: int = 6) -> Panel:
    defaults: dict[str, Any] = {"color": {"mode": "thresholds"}, "thresholds": thresholds(steps)}
    _bounds(defaults, minimum, maximum, None)
    options = {"reduceOptions": _reduce(), "showThresholdMarkers": True, "showThresholdLabels": False}
    return Panel("gauge", title, description, unit, list(queries), width, height, options, defaults)


def bars(title: str, description: str, unit: str, *queries: Query, width: int = 12, height: int = 8,
         steps: Steps | None = None, minimum: float | None = 0, maximum: float | None = None) -> Panel:
    """A horizontal bar gauge: one bar per series (top-N lists, funnels)."""
    defaults: dict[str, Any] = {"color": {"mode": "thresholds" if steps else "continuous-BlYlRd"}}
    if steps:
        defaults["thresholds"] = thresholds(steps)
    _bounds(defaults, minimum, maximum, None)
    options = {"reduceOptions": _reduce(), "displayMode": "gradient", "orientation": "horizontal",
               "showUnfilled": True, "valueMode": "color", "namePlacement": "auto", "sizing": "auto"}
    return Panel("bargauge", title, description, unit, list(queries), width, height, options, defaults)


def pie(title: str, description: str, unit: str, *queries: Query, width: int = 8, height: int = 8) -> Panel:
    options = {"reduceOptions": _reduce(), "pieType": "donut", "legend": {**_legend("right"), "values": ["percent"]},
               "tooltip": {"mode": "single", "sort": "none"}, "displayLabels": []}
    return Panel("piechart", title, description, unit, list(queries), width, height, options)


def state_timeline(title: str, description: str, unit: str, *queries: Query, mappings: list[dict[str, Any]],
                   steps: Steps, width: int = 24, height: int = 8) -> Panel:
    defaults = {"color": {"mode": "thresholds"}, "thresholds": thresholds(steps), "mappings": mappings,
                "custom": {"fillOpacity": 80, "lineWidth": 0}}
    options = {"mergeValues": True, "showValue": "never", "alignValue": "left", "rowHeight": 0.9,
               "legend": _legend(), "tooltip": {"mode": "single", "sort": "none"}}
    return Panel("state-timeline", title, description, unit, list(queries), width, height, options, defaults)


def heatmap(title: str, description: str, unit: str, query: Query, width: int = 12, height: int = 8) -> Panel:
    """Buckets of a histogram over time (`query` sums increase() by le, format heatmap)."""
    options = {"calculate": False, "cellGap": 1, "yAxis": {"unit": unit, "axisPlacement": "left"},
               "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange", "exponent": 0.5,
                         "steps": 64, "reverse": False},
               "rowsFrame": {"layout": "auto"}, "tooltip": {"mode": "single", "yHistogram": False},
               "legend": {"show": True}, "exemplars": {"color": "rgba(255,0,255,0.7)"}}
    return Panel("heatmap", title, description, unit, [query], width, height, options)


def table(title: str, description: str, unit: str, *queries: Query, columns: dict[str, str],
          width: int = 24, height: int = 8, column_units: dict[str, str] | None = None,
          column_steps: dict[str, Steps] | None = None) -> Panel:
    """Instant queries merged into one row per label set. `columns` renames `Value #A`... and labels
    (and hides every field not named); `column_units` and `column_steps` set a column's unit and colors."""
    transformations = [{"id": "merge", "options": {}},
                       {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": columns,
                                                      "indexByName": {name: i for i, name in enumerate(columns)}}},
                       {"id": "filterFieldsByName", "options": {"include": {"names": list(columns.values())}}}]
    overrides = []
    for column, column_unit in (column_units or {}).items():
        props: list[dict[str, Any]] = [{"id": "unit", "value": column_unit}]
        steps = (column_steps or {}).get(column)
        if steps:
            props += [{"id": "thresholds", "value": thresholds(steps)},
                      {"id": "custom.cellOptions", "value": {"type": "color-text"}}]
        overrides.append({"matcher": {"id": "byName", "options": column}, "properties": props})
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return Panel("table", title, description, unit, list(queries), width, height, options,
                 {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}}, overrides, transformations)


def _bounds(defaults: dict[str, Any], minimum: float | None, maximum: float | None, no_value: str | None) -> None:
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if no_value is not None:
        defaults["noValue"] = no_value


def value_map(*pairs: tuple[str, str, str]) -> list[dict[str, Any]]:
    """(value, text, color) -> Grafana value mappings, e.g. ("1", "UP", "green")."""
    return [{"type": "value", "options": {value: {"text": text, "color": color, "index": i}}}
            for i, (value, text, color) in enumerate(pairs)]


# --- variables and the dashboard ----------------------------------------------------------------

def datasource_variable() -> dict[str, Any]:
    """`$datasource`: any Prometheus datasource, the provisioned `loom-prometheus` by default."""
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {"selected": True, "text": "Prometheus", "value": DATASOURCE_UID},
            "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": "",
            "skipUrlSync": False}


def query_variable(name: str, label: str, definition: str, description: str) -> dict[str, Any]:
    """A multi-value label variable with All (= `.*`, so selectors read `label=~"$name"`)."""
    return {"name": name, "label": label, "description": description, "type": "query",
            "datasource": DATASOURCE, "definition": definition, "query": definition,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0, "includeAll": True, "allValue": ".*", "multi": True, "options": [], "refresh": 2,
            "regex": "", "skipUrlSync": False, "sort": 1}


def _layout(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows stacked top to bottom; panels flow left to right and wrap at the grid width."""
    out: list[dict[str, Any]] = []
    y, panel_id = 0, 1
    for row in rows:
        out.append({"id": panel_id, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                    "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        panel_id, y = panel_id + 1, y + 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            out.append(panel.to_json(panel_id, x, y))
            panel_id, x, line_height = panel_id + 1, x + panel.width, max(line_height, panel.height)
        y += line_height
    return out


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]], rows: list[Row],
              tags: tuple[str, ...] = (), time_from: str = "now-1h") -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["loom", *tags],
        "editable": True, "graphTooltip": 1, "liveNow": False, "fiscalYearStartMonth": 0, "weekStart": "",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "timezone": "browser", "refresh": "30s",
        "time": {"from": time_from, "to": "now"}, "timepicker": {},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "Loom dashboards", "type": "dashboards", "tags": ["loom"], "asDropdown": True,
                   "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": _layout(rows),
    }
