"""Fixtures for tests that need a real store, on both databases.

Use from a test module:  pytest_plugins = ["tests.support.store_fixtures"]

    store_config  parametrized ["sqlite", "postgres"]: a StoreConfig for a fresh, empty database
                  (SQLite: a file in tmp_path; PostgreSQL: a new database on the session's server,
                  tests/support/pg.py; marked slow: it starts PostgreSQL). Build an app or an agent on it when the test needs more than the Store.
    store         the Store of `store_config`, opened (migrations applied) on the test's event loop,
                  closed after the test.
    sqlite_store  the same on SQLite only (a file in tmp_path), for tests that need one database.
    loop / run    the test's event loop and `run(coroutine) -> result` on it. The PostgreSQL pool is
                  bound to the loop that opened it, so use `run(...)` (not asyncio.run) with `store`:
                      def test_x(store, run):
                          run(store.write_events([...]))
                          assert run(store.fetch("SELECT count(*) FROM events")) == [(1,)]
The PostgreSQL server starts once per session, only when a postgres-parametrized test runs.

Helpers: `example_event(name, ...)` validates the catalog example of `name` into an Event as the ingest
API would; `example_rows(...)` is the EventRows the store writes for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.events.model import Event
from agent.events.validate import parse_event
from agent.store.base import Store
from agent.store.config import StoreConfig
from agent.store.open import open_store
from agent.store.rows import EventRows, event_rows
from tests.support.event_examples import USER, envelope

pytest_plugins = ["tests.support.pg"]

# the PostgreSQL cases start a server (once per session, or per xdist worker): not in the -m "not slow" lane
DRIVERS = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]
Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Run:
    return loop.run_until_complete


@pytest.fixture(params=DRIVERS)
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "sqlite":
        return StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))
    return StoreConfig(driver="postgres", dsn=request.getfixturevalue("pg_dsn"), pool_size=2)


@pytest.fixture
def store(store_config: StoreConfig, run: Run) -> Iterator[Store]:
    opened = run(open_store(store_config))
    assert opened is not None
    yield opened
    run(opened.close())


@pytest.fixture
def sqlite_store(tmp_path: Path, run: Run) -> Iterator[Store]:
    opened = run(open_store(StoreConfig(driver="sqlite", path=str(tmp_path / "store.db"))))
    assert opened is not None
    yield opened
    run(opened.close())


def example_event(name: str, *, event_id: str | None = None, user: str | None = USER, ts: float | None = None,
                  props: dict[str, Any] | None = None, **fields: Any) -> Event:
    """The documentation's example of catalog event `name` (tests/support/event_examples.py), validated.
    `user=None` sends it anonymously; `ts` (unix seconds) is both its time and when the agent received
    it (default: now)."""
    body = envelope(name, props, **fields)
    if user is None:
        body.pop("userId")
        body["anonymousId"] = "anon_1"
    else:
        body["userId"] = user
    if event_id is not None:
        body["eventId"] = event_id
    # received at `ts` (no client timestamp): any time works, however far in the past
    return parse_event(body, now=time.time() if ts is None else ts)


def example_rows(name: str, **kwargs: Any) -> EventRows:
    return event_rows(example_event(name, **kwargs))
