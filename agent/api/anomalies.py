"""GET /api/anomalies: the documentation's runAnomalyDetection(), over HTTP (admin token).

Without parameters it runs every detection with the configured thresholds (and refreshes
loom_anomaly_active with the result). `detector=<name>` runs one; the documentation's camelCase
settings (`windowMinutes`, `dropThresholdPercent`, `spikeThreshold`, `failureRatePercent`,
`slowRequestMs`, `slowPercent`, `minBaseline`, `minAttempts`, `minRequests`) override the configured
value for this request only, on each selected detection that has the setting. Every bad parameter is
a 400 naming it: `{"error": ..., "errors": [{"field": "windowMinutes", "message": ...}]}`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from agent.api.auth import require_admin
from agent.api.keys import ANOMALIES
from agent.api.problems import BadRequest, json_response
from agent.rules.detectors import DETECTORS, iso_time, run_anomaly_detection, with_overrides
from agent.rules.thresholds import Thresholds
from agent.rules.windows import slow_bound_index

DETECTOR_PARAM = "detector"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/anomalies", anomalies)


async def anomalies(request: web.Request) -> web.Response:
    require_admin(request)
    monitor = request.app[ANOMALIES]
    names, overrides, errors = parse_query(request.query, monitor.windows.max_window_minutes)
    if errors:
        raise BadRequest.fields(errors)
    now = monitor.clock()
    if names is None and not overrides:
        found = monitor.evaluate(now)
    else:
        selected = list(DETECTORS) if names is None else names
        thresholds = with_overrides(monitor.thresholds, selected, overrides)
        found = run_anomaly_detection(monitor.windows, thresholds, now, only=selected)
    return json_response({"anomalies": [anomaly.to_json() for anomaly in found], "evaluatedAt": iso_time(now)})


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _settings() -> dict[str, tuple[str, type, frozenset[str]]]:
    """camelCase parameter -> (field, int or float, the detectors that have it), from the dataclasses."""
    found: dict[str, tuple[str, type, set[str]]] = {}
    for name, block in ((name, getattr(Thresholds(), name)) for name in DETECTORS):
        for f in dataclasses.fields(block):
            kind = int if f.type in ("int", int) else float
            found.setdefault(_camel(f.name), (f.name, kind, set()))[2].add(name)
    return {param: (field, kind, frozenset(owners)) for param, (field, kind, owners) in found.items()}


SETTINGS = _settings()
_PERCENT_FIELDS = frozenset({"drop_threshold_percent", "failure_rate_percent", "slow_percent"})


def parse_query(query: Mapping[str, str], max_window_minutes: int
                ) -> tuple[list[str] | None, dict[str, Any], list[dict[str, str]]]:
    """(the detectors asked for or None for all, field -> override, errors naming the parameter)."""
    errors: list[dict[str, str]] = []
    names: list[str] | None = None
    if DETECTOR_PARAM in query:
        name = query[DETECTOR_PARAM]
        if name in DETECTORS:
            names = [name]
        else:
            errors.append(_err(DETECTOR_PARAM, f"unknown detector {name!r}; one of {', '.join(DETECTORS)}"))
    overrides: dict[str, Any] = {}
    for param in query:
        if param == DETECTOR_PARAM:
            continue
        setting = SETTINGS.get(param)
        if setting is None:
            errors.append(_err(param, f"unknown parameter; known: {DETECTOR_PARAM}, {', '.join(SETTINGS)}"))
            continue
        field, kind, owners = setting
        if names is not None and not owners.intersection(names):
            errors.append(_err(param, f"not a setting of {names[0]} (it is one of {', '.join(sorted(owners))})"))
            continue
        value, message = _parse_value(field, kind, query[param], max_window_minutes)
        if message is not None:
            errors.append(_err(param, message))
        else:
            overrides[field] = value
    return names, overrides, errors


def _parse_value(field: str, kind: type, text: str, max_window_minutes: int) -> tuple[Any, str | None]:
    """The typed, bounded value of one setting, or the message saying what is wrong with it."""
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        return None, f"must be {'an integer' if kind is int else 'a number'}, got {text!r}"
    if not math.isfinite(value) or value <= 0:
        return None, f"must be greater than 0, got {text}"
    if field == "window_minutes" and value > max_window_minutes:
        return None, (f"must be at most {max_window_minutes}: the agent keeps twice its largest configured "
                      f"window of history (set a larger alerting.*.window_minutes to keep more)")
    if field in _PERCENT_FIELDS and value > 100:
        return None, f"must be at most 100, got {text}"
    if field == "slow_request_ms":
        try:
            slow_bound_index(value)
        except ValueError as exc:
            return None, str(exc)
    return value, None


def _err(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}
