"""A real PostgreSQL server for tests: Debian's `postgresql` 15 binaries, a fresh `initdb` in a temp dir,
listening on 127.0.0.1 and a free port, trust authentication, stopped by its PID.

The server runs as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root):
the data directory is created under /tmp (pytest's tmp_path is private to root) and handed to that user.

Fixtures (register with `pytest_plugins = ["tests.support.pg"]`, or through tests/support/store_fixtures.py):
    pg_server     session-scoped PostgresServer, shared by every test
    pg_dsn        a DSN of a fresh, empty database on it (CREATE DATABASE test_<n>), dropped after the test
A test that must stop the server (outage and recovery) starts its own `PostgresServer()` instead.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import free_port, wait_until

PG_BIN = Path(os.environ.get("LOOM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
# speed over crash safety: these databases live for one test session
_TEST_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off", "max_connections=200",
                  "shared_buffers=32MB", "log_min_messages=warning")


def _as_postgres() -> dict:
    """Popen arguments that run the child as the `postgres` user when we are root (setuid in the child,
    so the PID we hold is the server's own)."""
    if os.geteuid() != 0:
        return {}
    return {"user": SUPERUSER, "group": pwd.getpwnam(SUPERUSER).pw_gid}


class PostgresServer:
    """One PostgreSQL cluster in a temp dir. `start()`/`stop()` may be called repeatedly (same port)."""

    def __init__(self, directory: Path | None = None) -> None:
        """A new cluster in a temp dir; with `directory`, the cluster kept there (created when it has none:
        the benchmarks keep a filled one in bench/out/ between runs). Stop it; destroy() deletes it."""
        if not (PG_BIN / "postgres").exists():
            pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (Debian package `postgresql`)")
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory if directory is not None else Path(tempfile.mkdtemp(prefix="loom-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path = self.dir / "postgres.log"
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SUPERUSER)
            for path in (self.dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._names = itertools.count(1)
        if (self.data / "PG_VERSION").exists():
            return
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                        "--encoding=UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, cwd=self.dir, **_as_postgres())

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        options = [arg for setting in _TEST_SETTINGS for arg in ("-c", setting)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.socket_dir), *options],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, **_as_postgres())
        log.close()
        wait_until(self._ready, 30, what=f"postgres ready on port {self.port}; log:\n{self.log()}")

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"postgres exited:\n{self.log()}")
        check = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", SUPERUSER], capture_output=True)
        return check.returncode == 0

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID: what `pg_ctl stop -m fast` sends)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement with psql (no event loop needed); returns its unaligned output."""
        done = subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
                               "-c", sql], capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {done.stderr}")
        return done.stdout

    def create_database(self) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> Iterator[str]:
    name = pg_server.create_database()
    yield pg_server.dsn(name)
    pg_server.drop_database(name)
