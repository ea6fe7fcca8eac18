"""Crash loop: SIGKILL the agent during sustained ingest, restart it, check exactly-once; N times.

    python bench/crash_loop.py                 # 50 rounds (a few minutes); writes
                                               # bench/results/crash_loop.json and "## Crash loop" of
                                               # bench/RESULTS.md
    python bench/crash_loop.py --rounds 5 --no-write   # a short run that writes nothing
    python bench/crash_loop.py --quick                 # 3 rounds, writes nothing

The CI test (tests/test_store_durability.py, LOOM_DURABILITY_ROUNDS rounds, 3 by default) and this
loop share tests/support/durability_load.py: six client threads post batches of 20 login attempts with unique
event ids (each also writes a security_events audit row) to a real agent on a real SQLite file
(WAL, synchronous=full), and remember which batches were answered 2xx. Each round restarts the agent
on the same file, checks that every event acknowledged so far is stored exactly once, then loads it
until ACKED_FIRST batches are acknowledged, goes on loading for a random time (--min-load..--max-load
seconds, seeded) and kills it with SIGKILL while the loaders are still posting, so the kill lands at a
different point of the group-commit and WAL-checkpoint cycles each time. At the end the client retries every unacknowledged batch (and some
acknowledged ones): every event sent must then be stored exactly once.

The agent runs on core 0 (as bench/ingest.py pins it), the loaders and this process on core 1.
Exit status 1 when any round lost, duplicated or invented an event.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.promtext import percentile  # noqa: E402
from tests.support.durability_load import (BATCH, LOADERS, Load, problems, retry_batches,  # noqa: E402
                                   sigkill_under_load, tally)
from tests.support.procs import AgentProcess  # noqa: E402

RESULTS_JSON = ROOT / "bench" / "results" / "crash_loop.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTION = "## Crash loop"
AGENT_CORE, LOAD_CORE = 0, 1
RETRIED_ACKED = 50          # acknowledged batches the client also retries at the end
ACKED_FIRST = 10            # batches acknowledged before the random load time starts: ingest is flowing


@contextlib.contextmanager
def on_core(core: int) -> Iterator[None]:
    """Run the block (and any child process it starts) on `core`; then back to the caller's cores."""
    before = os.sched_getaffinity(0)
    pin = (os.cpu_count() or 1) > core
    if pin:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        if pin:
            os.sched_setaffinity(0, before)


def start_agent(run_dir: Path, config: dict) -> tuple[AgentProcess, float]:
    """The agent on AGENT_CORE and how long it took from exec to ready (includes SQLite recovery)."""
    began = time.monotonic()
    with on_core(AGENT_CORE):
        agent = AgentProcess(run_dir, config)
    return agent, time.monotonic() - began


def one_round(number: int, tmp: Path, config: dict, db: Path, load: Load, then_seconds: float) -> dict:
    run_dir = tmp / f"run{number}"
    run_dir.mkdir()
    began = time.monotonic()
    agent, ready_s = start_agent(run_dir, config)
    checked = time.monotonic()
    found = tally(db)
    wrong = problems(found, load, load.ids(load.acked))
    check_s = time.monotonic() - checked
    acked_before, sent_before = load.acked_count(), len(load.sent)
    loaded = time.monotonic()
    code = sigkill_under_load(agent, load, f"r{number}", ACKED_FIRST, then_seconds)
    load_s = time.monotonic() - loaded
    if code != -signal.SIGKILL:
        wrong["agent_not_alive_at_kill"] = 1
    acked = load.acked_count() - acked_before
    sent = len(load.sent) - sent_before
    return {"round": number, "problems_found_at_start": wrong, "stored_at_start": len(found.stored),
            "kill_after_seconds": round(then_seconds, 3), "acked_batches": acked, "acked_events": acked * BATCH,
            "unacked_batches_in_flight": sent - acked, "ready_seconds": round(ready_s, 3),
            "check_seconds": round(check_s, 3), "load_seconds": round(load_s, 3),
            "round_seconds": round(time.monotonic() - began, 3), "exit_code": code}


def final_check(tmp: Path, config: dict, db: Path, load: Load) -> dict:
    """Restart once more: everything acknowledged is there exactly once; then the client retries every
    unacknowledged batch and some acknowledged ones, and every event sent is there exactly once."""
    run_dir = tmp / "final"
    run_dir.mkdir()
    agent, ready_s = start_agent(run_dir, config)
    try:
        found = tally(db)
        after_last_kill = problems(found, load, load.ids(load.acked))
        committed_unacked = len(found.stored - load.ids(load.acked))
        unacked = sorted(set(load.sent) - load.acked)
        retried = unacked + sorted(load.acked)[:RETRIED_ACKED]
        with on_core(LOAD_CORE):
            failed = retry_batches(agent.port, load, retried)
        found = tally(db)
        after_retry = problems(found, load, load.ids(load.sent))
        extra = len(found.stored - load.ids(load.sent))
    finally:
        agent.stop()
    return {"ready_seconds": round(ready_s, 3), "problems_after_last_kill": after_last_kill,
            "stored_but_not_acked_before_retry": committed_unacked,
            "retried_unacked_batches": len(unacked), "retried_acked_batches": len(retried) - len(unacked),
            "retries_not_200": failed[:5], "retries_not_200_count": len(failed),
            "problems_after_retry": after_retry, "stored_events": len(found.stored),
            "sent_events": len(load.ids(load.sent)), "stored_but_not_sent": extra,
            "db_bytes": sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))}


def summarise(rounds: list[dict], final: dict) -> dict:
    def total(key: str) -> int:
        """The worst check: a lost or duplicated event stays so in every later check, so not a sum."""
        checks = [r["problems_found_at_start"] for r in rounds] + [final["problems_after_last_kill"]]
        return max(check.get(key, 0) for check in checks)

    def stats(key: str) -> dict:
        values = [r[key] for r in rounds]
        return {"p50": round(percentile(values, 0.5), 3), "max": round(max(values), 3),
                "mean": round(sum(values) / len(values), 3)}

    return {"rounds": len(rounds), "acked_events": sum(r["acked_events"] for r in rounds),
            "acked_batches": sum(r["acked_batches"] for r in rounds),
            "unacked_batches": sum(r["unacked_batches_in_flight"] for r in rounds),
            "lost": total("lost"), "duplicates": total("duplicate_events") + total("duplicate_audit_rows"),
            "never_sent": total("never_sent"), "audit_mismatch": total("audit_mismatch"),
            "integrity_failures": total("integrity_check_failed"),
            "not_alive_at_kill": sum(r["problems_found_at_start"].get("agent_not_alive_at_kill", 0)
                                     for r in rounds),
            "after_retry": final["problems_after_retry"], "retries_not_200": final["retries_not_200_count"],
            "round_seconds": stats("round_seconds"), "ready_seconds": stats("ready_seconds"),
            "load_seconds": stats("load_seconds"), "check_seconds": stats("check_seconds")}


def passed(summary: dict) -> bool:
    return not any(summary[k] for k in ("lost", "duplicates", "never_sent", "audit_mismatch", "integrity_failures",
                                        "not_alive_at_kill", "after_retry", "retries_not_200"))


def markdown(results: dict) -> str:
    m, s, f = results["meta"], results["summary"], results["final"]
    verdict = "**passed**" if results["passed"] else "**FAILED**"
    return "\n".join([
        SECTION, "",
        f"`{m['command']}` — {m['date']}, {m['runtime_seconds']:.0f} s, Python {m['python']}, {m['nproc']} cores "
        f"(shared). The agent on core 0, {LOADERS} loader threads on core 1, one SQLite file (WAL, "
        "synchronous=full) for all rounds; each round restarts the agent, checks everything acknowledged so "
        f"far, posts batches of {BATCH} login attempts with unique event ids and SIGKILLs the agent after "
        f"{ACKED_FIRST} acknowledged batches and a further {m['min_load']:g}-{m['max_load']:g} s of load (seed "
        f"{m['seed']}), while the loaders are still posting. JSON: `bench/results/crash_loop.json`.", "",
        "| rounds | events acknowledged | batches in flight at the kill (not acknowledged) | lost | duplicated "
        "| stored but never sent | event without audit row | integrity_check failures | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {s['rounds']} | {s['acked_events']:,} | {s['unacked_batches']:,} | {s['lost']} | {s['duplicates']} "
        f"| {s['never_sent']} | {s['audit_mismatch']} | {s['integrity_failures']} | {verdict} |", "",
        f"Time per round (restart to ready, check, load, kill): p50 {s['round_seconds']['p50']:.2f} s, max "
        f"{s['round_seconds']['max']:.2f} s; restart to ready (SQLite recovery included): p50 "
        f"{s['ready_seconds']['p50']:.2f} s, max {s['ready_seconds']['max']:.2f} s; load until the kill: p50 "
        f"{s['load_seconds']['p50']:.2f} s; the check (integrity_check and every stored id, growing with the "
        f"database): p50 {s['check_seconds']['p50']:.2f} s, max {s['check_seconds']['max']:.2f} s.", "",
        f"After the last round: a final restart found {len(f['problems_after_last_kill']) or 'no'} problem(s) and "
        f"{f['stored_but_not_acked_before_retry']:,} events committed whose 2xx never reached the client (the kill "
        "came between the commit and the answer: allowed, a retry must not store them twice); "
        f"the client then retried the {f['retried_unacked_batches']:,} unacknowledged batches and "
        f"{f['retried_acked_batches']} acknowledged ones ({f['retries_not_200_count']} not answered 200): "
        f"{f['stored_events']:,} events stored for {f['sent_events']:,} sent, each exactly once "
        f"({'yes' if not f['problems_after_retry'] else f['problems_after_retry']}); database "
        f"{f['db_bytes'] / 2**20:.1f} MiB.", ""])


def run(args: argparse.Namespace, tmp: Path) -> dict:
    db = tmp / "events.db"
    config = {"store": {"driver": "sqlite", "path": str(db), "synchronous": "full"}}
    rng = random.Random(args.seed)
    load = Load()
    rounds = []
    for number in range(args.rounds):
        result = one_round(number, tmp, config, db, load, rng.uniform(args.min_load, args.max_load))
        rounds.append(result)
        print(f"[crash-loop] round {number + 1}/{args.rounds}: {result['acked_events']} events acknowledged, "
              f"{result['unacked_batches_in_flight']} batches in flight at the kill, ready in "
              f"{result['ready_seconds']:.2f} s, problems: {result['problems_found_at_start'] or 'none'}",
              file=sys.stderr, flush=True)
    final = final_check(tmp, config, db, load)
    summary = summarise(rounds, final)
    return {"summary": summary, "final": final, "rounds": rounds, "passed": passed(summary)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--min-load", type=float, default=0.2, help="shortest load (s) before a kill")
    parser.add_argument("--max-load", type=float, default=2.0, help="longest load (s) before a kill")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; write no JSON and no RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 rounds, writes nothing")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the \"## Crash loop\" section of RESULTS.md from the JSON")
    args = parser.parse_args()
    if args.report:
        results = json.loads(RESULTS_JSON.read_text())
        results["summary"] = summarise(results["rounds"], results["final"])
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
        report.replace_section(RESULTS_MD, SECTION, markdown(results))
        return 0
    if args.quick:
        args.rounds, args.no_write = 3, True
    if args.rounds < 1 or not 0 <= args.min_load <= args.max_load:
        parser.error("--rounds must be >= 1 and 0 <= --min-load <= --max-load")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="loom-crash-loop-"))
    with on_core(LOAD_CORE):        # this process and the loader threads it starts
        results = run(args, tmp)
    command = "python bench/crash_loop.py" + ("" if args.rounds == 50 else f" --rounds {args.rounds}")
    results["meta"] = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "runtime_seconds": round(time.monotonic() - started, 1), "python": platform.python_version(),
                       "nproc": os.cpu_count(), "seed": args.seed, "min_load": args.min_load,
                       "max_load": args.max_load}
    text = markdown(results)
    print(text)
    if results["passed"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"exactly-once broken; agent logs and the database are kept in {tmp}", file=sys.stderr)
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
        report.replace_section(RESULTS_MD, SECTION, text)
        print(f"wrote {RESULTS_JSON} and the {SECTION!r} section of {RESULTS_MD}", file=sys.stderr)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
