"""The store suite, run against both drivers (SQLite file, real PostgreSQL): migrations, every table's
round trip, client event id deduplication, the users upsert, fetch/execute with `?` placeholders, and
how each database's failures surface as StoreErrors (and recover)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from agent.config.node import Node
from agent.store.config import StoreConfig, parse_store
from agent.store.open import open_store
from agent.store.errors import StoreFull, StoreUnavailable
from agent.store.postgres import PostgresStore, store_error as pg_error, to_dollar
from agent.store.rows import EVENT_COLUMNS, TABLE_COLUMNS
from agent.store.schema import MIGRATIONS, Migration
from agent.store.sqlite import CACHE_KIB, SqliteStore
from tests.support.pg import PostgresServer
from tests.support.procs import free_port
from tests.support.store_fixtures import example_rows

pytest_plugins = ["tests.support.store_fixtures"]

TABLES = ("events", "users", "onboarding_funnel", "mfa_audit_logs", "security_events", "download_logs",
          "opt_outs", "probe_rollups", "probe_rollups_hourly")
T0 = 1_700_000_000.0


def driver(config: StoreConfig, migrations: tuple[Migration, ...] = MIGRATIONS) -> Any:
    """An unopened store for `config` (open_store always uses the released migrations)."""
    if config.driver == "sqlite":
        return SqliteStore(config.path, migrations=migrations)
    return PostgresStore(config.dsn, pool_size=2, migrations=migrations)


def count(store: Any, run: Any, table: str) -> int:
    return run(store.fetch(f"SELECT count(*) FROM {table}"))[0][0]


def event_ids(store: Any, run: Any) -> list[str | None]:
    return [r[0] for r in run(store.fetch("SELECT event_id FROM events ORDER BY id"))]


# --- migrations -----------------------------------------------------------------------------------------

def test_fresh_database_gets_every_table_and_its_version_recorded(store, run) -> None:
    for table in TABLES:
        assert count(store, run, table) == 0
    versions = run(store.fetch("SELECT version, description FROM schema_migrations"))
    assert versions == [(m.version, m.description) for m in MIGRATIONS]


def test_reopening_is_a_no_op(store, store_config, run) -> None:
    run(store.write_events([example_rows("login_attempt", event_id="kept")]))
    before = run(store.fetch("SELECT version, applied_at FROM schema_migrations"))
    run(store.close())
    again = driver(store_config)
    run(again.open())
    try:
        assert run(again.fetch("SELECT version, applied_at FROM schema_migrations")) == before
        assert event_ids(again, run) == ["kept"]
    finally:
        run(again.close())


def test_a_new_migration_is_applied_on_upgrade(store, store_config, run) -> None:
    run(store.close())
    upgraded = MIGRATIONS + (Migration(MIGRATIONS[-1].version + 1, "test: an extra table",
                                       ("CREATE TABLE extra (x {real})",)),)
    newer = driver(store_config, upgraded)
    run(newer.open())
    try:
        assert [r[0] for r in run(newer.fetch("SELECT version FROM schema_migrations ORDER BY version"))] == \
            [m.version for m in upgraded]
        assert run(newer.execute([("INSERT INTO extra (x) VALUES (?)", (1.5,))])) == [1]
    finally:
        run(newer.close())


def test_a_failing_migration_leaves_nothing_behind(store, store_config, run) -> None:
    run(store.close())
    broken = MIGRATIONS + (Migration(99, "test: half good", ("CREATE TABLE half (x {real})", "NOT SQL")),)
    with pytest.raises(Exception):
        run(driver(store_config, broken).open())
    reopened = driver(store_config)
    run(reopened.open())
    try:
        assert sorted(r[0] for r in run(reopened.fetch("SELECT version FROM schema_migrations"))) == \
            [m.version for m in MIGRATIONS]
        # the migration's first statement was rolled back with it: re-creating the table works
        assert run(reopened.execute([("CREATE TABLE half (x INTEGER)", ())])) is not None
    finally:
        run(reopened.close())


def test_a_database_newer_than_the_agent_is_refused(store, store_config, run) -> None:
    run(store.execute([("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                        (999, "from the future", T0))]))
    run(store.close())
    with pytest.raises(StoreUnavailable, match="schema version 999, newer than this agent knows"):
        run(driver(store_config).open())


def test_agents_opening_one_database_together_migrate_it_once(store, store_config, run) -> None:
    run(store.close())
    upgraded = MIGRATIONS + (Migration(MIGRATIONS[-1].version + 1, "test: once",
                                       ("CREATE TABLE once_only (x {real})",)),)
    agents = [driver(store_config, upgraded) for _ in range(4)]

    async def open_all() -> None:
        await asyncio.gather(*(agent.open() for agent in agents))

    run(open_all())
    try:
        assert [r[0] for r in run(agents[0].fetch("SELECT version FROM schema_migrations ORDER BY version"))] == \
            [m.version for m in upgraded]
    finally:
        for agent in agents:
            run(agent.close())


# --- writes and reads -----------------------------------------------------------------------------------

AUDITED = [  # one event per audit table (and a second download kind)
    ("onboarding_step_completed", "onboarding_funnel"),
    ("onboarding_completed", "onboarding_funnel"),
    ("mfa_verification", "mfa_audit_logs"),
    ("login_attempt", "security_events"),
    ("security_event", "security_events"),
    ("resource_downloaded", "download_logs"),
    ("file_downloaded", "download_logs"),
]


def test_every_table_round_trips(store, run) -> None:
    batch = [example_rows(name, event_id=f"id-{i}", ts=T0 + i, context={"ip": "203.0.113.7",
                                                                      "userAgent": "Mozilla/5.0"})
             for i, (name, _) in enumerate(AUDITED)]
    batch.append(example_rows("web_vitals", ts=T0 + 100))          # no event id, no audit table
    assert run(store.write_events(batch)) == frozenset()

    stored = run(store.fetch(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY id"))
    json_at = [EVENT_COLUMNS.index("properties"), EVENT_COLUMNS.index("context")]
    for got, rows in zip(stored, batch, strict=True):
        want = rows.event
        assert [v for i, v in enumerate(got) if i not in json_at] == [v for i, v in enumerate(want) if i not in json_at]
        for i in json_at:        # PostgreSQL's jsonb normalises spacing and key order
            assert json.loads(got[i]) == json.loads(want[i])
    web_vitals = dict(zip(EVENT_COLUMNS, stored[-1]))
    assert (web_vitals["label"], web_vitals["outcome"], web_vitals["retention_class"]) == \
        ("LCP", "good", "performance")

    for table, columns in TABLE_COLUMNS.items():
        want = [row for rows in batch for t, row in rows.tables if t == table]
        assert want, f"no example writes {table}"
        got = run(store.fetch(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"))
        assert got == want, table
    assert run(store.fetch("SELECT ip, user_agent FROM security_events WHERE event_id = 'id-3'")) == \
        [("203.0.113.7", "Mozilla/5.0")]


def test_duplicates_in_one_batch_are_written_once(store, run) -> None:
    batch = [example_rows("login_attempt", event_id="a"), example_rows("login_attempt", event_id="b"),
             example_rows("login_attempt", event_id="a"), example_rows("cta_click"),
             example_rows("cta_click"), example_rows("login_attempt", event_id="b")]
    assert run(store.write_events(batch)) == {2, 5}
    assert event_ids(store, run) == ["a", "b", None, None]      # no event id: never a duplicate
    assert count(store, run, "security_events") == 2


def test_duplicates_of_stored_events_are_skipped_with_their_audit_rows(store, run) -> None:
    assert run(store.write_events([example_rows("mfa_verification", event_id="m1")])) == frozenset()
    again = [example_rows("cta_click", event_id="c1"), example_rows("mfa_verification", event_id="m1"),
             example_rows("mfa_verification", event_id="m2")]
    assert run(store.write_events(again)) == {1}
    assert run(store.write_events(again)) == {0, 1, 2}
    assert event_ids(store, run) == ["m1", "c1", "m2"]
    assert [r[0] for r in run(store.fetch("SELECT event_id FROM mfa_audit_logs ORDER BY id"))] == ["m1", "m2"]


def test_many_ids_are_checked_in_chunks(store, run) -> None:
    first = [example_rows("cta_click", event_id=f"e{i}") for i in range(1200)]
    assert run(store.write_events(first)) == frozenset()
    mixed = [example_rows("cta_click", event_id=f"e{i}") for i in range(1100, 1300)]
    assert run(store.write_events(mixed)) == frozenset(range(100))
    assert count(store, run, "events") == 1300


def test_users_keep_first_and_last_seen_and_role(store, run) -> None:
    run(store.write_events([example_rows("cta_click", user="u1", ts=T0 + 50),
                            example_rows("cta_click", user="u1", ts=T0 + 10),
                            example_rows("onboarding_personalization", user="u1", ts=T0 + 20),
                            example_rows("cta_click", user=None, ts=T0)]))
    assert run(store.fetch("SELECT user_id, first_seen, last_seen, role FROM users")) == \
        [("u1", T0 + 10, T0 + 50, "client")]
    run(store.write_events([example_rows("cta_click", user="u1", ts=T0 + 5),
                            example_rows("cta_click", user="u2", ts=T0 + 70)]))
    assert run(store.fetch("SELECT user_id, first_seen, last_seen, role FROM users ORDER BY user_id")) == \
        [("u1", T0 + 5, T0 + 50, "client"), ("u2", T0 + 70, T0 + 70, None)]
    run(store.write_events([example_rows("onboarding_personalization", user="u1", ts=T0 + 80,
                                         props={"role": "coach"})]))
    assert run(store.fetch("SELECT last_seen, role FROM users WHERE user_id = ?", ("u1",))) == [(T0 + 80, "coach")]


def test_a_duplicate_does_not_move_its_users_last_seen(store, run) -> None:
    run(store.write_events([example_rows("cta_click", event_id="x", user="u1", ts=T0)]))
    run(store.write_events([example_rows("cta_click", event_id="x", user="u1", ts=T0 + 99)]))
    assert run(store.fetch("SELECT first_seen, last_seen FROM users")) == [(T0, T0)]


def test_execute_runs_in_one_transaction_and_counts_rows(store, run) -> None:
    run(store.write_events([example_rows("cta_click", user=f"u{i}", ts=T0 + i) for i in range(5)]))
    counts = run(store.execute([("DELETE FROM events WHERE ts < ?", (T0 + 2,)),
                                ("UPDATE users SET role = ? WHERE user_id IN (?, ?)", ("coach", "u3", "u4")),
                                ("INSERT INTO opt_outs (user_id, opted_out_at, source) VALUES (?, ?, ?)",
                                 ("u1", T0, "api"))]))
    assert counts == [2, 2, 1]
    with pytest.raises(Exception):      # the second statement fails: the first is rolled back
        run(store.execute([("DELETE FROM events", ()), ("INSERT INTO no_such_table VALUES (?)", (1,))]))
    assert count(store, run, "events") == 3


def test_question_marks_inside_literals_are_not_placeholders(store, run) -> None:
    run(store.write_events([example_rows("cta_click", user="what?")]))
    rows = run(store.fetch("SELECT user_id, 'is it?', ? FROM events WHERE user_id = ? AND 'it''s?' <> ?",
                           ("third", "what?", "x")))
    assert rows == [("what?", "is it?", "third")]


def test_fetch_returns_plain_python_numbers(store, run) -> None:
    run(store.write_events([example_rows("page_load", ts=T0 + i) for i in range(3)]))
    (total, mean, n, biggest), = run(store.fetch(
        "SELECT sum(value), avg(CAST(ts AS INTEGER)), count(*), max(ts) FROM events"))
    assert (type(total), type(mean), type(n), type(biggest)) == (float, float, int, float)
    assert mean == T0 + 1 and n == 3


@pytest.mark.parametrize("sql,want", [
    ("SELECT ?", "SELECT $1"),
    ("a = ? AND b IN (?, ?)", "a = $1 AND b IN ($2, $3)"),
    ("x = '?' AND y = ?", "x = '?' AND y = $1"),
    ("x = 'it''s ?' AND y = ?", "x = 'it''s ?' AND y = $1"),
    ('SELECT "odd?col" FROM t WHERE z = ?', 'SELECT "odd?col" FROM t WHERE z = $1'),
    ("no placeholders", "no placeholders"),
])
def test_question_marks_become_numbered_parameters(sql: str, want: str) -> None:
    assert to_dollar(sql) == want


# --- failures -------------------------------------------------------------------------------------------

def sqlite_store(tmp_path, run, **kwargs: Any) -> SqliteStore:
    store = SqliteStore(str(tmp_path / "s.db"), **kwargs)
    run(store.open())
    return store


def test_sqlite_full_is_store_full_and_recovers(tmp_path, run) -> None:
    store = sqlite_store(tmp_path, run)
    try:
        run(store.write_events([example_rows("cta_click", event_id="before")]))
        pages = run(store.fetch("PRAGMA page_count"))[0][0]
        run(store.execute([(f"PRAGMA max_page_count = {pages + 2}", ())]))   # a real cap: SQLITE_FULL
        big = [example_rows("cta_click", event_id=f"big{i}", props={"cta_id": "x" * 250}) for i in range(200)]
        with pytest.raises(StoreFull) as info:
            run(store.write_events(big))
        assert info.value.retry_after == 30
        assert event_ids(store, run) == ["before"]          # nothing of the failed batch
        run(store.execute([("PRAGMA max_page_count = 1000000", ())]))
        assert run(store.write_events(big)) == frozenset()
        assert count(store, run, "events") == 201
    finally:
        run(store.close())


def test_sqlite_locked_beyond_the_busy_timeout_is_unavailable_and_recovers(tmp_path, run) -> None:
    store = sqlite_store(tmp_path, run, busy_timeout=0.2)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")                    # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="busy|locked"):
            run(store.write_events([example_rows("cta_click", event_id="one")]))
        other.execute("COMMIT")
        assert run(store.write_events([example_rows("cta_click", event_id="one")])) == frozenset()
    finally:
        other.close()
        run(store.close())


def test_sqlite_cannot_open_is_unavailable(tmp_path, run) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open|unable to open"):
        run(SqliteStore(str(tmp_path / "missing" / "dir" / "s.db")).open())
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable, match="not a database"):
        run(SqliteStore(str(tmp_path / "garbage.db")).open())


def test_a_closed_store_is_unavailable(tmp_path, run) -> None:
    store = sqlite_store(tmp_path, run)
    run(store.close())
    with pytest.raises(StoreUnavailable):
        run(store.write_events([example_rows("cta_click")]))


def test_postgres_on_a_closed_port_is_unavailable(run) -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=2)
    with pytest.raises(StoreUnavailable, match="unreachable") as info:
        run(store.open())
    assert "postgres@" not in str(info.value)


@pytest.mark.slow
def test_postgres_outage_is_unavailable_and_the_store_recovers(run) -> None:
    server = PostgresServer()
    try:
        server.start()
        store = PostgresStore(server.dsn(server.create_database()), pool_size=2, connect_timeout=2)
        run(store.open())
        run(store.write_events([example_rows("cta_click", event_id="before")]))
        server.stop()
        with pytest.raises(StoreUnavailable):
            run(store.write_events([example_rows("cta_click", event_id="during")]))
        with pytest.raises(StoreUnavailable):
            run(store.fetch("SELECT 1"))
        server.start()
        assert run(store.write_events([example_rows("cta_click", event_id="after"),
                                       example_rows("cta_click", event_id="before")])) == {1}
        assert event_ids(store, run) == ["before", "after"]
        run(store.close())
    finally:
        server.destroy()


@pytest.mark.parametrize("exc,kind", [
    (asyncpg.exceptions.DiskFullError("could not extend file"), StoreFull),
    (asyncpg.exceptions.OutOfMemoryError("out of memory"), StoreFull),
    (asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients"), StoreUnavailable),
    (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), StoreUnavailable),
    (asyncpg.exceptions.AdminShutdownError("terminating connection"), StoreUnavailable),
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), StoreUnavailable),
    (ConnectionRefusedError(111, "Connection refused"), StoreUnavailable),
    (asyncpg.exceptions.UndefinedTableError("relation does not exist"), None),   # a bug, not an outage
])
def test_postgres_errors_map_to_store_errors(exc: BaseException, kind: type | None) -> None:
    mapped = pg_error(exc, "PostgreSQL 127.0.0.1:5432/x")
    assert (type(mapped) if mapped is not None else None) is kind


# --- the store: config block ----------------------------------------------------------------------------

BAD_STORE_CONFIGS = sorted((Path(__file__).parent / "fixtures" / "bad_configs").glob("store_*.yaml"))


def parse(text: str, base_dir: str = "/etc/loom", environ: dict[str, str] | None = None) -> tuple[StoreConfig, list[str]]:
    errors: list[str] = []
    config = parse_store(Node(yaml.safe_load(text).get("store"), "store", errors), base_dir, environ or {})
    return config, errors


def test_store_config_defaults_and_relative_path() -> None:
    config, errors = parse("store: {}")
    assert errors == []
    assert (config.driver, config.path, config.synchronous, config.max_pending_events, config.pool_size,
            config.connect_timeout, config.max_size_mb) == \
        ("sqlite", "/etc/loom/loom-agent.db", "full", 100_000, 4, 5.0, 0.0)
    assert parse("store: {path: /var/lib/loom/e.db}")[0].path == "/var/lib/loom/e.db"
    assert parse("store: {path: data/e.db}")[0].path == "/etc/loom/data/e.db"


def test_store_dsn_from_env_file_and_environment_never_in_repr(tmp_path) -> None:
    secret = "postgresql://loom:s3cret@127.0.0.1:5432/loom"
    (tmp_path / "dsn").write_text(secret + "\n")
    config, errors = parse(f"store: {{driver: postgres, dsn_file: {tmp_path / 'dsn'}, pool_size: 8, "
                           "connect_timeout: 2s}")
    assert errors == [] and config.dsn == secret and (config.pool_size, config.connect_timeout) == (8, 2.0)
    assert "s3cret" not in repr(config)
    config, errors = parse("store: {driver: postgres}", environ={"LOOM_AGENT_STORE_DSN": secret})
    assert errors == [] and config.dsn == secret


@pytest.mark.parametrize("path", BAD_STORE_CONFIGS, ids=[p.stem for p in BAD_STORE_CONFIGS])
def test_bad_store_config_names_the_key(path: Path) -> None:
    want = path.read_text().splitlines()[0].removeprefix("# error: ")
    errors = parse(path.read_text())[1]
    assert any(want in error for error in errors), errors


def test_open_store_picks_the_driver_and_caps_the_sqlite_size(tmp_path, run) -> None:
    assert run(open_store(StoreConfig(driver="none"))) is None
    # the empty schema takes ~0.48 MB (118 pages of 4 KiB with migration 19): the cap leaves room for a few batches
    store = run(open_store(StoreConfig(path=str(tmp_path / "x.db"), max_size_mb=0.6)))
    try:
        assert isinstance(store, SqliteStore)
        with pytest.raises(StoreFull):
            for n in range(100):        # ~25 KB per batch: full well before 100 batches
                run(store.write_events([example_rows("cta_click", props={"cta_id": "y" * 250})
                                        for _ in range(50)]))
        assert n > 0
        (pages, page_size), = run(store.fetch("SELECT * FROM pragma_page_count(), pragma_page_size()"))
        assert pages * page_size <= 0.6 * 1024 * 1024
    finally:
        run(store.close())


def test_the_sqlite_reader_keeps_the_writers_page_cache(tmp_path, run) -> None:
    """The reader's page cache is as large as the writer's: the analytics requests' rollup pages stay in it
    between requests (at 10M bench events their working set outgrew SQLite's default 2 MB)."""
    store = SqliteStore(str(tmp_path / "x.db"))
    run(store.open())
    try:
        assert run(store.fetch("PRAGMA cache_size")) == [(-CACHE_KIB,)]
    finally:
        run(store.close())
