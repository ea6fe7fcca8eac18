"""Command line: `python -m agent run | check-config | version` (also installed as `loom-agent`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

from agent import __version__
from agent.config.node import ConfigError
from agent.logs import FORMATS, LEVELS, setup_logging

EXIT_CONFIG = 2
# SIGTERM budget (exit within 5 s): in-flight requests 0.5 s (aiohttp may take twice that), then
# in-flight probes 1.5 s (agent/app/root.py), the OTLP receiver's in-flight gRPC calls and HTTP requests
# 0.5 s each (agent/receiver), then the OTLP flush 1.5 s (agent/otlp/export.py)
SERVER_SHUTDOWN_SECONDS = 0.5
# a connection that has not sent a whole request line and headers within this long of connecting, or of
# its previous answer, is closed (aiohttp's keep-alive timer, which runs from the connect): the bound on
# slow headers and on idle connections. Longer than Prometheus' default 1 m scrape interval, so a
# scraper keeps its connection. Bodies have their own limits (agent/api/body.py).
KEEPALIVE_SECONDS = 75.0
DEFAULT_CONFIG = "config.yaml"
log = logging.getLogger("agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loom-agent", description="Sidecar observability agent: probes, product events, /metrics, OTLP.")
    parser.add_argument("--version", action="version", version=f"loom-agent {__version__}")
    parser.add_argument("--log-level", choices=LEVELS, default=os.environ.get("LOOM_AGENT_LOG_LEVEL", "info"),
                        help="log verbosity (env LOOM_AGENT_LOG_LEVEL; default info)")
    parser.add_argument("--log-format", choices=FORMATS, default=os.environ.get("LOOM_AGENT_LOG_FORMAT", "text"),
                        help="log line format (env LOOM_AGENT_LOG_FORMAT; default text)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the agent")
    run.add_argument("--config", default=os.environ.get("LOOM_AGENT_CONFIG", DEFAULT_CONFIG),
                     help="configuration file (env LOOM_AGENT_CONFIG; default config.yaml)")
    check = commands.add_parser("check-config", help="validate a configuration file: exit 0 if valid, 2 if not")
    check.add_argument("config", nargs="?", default=os.environ.get("LOOM_AGENT_CONFIG", DEFAULT_CONFIG))
    commands.add_parser("version", help="print the version")
    docs = commands.add_parser("render-docs", help="write docs/events.md and docs/event-metrics.md from the code")
    docs.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale file")
    docs.add_argument("--docs-dir", help="the docs directory (default: docs/ of this source checkout)")
    clean = commands.add_parser("cleanup", help="delete stored data older than its retention period, now")
    clean.add_argument("--config", default=os.environ.get("LOOM_AGENT_CONFIG", DEFAULT_CONFIG),
                       help="configuration file (env LOOM_AGENT_CONFIG; default config.yaml)")
    from agent.rules.render import add_arguments as add_render_rules_arguments
    rules = commands.add_parser("render-rules", help="write prometheus/rules/*.yml and docs/alerting.md from "
                                                     "agent/rules/, the alerting: thresholds of the config and "
                                                     "prometheus/alertmanager.yml")
    add_render_rules_arguments(rules, os.environ.get("LOOM_AGENT_CONFIG", DEFAULT_CONFIG))
    from agent.dashboards.render import add_arguments as add_render_dashboards_arguments
    dashboards = commands.add_parser("render-dashboards", help="write grafana/dashboards/*.json from "
                                                               "agent/dashboards/ and the alerting: thresholds")
    add_render_dashboards_arguments(dashboards, os.environ.get("LOOM_AGENT_CONFIG", DEFAULT_CONFIG))
    from agent.demo.cli import add_arguments as add_demo_arguments
    demo = commands.add_parser("demo", help="demo targets, an agent probing them and realistic traffic, so "
                                            "that every dashboard shows data")
    add_demo_arguments(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.command == "version":
        print(f"loom-agent {__version__}")
        return 0
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "run":
        return run(args.config)
    if args.command == "render-docs":
        return render_docs(args.docs_dir, args.check)
    if args.command == "cleanup":
        return cleanup(args.config)
    if args.command == "render-rules":
        from agent.rules.render import main_render_rules
        return main_render_rules(args)
    if args.command == "render-dashboards":
        from agent.dashboards.render import main_render_dashboards
        return main_render_dashboards(args)
    if args.command == "demo":
        from agent.demo.cli import main_demo
        return main_demo(args)
    parser.print_help()
    return EXIT_CONFIG


def cleanup(path: str) -> int:
    from agent.config.load import load_config
    from agent.store.cleanup import main_cleanup

    try:
        config = load_config(path)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return main_cleanup(config.store, config.retention)


def check_config(path: str) -> int:
    from agent.config.load import load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        print(f"{path}: {len(exc.errors)} error(s)", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: valid ({len(config.targets)} targets, {len(config.modules)} modules)")
    return 0


def render_docs(docs_dir: str | None, check: bool) -> int:
    from pathlib import Path

    from agent.docs_render import REGENERATE, default_docs_dir, stale_docs, write_docs

    directory = Path(docs_dir) if docs_dir else default_docs_dir()
    if not directory.is_dir():
        print(f"error: {directory}: no such directory", file=sys.stderr)
        return EXIT_CONFIG
    if check:
        stale = stale_docs(directory)
        for path in stale:
            print(f"{path}: stale; run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_docs(directory):
        print(f"wrote {path}")
    return 0


def run(path: str) -> int:
    import prometheus_client
    from aiohttp import web

    from agent.api.keys import RELOADER
    from agent.app.root import build_app
    from agent.config.load import load_config
    from agent.receiver.config import ListenError

    try:
        config = load_config(path)
    except ConfigError as exc:
        for error in exc.errors:
            log.error("invalid configuration: %s", error)
        return EXIT_CONFIG
    # `_created` series double the exposition for little use; Prometheus 2.x ignores them
    prometheus_client.disable_created_metrics()
    # a 1,000-event batch allocates tens of thousands of objects: with the default threshold (700)
    # young collections promote them mid-batch and full collections walk the long-lived span
    # trackers; measured in bench/ingest.py: GC fell from 12 % to 3 % of the agent's CPU
    gc.set_threshold(10_000, 20, 10)
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    app = build_app(config)

    async def on_startup(app: web.Application) -> None:
        reloader = app[RELOADER]
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reloader.reload()))
        host, port = config.listen
        log.info("loom-agent started", extra={"version": __version__, "listen": f"{host}:{port:d}",
                                              "config_file": path, "targets": len(config.targets)})

    app.on_startup.append(on_startup)
    host, port = config.listen
    try:
        web.run_app(app, host=host, port=port, loop=loop, print=None, shutdown_timeout=SERVER_SHUTDOWN_SECONDS,
                    keepalive_timeout=KEEPALIVE_SECONDS, access_log=None, handle_signals=True)
    except ListenError:
        return 1                    # the receiver's listener, logged naming otlp_receiver.*.listen
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        return 1
    log.info("loom-agent stopped")
    return 0


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (about half the CPU per probe), else asyncio's default loop."""
    if os.environ.get("LOOM_AGENT_EVENT_LOOP", "auto") != "asyncio":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
