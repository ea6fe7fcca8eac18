"""The contract every store driver (sqlite.py, postgres.py) fulfils. Queries are written once, in SQL
with `?` placeholders, and run by either driver (PostgreSQL's driver rewrites them to `$1, $2, ...`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from agent.store.rows import EventRows


class Store(Protocol):
    dialect: ClassVar[str]          # "sqlite" | "postgres"
    # folds of the analytics rollups a full store refused since it opened: SQLite folds them in bulk
    # (agent/store/rollup_fold.py), and while it has no room the events are stored but the analytics lag
    # behind them; PostgreSQL keeps them in every commit (always 0)
    fold_failures: int

    async def open(self) -> None:
        """Connect and run pending migrations (agent/store/schema.py). Raises StoreUnavailable."""

    async def close(self) -> None: ...

    async def write_events(self, batch: Sequence[EventRows]) -> frozenset[int]:
        """Commit the batch in ONE transaction: its events rows, audit-table rows and users upserts.
        Returns the positions in `batch` of events that were already stored (same client event_id,
        earlier or earlier in this batch): those write nothing. Raises a StoreError subclass on failure
        (then nothing of the batch is committed)."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query; rows as tuples."""

    async def execute(self, statements: Sequence[tuple[str, Sequence[Any]]], *,
                      rollups_current: bool = True) -> list[int]:
        """Run write statements in one transaction, serialised with write_events; returns each
        statement's row count. `rollups_current`: the statements need the rollups to hold every committed
        event first (SQLite folds them in bulk, agent/store/rollup_fold.py); retention's DELETEs do not, and
        must run on a full store, where a fold needs room."""


class StoreSlot:
    """Where the running agent keeps its event store: None before start-up, without a store
    (store.driver: none) and after close. Why a slot: the store opens during start-up (migrations are
    async), and an aiohttp application's state may not change once the application has started."""

    __slots__ = ("store",)

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
