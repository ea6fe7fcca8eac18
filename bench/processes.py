"""Child processes of the benchmark: started pinned to a core, measured from /proc, stopped by PID."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A 127.0.0.1 port that was free a moment ago (for programs that cannot report a port-0 bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process (all threads) in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS     # fields 14 and 15 of stat(5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads)."""
    return sum(cpu_times(pid))


def core_busy_seconds(core: int) -> float:
    """Non-idle time of one CPU core since boot (user+nice+system+irq+softirq+steal), from /proc/stat."""
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith(f"cpu{core} "):
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
                return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return 0.0


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True, slots=True)
class CpuMark:
    """A process's CPU times and its core's busy time at one instant."""

    at: float
    cpu: float
    system: float
    core_busy: float


def cpu_mark(pid: int, core: int) -> CpuMark:
    user, system = cpu_times(pid)
    return CpuMark(time.time(), user + system, system, core_busy_seconds(core))


def cpu_usage(before: CpuMark, after: CpuMark) -> dict:
    """CPU figures between two marks; `others_on_core` is how busy the core was with anything but
    the process (other tenants of the machine, interrupts): high values mean a contaminated window."""
    seconds, cpu = after.at - before.at, after.cpu - before.cpu
    return {"cpu_seconds": round(cpu, 3), "cpu_utilisation": round(cpu / seconds, 4),
            "system_share": round((after.system - before.system) / cpu, 3) if cpu > 0 else math.nan,
            "others_on_core": round(max(0.0, (after.core_busy - before.core_busy) - cpu) / seconds, 4)}


class Child:
    """One child process pinned with `taskset -c <core>`; stderr (and stdout unless `capture`) to a log file."""

    def __init__(self, name: str, argv: list[str], core: int, tmp: Path, env: dict[str, str] | None = None,
                 registry: list["Child"] | None = None, capture: bool = True):
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "wb")
        stdout = subprocess.PIPE if capture else self._log
        self.proc = subprocess.Popen(["taskset", "-c", str(core), *argv], cwd=ROOT, stdout=stdout,
                                     stderr=self._log, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        self.pid = self.proc.pid            # taskset execs the program: same PID
        if registry is not None:
            registry.append(self)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def mark(self, core: int) -> CpuMark:
        return cpu_mark(self.pid, core)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readline(self) -> str:
        return self.proc.stdout.readline().decode()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def output(self, timeout: float) -> str:
        """Wait for the process to exit on its own; its whole stdout."""
        out, _ = self.proc.communicate(timeout=timeout)
        return out.decode()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
