"""Durability of the ingest path against a real agent process and a real SQLite file.

1. SIGKILL mid-load: loader threads post batches with unique client event ids to /v1/events/batch and
   record which batches were acknowledged (2xx); the agent is killed with SIGKILL while they post, and
   restarted on the same database. Every acknowledged event must be stored exactly once (with its audit
   row), nothing invented; re-posting the unacknowledged batches and some acknowledged ones must leave
   every event still stored exactly once. `ROUNDS` kill/restart rounds on one database
   (LOOM_DURABILITY_ROUNDS; bench/crash_loop.py runs many more). The load and the checks are in
   tests/support/durability_load.py.
2. A full store (store.max_size_mb, a real SQLITE_FULL): the API answers 503 with Retry-After, never 2xx,
   and nothing acknowledged is lost.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.durability_load import (Load, batch_events, check_exactly_once, post_batch, retry_batches,
                                   sigkill_under_load)
from tests.support.procs import AgentProcess

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

ROUNDS = int(os.environ.get("LOOM_DURABILITY_ROUNDS", "3"))
ACKED_BEFORE_KILL = 30      # batches acknowledged before the kill (the kill lands mid-load)


def test_every_acknowledged_event_survives_sigkill_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    config = {"store": {"driver": "sqlite", "path": str(db)}}
    load = Load()
    for round_number in range(ROUNDS):
        run_dir = tmp_path / f"run{round_number}"
        run_dir.mkdir()
        agent = AgentProcess(run_dir, config)
        check_exactly_once(db, load, load.ids(load.acked))          # what earlier rounds acknowledged
        code = sigkill_under_load(agent, load, f"r{round_number}", ACKED_BEFORE_KILL)
        assert code == -signal.SIGKILL                              # in the middle of the load

    final_dir = tmp_path / "final"
    final_dir.mkdir()
    agent = AgentProcess(final_dir, config)
    try:
        stored = check_exactly_once(db, load, load.ids(load.acked))
        unacked = sorted(set(load.sent) - load.acked)
        retried = unacked + sorted(load.acked)[:5]
        assert retry_batches(agent.port, load, retried) == []   # the client retries: idempotent by event id
        assert stored <= check_exactly_once(db, load, load.ids(load.sent))
        assert check_exactly_once(db, load, set()) == load.ids(load.sent)
    finally:
        agent.stop()


def test_a_full_store_answers_503_with_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    agent = AgentProcess(tmp_path, {"store": {"driver": "sqlite", "path": str(db), "max_size_mb": 0.6}})
    load = Load()
    try:
        refused = None
        for n in range(200):                         # ~100 KB per batch: full long before 200 batches
            tag = f"full-b{n}"
            status, headers, body = post_batch(agent.port, load.add(tag, size=200))
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
        assert post_batch(agent.port, load.events(sorted(load.acked)[0]))[0] == 200

        stored = check_exactly_once(db, load, load.ids(load.acked))
        assert not stored & load.ids([refused]), "part of a refused batch was stored"
    finally:
        agent.stop()
    stored = check_exactly_once(db, load, load.ids(load.acked))      # and after a clean stop
    assert stored == load.ids(load.acked)
