"""Sustained ingest against a real agent process, and the exactly-once check of its SQLite file.

Shared by tests/test_store_durability.py (a few SIGKILL rounds in CI) and bench/crash_loop.py (many
rounds, with figures). Loader threads post batches with unique client event ids to /v1/events/batch and
record which batches the agent acknowledged (2xx); after a crash the database must hold every
acknowledged event exactly once, with its audit row, and nothing that was never sent.
"""

from __future__ import annotations

import http.client
import itertools
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.support.procs import AgentProcess, wait_until

BATCH = 20                  # events per batch
LOADERS = 6                 # concurrent clients


def event_id(tag: str, number: int) -> str:
    return f"{tag}-{number}"


def batch_events(tag: str, size: int = BATCH) -> list[dict]:
    """A batch of login attempts (each also writes a security_events audit row) with unique event ids;
    the same tag and size always give the same batch, so a retry resends exactly what was sent."""
    return [{"event": "login_attempt", "userId": f"user_{i % 7}", "eventId": event_id(tag, i),
             "properties": {"method": "password", "result": "success" if i % 3 else "failure"}}
            for i in range(size)]


def post_batch(port: int, events: list[dict], timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/events/batch", body=orjson.dumps(events),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@dataclass
class Load:
    """Batches sent so far (tag -> number of events; the events are `batch_events(tag, size)`, rebuilt
    when needed so a long loop does not keep them all) and the tags the agent acknowledged."""

    sent: dict[str, int] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, tag: str, size: int = BATCH) -> list[dict]:
        """Record a batch as sent (before it is posted) and return its events."""
        with self.lock:
            self.sent[tag] = size
        return batch_events(tag, size)

    def events(self, tag: str) -> list[dict]:
        return batch_events(tag, self.sent[tag])

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def ids(self, tags) -> set[str]:
        return {event_id(tag, i) for tag in tags for i in range(self.sent[tag])}


def load_until_stopped(port: int, load: Load, prefix: str, stop: threading.Event,
                       loaders: int = LOADERS) -> list[threading.Thread]:
    """Start `loaders` threads posting fresh batches until `stop` is set; a batch is acknowledged only
    when the agent answered 2xx (an error or no answer at all means: not acknowledged)."""
    numbers = itertools.count()

    def loader() -> None:
        while not stop.is_set():
            tag = f"{prefix}-b{next(numbers)}"
            events = load.add(tag)
            try:
                status = post_batch(port, events, timeout=5)[0]
            except OSError:             # the agent is gone (killed): this batch was never acknowledged
                return
            if 200 <= status < 300:
                with load.lock:
                    load.acked.add(tag)

    threads = [threading.Thread(target=loader, daemon=True) for _ in range(loaders)]
    for thread in threads:
        thread.start()
    return threads


def sigkill_under_load(agent: AgentProcess, load: Load, prefix: str, acked_before_kill: int,
                       then_seconds: float = 0.0, timeout: float = 60) -> int:
    """Post batches to `agent` until `acked_before_kill` more are acknowledged, go on for `then_seconds`,
    then SIGKILL it while the loaders are still posting. Returns the exit status (-SIGKILL when the kill
    landed mid-load)."""
    stop = threading.Event()
    threads = load_until_stopped(agent.port, load, prefix, stop)
    try:
        before = load.acked_count()
        wait_until(lambda: load.acked_count() >= before + acked_before_kill, timeout,
                   what=f"{acked_before_kill} acknowledged batches; log:\n{agent.log()[-4000:]}")
        time.sleep(then_seconds)
        return agent.stop(signal.SIGKILL)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        agent.stop(signal.SIGKILL)


@dataclass(frozen=True)
class Tally:
    """What the database holds: its integrity check, the stored and audited event ids, and how many ids
    appear more than once (events, audit rows)."""

    integrity: str
    stored: frozenset[str]
    audited: frozenset[str]
    duplicate_events: int
    duplicate_audits: int


def tally(db: Path) -> Tally:
    conn = sqlite3.connect(db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        twice = conn.execute("SELECT count(*) FROM (SELECT event_id FROM events GROUP BY event_id "
                             "HAVING count(*) > 1)").fetchone()[0]
        audit_twice = conn.execute("SELECT count(*) FROM (SELECT event_id FROM security_events "
                                   "GROUP BY event_id HAVING count(*) > 1)").fetchone()[0]
        stored = frozenset(row[0] for row in conn.execute("SELECT event_id FROM events"))
        audited = frozenset(row[0] for row in conn.execute("SELECT event_id FROM security_events"))
    finally:
        conn.close()
    return Tally(integrity, stored, audited, twice, audit_twice)


def problems(found: Tally, load: Load, must_hold: set[str]) -> dict[str, int]:
    """Each way the database breaks exactly-once, with how many events it concerns (empty: none)."""
    counts = {"integrity_check_failed": int(found.integrity != "ok"),
              "lost": len(must_hold - found.stored),
              "duplicate_events": found.duplicate_events,
              "duplicate_audit_rows": found.duplicate_audits,
              "never_sent": len(found.stored - load.ids(load.sent)),
              "audit_mismatch": len(found.stored ^ found.audited)}
    return {name: n for name, n in counts.items() if n}


def check_exactly_once(db: Path, load: Load, must_hold: set[str]) -> set[str]:
    """Every id of `must_hold` stored; no id twice (events or audit rows); nothing that was not sent;
    each stored event has its audit row. Returns the stored ids."""
    found = tally(db)
    wrong = problems(found, load, must_hold)
    assert not wrong, (f"exactly-once broken: {wrong}; lost e.g. {sorted(must_hold - found.stored)[:5]}, "
                       f"integrity {found.integrity!r}")
    return set(found.stored)


def retry_batches(port: int, load: Load, tags: list[str]) -> list[str]:
    """The client retries `tags` (idempotent by event id); returns the tags not answered 200."""
    failed = []
    for tag in tags:
        status, _, body = post_batch(port, load.events(tag))
        if status != 200:
            failed.append(f"{tag}: {status} {body[:200]!r}")
    return failed
