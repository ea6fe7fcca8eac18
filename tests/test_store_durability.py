"""Durability of the ingest path against a real agent process and a real SQLite file.

1. SIGKILL mid-load: loader threads post batches with unique client event ids to /v1/events/batch and
   record which batches were acknowledged (2xx); the agent is killed with SIGKILL while they post, and
   restarted on the same database. Every acknowledged event must be stored exactly once (with its audit
   row), nothing invented; re-posting the unacknowledged batches and some acknowledged ones must leave
   every event still stored exactly once. `ROUNDS` kill/restart rounds on one database
   (LOOM_DURABILITY_ROUNDS; bench/ may run more).
2. A full store (store.max_size_mb, a real SQLITE_FULL): the API answers 503 with Retry-After, never 2xx,
   and nothing acknowledged is lost.
"""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.procs import AgentProcess, wait_until

ROUNDS = int(os.environ.get("LOOM_DURABILITY_ROUNDS", "3"))
BATCH = 20                  # events per batch
LOADERS = 6                 # concurrent clients
ACKED_BEFORE_KILL = 30      # batches acknowledged before the kill (the kill lands mid-load)


def batch_events(tag: str, size: int = BATCH) -> list[dict]:
    """A batch of login attempts (each also writes a security_events audit row) with unique event ids."""
    return [{"event": "login_attempt", "userId": f"user_{i % 7}", "eventId": f"{tag}-{i}",
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
    """Batches sent so far (tag -> events) and the tags the agent acknowledged."""

    sent: dict[str, list[dict]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def ids(self, tags) -> set[str]:
        return {event["eventId"] for tag in tags for event in self.sent[tag]}


def load_until_stopped(port: int, load: Load, prefix: str, stop: threading.Event) -> list[threading.Thread]:
    """Start LOADERS threads posting fresh batches until `stop` is set; a batch is acknowledged only
    when the agent answered 2xx (an error or no answer at all means: not acknowledged)."""
    numbers = itertools.count()

    def loader() -> None:
        while not stop.is_set():
            tag = f"{prefix}-b{next(numbers)}"
            events = batch_events(tag)
            with load.lock:
                load.sent[tag] = events
            try:
                status = post_batch(port, events, timeout=5)[0]
            except OSError:             # the agent is gone (killed): this batch was never acknowledged
                return
            if 200 <= status < 300:
                with load.lock:
                    load.acked.add(tag)

    threads = [threading.Thread(target=loader, daemon=True) for _ in range(LOADERS)]
    for thread in threads:
        thread.start()
    return threads


def check_exactly_once(db: Path, load: Load, must_hold: set[str]) -> set[str]:
    """Every id of `must_hold` stored; no id twice (events or audit rows); nothing that was not sent;
    each stored event has its audit row. Returns the stored ids."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        twice = conn.execute("SELECT event_id, count(*) FROM events GROUP BY event_id HAVING count(*) > 1").fetchall()
        assert twice == []
        audit_twice = conn.execute("SELECT event_id, count(*) FROM security_events GROUP BY event_id "
                                   "HAVING count(*) > 1").fetchall()
        assert audit_twice == []
        stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
        audited = {row[0] for row in conn.execute("SELECT event_id FROM security_events")}
    finally:
        conn.close()
    missing = must_hold - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert stored <= load.ids(load.sent), "events stored that were never sent"
    assert audited == stored, "an event without its audit row, or an audit row without its event"
    return stored


def test_every_acknowledged_event_survives_sigkill_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    config = {"store": {"driver": "sqlite", "path": str(db)}}
    load = Load()
    for round_number in range(ROUNDS):
        run_dir = tmp_path / f"run{round_number}"
        run_dir.mkdir()
        agent = AgentProcess(run_dir, config)
        check_exactly_once(db, load, load.ids(load.acked))          # what earlier rounds acknowledged
        stop = threading.Event()
        threads = load_until_stopped(agent.port, load, f"r{round_number}", stop)
        try:
            before = load.acked_count()
            wait_until(lambda: load.acked_count() >= before + ACKED_BEFORE_KILL, 60,
                       what=f"{ACKED_BEFORE_KILL} acknowledged batches; log:\n{agent.log()}")
            assert agent.stop(signal.SIGKILL) == -signal.SIGKILL    # in the middle of the load
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
            agent.stop(signal.SIGKILL)

    final_dir = tmp_path / "final"
    final_dir.mkdir()
    agent = AgentProcess(final_dir, config)
    try:
        stored = check_exactly_once(db, load, load.ids(load.acked))
        unacked = sorted(set(load.sent) - load.acked)
        retried = unacked + sorted(load.acked)[:5]
        for tag in retried:                          # the client retries: idempotent by event id
            status, _, body = post_batch(agent.port, load.sent[tag])
            assert status == 200, body
        assert stored <= check_exactly_once(db, load, load.ids(load.sent))
        assert check_exactly_once(db, load, set()) == load.ids(load.sent)
    finally:
        agent.stop()


def test_a_full_store_answers_503_with_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    agent = AgentProcess(tmp_path, {"store": {"driver": "sqlite", "path": str(db), "max_size_mb": 0.5}})
    load = Load()
    try:
        refused = None
        for n in range(200):                         # ~100 KB per batch: full long before 200 batches
            tag = f"full-b{n}"
            load.sent[tag] = batch_events(tag, size=200)
            status, headers, body = post_batch(agent.port, load.sent[tag])
            if status == 503:
                refused = tag
                break
            assert status == 200, body
            load.acked.add(tag)
        assert refused is not None, "the store never filled up"
        assert headers.get("Retry-After") == "30", headers
        assert b"StoreFull" in body or b"full" in body
        assert len(load.acked) >= 1

        again = post_batch(agent.port, batch_events("full-again", size=200))
        assert again[0] == 503 and again[1].get("Retry-After") == "30"    # still full: still 503, not 500
        # an acknowledged batch retried while full writes nothing new: still acknowledged
        assert post_batch(agent.port, load.sent[sorted(load.acked)[0]])[0] == 200

        stored = check_exactly_once(db, load, load.ids(load.acked))
        assert not stored & load.ids([refused]), "part of a refused batch was stored"
    finally:
        agent.stop()
    stored = check_exactly_once(db, load, load.ids(load.acked))      # and after a clean stop
    assert stored == load.ids(load.acked)
