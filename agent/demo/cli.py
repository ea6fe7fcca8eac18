"""`loom-agent demo`: demo targets, an agent probing them, and traffic, so every dashboard fills.

    demo                          start the demo targets and an agent (config.yaml + the targets),
                                  then send traffic to it; Ctrl-C (or --duration) stops everything
    demo --agent URL              send traffic to a running agent (and serve the demo targets, whose
                                  `targets:` entries are printed for that agent's config)
    demo --targets-only           serve the demo targets only
    demo --history 21d            first send about --history-events events spread over the last 21 days
                                  (timestamped stories of the same traffic: the analytics get a past)

Everything the demo starts it stops, by its own handles (the agent by PID), and its files live in
a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from agent.config.node import parse_duration
from agent.demo.history import MAX_DAYS, history
from agent.demo.sender import Sender, Stats
from agent.demo.targets import DemoTarget, DemoTargets
from agent.demo.traffic import Traffic

DEFAULT_CONFIG = "config.yaml"
PROBE_INTERVAL, PROBE_TIMEOUT = 5.0, 3.0
READY_SECONDS = 20.0
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", metavar="URL", help="send traffic to this running agent (default: start one)")
    parser.add_argument("--config", default=os.environ.get("LOOM_AGENT_CONFIG", DEFAULT_CONFIG),
                        help="base configuration of the agent the demo starts (default config.yaml)")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="where the started agent listens (default: env LOOM_AGENT_LISTEN, else the config's)")
    parser.add_argument("--duration", default="10m", help="how long to send traffic: 30s, 10m, 1h; 0 = until Ctrl-C")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second (default 20)")
    parser.add_argument("--api-key", default=_first_env_key(), help="ingest API key (default: the first of "
                        "env LOOM_AGENT_INGEST_API_KEYS)")
    parser.add_argument("--targets-only", action="store_true", help="serve the demo targets only, no traffic")
    parser.add_argument("--no-targets", action="store_true", help="with --agent: send traffic only")
    parser.add_argument("--targets-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="where the demo targets listen: PORT and the next three (0: any free ports)")
    parser.add_argument("--advertise", metavar="HOST", help="the host name the agent reaches the targets by "
                        "(default: the --targets-listen host)")
    parser.add_argument("--flap-period", default="2m", help="period of the flapping target (up 60%%, then down)")
    parser.add_argument("--seed", type=int, help="random seed of the traffic (default: a new one each run)")
    parser.add_argument("--history", default="0", help="before the live traffic, send events spread over this "
                        f"much of the past: 7d, 21d (at most {MAX_DAYS:g}d; default 0: none)")
    parser.add_argument("--history-events", type=int, default=20_000,
                        help="about how many events --history sends (default 20000)")


def _first_env_key() -> str | None:
    keys = [k.strip() for k in os.environ.get("LOOM_AGENT_INGEST_API_KEYS", "").split(",") if k.strip()]
    return keys[0] if keys else None


class UsageError(ValueError):
    """A bad option: the message names it; exit status 2."""


class DemoError(RuntimeError):
    """Something the demo started did not come up (the agent exited, was not ready); exit status 1."""


def _seconds(text: str, option: str) -> float | None:
    """A --duration-style value in seconds; 0 means no limit (None)."""
    if text.strip() in ("0", "0s"):
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _check(args: argparse.Namespace) -> None:
    """Every option checked before anything starts."""
    if args.rate <= 0:
        raise UsageError("--rate: must be above 0")
    if args.no_targets and not args.agent:
        raise UsageError("--no-targets needs --agent (the agent the demo starts probes the demo targets)")
    _host_port(args.targets_listen, "--targets-listen")
    if args.listen:
        _host_port(args.listen, "--listen")
    _seconds(args.flap_period, "--flap-period")
    past = _seconds(args.history, "--history")
    if past is not None and past > MAX_DAYS * 86400:
        raise UsageError(f"--history: at most {MAX_DAYS:g}d (the agent refuses events older than "
                         "events.max_past_age, 30d by default)")
    if args.history_events <= 0:
        raise UsageError("--history-events: must be above 0")


def main_demo(args: argparse.Namespace) -> int:
    """Run the demo until --duration or a signal: 0 when every request was accepted, 1 when not (or
    when the agent did not start), 2 for a bad option."""
    try:
        _check(args)
        duration = _seconds(args.duration, "--duration")
        return asyncio.run(_demo(args, duration))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


async def _demo(args: argparse.Namespace, duration: float | None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="loom-demo-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers: DemoTargets | None = None
    agent: AgentChild | None = None
    try:
        targets: list[DemoTarget] = []
        if not args.no_targets:
            host, port = _host_port(args.targets_listen, "--targets-listen")
            servers = DemoTargets(workdir, host, port, args.advertise,
                                  flap_period=_seconds(args.flap_period, "--flap-period") or 120.0)
            targets = await servers.start()
            _print_targets(targets)
        if targets and (args.targets_only or args.agent):
            print("the agent's config needs these (targets:) to probe them:\n"
                  + yaml.safe_dump([t.config(PROBE_INTERVAL, PROBE_TIMEOUT) for t in targets], sort_keys=False),
                  flush=True)
        if args.targets_only:
            print("serving the demo targets" + (f" for {args.duration}" if duration else " until Ctrl-C"), flush=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            return 0
        url = args.agent
        if url is None:
            agent = AgentChild.start(workdir, args.config, args.listen, targets)
            await agent.wait_ready()
            url = agent.url
        return await _send(url, args, duration, stop)
    finally:
        if agent is not None:
            agent.stop()
        if servers is not None:
            await servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _send(url: str, args: argparse.Namespace, duration: float | None, stop: asyncio.Event) -> int:
    sender = Sender(url, Traffic(args.seed), args.rate, args.api_key)
    tty = sys.stdout.isatty()
    past = _seconds(args.history, "--history")
    if past:
        events = history(sender.traffic, past / 86400, args.history_events)
        print(f"sending {len(events)} events of the last {args.history} to {url}", flush=True)
        sent = await sender.send_history(events)
        print(f"history: {sent.line().strip()}", flush=True)
        sender.stats.started = time.monotonic()      # --duration counts the live traffic only
    print(f"sending {args.rate:g} events/s to {url} " + (f"for {args.duration}" if duration else "until Ctrl-C"),
          flush=True)

    def progress(stats: Stats) -> None:
        print(("\r" if tty else "") + stats.line(), end="" if tty else "\n", flush=True)

    run = asyncio.ensure_future(sender.run(duration, progress, progress_every=1.0 if tty else 5.0))
    halt = asyncio.ensure_future(stop.wait())
    await asyncio.wait({run, halt}, return_when=asyncio.FIRST_COMPLETED)
    halt.cancel()
    if not run.done():
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    stats = sender.stats
    print(("\n" if tty else "") + "done: " + stats.line(), flush=True)
    for path, why in stats.refused.items():
        print(f"note: {path} refused the demo's requests, not sent: {why}", flush=True)
    if sender.api_read and not sender.extras and not stats.extras and not stats.refused:
        print("note: this agent has no /v1/errors, /v1/metrics or /v1/identify: events only", flush=True)
    return 0 if stats.errors == 0 and stats.events > 0 else 1


def _print_targets(targets: list[DemoTarget]) -> None:
    print(f"demo targets ({len(targets)}):")
    for target in targets:
        print(f"  {target.name:<22} {target.state:<9} {target.endpoint}")


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{option}: expected HOST:PORT, got {text!r}")
    return host, int(port)


class AgentChild:
    """`python -m agent run` on config.yaml plus the demo targets, in the demo's directory."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path, log: Any):
        self.proc, self.url, self.log_path, self._log = proc, url, log_path, log
        self.banner = ""

    @classmethod
    def start(cls, workdir: Path, base_config: str, listen: str | None, targets: list[DemoTarget]) -> AgentChild:
        config, token = demo_agent_config(base_config, listen, targets)
        path = workdir / "agent.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = workdir / "agent.log"
        log = open(log_path, "wb")
        env = {**os.environ, "LOOM_AGENT_LISTEN": config["listen"]}
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(path)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        host, port = _host_port(config["listen"], "listen")
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
        agent = cls(proc, url, log_path, log)
        agent.banner = (f"agent: pid {proc.pid}, {url} (config {path}, log {log_path})\n"
                        f"  status page   {url}/\n  metrics       {url}/metrics\n"
                        f"  analytics     curl -H 'Authorization: Bearer {token}' {url}/api/analytics/dashboard\n"
                        f"  analytics page {url}/analytics (sign in with the admin token above)")
        return agent

    async def wait_ready(self) -> None:
        """Until /-/ready answers 200 (the demo targets keep serving meanwhile: same event loop)."""
        deadline = time.monotonic() + READY_SECONDS
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise DemoError(f"the agent exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(self.url + "/-/ready") as response:
                        if response.status == 200:
                            print(self.banner, flush=True)
                            return
                await asyncio.sleep(0.2)
        self.stop()
        raise DemoError(f"the agent was not ready after {READY_SECONDS:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def demo_agent_config(base_config: str, listen: str | None, targets: list[DemoTarget]) -> tuple[dict[str, Any], str]:
    """The base config file with the demo targets added, an admin token for the analytics API, a
    SQLite store of its own (in the demo's directory) and `listen` applied (the base config's own
    targets that probe the agent follow it). Returns the config and the admin token."""
    try:
        config = yaml.safe_load(Path(base_config).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UsageError(f"--config: {base_config}: cannot read: {exc.strerror}") from None
    old_listen = str(config.get("listen", "127.0.0.1:9464"))
    new_listen = listen or os.environ.get("LOOM_AGENT_LISTEN") or old_listen
    config["listen"] = new_listen
    own = [_moved(t, old_listen, new_listen) for t in config.get("targets") or []]
    config["targets"] = own + [t.config(PROBE_INTERVAL, PROBE_TIMEOUT) for t in targets]
    api = config.setdefault("api", {})
    if not api.get("admin_tokens"):
        api["admin_tokens"] = [f"demo-{secrets.token_hex(12)}"]
    overriding = [t.strip() for t in os.environ.get("LOOM_AGENT_ADMIN_TOKENS", "").split(",") if t.strip()]
    token = overriding[0] if overriding else str(api["admin_tokens"][0])     # the agent takes the env's
    store = config.setdefault("store", {})
    if store.get("driver", "sqlite") == "sqlite":
        store["path"] = "loom-demo.db"      # beside the demo's config: its own data, removed at the end
    return config, token


def _moved(target: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A target that probes the agent itself (its url or address names the old listen address) follows
    the new one, so config.yaml's self-probes keep probing this agent."""
    return {key: value.replace(old, new) if key in ("url", "address") and isinstance(value, str) else value
            for key, value in target.items()}
