"""Probe benchmark: loom-agent vs blackbox_exporter in the same run, as ratios.

    python bench/probes.py            # full run (about 5 minutes); writes bench/results/probes.json
                                      # and regenerates bench/RESULTS.md
    python bench/probes.py --quick    # smoke run, a few seconds per section; prints the table only
    python bench/probes.py --report   # regenerate bench/RESULTS.md from bench/results/probes.json

Sections (bench/README.md explains each figure): cpu, saturation, latency, lag.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report, sections  # noqa: E402
from bench.harness import BLACKBOX, HELPER_CORE, Harness, uses_uvloop  # noqa: E402
from bench.otlp_sink import OtlpSink  # noqa: E402

RESULTS_JSON = ROOT / "bench" / "results" / "probes.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTIONS = ("cpu", "saturation", "latency", "lag")


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def git_facts() -> dict:
    """The commit and tree state when the run STARTS (others may commit while it runs)."""
    status = _command_output(["git", "status", "--porcelain", "--", "agent"])
    return {"git_commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
            "git_state": "uncommitted changes under agent/" if status else "agent/ as committed"}


def machine_facts(args: argparse.Namespace, started: float, uvloop_seen: bool | None, load_before: float,
                  git: dict) -> dict:
    import aiohttp

    from agent import __version__

    cpu_model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), platform.processor())
    blackbox = _command_output([BLACKBOX, "--version"]).splitlines()
    loop = args.event_loop
    if uvloop_seen is not None:
        loop += f" (uvloop {'mapped' if uvloop_seen else 'NOT mapped'} in the agent process)"
    return {
        "command": shlex.join(["python", "bench/probes.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runtime_seconds": round(time.monotonic() - started, 1),
        "loadavg_before": load_before, "loadavg_after": loadavg(),
        "quick": args.quick, "nproc": os.cpu_count(), "cpu_model": cpu_model, "kernel": platform.release(),
        "python": platform.python_version(), "aiohttp": aiohttp.__version__, "event_loop": loop,
        "blackbox_version": blackbox[0].split("version", 1)[-1].strip() if blackbox else "unknown",
        "agent_version": __version__, **git,
    }


async def run(args: argparse.Namespace, params: sections.Params, tmp: Path) -> tuple[dict, bool | None]:
    results: dict = {}
    uvloop_seen = None
    sink = OtlpSink()
    async with Harness(tmp, args.event_loop) as h:
        await sink.start()
        try:
            await h.start_target()
            await h.start_blackbox()
            probe = await h.start_agent([])
            uvloop_seen = uses_uvloop(probe.pid)
            await h.stop(probe.child)
            for name in args.only:
                began = time.monotonic()
                print(f"[bench] {name} ...", file=sys.stderr, flush=True)
                if name == "cpu":
                    results["cpu"] = await sections.cpu_per_probe(h, params, sink)
                elif name == "saturation":
                    results["saturation"] = await sections.saturation(h, params)
                elif name == "latency":
                    results["latency"] = await sections.latency(h, params, sink)
                elif name == "lag":
                    results["lag"] = await sections.scheduling_lag(h, params)
                print(f"[bench] {name} done in {time.monotonic() - began:.0f}s", file=sys.stderr, flush=True)
        finally:
            await sink.stop()
        results["settle_waited_seconds"] = h.settle_waited
    return results, uvloop_seen


def _json_safe(value):
    """NaN (a figure that could not be computed) -> null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds per section")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the agent's (and the aiohttp reference's) event loop; default uvloop")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help=f"where to write the results (full run default: {RESULTS_JSON})")
    parser.add_argument("--report", action="store_true", help="only regenerate RESULTS.md from the JSON")
    args = parser.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        results = json.loads((args.json or RESULTS_JSON).read_text())
        results["targets"] = report.evaluate(results)
        report.write_results_md(RESULTS_MD, results)
        print(f"wrote the {report.SECTION!r} section of {RESULTS_MD}")
        return 0
    os.sched_setaffinity(0, {HELPER_CORE})          # this process stays off the measured core
    params = sections.QUICK if args.quick else sections.Params()
    started, load_before, git = time.monotonic(), loadavg(), git_facts()
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    try:
        results, uvloop_seen = asyncio.run(run(args, params, tmp))
    except BaseException:
        print(f"[bench] failed; process logs kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    meta = machine_facts(args, started, uvloop_seen, load_before, git)
    meta["settle_waited_seconds"] = results.pop("settle_waited_seconds", 0.0)
    results = {"meta": meta, **results}
    results["targets"] = report.evaluate(results)
    print("\n".join(report.table(results)))
    for check in results["targets"]:
        verdict = {True: "MET    ", False: "NOT MET", None: "NOT MEASURED", "tie": "TIE    "}[check["met"]]
        print(f"{verdict}  {check['target']}: {check['value']}")
    destination = args.json or (None if args.quick else RESULTS_JSON)
    if destination is not None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(json.dumps(_json_safe(results), indent=2) + "\n")
        print(f"wrote {destination}")
        if destination == RESULTS_JSON and set(args.only) == set(SECTIONS):
            report.write_results_md(RESULTS_MD, results)
            print(f"wrote the {report.SECTION!r} section of {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
