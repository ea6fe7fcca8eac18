"""The benchmark's processes and plumbing: the target server, blackbox_exporter, agents, drivers.

Layout on the 2-core machine: everything under test (the agent, blackbox_exporter, the bare
aiohttp reference) runs alone on core 0; the target server, the load driver and this process
run on core 1. Every process binds 127.0.0.1 and lives in a temp dir; `close()` stops them all
by PID.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.processes import Child, core_busy_seconds, free_port

BLACKBOX = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
BENCH = Path(__file__).resolve().parent
MEASURED_CORE, HELPER_CORE = 0, 1
SETTLE_MAX_WAIT, SETTLE_BUSY = 3.0, 0.10
BLACKBOX_CONFIG = """modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


async def until(unix: float) -> None:
    """Sleep until the wall-clock instant `unix`."""
    delay = unix - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass
class Agent:
    child: Child
    url: str

    @property
    def pid(self) -> int:
        return self.child.pid


@dataclass
class Scrape:
    text: str
    sent: float          # unix time the request went out
    received: float      # unix time the whole response was in
    agent_cpu: float     # the agent's CPU seconds spent between sent and received (includes a little probing)


class Harness:
    def __init__(self, tmp: Path, event_loop: str):
        self.tmp = tmp
        self.event_loop = event_loop      # "uvloop" or "asyncio", for the agent and the aiohttp reference
        self.children: list[Child] = []
        self.session: aiohttp.ClientSession | None = None
        self.target: Child | None = None
        self.target_url = ""
        self.blackbox: Child | None = None
        self.blackbox_url = ""
        self._agents = 0
        self.settle_waited = 0.0

    async def __aenter__(self) -> "Harness":
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                             timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        for child in reversed(self.children):
            await asyncio.to_thread(child.stop)
        self.children.clear()
        if self.session is not None:
            await self.session.close()

    async def settle(self, ours: tuple[Child, ...] = (), max_wait: float = SETTLE_MAX_WAIT) -> None:
        """Wait (up to max_wait) for half a second in which the measured core is nearly idle apart from
        `ours`, so a measurement does not start while another tenant of the machine is busy there."""
        deadline = time.monotonic() + max_wait
        while True:
            busy = core_busy_seconds(MEASURED_CORE) - sum(child.cpu() for child in ours)
            await asyncio.sleep(0.5)
            busy = core_busy_seconds(MEASURED_CORE) - sum(child.cpu() for child in ours) - busy
            if busy / 0.5 < SETTLE_BUSY or time.monotonic() > deadline:
                return
            self.settle_waited += 0.5

    async def get(self, url: str) -> tuple[int, str]:
        async with self.session.get(url) as response:
            return response.status, await response.text()

    async def wait_http(self, child: Child, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.log()}")
            try:
                if (await self.get(url))[0] == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{child.name} not ready at {url} after {timeout:g}s:\n{child.log()}")

    # -- the target server ------------------------------------------------------------------

    async def start_target(self) -> str:
        child = Child("target", [sys.executable, str(BENCH / "targets.py")], HELPER_CORE, self.tmp,
                      registry=self.children)
        line = await asyncio.wait_for(asyncio.to_thread(child.readline), 20)
        if not line.startswith("PORT "):
            raise RuntimeError(f"target server did not start: {line!r}\n{child.log()}")
        self.target, self.target_url = child, f"http://127.0.0.1:{int(line.split()[1])}"
        return self.target_url

    async def target_stats(self, reset: bool = False) -> dict:
        status, text = await self.get(f"{self.target_url}/__stats{'?reset=1' if reset else ''}")
        assert status == 200, text
        return json.loads(text)

    # -- blackbox_exporter ------------------------------------------------------------------

    async def start_blackbox(self) -> str:
        config = self.tmp / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        port = free_port()
        child = Child("blackbox", [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                                   "--log.level=warn"], MEASURED_CORE, self.tmp, registry=self.children, capture=False)
        self.blackbox, self.blackbox_url = child, f"http://127.0.0.1:{port}"
        await self.wait_http(child, self.blackbox_url + "/-/healthy", 20)
        return self.blackbox_url

    # -- the agent --------------------------------------------------------------------------

    async def start_agent(self, targets: list[dict], max_concurrency: int = 64,
                          otlp_endpoint: str | None = None, trace_probes: bool = True,
                          program: tuple[str, ...] = ("-m", "agent"),
                          config_overrides: dict | None = None) -> Agent:
        """`python -m agent run` (or another `program` taking the same arguments) on core 0.
        `config_overrides` is merged into the generated config (nested dicts key by key)."""
        await self.settle()
        self._agents += 1
        port = free_port()
        telemetry: dict = {"trace_probes": trace_probes}
        if otlp_endpoint:
            telemetry["otlp"] = {"endpoint": otlp_endpoint, "protocol": "http/protobuf"}
        config = {"listen": f"127.0.0.1:{port}", "scheduler": {"max_concurrency": max_concurrency},
                  "telemetry": telemetry, "targets": targets}
        merge_config(config, config_overrides or {})
        path = self.tmp / f"agent{self._agents}.yaml"
        path.write_text(json.dumps(config))            # JSON is YAML
        env = {"LOOM_AGENT_EVENT_LOOP": "asyncio" if self.event_loop == "asyncio" else "auto"}
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env[name] = ""
        child = Child(f"agent{self._agents}", [sys.executable, *program, "--log-level", "warning", "run",
                                               "--config", str(path)],
                      MEASURED_CORE, self.tmp, env=env, registry=self.children, capture=False)
        agent = Agent(child, f"http://127.0.0.1:{port}")
        await self.wait_http(child, agent.url + "/-/ready", 90)
        return agent

    async def scrape(self, agent: Agent) -> Scrape:
        cpu_before, sent = agent.child.cpu(), time.time()
        status, text = await self.get(agent.url + "/metrics")
        received, cpu_after = time.time(), agent.child.cpu()
        assert status == 200, text[:500]
        return Scrape(text, sent, received, cpu_after - cpu_before)

    async def stop(self, child: Child) -> None:
        await asyncio.to_thread(child.stop)
        if child in self.children:
            self.children.remove(child)

    # -- load processes on the helper core --------------------------------------------------

    def driver(self, exporter_url: str, target: str, mode: str, start_at: float, warmup: float, window: float,
               rate: float = 0.0, concurrency: int = 64, durations: bool = False) -> Child:
        argv = [sys.executable, str(BENCH / "load.py"), "--exporter", exporter_url, "--target", target,
                "--mode", mode, "--start-at", repr(start_at), "--warmup", repr(warmup), "--window", repr(window),
                "--rate", repr(rate), "--concurrency", str(concurrency)]
        if durations:
            argv.append("--durations")
        return Child(f"driver-{mode}-{len(self.children)}", argv, HELPER_CORE, self.tmp, registry=self.children)

    def reference(self, client: str, url: str, rate: float, start_at: float, warmup: float, window: float) -> Child:
        """bench/reference.py (a bare aiohttp or asyncio-Protocol prober) on the measured core."""
        argv = [sys.executable, str(BENCH / "reference.py"), "--client", client, "--url", url, "--rate", repr(rate),
                "--start-at", repr(start_at), "--warmup", repr(warmup), "--window", repr(window),
                "--event-loop", self.event_loop]
        return Child(f"reference-{client}-{len(self.children)}", argv, MEASURED_CORE, self.tmp,
                     registry=self.children)

    async def result_of(self, child: Child, timeout: float = 60) -> dict:
        """The JSON a driver / reference process prints when it finishes."""
        out = await asyncio.to_thread(child.output, timeout)
        code = child.stop()
        if child in self.children:
            self.children.remove(child)
        if code != 0 or not out.strip():
            raise RuntimeError(f"{child.name} failed ({code}):\n{child.log()}")
        return json.loads(out)


def merge_config(base: dict, overrides: dict) -> None:
    """Merge `overrides` into `base` in place; a dict merges into a dict, anything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = value


def uses_uvloop(pid: int) -> bool:
    """Whether uvloop's extension module is mapped into the process."""
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return any("uvloop" in line for line in fh)
    except OSError:
        return False
