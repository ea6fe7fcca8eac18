"""Renders grafana/dashboards/*.json from agent/dashboards/ and config.yaml's `alerting:` thresholds.

The JSON files are committed (Grafana provisions them as they are); the source of truth is the
Python here plus config.yaml, as for prometheus/rules/. `python -m agent.dashboards` writes them,
`--check` and tests/test_dashboards.py fail when a committed file is not what the source renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.node import ConfigError
from agent.dashboards.agent_health import agent_health
from agent.dashboards.errors import errors_releases
from agent.dashboards.flags import feature_flags
from agent.dashboards.funnels import onboarding_funnels
from agent.dashboards.mfa import mfa_health
from agent.dashboards.notifications import notification_analytics
from agent.dashboards.product import admin_analytics, business_metrics
from agent.dashboards.realtime import realtime_connections
from agent.dashboards.services import services
from agent.dashboards.uptime import service_uptime
from agent.dashboards.web_vitals import web_vitals
from agent.rules.render import thresholds_from_file
from agent.rules.thresholds import Thresholds

REGENERATE = "python -m agent.dashboards"
EXIT_CONFIG = 2

# file name -> the dashboard it holds
DASHBOARDS: dict[str, Callable[[Thresholds], dict[str, Any]]] = {
    "service-uptime.json": service_uptime,
    "admin-analytics.json": admin_analytics,
    "business-metrics.json": business_metrics,
    "onboarding-funnels.json": onboarding_funnels,
    "mfa-health.json": mfa_health,
    "notification-analytics.json": notification_analytics,
    "realtime-connections.json": realtime_connections,
    "web-vitals.json": web_vitals,
    "errors-releases.json": errors_releases,
    "agent-health.json": agent_health,
    "feature-flags.json": feature_flags,
    "services-otel.json": services,
}


def render_dashboards(thresholds: Thresholds) -> dict[str, str]:
    """File name -> JSON text; the same thresholds always give the same bytes."""
    return {name: json.dumps(build(thresholds), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def root_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def default_dashboards_dir() -> Path:
    """grafana/dashboards/ of this source checkout."""
    return root_dir() / "grafana" / "dashboards"


def write_dashboards(directory: str | Path, thresholds: Thresholds, check: bool) -> list[str]:
    """With check: the files that are missing or differ (nothing written). Else: the files written."""
    out = []
    for name, text in render_dashboards(thresholds).items():
        path = Path(directory) / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if not check:
            path.write_text(text, encoding="utf-8")
        out.append(str(path))
    return out


def add_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", default=default_config,
                        help="configuration file whose `alerting:` block sets the thresholds drawn on the graphs")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale file")
    parser.add_argument("--out", help="the dashboards directory (default: grafana/dashboards/ of this checkout)")


def main_render_dashboards(args: argparse.Namespace) -> int:
    """0 when written (or fresh with --check), 1 when stale, 2 on a bad config or directory."""
    try:
        thresholds = thresholds_from_file(args.config)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    directory = Path(args.out) if args.out else default_dashboards_dir()
    if not directory.is_dir():
        print(f"error: {directory}: no such directory", file=sys.stderr)
        return EXIT_CONFIG
    changed = write_dashboards(directory, thresholds, check=args.check)
    for path in changed:
        print(f"{path}: stale; run `{REGENERATE}`" if args.check else f"wrote {path}",
              file=sys.stderr if args.check else sys.stdout)
    return 1 if args.check and changed else 0
