"""The demo: its traffic is valid, covers the whole catalog and keeps each story's identifiers; its
targets are in the states they claim (probed by the agent's own collectors); the sender copes with
an agent that predates releases; and `python -m agent.demo` starts an agent, fills it and stops it."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp import web

from agent.collectors.kinds import KINDS
from agent.collectors.scheduler import probe_once
from agent.config.load import parse_config
from agent.demo.events import BUILDERS
from agent.demo.history import DAY, history, users_of
from agent.demo.sender import Sender
from agent.demo.targets import DemoTargets
from agent.demo.traffic import Traffic
from agent.events.catalog import CATALOG, CATEGORIES, CUSTOM
from agent.events.validate import parse_batch
from tests.support.procs import ROOT, free_port


def test_every_catalog_event_has_a_builder() -> None:
    assert set(BUILDERS) == set(CATALOG)


def test_the_traffic_is_valid_and_covers_every_category() -> None:
    traffic = Traffic(seed=3)
    tour = traffic.tour()
    assert {e["event"] for e in tour} == set(CATALOG)
    events = tour + traffic.events(4000)
    for start in range(0, len(events), 1000):        # the agent's own validation, as the API runs it
        parsed = parse_batch(events[start:start + 1000], now=time.time())
        assert len(parsed) == len(events[start:start + 1000])
    categories = {CATALOG[e["event"]].category if e["event"] in CATALOG else CUSTOM for e in events}
    assert categories == set(CATEGORIES)
    failed_logins = [e for e in events if e["event"] == "login_attempt" and e["properties"]["result"] == "failure"]
    assert 0.02 < len(failed_logins) / sum(e["event"] == "login_attempt" for e in events) < 0.2


def test_the_history_spreads_whole_valid_stories_over_the_past_days() -> None:
    now = 1_764_806_400.0                                   # 2025-12-04T00:00:00Z, a Thursday
    events = history(Traffic(seed=5), 21, 6000, now=now)
    assert 6000 <= len(events) < 6100
    stamps = [e["timestamp"] for e in events]
    assert now - 21 * DAY <= min(stamps) and max(stamps) < now
    assert max(stamps) - min(stamps) > 20 * DAY
    recent = sum(t >= now - 10.5 * DAY for t in stamps)
    assert recent > 0.6 * len(stamps)                         # denser towards now: a growing product
    days = [time.gmtime(t).tm_wday for t in stamps]
    weekday, weekend = sum(d < 5 for d in days) / 5, sum(d >= 5 for d in days) / 2
    assert weekend < 0.8 * weekday                            # quieter weekends
    for start in range(0, len(events), 1000):                 # the agent's own validation takes them
        assert len(parse_batch(events[start:start + 1000], now=now)) == len(events[start:start + 1000])
    flows: dict[str, list[float]] = {}
    for event in events:                                      # a story's events keep their order in time
        flow = event["properties"].get("flowId")
        if flow and event["event"].startswith("onboarding_step"):
            flows.setdefault(flow, []).append(event["timestamp"])
    assert flows and all(times == sorted(times) for times in flows.values())
    users = users_of(events)
    assert 400 < len(users) <= 500 and len(set(users)) == len(users)


def test_the_same_seed_gives_the_same_traffic() -> None:
    assert Traffic(seed=5).events(300) == Traffic(seed=5).events(300)
    assert Traffic(seed=5).events(300) != Traffic(seed=6).events(300)


def test_stories_keep_their_identifiers() -> None:
    """A connection's events follow its attempt, from the same user; an onboarding flow's steps share
    one flowId and end once (completed or abandoned)."""
    events = Traffic(seed=11).events(4000)
    attempted: dict[str, str] = {}          # connection -> its user
    for event in events:
        if event["event"] not in CATALOG or CATALOG[event["event"]].category != "realtime":
            continue
        connection = event["properties"]["connectionId"]
        if event["event"] == "connection_attempt":
            attempted[connection] = event["userId"]
        else:
            assert attempted.get(connection) == event["userId"], event
    flows: dict[str, list[str]] = {}
    for event in events:
        flow = event["properties"].get("flowId")
        if flow:
            flows.setdefault(flow, []).append(event["event"])
    assert len(flows) > 20
    for names in flows.values():
        assert names[0] == "onboarding_step_started"
        assert names.count("onboarding_completed") + names.count("onboarding_abandoned") <= 1


def _probe_all(config_text: str) -> dict[str, list]:
    """Each target probed three times by the agent's own collectors; the flapping one ten times, 0.15 s apart."""
    config = parse_config(config_text, environ={})

    async def run() -> dict[str, list]:
        collectors = {t.kind: KINDS[t.kind].collector_factory() for t in config.targets}
        results: dict[str, list] = {t.name: [] for t in config.targets}
        for target in config.targets:
            for _ in range(10 if target.name == "mfa-flows" else 3):
                results[target.name].append(await probe_once(collectors[target.kind], target, target.timeout))
                await asyncio.sleep(0.15)
        for collector in collectors.values():
            await collector.close()
        return results
    return asyncio.run(run())


@pytest.mark.slow
def test_the_demo_targets_are_in_their_states(tmp_path: Path) -> None:
    async def start() -> tuple[DemoTargets, list]:
        servers = DemoTargets(tmp_path, flap_period=1.0, slow_seconds=(0.3, 0.4))
        return servers, await servers.start()

    loop = asyncio.new_event_loop()
    servers, targets = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        text = yaml.safe_dump({"targets": [t.config(5, 3) for t in targets]})
        results = _probe_all(text)
    finally:
        asyncio.run_coroutine_threadsafe(servers.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    states = {t.name: t.state for t in targets}
    assert set(states.values()) == {"healthy", "slow", "flapping", "failing"}
    for name, state in states.items():
        outcomes = {r.success for r in results[name]}
        if state == "healthy":
            assert outcomes == {True}, (name, results[name])
        elif state == "slow":
            assert outcomes == {True} and min(r.duration_seconds for r in results[name]) >= 0.3
        elif state == "failing":
            assert outcomes == {False}, (name, results[name])
    reasons = {name: {r.reason.value for r in results[name] if r.reason} for name in states}
    assert reasons["notification-provider"] == {"status"} and reasons["reports-db"] == {"connect"}
    assert {r.success for r in results["mfa-flows"]} == {True, False}      # up 0.6 s of every 1 s
    expiry = results["auth-tls"][0].cert_expiry
    assert expiry is not None and abs(expiry - (time.time() + 10 * 86400)) < 600
    assert results["realtime"][0].round_trip_seconds is not None


@pytest.mark.slow
def test_the_sender_drops_the_release_for_an_agent_without_it() -> None:
    """An agent from before releases refuses the key (400 naming it): the sender resends without it."""
    bodies: list[list[dict]] = []

    async def batch(request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())
        if any("release" in e for e in events):
            error = {"index": 0, "field": "release", "message": "unknown key"}
            return web.json_response({"error": "events[0].release: unknown key", "errors": [error]}, status=400,
                                     dumps=lambda o: orjson.dumps(o).decode())
        bodies.append(events)
        return web.json_response({"accepted": len(events)})

    async def run() -> tuple:
        app = web.Application()
        app.router.add_post("/v1/events/batch", batch)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            sender = Sender(f"http://127.0.0.1:{port}", Traffic(seed=1), rate=40)
            return await sender.run(1.2), sender
        finally:
            await runner.cleanup()

    stats, sender = asyncio.run(run())
    assert stats.errors == 0 and stats.events == sum(len(b) for b in bodies) > 40
    assert sender.traffic.releases is None and not sender.extras     # no /openapi.json: no extras either


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # TIME_WAIT is fine; a listener is not
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def shipped_config_on_free_ports(tmp_path: Path) -> Path:
    """config.yaml with its OTLP receiver on ports of its own: the shipped 4317/4318 may be held by an agent
    or a demo the developer runs, or by another test under xdist."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for listener in config["otlp_receiver"].values():
        listener["listen"] = f"127.0.0.1:{free_port()}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_the_demo_command_starts_an_agent_fills_it_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "agent.demo", "--config", str(shipped_config_on_free_ports(tmp_path)),
                           "--listen", f"127.0.0.1:{port}", "--duration", "4s", "--rate", "60", "--seed", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo targets (8):" in out and re.search(r"agent: pid \d+, http://127\.0\.0\.1:%d" % port, out), out
    done = re.search(r"done: .* events sent (\d+) .* errors 0", out)
    assert done and int(done.group(1)) >= 60 * 3, out
    config = Path(re.search(r"\(config (\S+), log", out).group(1))
    assert not config.parent.exists()                     # the demo's directory is gone
    assert _port_is_free(port)                            # and its agent with it


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "--rate: must be above 0"),
    (["--duration", "5 minutes"], "--duration: invalid duration"),
    (["--no-targets"], "--no-targets needs --agent"),
    (["--history", "40d"], "--history: at most 29d"),
    (["--history-events", "0"], "--history-events: must be above 0"),
    (["--targets-only", "--targets-listen", "localhost"], "--targets-listen: expected HOST:PORT"),
])
@pytest.mark.slow
def test_bad_arguments_are_refused_by_name(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "agent.demo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2, proc
    assert f"error: {message}" in proc.stderr


@pytest.mark.slow
def test_an_agent_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("listen: 127.0.0.1:9464\ndefaults: {intervall: 5s}\n")
    proc = subprocess.run([sys.executable, "-m", "agent.demo", "--config", str(config), "--listen",
                           f"127.0.0.1:{free_port()}", "--duration", "5s"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc
    assert "error: the agent exited with 2" in proc.stderr and "defaults.intervall: unknown key" in proc.stderr
