"""The command line of a benchmark that owns one section of bench/RESULTS.md (bench/sentry.py,
bench/posthog.py, bench/flags.py): `--quick` (a smoke run that writes nothing), `--profile` (only the
agent, under cProfile), `--connections N`, `--report` (the section again from the JSON, with the current
notes); otherwise measure, time the in-process path, write the JSON and the section.

Why one runner: the three scripts had the same 40 lines of argument parsing, temp directories, result
writing and run metadata; each now says only what it measures and how it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ingest, report

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "bench" / "RESULTS.md"


def meta(args: argparse.Namespace, started: float, script: str, default_connections: int) -> dict:
    """How the run was made: the command (to run it again), when, on what, at which commit of agent/."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "agent"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {"command": f"python {script}" + (" --quick" if args.quick else "")
            + (f" --connections {args.connections}" if args.connections != default_connections else ""),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "runtime_seconds": round(time.monotonic() - started, 1), "python": platform.python_version(),
            "nproc": os.cpu_count(), "quick": args.quick,
            "agent_commit": head.strip() + (" (uncommitted changes under agent/)" if dirty else "")}


def print_profile(path: Path, top: int = 35) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


@dataclass
class SectionBench:
    name: str                                           # "sentry": the JSON's, the profile's and the logs' name
    doc: str                                            # the script's docstring (its first line is --help's)
    section: str                                        # the RESULTS.md heading it owns
    default_connections: int
    params: Callable[[bool, int], Any]                  # (quick, connections) -> the script's Params
    measure: Callable[[Any, Path], Awaitable[dict]]     # the servers of the run, each pinned in turn
    profile: Callable[[Any, Path, Path], Awaitable[dict]]   # the agent alone under cProfile
    profile_summary: Callable[[dict], str]              # one line of what the profiled run did
    hot_path: Callable[[Any], dict]                     # the in-process path, no HTTP
    markdown: Callable[[dict], str]
    verdict: Callable[[dict], dict]                     # the targets' keys of the results
    notes: list[str] = field(default_factory=list)

    @property
    def results_json(self) -> Path:
        return ROOT / "bench" / "results" / f"{self.name}.json"

    def main(self) -> int:
        parser = argparse.ArgumentParser(description=self.doc.splitlines()[0])
        parser.add_argument("--quick", action="store_true", help="smoke run; prints, writes nothing")
        parser.add_argument("--profile", action="store_true",
                            help="the agent under cProfile; prints, writes nothing")
        parser.add_argument("--connections", type=int, default=self.default_connections)
        parser.add_argument("--report", action="store_true",
                            help=f"rewrite the RESULTS.md section from bench/results/{self.name}.json")
        args = parser.parse_args()
        if args.report:
            results = json.loads(self.results_json.read_text())
            results["notes"] = self.notes
            report.replace_section(RESULTS_MD, self.section, self.markdown(results))
            return 0
        os.sched_setaffinity(0, {ingest.HELPER_CORE})
        started, params = time.monotonic(), self.params(args.quick, args.connections)
        tmp = Path(tempfile.mkdtemp(prefix=f"loom-{self.name}-"))
        if args.profile:
            out = ROOT / "bench" / "out" / f"{self.name}-agent.prof"      # kept: bench/out/ is not committed
            out.parent.mkdir(exist_ok=True)
            result = asyncio.run(self.profile(params, tmp, out))
            print(f"under cProfile: {self.profile_summary(result)}", file=sys.stderr)
            print_profile(out)
            shutil.rmtree(tmp, ignore_errors=True)
            return 0
        results = asyncio.run(self.measure(params, tmp))      # on failure the temp dir (process logs) is kept
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"[{self.name}] in-process path ...", file=sys.stderr, flush=True)
        results["hot_path"] = self.hot_path(params)
        results["meta"] = meta(args, started, f"bench/{self.name}.py", self.default_connections)
        results.update(self.verdict(results))
        results["notes"] = self.notes
        text = self.markdown(results)
        print(text)
        if not args.quick:
            self.results_json.parent.mkdir(exist_ok=True)
            self.results_json.write_text(json.dumps(results, indent=2) + "\n")
            report.replace_section(RESULTS_MD, self.section, text)
            print(f"wrote {self.results_json} and the {self.section!r} section of {RESULTS_MD}", file=sys.stderr)
        return 0
