"""The event store failing under a running agent: ingest answers 503 with Retry-After (never 2xx for
what was not committed, never 500 or silence), recovers by itself when the store does, and nothing it
acknowledged is lost. What tests/test_store_durability.py (SIGKILL, store.max_size_mb) and
tests/test_store.py (driver-level outages) already cover is not repeated:

1. PostgreSQL stopped in the middle of sustained ingest, then started again.
2. PostgreSQL frozen (every server process SIGSTOPped: a hung host or a network that drops packets
   without a reset): 503 within the write bound (twice store.connect_timeout), not a request held forever.
3. SQLite on a disk that really fills up (a small tmpfs: ENOSPC), then gets room again; the agent is
   SIGKILLed after the episode and every acknowledged event is in the file exactly once.
4. SQLite files that refuse writes (chattr +i: EPERM on write, an I/O error to SQLite), then accept them.
5. The SQLite database directory removed under the agent: SQLite would go on "committing" into unlinked
   files that vanish at exit; the agent must answer 503 instead of acknowledging.

Tests 3 and 4 need root (mount, chattr); they are skipped where the kernel refuses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.durability_load import Load, Tally, check_exactly_once, post_batch, problems, retry_batches
from tests.support.pg import PostgresServer
from tests.support.procs import AgentProcess, wait_until

pytestmark = pytest.mark.slow     # starts real processes or waits (the inner loop: -m "not slow")

HMAC_KEY = "faults-store-hmac-key-0123456789abcdef"
LOADERS = 4
PAUSE_AFTER_503 = 0.05       # a real client waits Retry-After; the test only avoids a hot loop


# --- load that records every answer -----------------------------------------------------------------

@dataclass
class Answers:
    """Every answer the loaders got: status counts, 503s without a usable Retry-After, when each kind came."""

    statuses: Counter = field(default_factory=Counter)
    bad_retry_after: list[str] = field(default_factory=list)
    last_503_at: float = 0.0
    first_200_after: dict[float, float] = field(default_factory=dict)   # mark -> first 200 after it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, headers: dict[str, str]) -> None:
        now = time.monotonic()
        with self.lock:
            self.statuses[status] += 1
            if status == 503:
                self.last_503_at = now
                retry_after = headers.get("Retry-After", "")
                if not retry_after.isdigit() or int(retry_after) < 1:
                    self.bad_retry_after.append(retry_after)
            elif status == 200:
                for mark in self.first_200_after:
                    if not self.first_200_after[mark] and now > mark:
                        self.first_200_after[mark] = now

    def mark(self) -> float:
        """A point in time; `first_200_after[mark]` becomes the first 200 answered after it."""
        mark = time.monotonic()
        with self.lock:
            self.first_200_after[mark] = 0.0
        return mark

    def count(self, status: int) -> int:
        with self.lock:
            return self.statuses[status]


@contextmanager
def sustained_load(port: int, load: Load, answers: Answers, prefix: str) -> Iterator[None]:
    """LOADERS threads posting fresh batches (unique event ids) for the duration of the block; a batch is
    acknowledged only on a 2xx. No answer at all (timeout, reset) is recorded as status 0."""
    stop = threading.Event()
    numbers = iter(range(10**9))
    lock = threading.Lock()

    def loader() -> None:
        while not stop.is_set():
            with lock:
                tag = f"{prefix}-b{next(numbers)}"
            events = load.add(tag)
            try:
                status, headers, _ = post_batch(port, events, timeout=15)
            except OSError:
                status, headers = 0, {}
            answers.record(status, headers)
            if 200 <= status < 300:
                with load.lock:
                    load.acked.add(tag)
            else:
                time.sleep(PAUSE_AFTER_503)

    threads = [threading.Thread(target=loader, daemon=True) for _ in range(LOADERS)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)


def wait_acked(load: Load, more: int, agent: AgentProcess, timeout: float = 30) -> None:
    before = load.acked_count()
    wait_until(lambda: load.acked_count() >= before + more, timeout,
               what=f"{more} more acknowledged batches; log:\n{agent.log()[-3000:]}")


def assert_only_200_and_503(answers: Answers) -> None:
    unexpected = {status: n for status, n in answers.statuses.items() if status not in (200, 503)}
    assert not unexpected, f"answers other than 200/503 (0 = no answer): {unexpected}"
    assert not answers.bad_retry_after, f"503 without a Retry-After of >= 1 s: {answers.bad_retry_after[:5]}"


# --- PostgreSQL --------------------------------------------------------------------------------------

def pg_tally(server: PostgresServer, database: str) -> Tally:
    """durability_load's Tally, read from PostgreSQL (no integrity_check there: 'ok')."""
    def ids(sql: str) -> list[str]:
        return [line for line in server.psql(sql, database).splitlines() if line]

    stored, audited = ids("SELECT event_id FROM events"), ids("SELECT event_id FROM security_events")
    return Tally("ok", frozenset(stored), frozenset(audited), len(stored) - len(set(stored)),
                 len(audited) - len(set(audited)))


def assert_pg_exactly_once(server: PostgresServer, database: str, load: Load, must_hold: set[str]) -> Tally:
    found = pg_tally(server, database)
    wrong = problems(found, load, must_hold)
    assert not wrong, f"exactly-once broken: {wrong}; lost e.g. {sorted(must_hold - found.stored)[:5]}"
    return found


@pytest.fixture
def pg() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL server of this test's own (it is stopped and frozen), with a fresh database."""
    server = PostgresServer()
    try:
        server.start()
        yield server, server.create_database()
    finally:
        server.destroy()


def pg_agent(tmp_path: Path, server: PostgresServer, database: str) -> AgentProcess:
    return AgentProcess(tmp_path, {"store": {"driver": "postgres", "dsn": server.dsn(database),
                                             "connect_timeout": "1s", "pool_size": 2},
                                   "privacy": {"hmac_key": HMAC_KEY}})


def test_postgres_stopped_mid_load_answers_503_then_resumes_and_loses_nothing(
        tmp_path: Path, pg: tuple[PostgresServer, str]) -> None:
    server, database = pg
    agent = pg_agent(tmp_path, server, database)
    load, answers = Load(), Answers()
    try:
        with sustained_load(agent.port, load, answers, "pg"):
            wait_acked(load, 20, agent)
            server.stop()                                   # fast shutdown, mid-load
            stopped = time.monotonic()
            wait_until(lambda: answers.count(503) >= 20, 30, what=f"503s while PostgreSQL is down; "
                       f"answers {answers.statuses}; log:\n{agent.log()[-3000:]}")
            acked_during = load.acked_count()
            time.sleep(0.5)
            assert load.acked_count() == acked_during, "acknowledged while PostgreSQL was down"
            mark = answers.mark()
            server.start()
            wait_acked(load, 20, agent)
        resumed = answers.first_200_after[mark] - mark
        assert_only_200_and_503(answers)
        assert_pg_exactly_once(server, database, load, load.ids(load.acked))

        unacked = sorted(set(load.sent) - load.acked)
        assert retry_batches(agent.port, load, unacked) == []      # the clients retry what was refused
        found = assert_pg_exactly_once(server, database, load, load.ids(load.sent))
        assert found.stored == load.ids(load.sent)
        print(f"\nFIGURE store.postgres_stop: {answers.statuses[200]} answered 200, {answers.statuses[503]} "
              f"answered 503 (Retry-After), outage {mark - stopped:.1f}s, first 200 {resumed:.2f}s after the "
              f"server was started again, {len(unacked)} refused batches retried, 0 lost, 0 duplicated")
    finally:
        agent.stop()


def server_processes(pid: int) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer, walwriter, ...)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_a_frozen_postgres_gets_503_within_the_write_bound_not_a_hung_request(
        tmp_path: Path, pg: tuple[PostgresServer, str]) -> None:
    server, database = pg
    agent = pg_agent(tmp_path, server, database)
    load = Load()
    try:
        assert post_batch(agent.port, load.add("before"))[0] == 200
        load.acked.add("before")
        assert server.proc is not None
        with frozen(server_processes(server.proc.pid)):
            answered = []
            for n in range(3):            # the first finds a pooled connection, the next ones a new connect
                started = time.monotonic()
                try:
                    status, headers, body = post_batch(agent.port, load.add(f"frozen{n}"), timeout=30)
                except TimeoutError:
                    pytest.fail("no answer within 30 s while PostgreSQL was frozen: the request hangs")
                answered.append(time.monotonic() - started)
                assert status == 503, body
                assert headers.get("Retry-After") == "5", headers
        # 2 x connect_timeout (1 s) for the commit, 1 s for a new connection: far below the client's 30 s
        assert max(answered) < 10, answered
        thawed = time.monotonic()
        wait_until(lambda: post_batch(agent.port, load.add(f"after{time.monotonic()}"))[0] == 200, 20,
                   what=f"ingest after the server thawed; log:\n{agent.log()[-3000:]}")
        recovered = time.monotonic() - thawed
        load.acked.add(max(tag for tag in load.sent if tag.startswith("after")))
        assert_pg_exactly_once(server, database, load, load.ids(load.acked))
        print(f"\nFIGURE store.postgres_frozen: 503 after {', '.join(f'{s:.2f}s' for s in answered)} "
              f"(store.connect_timeout 1s), ingest back {recovered:.2f}s after SIGCONT")
    finally:
        agent.stop()


# --- SQLite --------------------------------------------------------------------------------------------

@contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` MiB mounted at `where`: writes past it fail with ENOSPC, as on a full disk."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_sqlite_disk_full_mid_load_answers_503_recovers_and_loses_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 16) as disk:
        db = disk / "events.db"
        ballast = disk / "ballast"                  # what the operator deletes to make room
        agent = AgentProcess(tmp_path, {"store": {"driver": "sqlite", "path": str(db), "synchronous": "normal"}})
        load, answers = Load(), Answers()
        try:
            with ballast.open("wb") as f:           # leave ~1.5 MiB: full after ~1,200 events
                f.write(b"\0" * max(0, free_bytes(disk) - 1536 * 1024))
            with sustained_load(agent.port, load, answers, "full"):
                wait_until(lambda: answers.count(503) >= 20, 60, what=f"503s on the full disk; answers "
                           f"{answers.statuses}; log:\n{agent.log()[-3000:]}")
                full_at = load.acked_count()
                mark = answers.mark()
                ballast.unlink()
                wait_acked(load, 20, agent)
            assert full_at >= 1
            assert_only_200_and_503(answers)
            assert "StoreFull" in agent.log() or "disk is full" in agent.log()
            assert agent.stop(signal.SIGKILL) == -signal.SIGKILL     # and then a crash, for good measure
            stored = check_exactly_once(db, load, load.ids(load.acked))

            (tmp_path / "again").mkdir()
            again = AgentProcess(tmp_path / "again", {"store": {"driver": "sqlite", "path": str(db)}})
            try:
                unacked = sorted(set(load.sent) - load.acked)
                assert retry_batches(again.port, load, unacked) == []
            finally:
                again.stop()
            assert check_exactly_once(db, load, load.ids(load.sent)) == load.ids(load.sent)
            print(f"\nFIGURE store.sqlite_disk_full: {answers.statuses[200]} answered 200, "
                  f"{answers.statuses[503]} answered 503 (StoreFull, Retry-After 30) on a full tmpfs, first 200 "
                  f"{answers.first_200_after[mark] - mark:.2f}s after room was made, {len(stored)} acknowledged "
                  f"events all present once after SIGKILL, {len(unacked)} refused batches retried")
        finally:
            agent.stop(signal.SIGKILL)


@contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """chattr +i: every write to these files fails (EPERM), even through descriptors opened before."""
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True)
        pytest.skip(f"chattr +i refused here (needs root on ext4/xfs): {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_sqlite_files_refusing_writes_answer_503_and_recover(tmp_path: Path) -> None:
    db = tmp_path / "data" / "events.db"
    db.parent.mkdir()
    agent = AgentProcess(tmp_path, {"store": {"driver": "sqlite", "path": str(db)}})
    load = Load()
    try:
        for n in range(3):
            assert post_batch(agent.port, load.add(f"ok{n}"))[0] == 200
            load.acked.add(f"ok{n}")
        # the database and its WAL (not the -shm, which SQLite maps into memory: a write fault there is
        # SIGBUS, a kernel matter rather than a disk that refuses writes)
        with immutable([db, db.with_name(db.name + "-wal")]):
            for n in range(3):
                status, headers, body = post_batch(agent.port, load.add(f"refused{n}"))
                assert status == 503, body
                assert headers.get("Retry-After") == "5" and b"unavailable" in body, (headers, body)
        for n in range(3):
            assert post_batch(agent.port, load.add(f"later{n}"))[0] == 200
            load.acked.add(f"later{n}")
        assert agent.proc.poll() is None
    finally:
        agent.stop()
    assert check_exactly_once(db, load, load.ids(load.acked)) == load.ids(load.acked)


def test_sqlite_directory_removed_under_the_agent_is_503_not_a_silent_loss(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = {"store": {"driver": "sqlite", "path": str(data / "events.db")}}
    agent = AgentProcess(tmp_path, config)
    load = Load()
    try:
        for n in range(3):
            assert post_batch(agent.port, load.add(f"before{n}"))[0] == 200
        shutil.rmtree(data)
        for n in range(5):
            # SQLite commits into the unlinked files without an error: a 200 here would be a lie
            status, headers, body = post_batch(agent.port, load.add(f"after{n}"))
            assert status == 503, f"acknowledged into a deleted database: {status} {body!r}"
            assert headers.get("Retry-After") == "5" and b"removed" in body, (headers, body)
        assert "removed or replaced" in agent.log()
    finally:
        agent.stop()
    data.mkdir()                    # the operator restores the directory and restarts the agent
    (tmp_path / "restart").mkdir()
    agent = AgentProcess(tmp_path / "restart", config)
    try:
        assert post_batch(agent.port, load.add("restarted"))[0] == 200
    finally:
        agent.stop()
