"""The embedded store: one SQLite file in WAL mode.

Two connections, each living on its own thread (a single-thread executor), so the event loop never
blocks on the disk: the writer connection takes every write (write_events, execute, migrations), in
order; the reader connection answers fetch() beside it, which WAL allows without waiting for the
writer. Writes start with BEGIN IMMEDIATE, taking the write lock before reading anything, so the
duplicate check and the inserts see one consistent database even when another process shares the file.

sqlite3's errors are mapped at this boundary (see `store_error`); after a failed write the transaction
is rolled back and the next write starts afresh, so the store recovers by itself once the disk has
room again or the lock is released.

A database file (or its -wal) removed or replaced while open would take every later commit into an
unlinked inode that vanishes at exit, while SQLite reports success. So each write checks, after its
COMMIT, that the path still names the files it opened; if not, the write fails with StoreUnavailable
(not acknowledged, 503) until the agent is restarted on a database that is really there.

The WAL stays bounded under continuous reads. A checkpoint copies WAL frames into the database only up
to the oldest reader's snapshot, and the WAL restarts from its beginning only when no reader uses it;
with analytics queries back to back on the reader connection there is no such moment at commit time,
so every commit appended (bench/wal.py, a 7-day dashboard in 3 loops during ingest: 0.3 -> 90 MiB in
60 s and still growing; the issue saw 601 MiB in a minute). A checkpoint run from the reader between
its queries does not help either: the writer, committing back to back, takes the write lock again
within microseconds and the checkpoint's busy handler never gets it (3 resets in 60,000 events).
So the two threads meet: the reader thread is the only reader of the process; before a query, when the
-wal file is over WAL_RESET_BYTES, it queues `PRAGMA wal_checkpoint(TRUNCATE)` on the WRITER's thread
(after the commit in progress, before the next) and waits for it, holding no snapshot (the reader
gate is the thread itself). With no reader and no writer the checkpoint backfills what is left and
empties the file; the next commit starts the WAL afresh. Ingest waits for one checkpoint, never for a
read; a read waits for one commit and the checkpoint. `journal_size_limit` trims the file the same way
when the writer's own autocheckpoint resets it. Bound: WAL_RESET_BYTES plus what ingest appends during
one read query (itself bounded by store.query_timeout).

Reads have a time limit (store.query_timeout, from the moment fetch() is called, queueing included): a
progress handler interrupts a query past it, which is answered as StoreTimeout (503), never a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from agent.store import label_bits, person_bits, rollup_fold, rollups, signup_bits, user_index
from agent.store.batch import chunks, client_ids, repeated_in_batch, user_activity
from agent.store.errors import StoreError, StoreFull, StoreTimeout, StoreUnavailable
from agent.store.migrate import APPLIED_SQL, RECORD_SQL, pending
from agent.store.rows import EVENT_COLUMNS, TABLE_COLUMNS, EventRows
from agent.store.schema import MIGRATIONS, Migration, migrations_table, statements

T = TypeVar("T")

# primary result codes (https://sqlite.org/rescode.html); extended codes keep these in the low byte
_FULL = 13
_UNAVAILABLE = {5: "busy", 6: "locked", 8: "read-only", 10: "I/O error", 11: "corrupt", 14: "cannot open",
                23: "permission denied", 26: "not a database"}
_ID_CHUNK = 500     # event ids per `IN (...)` lookup

log = logging.getLogger("agent.store")

# Python 3.11's sqlite3 binds int, float and str at once, but looks every None up as a type to adapt: a
# missed registry lookup and two attribute lookups, ~0.25 µs per None bound (an events row of the ingest
# bench's mix binds ~4). An adapter found at once that gives None back costs ~0.08 µs, and None still binds
# as NULL. Measured in-process on the group commit (groups of 400 events): INSERT INTO events 6.6 -> 5.6
# CPU µs an event, the users upsert 1.35 -> 1.2.
_NOTHING: dict[None, None] = {}          # its .get: a C call that returns None
sqlite3.register_adapter(type(None), _NOTHING.get)


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


INSERT_EVENTS = _insert("events", EVENT_COLUMNS)
INSERT_TABLES = {table: _insert(table, columns) for table, columns in TABLE_COLUMNS.items()}
UPSERT_USERS = """INSERT INTO users (user_id, first_seen, last_seen, role) VALUES (?, ?, ?, ?)
    ON CONFLICT (user_id) DO UPDATE SET first_seen = min(users.first_seen, excluded.first_seen),
        last_seen = max(users.last_seen, excluded.last_seen), role = coalesce(excluded.role, users.role)"""


class _FoldFull(Exception):
    """A group commit's fold met a full store and SQLite rolled the whole transaction back."""


def store_error(exc: BaseException, path: str) -> StoreError | None:
    """The StoreError a low-level failure means, or None for errors that are bugs (bad SQL)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return StoreFull(f"SQLite database {path}: no space left on device")
        return StoreUnavailable(f"SQLite database {path}: {exc.strerror or exc}")
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary == _FULL or "database or disk is full" in text:
        return StoreFull(f"SQLite database {path} is full: {text}")
    if primary in _UNAVAILABLE:
        return StoreUnavailable(f"SQLite database {path} is unavailable ({_UNAVAILABLE[primary]}): {text}")
    if any(s in text for s in ("unable to open", "is locked", "readonly", "disk I/O error")):
        return StoreUnavailable(f"SQLite database {path} is unavailable: {text}")
    return None


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass        # SQLite already rolled back (e.g. after SQLITE_FULL); the next BEGIN starts clean


WAL_CHECKPOINT_PAGES = 10_000
CACHE_KIB = 64 * 1024
WAL_RESET_BYTES = 64 * 1024 * 1024     # a -wal file larger than this is emptied before the next read
CHECKPOINT_WAIT = 1.0                  # seconds that checkpoint waits for other processes' readers (a read waits
                                       # at most 5x this for it, then reads anyway)
RESET_BACKOFF = 5.0                    # seconds without a reset after one that could not complete
PROGRESS_OPS = 10_000                  # SQLite VM steps between two checks of a read's deadline (~0.1-1 ms)


class SqliteStore:
    dialect: ClassVar[str] = "sqlite"

    def __init__(self, path: str, synchronous: str = "full", busy_timeout: float = 5.0, max_size_mb: float = 0.0,
                 migrations: tuple[Migration, ...] = MIGRATIONS, query_timeout: float = 10.0,
                 wal_reset_bytes: int = WAL_RESET_BYTES):
        self.path = path
        self.query_timeout = query_timeout
        self.wal_reset_bytes = wal_reset_bytes
        self.wal_resets = 0             # checkpoints that emptied the -wal between reads (for tests, logs)
        self.wal_reset_failures = 0     # ... that could not (another process's reader)
        self._read_deadline = 0.0       # time.monotonic() past which the running read is interrupted
        self._reset_after = 0.0         # time.monotonic() before which no WAL reset is tried (after a failed one)
        self.max_size_mb = max_size_mb
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.migrations = migrations
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_thread: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._files: dict[str, tuple[int, int]] = {}     # path -> identity when opened (db, -wal)
        self._bits = person_bits.WriterCache()          # the current hours' person bitmaps (person_bits.py)
        self._folds = False             # rollups folded in bulk (rollup_fold.py): migration 19 applied
        self._by_user = False           # ... and events_by_user with them (user_index.py): migration 23 applied
        self._unfolded = 0              # events this process committed since the last fold
        self._unfolded_since = 0.0      # time.monotonic() of the first of them
        self._fold_timer: asyncio.TimerHandle | None = None     # folds an idle store's last commits
        self._idle_fold: asyncio.Future[None] | None = None
        self.fold_failures = 0          # folds a full store refused (the events stay above the watermark)
        self._fold_after = 0.0          # time.monotonic() before which no group commit folds (after a refusal)
        self._tail = rollup_fold.Tail()     # the facts committed since the last fold (rollup_fold.py)

    async def _on(self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
        if executor is None:
            raise StoreUnavailable(f"SQLite database {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            mapped = store_error(exc, self.path)
            if mapped is None:
                raise
            raise mapped from exc

    # --- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="store-write")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="store-read")
        try:
            await self._on(self._write_thread, self._open_writer)
            await self._on(self._read_thread, self._open_reader)
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        self._writer = conn
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreUnavailable(f"SQLite database {self.path}: cannot use WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = OFF")
        # measured on the bench mix at 320k events: checkpoints every 10,000 pages (~40 MiB of WAL)
        # instead of 1,000 write each index page once per many commits (30 -> 19 CPU-us an event, with
        # the cache holding the indexes' hot pages)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit = {self.wal_reset_bytes}")
        if self.max_size_mb:        # per connection: only this (the writer's) connection writes
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, int(self.max_size_mb * 1024 * 1024 // page_size))}")
        self._migrate(conn)
        applied = {version for (version,) in conn.execute(APPLIED_SQL)}
        self._folds = rollup_fold.MIGRATION in applied
        self._by_user = user_index.WATERMARK_MIGRATION in applied
        if self._folds:     # what a crashed process committed and did not fold
            self._fold_or_log(conn)
        self._files = {name: found for name in (self.path, self.path + "-wal")
                       if (found := _identity(name)) is not None}

    def _check_files(self) -> None:
        """Raise StoreUnavailable when the database or its -wal is no longer the file we opened."""
        for name, opened in self._files.items():
            if _identity(name) != opened:
                what = "the file" if name == self.path else "its -wal file"
                raise StoreUnavailable(f"SQLite database {self.path}: {what} was removed or replaced while open; "
                                       "writes since then would be lost: restart the agent")

    def _open_reader(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.set_progress_handler(self._past_deadline, PROGRESS_OPS)
        self._reader = conn

    def _past_deadline(self) -> bool:
        return time.monotonic() > self._read_deadline

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Each migration in its own transaction; the version is re-checked under the write lock, so two
        agents opening the same file at once do not both apply it."""
        conn.execute(migrations_table(self.dialect))
        applied = [row[0] for row in conn.execute(APPLIED_SQL)]
        for migration in pending(applied, self.migrations):
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                                    (migration.version,)).fetchone()
                if done is None:
                    for sql in statements(migration, self.dialect):
                        conn.execute(sql)
                    if migration.version == rollups.MIGRATION:
                        self._backfill(conn)
                    elif migration.version == person_bits.MIGRATION:
                        person_bits.backfill_sqlite(conn)
                    elif migration.version == label_bits.MIGRATION:
                        label_bits.backfill_sqlite(conn)
                    elif migration.version == signup_bits.MIGRATION:
                        signup_bits.backfill_sqlite(conn)
                    conn.execute(RECORD_SQL, (migration.version, migration.description, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @staticmethod
    def _backfill(conn: sqlite3.Connection) -> None:
        """The rollups of the events already stored, rollups.CHUNK events at a time (bounded memory)."""
        last = 0
        while rows := conn.execute(rollups.BACKFILL_SQL, (last, rollups.CHUNK)).fetchall():
            last = rows[-1][0]
            for sql, aggregated in rollups.backfill_aggregate(row[1:] for row in rows):
                conn.executemany(sql, aggregated)

    async def close(self) -> None:
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        if self._idle_fold is not None:
            await asyncio.gather(self._idle_fold, return_exceptions=True)
        try:
            await self.settle()     # a clean stop leaves nothing to fold at the next open
        except StoreError:
            pass                    # ... else the next open folds it: the events are committed
        for executor, attr in ((self._read_thread, "_reader"), (self._write_thread, "_writer")):
            if executor is None:
                continue
            await asyncio.get_running_loop().run_in_executor(executor, self._close_connection, attr)
            executor.shutdown(wait=True)
        self._read_thread = self._write_thread = None

    def _close_connection(self, attr: str) -> None:
        conn = getattr(self, attr)
        setattr(self, attr, None)
        if conn is not None:
            _rollback(conn)
            conn.close()

    # --- writes --------------------------------------------------------------------------------------

    async def write_events(self, batch: Sequence[EventRows]) -> frozenset[int]:
        if not batch:
            return frozenset()
        duplicates = await self._on(self._write_thread, self._write_events, batch)
        if self._unfolded and self._fold_timer is None:     # an idle store folds its last commits too
            self._fold_timer = asyncio.get_running_loop().call_later(rollup_fold.FOLD_SECONDS, self._fold_idle)
        return duplicates

    def _fold_idle(self) -> None:
        self._fold_timer = None
        if self._unfolded and self._write_thread is not None and (self._idle_fold is None or self._idle_fold.done()):
            self._idle_fold = asyncio.ensure_future(self._settle_logged())

    async def _settle_logged(self) -> None:
        try:
            await self.settle()
        except StoreError as exc:       # a read or the next commit tries again
            log.warning("folding the rollups failed: %s", exc)

    def _write_events(self, batch: Sequence[EventRows]) -> frozenset[int]:
        fold = self._folds and time.monotonic() >= self._fold_after and self._fold_due(len(batch))
        try:
            return self._write_group(batch, fold)
        except _FoldFull:       # SQLite rolled the whole group back: once more without the fold, which waits
            self._fold_after = time.monotonic() + rollup_fold.FOLD_SECONDS
            return self._write_group(batch, False)

    def _write_group(self, batch: Sequence[EventRows], fold: bool) -> frozenset[int]:
        conn = self._open(self._writer)
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored: set[str] = set()
            for chunk in chunks(client_ids(batch), _ID_CHUNK):
                marks = ", ".join("?" * len(chunk))
                stored.update(row[0] for row in conn.execute(
                    f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk))
            duplicates = repeated_in_batch(batch, stored)
            keep = [rows for position, rows in enumerate(batch) if position not in duplicates]
            if self._folds:     # the ids the rows take: the highest before them plus 1..n
                self._tail.extend(conn, rollups.facts(keep))
            conn.executemany(INSERT_EVENTS, [rows.event for rows in keep])
            by_table: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            for rows in keep:
                for table, row in rows.tables:
                    by_table[table].append(row)
            for table, table_rows in by_table.items():
                conn.executemany(INSERT_TABLES[table], table_rows)
            conn.executemany(UPSERT_USERS, user_activity(keep))
            folded = not self._folds
            if not self._folds:         # a store before migration 19: in the same transaction
                for sql, aggregated in rollups.ingest_aggregate(keep):
                    conn.executemany(sql, aggregated)
                person_bits.write_sqlite(conn, rollups.facts(keep), self._bits)
            elif fold:              # this group's events and every one before not yet folded: rollups, bits
                folded = self._fold_within(conn)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            self._bits.clear()          # it holds what the rolled-back transaction wrote
            self._tail.drop()           # ... and so may the tail
            raise
        if folded and self._folds:
            self._tail.folded()
        self._committed(len(keep), folded=folded)
        self._check_files()
        return frozenset(duplicates)

    def _fold_within(self, conn: sqlite3.Connection) -> bool:
        """The fold inside the group's open transaction, in a savepoint: a full store (SQLITE_FULL, the
        rollups needing new pages) undoes the fold only, and the group's events still commit; retention
        (which does not fold first) frees room, a later commit or read folds. False when undone; _FoldFull
        when SQLite rolled back the whole transaction (it may, on SQLITE_FULL)."""
        conn.execute("SAVEPOINT fold")
        try:
            rollup_fold.fold(conn, self._tail, self._bits, self._by_user)
        except sqlite3.Error as exc:
            if not isinstance(store_error(exc, self.path), StoreFull):
                raise
            self._bits.clear()          # it holds what the undone fold wrote
            self.fold_failures += 1
            log.warning("SQLite database %s is full: the rollups wait for room (%s)", self.path, exc)
            if not conn.in_transaction:
                raise _FoldFull() from exc
            conn.execute("ROLLBACK TO fold")
            conn.execute("RELEASE fold")
            return False
        conn.execute("RELEASE fold")
        return True

    def _fold_or_log(self, conn: sqlite3.Connection) -> None:
        """A fold in a transaction of its own (at open, before a read); a full store is logged and the
        open or read goes on: the events stay above the watermark, nothing is lost."""
        try:
            self._in_transaction(conn, lambda conn: rollup_fold.fold(conn, self._tail, self._bits, self._by_user))
            self._tail.folded()
        except sqlite3.Error as exc:
            if not isinstance(store_error(exc, self.path), StoreFull):
                raise
            self.fold_failures += 1
            log.warning("SQLite database %s is full: the rollups wait for room (%s)", self.path, exc)

    def _fold_due(self, events: int) -> bool:
        return self._unfolded + events >= rollup_fold.FOLD_EVENTS or (
            self._unfolded > 0 and time.monotonic() - self._unfolded_since >= rollup_fold.FOLD_SECONDS)

    def _committed(self, events: int, folded: bool) -> None:
        if folded:
            self._unfolded = 0
        elif events:
            if not self._unfolded:
                self._unfolded_since = time.monotonic()
            self._unfolded += events

    def _in_transaction(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            self._bits.clear()          # a fold's bits were rolled back
            raise
        self._committed(0, folded=True)

    async def settle(self) -> None:
        """Fold the events this process committed into the rollups now (rollup_fold.py)."""
        if self._unfolded:
            await self._on(self._write_thread, self._settle)

    def _settle(self) -> None:
        """Whatever is above the watermark, this process's events or another's (a no-op transaction, no
        write, when nothing is)."""
        self._fold_or_log(self._open(self._writer))
        self._check_files()

    async def execute(self, statements: Sequence[tuple[str, Sequence[Any]]], *,
                      rollups_current: bool = True) -> list[int]:
        return await self._on(self._write_thread, self._execute, statements, rollups_current)

    def _execute(self, statements: Sequence[tuple[str, Sequence[Any]]], rollups_current: bool = True) -> list[int]:
        conn = self._open(self._writer)
        conn.execute("BEGIN IMMEDIATE")
        folding = self._folds and rollups_current and any(rollup_fold.folds_first(sql) for sql, _ in statements)
        if self._folds and any(rollup_fold.folds_first(sql) for sql, _ in statements):
            self._tail.drop()           # it may change or delete events of the tail: read back at the next fold
        try:
            if folding:                 # the events, rollups and bitmaps it changes are whole first
                rollup_fold.fold(conn, None, self._bits, self._by_user)
            counts = [conn.execute(sql, tuple(params)).rowcount for sql, params in statements]
            if self._folds and any(rollup_fold.deletes_folded(sql) for sql, _ in statements):
                conn.execute(rollup_fold.LOWER_SQL)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            if folding:
                self._bits.clear()      # the fold's bits were rolled back
            raise
        if folding:
            self._committed(0, folded=True)
        self._check_files()
        return counts

    # --- reads ---------------------------------------------------------------------------------------

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._folds and rollup_fold.reads_folded(sql) and rollup_fold.needs_settling(id(self)) and (
                self._unfolded or await self._on(self._read_thread, self._behind)):
            await self._on(self._write_thread, self._settle)
        return await self._on(self._read_thread, self._fetch, sql, params, time.monotonic() + self.query_timeout)

    def _behind(self) -> bool:
        """Events above the watermark that this process did not commit (another process sharing the file)."""
        conn = self._open(self._reader)
        (behind,), = conn.execute(rollup_fold.BEHIND_SQL).fetchall()
        if not behind and self._by_user:        # an older agent's folds move the other watermark only
            (behind,), = conn.execute(user_index.BEHIND_SQL).fetchall()
        return bool(behind)

    def _fetch(self, sql: str, params: Sequence[Any], deadline: float) -> list[tuple[Any, ...]]:
        conn = self._open(self._reader)
        self._read_deadline = deadline
        self._bound_wal(conn)
        try:
            if time.monotonic() > deadline:         # waited its whole time behind other reads
                raise sqlite3.OperationalError("interrupted")
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            if time.monotonic() > deadline and "interrupt" in str(exc):
                raise StoreTimeout(f"SQLite database {self.path}: a read ran past store.query_timeout "
                                   f"({self.query_timeout:g}s) and was interrupted") from None
            raise

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """On the reader thread, between two reads (no snapshot held in this process): a -wal grown past
        the bound is emptied by a checkpoint on the writer's thread, which this read waits for."""
        try:
            size = os.stat(self.path + "-wal").st_size
        except OSError:
            return
        if size <= self.wal_reset_bytes or self._write_thread is None or time.monotonic() < self._reset_after:
            return
        waiting = threading.Event()
        waiting.set()
        done = False
        try:
            job = self._write_thread.submit(self._reset_wal, waiting)
            done = job.result(timeout=max(0.0, min(CHECKPOINT_WAIT * 5, self._read_deadline - time.monotonic())))
        except (concurrent.futures.TimeoutError, sqlite3.Error, StoreError, RuntimeError):   # RuntimeError: closing
            pass        # the writer was stuck or the checkpoint failed: read now
        finally:
            waiting.clear()
        if done:
            self.wal_resets += 1
        else:           # another process's reader (or a stuck writer): not again at every read, which
            self.wal_reset_failures += 1            # would hold ingest CHECKPOINT_WAIT each time
            self._reset_after = time.monotonic() + RESET_BACKOFF

    def _reset_wal(self, reader_waiting: threading.Event) -> bool:
        """On the writer's thread: TRUNCATE checkpoint while the reader waits (skipped if it gave up)."""
        conn = self._open(self._writer)
        if not reader_waiting.is_set():
            return False
        conn.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT * 1000)}")     # other processes' readers
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return not busy

    def _open(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise StoreUnavailable(f"SQLite database {self.path} is not open")
        return conn
